"""Replay pruning rules over a search that ran without a pruner: which trials each rule would stop, when,
the epochs it saves, and whether it would keep the trial the search selected.

Input: the trial records of ``compare --tune N --prune none`` (``<out>/tuning/<row>/trial-*.json``, each
with its whole validation curve). For every rule, trial k is judged by the shipped pruner
(:class:`recbole_mamex.search.PruningMonitor`, Optuna's MedianPruner) against the trials before it that the
rule did not stop, fed its stored curve epoch by epoch, exactly as during a search. What a replay cannot
give: a search under the rule would have proposed other points after its first pruned trial (TPE sees a
pruned trial's last score), so the selected score under a rule is "the best of the trials it keeps",
not a new search's result. Rules: the median pruner with warm-up W epochs (``--warmups``; ``--prune
median`` uses 10) and the shipped start-up count, and each of those with the ``stalled`` condition of S
epochs without a new best (``--stalls``; ``--prune stalled`` uses warm-up 10 and S = 20).

Whether the search's path survives the rule can be read from the replay all the same. Optuna's TPE
proposes from two groups of finished trials: the best ``gamma(n)`` complete trials (``default_gamma``: 1
while n <= 10) and all the others, pruned ones included, each with its parameters, whatever their
scores. So a rule leaves every proposal as it was unless it stops a trial that, trained on, would have
been among the best ``gamma(n)`` of the trials before some later proposal: the column "path kept" says
whether that never happened and the selected trial is not stopped, else the first trial it changes.
Where it says yes, the pruned search selects exactly what the search without a pruner selected, at the
"epochs trained" cost. This holds for trials run one after the other; with trials in parallel (``--jobs``)
which trials have finished when one is proposed depends on timing, with or without a pruner.

    python bench/pruning_replay.py bench/results/vbpr_noprune_lastfm_2k_cold --warmups 10 25 50
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def trials_of(folder: Path) -> list[dict]:
    """The finished trials of a search without a pruner; a folder with pruned trials is refused (their
    curves end where they were stopped, so no rule can be replayed over them)."""
    records = [json.loads(path.read_text()) for path in sorted(folder.glob("trial-*.json"))]
    if any(r.get("status") == "pruned" for r in records):
        raise SystemExit(f"{folder}: a search with pruned trials; replay a search made with --prune none")
    return sorted((r for r in records if r.get("status") in ("ok", "repeat")), key=lambda r: r["trial"])


def replay(trials: list[dict], warmup: int, horizon: int | None, stall: int = 0) -> list[dict]:
    """Per trial: ``trial``, ``score`` (its stored best), ``pruned_at`` (epoch or None), ``epochs`` (trained
    under the rule), ``cpu_s`` (its recorded CPU time times the share of its epochs the rule trains)."""
    from recbole_mamex.search import MEDIAN_STARTUP_TRIALS, PruningMonitor, TrialPruned, running_best

    kept_curves, out = [], []
    for record in trials:
        curve = record["details"]["valid_curve"]
        monitor = PruningMonitor(tuple(tuple(c) for c in kept_curves), horizon, startup=MEDIAN_STARTUP_TRIALS,
                                 warmup=warmup, stall=stall)
        pruned_at = None
        try:
            for epoch, score in curve:
                monitor(epoch, score)
        except TrialPruned as pruned:
            pruned_at = pruned.info["epoch"]
        trained = record["details"].get("epochs_trained", len(curve))
        epochs = (pruned_at + 1) if pruned_at is not None else trained
        cpu = (record["details"].get("cpu_s") or 0.0) * epochs / max(trained, 1)  # its epochs' share of its CPU time
        out.append({"trial": record["trial"], "score": record["score"], "pruned_at": pruned_at, "epochs": epochs,
                    "cpu_s": cpu})
        if pruned_at is None:
            kept_curves.append(running_best(curve))
    return out


def path_change(trials: list[dict], rows: list[dict]) -> int | None:
    """The first trial number whose TPE proposal differs under the rule (see the module docstring), or
    None when every proposal is the same. Trials up to the random start-up draw their points from the
    seed alone."""
    from optuna.samplers._tpe.sampler import default_gamma

    from recbole_mamex.search import TPE_RANDOM_STARTS

    stopped = {r["trial"] for r in rows if r["pruned_at"] is not None}
    ordered = sorted(trials, key=lambda t: t["trial"])
    for index in range(TPE_RANDOM_STARTS, len(ordered)):
        before = ordered[:index]
        top = sorted(before, key=lambda t: t["score"], reverse=True)[: default_gamma(len(before))]
        if any(t["trial"] in stopped for t in top):
            return ordered[index]["trial"]
    best = max(ordered, key=lambda t: t["score"])
    if best["trial"] in stopped:  # every proposal kept, but the selection itself stopped
        return best["trial"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="folders of trial-*.json (one row's search each)")
    parser.add_argument("--warmups", nargs="+", type=int, default=[10, 25, 50])
    parser.add_argument("--stalls", nargs="*", type=int, default=[], help="also each warm-up with the stalled condition")
    parser.add_argument("--horizon", type=int, default=1000, help="the epochs a trial may train (the config's epochs)")
    args = parser.parse_args()
    print("| search | rule | trials pruned (epoch) | epochs trained | of no-pruner | best kept | selected without pruner "
          "| path kept |")
    print("|---|---|---|---|---|---|---|---|")
    totals = {}  # rule -> [epochs under it, epochs without, paths kept, searches, CPU s under it, CPU s without]
    for folder in args.folders:
        trials = trials_of(folder)
        if not trials:
            print(f"{folder}: no finished trials", file=sys.stderr)
            return 2
        total = sum(t["details"].get("epochs_trained", len(t["details"]["valid_curve"])) for t in trials)
        best = max(t["score"] for t in trials)
        for warmup, stall in [(w, s) for w in args.warmups for s in sorted({0, *args.stalls})]:
            rows = replay(trials, warmup, args.horizon, stall)
            rule = f"median, warm-up {warmup}" + (f", stalled {stall}" if stall else "")
            pruned = [f"{r['trial']} ({r['pruned_at']})" for r in rows if r["pruned_at"] is not None]
            epochs = sum(r["epochs"] for r in rows)
            kept = max(r["score"] for r in rows if r["pruned_at"] is None)
            change = path_change(trials, rows)
            total_of_rule = totals.setdefault(rule, [0, 0, 0, 0, 0.0, 0.0])
            total_of_rule[0] += epochs
            total_of_rule[1] += total
            total_of_rule[2] += change is None
            total_of_rule[3] += 1
            total_of_rule[4] += sum(r["cpu_s"] for r in rows)
            total_of_rule[5] += sum(t["details"].get("cpu_s") or 0.0 for t in trials)
            print(f"| {folder.name} ({len(trials)} trials) | {rule} | {', '.join(pruned) or 'none'} | "
                  f"{epochs} | {epochs / total:.2f} | {kept:.4f} | {best:.4f} | "
                  f"{'yes' if change is None else f'no, from trial {change}'} |")
    if len(args.folders) > 1:
        print()
        print("| all searches | rule | epochs trained | of no-pruner | CPU h (est.) | of no-pruner | paths kept |")
        print("|---|---|---|---|---|---|---|")
        for rule, (epochs, total, kept, searches, cpu, cpu_total) in totals.items():
            print(f"| {searches} | {rule} | {epochs} | {epochs / total:.2f} | {cpu / 3600:.2f} | "
                  f"{cpu / cpu_total if cpu_total else float('nan'):.2f} | {kept} of {searches} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
