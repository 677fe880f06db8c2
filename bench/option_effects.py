"""What each modelling option does, on top of a finished tuned comparison (the options of issue #17).

    python bench/option_effects.py cold    # lastfm-2k-cold: 3 cold splits x 3 seeds, on top of
                                            # bench/results/compare_tuned_lastfm_2k_cold
    python bench/option_effects.py warm    # lastfm-2k: 3 seeds, on top of bench/results/compare_tuned_lastfm_2k_warm

Protocol. Every effect row is one option changed on a tuned row of the baseline comparison: the row's model
(and variant settings) with the hyperparameters its 10-trial tuning selected, plus that option. The options
are not re-tuned (10 more trials per option would cost about as much CPU again as the whole baseline), so a
row shows the option's effect at the baseline's tuned point, which understates an option that moves the
best hyperparameters. The effect rows run with ``python -m recbole_mamex.compare`` into their own folder
(resumable, stale runs refused), on the same splits and seeds, and pair with the baseline's run records.

Every effect row pairs with its base row retrained by the same code, with the same ``--jobs`` (so the
same torch threads: a thread count changes floating-point sums, and MAMEX's test Recall@20 moves by up
to 0.01 from that alone, bench/results/compare_jobs_throughput.md), on every split and seed: row
``<Model>-same_<base>``, run before the base row's effects. ``reproduction/`` retrains each base row once
(first split and seed, one process) and the report says whether it matches the baseline comparison's
record exactly: whether the baseline's tables still describe this code.

The report (``bench/results/option_effects_<dataset>.md``) gives, per effect row and candidate set, the
mean +- sd of Recall@20 and NDCG@20 and the paired difference to its base row with scipy's paired t-test
p-value, and the same for the validation score (the number a default is chosen on; test is only reported).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from paired_tests import load, paired_records as paired  # noqa: E402
from recbole_mamex.records import row_settings  # noqa: E402

CENTER = {"feature_norm": "center_l2"}
WARM_NEG = {"train_neg_items": "warm"}
PLANS = {
    "cold": {
        "dataset": "lastfm-2k-cold", "protocol": "cold", "split_seeds": [2025, 2026, 2027], "seeds": [2020, 2021, 2022],
        "baseline": ROOT / "bench/results/compare_tuned_lastfm_2k_cold", "candidates": ["cold", "warm"],
        # (base row, label, option): in the order they run (cheap and central first)
        "effects": [
            ("VBPR", "center", CENTER),
            ("VBPR", "warmneg", WARM_NEG),
            ("MAMEX", "center", CENTER),
            ("MAMEX", "warmneg", WARM_NEG),
            ("MAMEX", "mean", {"aux_loss_reduction": "mean"}),
            ("MAMEX", "nofusionbal", {"fusion_balance_weight": 0.0}),
            ("MAMEX", "authorsinit", {"weight_init": "authors"}),
            ("MAMEX-text", "center", CENTER),
            ("CLCRec", "warmneg", WARM_NEG),
            ("CLCRec", "center", CENTER),
            ("MILK", "warmneg", WARM_NEG),
            ("MILK", "center", CENTER),
            # the two options that helped MAMEX on validation, together (are they additive?)
            ("MAMEX", "warmneg_nofusionbal", {**WARM_NEG, "fusion_balance_weight": 0.0}),
            # RecBole's ID models under the same strict negatives (their cold items' rows then get no gradient)
            ("BPR", "warmneg", WARM_NEG),
            ("LightGCN", "warmneg", WARM_NEG),
            # RLMultimodalRec's content scale (measured on the warm split), on its cold-split row too
            ("RLMultimodalRec", "scale0", {"content_scale": 0.0}),
        ],
    },
    "warm": {
        "dataset": "lastfm-2k", "protocol": "warm", "split_seeds": None, "seeds": [2020, 2021, 2022],
        "baseline": ROOT / "bench/results/compare_tuned_lastfm_2k_warm", "candidates": ["full"],
        "effects": [
            ("RLMultimodalRec", "scale0", {"content_scale": 0.0}),
            ("RLMultimodalRec", "after", {"content_position": "after"}),
            ("RLMultimodalRec", "center", CENTER),
            # L2 (squared Frobenius norm) on the modality projections, two strengths a decade apart
            ("RLMultimodalRec", "projreg_1em4", {"projection_reg_weight": 1e-4}),
            ("RLMultimodalRec", "projreg_1em3", {"projection_reg_weight": 1e-3}),
        ],
    },
}
METRICS = ("recall@20", "ndcg@20")


def base_settings(baseline: Path, row: str) -> tuple[str, dict]:
    """(model class, settings) of a baseline row: its variant settings and its tuned parameters."""
    for path in sorted((baseline / "runs").glob(f"{row}-*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record["model"] != row:
            continue
        return row_settings(record)
    raise SystemExit(f"error: no run record of row {row!r} in {baseline / 'runs'}")


def variant_arg(name: str, settings: dict) -> str:
    return name + "=" + ";".join(f"{k}:{json.dumps(v)}" for k, v in settings.items())


def effect_rows(plan) -> dict[str, tuple[str, dict, str]]:
    """effect row name -> (model class, settings, base row)."""
    rows = {}
    for base, label, option in plan["effects"]:
        model, settings = base_settings(plan["baseline"], base)
        suffix = base[len(model) + 1:]  # a baseline variant's own label, e.g. "text" of MAMEX-text
        name = f"{model}-{suffix + '_' if suffix else ''}{label}"
        rows[name] = (model, {**settings, **option}, base)
    return rows


def compare(plan, variants: dict[str, dict], out: Path, first_only: bool, jobs: int = 1) -> None:
    from recbole_mamex.compare import main

    args = ["--dataset", plan["dataset"], "--protocol", plan["protocol"], "--models", "Pop", "--out", str(out),
            "--jobs", str(jobs)]
    seeds = plan["seeds"][:1] if first_only else plan["seeds"]
    args += ["--seeds", *map(str, seeds)]
    if plan["split_seeds"]:
        args += ["--split-seeds", *map(str, plan["split_seeds"][:1] if first_only else plan["split_seeds"])]
    args += ["--variant", *(variant_arg(name, settings) for name, settings in variants.items())]
    code = main(args)
    if code:
        raise SystemExit(code)


def mean_sd(records: dict, value) -> str:
    values = np.array([value(r) for r in records.values()], dtype=float)
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else f"{values.mean():.4f}"


def same_row(plan, base: str) -> str:
    """The row retraining base row ``base`` with this code (in ``reproduction/``, and in the effects
    folder when the reproduction differs from the baseline record)."""
    return f"{base_settings(plan['baseline'], base)[0]}-same_{base.replace('-', '_')}"


def drifted(plan, out: Path) -> dict[str, bool | None]:
    """base row -> whether this code's retraining on the first split and seed differs from the baseline
    record (None: not retrained yet)."""
    baseline = load(plan["baseline"])
    repro = load(out / "reproduction") if (out / "reproduction" / "runs").is_dir() else {}
    result = {}
    for base in dict.fromkeys(b for _, _, b in effect_rows(plan).values()):
        mine = repro.get(same_row(plan, base), {})
        if not mine:
            result[base] = None
            continue
        key, record = next(iter(mine.items()))
        theirs = baseline[base].get(key)
        result[base] = theirs is None or record["results"] != theirs["results"]
    return result


def with_same_rows(plan, rows: dict) -> dict:
    """``rows`` with, before the effects of each base row, that base row retrained with this code on every
    split and seed (what the effects pair with)."""
    result = {}
    for name, (model, settings, base) in rows.items():
        if same_row(plan, base) not in result:
            result[same_row(plan, base)] = (model, base_settings(plan["baseline"], base)[1], base)
        result[name] = (model, settings, base)
    return result


def report(plan, name: str, rows: dict, out: Path) -> str:
    baseline = load(plan["baseline"])
    lines = [f"# Option effects on {plan['dataset']} ({plan['protocol']} protocol)", "",
             f"Command: `python bench/option_effects.py {name}`; effect runs in `{out.relative_to(ROOT)}/`, base rows from "
             f"`{plan['baseline'].relative_to(ROOT)}/`. Protocol: see the docstring of `bench/option_effects.py` (the option "
             "on top of the base row's tuned parameters, not re-tuned).", ""]
    drift = drifted(plan, out)
    lines += ["## Does this code reproduce the baseline comparison? (each base row once: first split and seed)", "",
              "| base row | metrics equal to the baseline record |", "|---|---|"]
    for base, moved in drift.items():
        state = "not run" if moved is None else "no (the training drifted numerically since the baseline's commit)" if moved else "yes"
        lines.append(f"| {base} | {state} |")
    effects = load(out) if (out / "runs").is_dir() else {}
    rows = with_same_rows(plan, rows)
    lines += [""]
    valid = lambda r: r["best_valid_score"]  # noqa: E731
    for candidates in plan["candidates"]:
        lines += [f"## Test, {candidates} candidates: effect row, and effect row minus base row (paired over (split, seed))", "",
                  "| row | n | " + " | ".join(f"{m} | diff | p" for m in METRICS) + " | valid score diff | p |",
                  "|---|---|" + "---|---|---|" * len(METRICS) + "---|---|"]
        for row, (_, _, base) in rows.items():
            # an effect against its retrained base row; a retrained base row against the baseline's record
            against = baseline[base] if row == same_row(plan, base) else effects.get(same_row(plan, base))
            if row not in effects or against is None:
                lines.append(f"| {row} | 0 (not run yet) |" + " |" * (3 * len(METRICS) + 2))
                continue
            cells = []
            n = 0
            for metric in METRICS:
                value = lambda r, m=metric: r["results"][candidates][m]  # noqa: E731
                diff, sd, p, n = paired(effects[row], against, value)
                cells += [mean_sd(effects[row], value), f"{diff:+.4f} ± {sd:.4f}", f"{p:.2g}"]
            vdiff, vsd, vp, _ = paired(effects[row], against, valid)
            versus = same_row(plan, base) if against is not baseline[base] else f"{base} of the baseline comparison"
            lines.append(f"| {row} (vs {versus}) | {n} | " + " | ".join(cells) + f" | {vdiff:+.4f} ± {vsd:.4f} | {vp:.2g} |")
        lines.append("")
    lines += ["Validation score: the best validation `valid_metric` of each run (NDCG@20; on the cold candidates under "
              "the cold protocol, on the full ranking under the warm protocol).", ""]
    return "\n".join(lines)


CODE = ("recbole_mamex", "dataset_prep", "properties")  # what the runs' numbers depend on


def code_commit(out: Path) -> str:
    """The commit whose package code trained the runs in ``out`` (``out/code_commit.txt``, written by the
    first run). The records are reused only while the package code is that commit's: compare's stale-run
    check sees settings and versions, not a change of the code that keeps both."""
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    marker = out / "code_commit.txt"
    if not marker.is_file():
        out.mkdir(parents=True, exist_ok=True)
        marker.write_text(head + "\n", encoding="utf-8")
        return head
    made = marker.read_text(encoding="utf-8").strip()
    changed = subprocess.run(["git", "diff", "--quiet", made, "HEAD", "--", *CODE], cwd=ROOT).returncode
    if changed:
        raise SystemExit(
            f"error: {out} holds runs trained by the package code of commit {made[:10]}, and this checkout's "
            f"{', '.join(CODE)} differ from it. Continue from that code: git worktree add ../effects-tree {made[:10]}, copy "
            f"{out.relative_to(ROOT)} there and run this script there (then copy the records back), or move {out} away"
        )
    return made


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", choices=sorted(PLANS))
    parser.add_argument("--work", type=Path, default=ROOT / "bench_work", help="working directory (datasets, checkpoints)")
    parser.add_argument("--report-only", action="store_true", help="write the report from the runs on disk, train nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (compare --jobs)")
    args = parser.parse_args(argv)
    plan = PLANS[args.plan]
    out = ROOT / "bench/results" / f"option_effects_{plan['dataset'].replace('-', '_')}"
    rows = effect_rows(plan)
    args.work.mkdir(parents=True, exist_ok=True)
    os.chdir(args.work)
    marker = out / "code_commit.txt"
    if args.report_only:  # reads records only: any checkout may write the report
        commit = marker.read_text(encoding="utf-8").strip() if marker.is_file() else "unknown"
    else:
        commit = code_commit(out)
    if not args.report_only:
        same = {}
        for base in dict.fromkeys(b for _, _, b in rows.values()):
            model, settings = base_settings(plan["baseline"], base)
            same[f"{model}-same_{base.replace('-', '_')}"] = settings
        compare(plan, same, out / "reproduction", first_only=True, jobs=args.jobs)
        todo = with_same_rows(plan, rows)
        compare(plan, {name: settings for name, (_, settings, _) in todo.items()}, out, first_only=False, jobs=args.jobs)
    text = report(plan, args.plan, rows, out).replace("\n\n", f"\n\nRuns trained by the package code of commit `{commit[:10]}`.\n\n", 1)
    path = ROOT / "bench/results" / f"option_effects_{plan['dataset'].replace('-', '_')}.md"
    path.write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
