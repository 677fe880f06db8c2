"""Paired differences between chosen rows of a finished comparison, read from its run records.

    python bench/paired_tests.py bench/results/compare_tuned_lastfm_2k_cold \
        --pairs MAMEX:VBPR MAMEX:CLCRec MAMEX:ContentProfile --candidates cold

The summary of ``recbole_mamex.compare`` tests only the best of our rows against the best baseline. This
script tests any pair of rows, also rows of different folders: the mean difference (first minus second) over the (split, seed) pairs both
rows have, its sd, and the p-value of scipy's paired t-test, per metric. It reads
``<out>/runs/*.json`` only, so it works on records written by any version of the package.

The same row in two runs of one command (before and after a change) pairs up when each folder gets a label:

    python bench/paired_tests.py before=bench/results/compare_tuned_lastfm_2k_cold \
        after=bench/results/compare_tuned_after_lastfm_2k_cold --pairs after/MAMEX:before/MAMEX
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recbole_mamex.compare import pair_key  # noqa: E402

METRICS = ("recall@20", "ndcg@20")


def folder(spec: str) -> tuple[str, Path]:
    """``LABEL=PATH`` -> (``"LABEL/"``, PATH): that folder's rows are named ``LABEL/<row>``; a plain PATH
    keeps its row names."""
    label, sep, path = spec.partition("=")
    if sep and label and "/" not in label and not Path(spec).exists():
        return f"{label}/", Path(path)
    return "", Path(spec)


def load(*outs: Path | str) -> dict[str, dict[str, dict]]:
    """model -> pair key -> record, over the run records of every folder in ``outs`` (a row may come from
    one folder only: two folders with the same row name would pair runs of different settings, unless each
    folder is given as ``LABEL=PATH``, which names its rows ``LABEL/<row>``)."""
    rows: dict[str, dict[str, dict]] = {}
    origin: dict[str, Path] = {}
    for spec in outs:
        prefix, out = folder(str(spec))
        paths = sorted((out / "runs").glob("*.json"))
        if not paths:
            raise SystemExit(f"error: no run records in {out / 'runs'}")
        for path in paths:
            record = json.loads(path.read_text(encoding="utf-8"))
            name = prefix + record["model"]
            if origin.setdefault(name, out) != out:
                raise SystemExit(f"error: row {name!r} is in both {origin[name]} and {out}; keep one, or label "
                                 f"each folder (before=PATH after=PATH) to pair the two")
            rows.setdefault(name, {})[pair_key(record)] = record
    return rows


def paired_records(a: dict, b: dict, value) -> tuple[float, float, float, int]:
    """Mean and sd of ``value(a[k]) - value(b[k])`` over the pair keys both have, the paired t-test's
    p-value (nan with fewer than two pairs or no difference), and the number of pairs."""
    keys = sorted(set(a) & set(b))
    x = np.array([value(a[k]) for k in keys], dtype=float)
    y = np.array([value(b[k]) for k in keys], dtype=float)
    diff = x - y
    p = float(stats.ttest_rel(x, y).pvalue) if len(keys) >= 2 and not np.allclose(diff, 0) else float("nan")
    return float(diff.mean()), float(diff.std(ddof=1)) if len(keys) > 1 else float("nan"), p, len(keys)


def paired(rows, first: str, second: str, candidates: str, metric: str) -> tuple[float, float, float, int]:
    for name in (first, second):
        if name not in rows:
            raise SystemExit(f"error: no row named {name!r}; rows: {', '.join(sorted(rows))}")
    return paired_records(rows[first], rows[second], lambda r: r["results"][candidates][metric])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="+", help="compare --out folders (rows of several folders pair up); "
                        "LABEL=PATH names that folder's rows LABEL/<row>")
    parser.add_argument("--pairs", nargs="+", required=True, metavar="A:B")
    parser.add_argument("--candidates", default="cold")
    parser.add_argument("--metrics", nargs="+", default=list(METRICS))
    args = parser.parse_args(argv)
    rows = load(*args.out)
    print(f"{', '.join(folder(o)[0] + folder(o)[1].name for o in args.out)}, {args.candidates} candidates: first row minus second, paired over (split, seed)\n")
    print("| pair | n | " + " | ".join(f"{m} diff ± sd | p" for m in args.metrics) + " |")
    print("|---|---|" + "---|---|" * len(args.metrics))
    for spec in args.pairs:
        first, sep, second = spec.partition(":")
        if not sep:
            raise SystemExit(f"error: --pairs takes A:B, got {spec!r}")
        cells, n = [], 0
        for metric in args.metrics:
            mean, sd, p, n = paired(rows, first, second, args.candidates, metric)
            cells.append(f"{mean:+.4f} ± {sd:.4f} | {p:.2g}")
        print(f"| {first} vs {second} | {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
