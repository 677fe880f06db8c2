"""Aggregation of a comparison's run records: mean and sd per row, the best per column, the best of our
models against the best baseline with a paired t-test over (split, seed) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class Comparison:
    """Aggregated results of one candidate set."""

    candidates: str
    table: pd.DataFrame  # index: model; columns: (metric, "mean"/"sd"/"n")
    best: dict[str, str]  # metric -> model with the best mean
    ours: dict[str, str | None]  # metric -> best of our models
    baseline: dict[str, str | None]  # metric -> best baseline
    improvement: dict[str, float]  # metric -> (ours - baseline) / baseline
    p_value: dict[str, float]  # metric -> paired t-test p-value across (split, seed) pairs
    labels: dict[str, str] = field(default_factory=dict)  # model -> the name its row shows (e.g. tuning marks)
    # model -> the runs (pair keys) that evaluated no user in this candidate set (NaN in their records): left
    # out of the means, sds and tests, counted apart
    unevaluated: dict[str, list[str]] = field(default_factory=dict)
    # model -> its runs (pair keys) that ended at the epoch cap still improving (:func:`capped_run`): their
    # numbers are marked CAP_MARK
    capped: dict[str, list[str]] = field(default_factory=dict)
    n_runs: dict[str, int] = field(default_factory=dict)  # model -> its runs in this candidate set

    def label(self, model: str) -> str:
        return self.labels.get(model, model)


def aggregate(runs: list[dict], candidates: str, metrics, our_models) -> Comparison:
    """Aggregate ``runs`` (dicts with ``model``, ``seed``, ``results[candidates][metric]``)."""
    from scipy import stats

    rows = [
        {"model": r["model"], "pair": pair_key(r), **{m: float(r["results"][candidates][m]) for m in metrics}}
        for r in runs
        if candidates in r["results"]
    ]
    frame = pd.DataFrame(rows)
    order = list(dict.fromkeys(r["model"] for r in rows))
    unevaluated = {}  # a NaN metric: the run evaluated no user among these candidates
    for row in rows:
        if any(np.isnan(row[m]) for m in metrics):
            unevaluated.setdefault(row["model"], []).append(row["pair"])
    capped, n_runs = {}, {}
    for r in runs:
        if candidates in r["results"]:
            n_runs[r["model"]] = n_runs.get(r["model"], 0) + 1
            if capped_run(r):
                capped.setdefault(r["model"], []).append(pair_key(r))
    grouped = frame.groupby("model", sort=False)[list(metrics)]
    table = pd.concat({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.count()}, axis=1)
    table = table.swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False).loc[order]
    best, ours, baseline, improvement, p_value = {}, {}, {}, {}, {}
    for metric in metrics:
        means = table[(metric, "mean")].dropna()  # a model none of whose runs evaluated a user has no mean
        best[metric] = str(means.idxmax()) if len(means) else None
        mine = means[[m for m in means.index if m in our_models]]
        theirs = means[[m for m in means.index if m not in our_models]]
        ours[metric] = str(mine.idxmax()) if len(mine) else None
        baseline[metric] = str(theirs.idxmax()) if len(theirs) else None
        if ours[metric] is None or baseline[metric] is None:
            improvement[metric], p_value[metric] = float("nan"), float("nan")
            continue
        improvement[metric] = float((mine.max() - theirs.max()) / theirs.max()) if theirs.max() else float("nan")
        a = frame[frame["model"] == ours[metric]].set_index("pair")[metric].dropna()
        b = frame[frame["model"] == baseline[metric]].set_index("pair")[metric].dropna()
        pairs = sorted(set(a.index) & set(b.index))
        if len(pairs) >= 2 and not np.allclose(a[pairs].to_numpy() - b[pairs].to_numpy(), 0):
            p_value[metric] = float(stats.ttest_rel(a[pairs], b[pairs]).pvalue)
        else:
            p_value[metric] = float("nan")
    return Comparison(candidates, table, best, ours, baseline, improvement, p_value, unevaluated=unevaluated,
                      capped=capped, n_runs=n_runs)


def pair_key(record: dict) -> str:
    """What pairs runs of two models in the paired test: the same cold split and the same seed."""
    split = record.get("split_seed")
    return f"split {split}, seed {record['seed']}" if split is not None else f"seed {record['seed']}"


def capped_run(record: dict) -> bool:
    """Whether a run record ended at the epoch cap while still improving
    (:func:`recbole_mamex.quick_start.capped_improving` of its ``best_epoch``, ``epochs_trained`` and
    ``config``); a record from before records held them is not marked."""
    from recbole_mamex.quick_start import capped_improving

    return capped_improving(record.get("best_epoch"), record.get("epochs_trained"), record.get("config") or {})


CAP_MARK = "†"  # on the numbers of a row with runs that ended at the epoch cap still improving


CAP_MEANING = ("ended at the epoch cap while still improving (best validation within stopping_step validations of "
               "epochs): under-trained; raise epochs")

