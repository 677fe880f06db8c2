"""Replay early stopping with a shorter patience over stored validation curves: the epochs each patience
would train, how many runs would keep another epoch's weights, and the validation score they would lose.

Input: comparison folders (``compare --out``): every run record (``runs/*.json``) and every finished
tuning trial (``tuning/<row>/trial-*.json``) holds its whole validation curve, validated every epoch. The
replay applies RecBole's rule (:func:`recbole.utils.early_stopping`: a score at least the best so far
resets the count, training stops after ``stopping_step`` + 1 validations without one, the weights kept
are those of the last best) with each ``--patience`` to that curve, and checks first that the shipped
``stopping_step`` (each record's own) reproduces every record's stored best and last epoch. What it cannot give: the test
score of weights a shorter patience would keep at another epoch (only the stored best's is known), so a
changed run is reported by its validation loss.

    python bench/patience_replay.py bench/results/compare_tuned_all_lastfm_2k_cold --patience 10 20 30 40

A folder given as ``FOLDER:runs`` (or ``:trials``) gives only its run records (or its trials): the
finished trials of a search another folder also holds are the same curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def curves(given: str):
    """(row, valid_curve, epochs_trained, best_epoch, stopping_step) of every run and finished trial in the
    folder ``given`` names (``FOLDER``, or ``FOLDER:runs`` / ``FOLDER:trials`` for one kind only)."""
    folder, _, kind = given.partition(":") if given.endswith((":runs", ":trials")) else (given, "", "")
    folder = Path(folder)
    for path in sorted(folder.glob("runs/*.json") if kind != "trials" else []):
        record = json.loads(path.read_text())
        yield (record["model"], record["valid_curve"], record["epochs_trained"], record["best_epoch"],
               record["config"]["stopping_step"])
    for path in sorted(folder.glob("tuning/*/trial-*.json") if kind != "runs" else []):
        record = json.loads(path.read_text())
        if record.get("status") == "ok":
            details = record["details"]
            yield (path.parent.name, details["valid_curve"], details["epochs_trained"], details["best_epoch"],
                   record["config"]["stopping_step"])


def early_stop(curve, patience: int) -> tuple[int, int | None, float]:
    """(epochs trained, epoch of the weights kept, their validation score) under RecBole's rule."""
    from recbole.utils import early_stopping

    best, count, best_epoch = -float("inf"), 0, None
    for epoch, score in curve:  # a NaN score, as the trainer passes it, is never a best (nan >= x is False)
        before = best
        best, count, stop, updated = early_stopping(score, best, count, max_step=patience, bigger=True)
        if updated:
            best_epoch = epoch
        if stop:
            return epoch + 1, best_epoch, before
    return (curve[-1][0] + 1 if curve else 0), best_epoch, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="comparison output folders (FOLDER:runs or FOLDER:trials: one kind only)")
    parser.add_argument("--patience", nargs="+", type=int, default=[10, 20, 30, 40])
    args = parser.parse_args()
    records = [r for folder in args.folders for r in curves(folder)]
    if not records:
        print("no run or trial records with validation curves", file=sys.stderr)
        return 2
    wrong = [r[0] for r in records if early_stop(r[1], r[4])[:2] != (r[2], r[3])]
    print(f"{len(records)} curves; each record's own stopping_step reproduces its stored last and best epoch in "
          f"{len(records) - len(wrong)}" + (f" (not: {sorted(set(wrong))})" if wrong else ""))
    print()
    print("| row | curves | patience | epochs trained, of shipped | runs keeping another epoch | valid loss, mean | valid loss, worst |")
    print("|---|---|---|---|---|---|---|")
    totals = defaultdict(lambda: [0, 0, 0, 0])
    rows = sorted({r[0] for r in records})
    for patience in args.patience:
        for row in rows:
            mine = [r for r in records if r[0] == row]
            shipped = [early_stop(r[1], r[4]) for r in mine]
            short = [early_stop(r[1], patience) for r in mine]
            epochs, full = sum(s[0] for s in short), sum(s[0] for s in shipped)
            changed = sum(a[1] != b[1] for a, b in zip(short, shipped))
            losses = [b[2] - a[2] for a, b in zip(short, shipped)]
            print(f"| {row} | {len(mine)} | {patience} | {epochs / full:.2f} | {changed} | {statistics.mean(losses):.4f} | "
                  f"{max(losses):.4f} |")
            total = totals[patience]
            total[0] += epochs
            total[1] += full
            total[2] += changed
            total[3] += len(mine)
    for patience, (epochs, full, changed, n) in totals.items():
        print(f"| **all** | {n} | {patience} | {epochs / full:.2f} | {changed} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
