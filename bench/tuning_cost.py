"""What a tuned comparison cost, before and after a change, and what the change did to its rows.

    python bench/tuning_cost.py before=bench/results/compare_tuned_after_lastfm_2k_cold \
        after=bench/results/compare_tuned_pruned_lastfm_2k_cold

Reads the two ``compare --out`` folders (their run records ``runs/*.json`` and tuning trials
``tuning/<row>/trial-NNN.json``) and prints, in Markdown:

1. per row and in total, the time of the tuning trials and of the runs, before and after, and their
   ratio. CPU time is each record's ``cpu_s`` (the process's CPU time, all its threads); records made
   before ``cpu_s`` existed count ``wall_s`` x ``torch_threads`` (a one-thread run on an otherwise idle
   core: wall time is CPU time), so the ratio line uses that same measure on both sides, and the after
   folder's own ``cpu_s`` is shown too. Wall time is the sum over records (with ``--jobs 2`` two ran at
   once: the command's own wall time is about half).
2. per row, trials pruned, epochs trained by the trials, and the selected trial's validation score.
3. per row, the runs' validation score (``best_valid_score``, what selection looks at) and test cold
   NDCG@20 / Recall@20, after minus before, paired over (split, seed), with scipy's paired t-test.

Nothing is trained: it reads finished folders (an unfinished one is read as far as it got, and says so).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_tests import paired_records  # noqa: E402  (the paired test every bench script uses)
from recbole_mamex.compare import pair_key  # noqa: E402


def _cpu(details: dict) -> tuple[float, bool]:
    """(CPU seconds, measured): ``cpu_s`` when recorded, else wall x threads (1 when not recorded)."""
    if details.get("cpu_s") is not None:
        return float(details["cpu_s"]), True
    return float(details.get("wall_s") or 0) * int(details.get("torch_threads") or 1), False


def _wall_threads(details: dict) -> float:
    return float(details.get("wall_s") or 0) * int(details.get("torch_threads") or 1)


def read_folder(out: Path) -> dict:
    """row -> {"runs": {pair key: record}, "trials": [trial records]}."""
    rows: dict[str, dict] = {}
    runs = sorted((out / "runs").glob("*.json"))
    if not runs and not (out / "tuning").is_dir():
        raise SystemExit(f"error: {out}: expected a compare --out folder (runs/*.json, tuning/), found neither")
    for path in runs:
        record = json.loads(path.read_text(encoding="utf-8"))
        rows.setdefault(record["model"], {"runs": {}, "trials": []})["runs"][pair_key(record)] = record
    for path in sorted((out / "tuning").glob("*/trial-*.json")):
        trial = json.loads(path.read_text(encoding="utf-8"))
        rows.setdefault(path.parent.name, {"runs": {}, "trials": []})["trials"].append(trial)
    return rows


def trial_costs(trials) -> tuple[float, float, float, bool]:
    """(CPU s, wall x threads s, wall s, every CPU figure measured) of the trials that trained (not repeats)."""
    own = [t["details"] for t in trials if "repeat_of" not in t and t.get("details")]  # failed ones too
    cpus = [_cpu(d) for d in own]
    return (sum(c for c, _ in cpus), sum(_wall_threads(d) for d in own), sum(float(d.get("wall_s") or 0) for d in own),
            all(m for _, m in cpus))


def run_costs(runs) -> tuple[float, float, float, bool]:
    cpus = [_cpu(r) for r in runs.values()]
    return (sum(c for c, _ in cpus), sum(_wall_threads(r) for r in runs.values()), sum(float(r.get("wall_s") or 0) for r in runs.values()),
            all(m for _, m in cpus))


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def _folder(spec: str) -> tuple[str, Path]:
    label, sep, path = spec.partition("=")
    return (label, Path(path)) if sep else (Path(spec).name, Path(spec))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="LABEL=PATH (or PATH) of the comparison before")
    parser.add_argument("after", help="LABEL=PATH (or PATH) of the comparison after")
    parser.add_argument("--candidates", default="cold")
    args = parser.parse_args(argv)
    (bl, bpath), (al, apath) = _folder(args.before), _folder(args.after)
    before, after = read_folder(bpath), read_folder(apath)
    rows = list(before) + [row for row in after if row not in before]

    print(f"# Tuned comparison cost: {bl} ({bpath}) vs {al} ({apath})\n")
    print("Hours; CPU (w x t) = wall x torch threads of each record (the measure both folders have); "
          f"{al} CPU = its recorded cpu_s.\n")
    print(f"| row | trials {bl} | trials {al} | runs {bl} | runs {al} | {bl} total | {al} total | ratio | "
          f"{al} CPU (cpu_s) | runs {bl}/{al} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    totals = np.zeros(5)
    complete = True
    for row in rows:
        b, a = before.get(row, {"runs": {}, "trials": []}), after.get(row, {"runs": {}, "trials": []})
        _, bt, _, _ = trial_costs(b["trials"])
        acpu_t, at, _, am_t = trial_costs(a["trials"])
        _, br, _, _ = run_costs(b["runs"])
        acpu_r, ar, _, am_r = run_costs(a["runs"])
        complete &= len(a["runs"]) >= len(b["runs"]) and len(a["trials"]) >= len(b["trials"])
        ratio = (at + ar) / (bt + br) if bt + br else math.nan
        cpu = _h(acpu_t + acpu_r) + ("" if am_t and am_r else " (part estimated)")
        print(f"| {row} | {_h(bt)} | {_h(at)} | {_h(br)} | {_h(ar)} | {_h(bt + br)} | {_h(at + ar)} | {ratio:.2f} | {cpu} | "
              f"{len(b['runs'])}/{len(a['runs'])} |")
        totals += [bt, at, br, ar, acpu_t + acpu_r]
    bt, at, br, ar, acpu = totals
    print(f"| **total** | {_h(bt)} | {_h(at)} | {_h(br)} | {_h(ar)} | {_h(bt + br)} | {_h(at + ar)} | "
          f"**{(at + ar) / (bt + br):.2f}** | {_h(acpu)} | |")
    if not complete:
        print(f"\n{al} is not finished: it has fewer runs or trials than {bl} for some rows (the ratio is of what ran so far).")

    print(f"\n## Tuning, per row\n\n| row | trials {bl} | pruned {al} | epochs {bl} | epochs {al} | selected valid {bl} | "
          f"selected valid {al} |\n|---|---|---|---|---|---|---|")
    for row in rows:
        b, a = before.get(row, {"trials": []})["trials"], after.get(row, {"trials": []})["trials"]
        if not b and not a:
            continue

        def epochs(trials):
            return sum((t.get("details") or {}).get("epochs_trained") or 0 for t in trials if "repeat_of" not in t)

        def best(trials):
            scored = [t["score"] for t in trials if t["status"] in ("ok", "repeat") and t["score"] is not None]
            return f"{max(scored):.4f}" if scored else "-"

        pruned = sum(t["status"] == "pruned" and "repeat_of" not in t for t in a)
        print(f"| {row} | {len(b)} | {pruned} of {len(a)} | {epochs(b)} | {epochs(a)} | {best(b)} | {best(a)} |")

    print(f"\n## Runs, {al} minus {bl}, paired over (split, seed)\n")
    print("| row | n | valid score diff ± sd | p | test " + f"{args.candidates} ndcg@20 diff ± sd | p | test {args.candidates} "
          "recall@20 diff ± sd | p |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        b, a = before.get(row, {"runs": {}})["runs"], after.get(row, {"runs": {}})["runs"]
        if not set(a) & set(b):
            continue
        cells, n = [], 0
        for value in (lambda r: r["best_valid_score"], lambda r: r["results"][args.candidates]["ndcg@20"],
                      lambda r: r["results"][args.candidates]["recall@20"]):
            mean, sd, p, n = paired_records(a, b, value)  # after minus before
            cells.append(f"{mean:+.4f} ± {sd:.4f} | {p:.2g}")
        print(f"| {row} | {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
