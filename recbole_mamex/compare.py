"""Batch comparison: models x seeds on one dataset -> tables (Markdown, CSV, LaTeX) and a bar chart.

    python -m recbole_mamex.compare --dataset lastfm-2k-cold --protocol cold \\
        --models MAMEX RLMultimodalRec BPR LightGCN Pop --seeds 2020 2021 2022

Every (model, seed) is trained with RecBole's trainer and early stopping on the validation split (the
candidate set of the protocol's ``eval_candidates``), saved, then evaluated on test; test is never used
for selection. Each finished run is written at once (atomically) to ``<out>/runs/<model>-seed<seed>.json``
with its full config, the package versions and the identity of the data it read
(:func:`recbole_mamex.data.identity.data_identity`); running the same command again skips finished runs
made with the same settings on the same data, so an interrupted comparison loses at most the run in
progress. A stored record is read with every field checked (:func:`recbole_mamex.records.check_run_record`);
one comparison at a time writes into an ``--out`` folder (:func:`recbole_mamex.records.locked_output`).

Tables, one per candidate set (cold / warm / all under the cold protocol, one under the warm protocol):
mean +- sd over seeds of each metric, the best mean per column in bold, the relative improvement of the
best of our proposed models (:func:`recbole_mamex.registry.proposed_models`) over the best baseline (every
other model: RecBole's and our re-implemented baselines VBPR, MILK, CLCRec), and the p-value of a paired
t-test across seeds between those two (scipy.stats.ttest_rel; pairs are seeds). The numbers of a row with
runs that ended at the epoch cap while still improving are marked † and counted under the table
(:func:`capped_run`).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_mamex.parallel import EpochLog
from recbole_mamex.records import (
    CompareError,
    OutputFileError,
    RecordFileError,
    check_run_record,
    jsonable,
    locked_output,
    read_record,
    setting_differences,
    versions,
    write_json_atomic,
    write_output,
)

DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
PROTOCOLS = {
    "cold": {"eval_candidates": "cold", "test_candidates": ["cold", "warm", "all"]},
    "warm": {"eval_candidates": None, "test_candidates": None},
}


# ----------------------------------------------------------------------------- aggregation
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


def _cell(comparison: Comparison, model: str, metric: str) -> tuple[str, bool]:
    mean = comparison.table.loc[model, (metric, "mean")]
    sd = comparison.table.loc[model, (metric, "sd")]
    if np.isnan(mean):
        return "n/a (no user evaluated)", False
    text = f"{mean:.4f} ± {sd:.4f}" if not np.isnan(sd) else f"{mean:.4f}"
    return text, comparison.best[metric] == model


def unevaluated_text(comparison: Comparison) -> str | None:
    """The runs that evaluated no user among these candidates (left out of the numbers), or None."""
    if not comparison.unevaluated:
        return None
    listed = "; ".join(f"{comparison.label(model)}: {', '.join(pairs)}" for model, pairs in comparison.unevaluated.items())
    total = sum(len(pairs) for pairs in comparison.unevaluated.values())
    return (f"{total} run(s) evaluated no user among the {comparison.candidates} candidates (NaN in their records) and are "
            f"left out of the means, sds and tests where they are NaN: {listed}")


def capped_text(comparison: Comparison) -> str | None:
    """The runs that ended at the epoch cap still improving, per row (``k of n``), or None."""
    if not comparison.capped:
        return None
    listed = "; ".join(f"{comparison.label(model)}: {len(pairs)} of {comparison.n_runs[model]} ({', '.join(pairs)})"
                       for model, pairs in comparison.capped.items())
    total = sum(len(pairs) for pairs in comparison.capped.values())
    return f"{total} of {sum(comparison.n_runs.values())} runs {CAP_MEANING}: {listed}"


def _marked(comparison: Comparison, model: str, metric: str, text: str, mark: str) -> str:
    """A number's cell with ``mark`` when its row has runs that ended at the cap still improving."""
    numeric = not np.isnan(comparison.table.loc[model, (metric, "mean")])
    return text + mark if numeric and model in comparison.capped else text


def to_markdown(comparison: Comparison, metrics) -> str:
    lines = [f"### {comparison.candidates} candidates", "", "| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for model in comparison.table.index:
        cells = []
        for metric in metrics:
            text, is_best = _cell(comparison, model, metric)
            cells.append(_marked(comparison, model, metric, f"**{text}**" if is_best else text, CAP_MARK))
        lines.append(f"| {comparison.label(model)} | " + " | ".join(cells) + " |")
    lines.append("| best ours vs best baseline | " + " | ".join(_improvement_text(comparison, m) for m in metrics) + " |")
    note = unevaluated_text(comparison)
    if note:
        lines += ["", f"No user evaluated: {note}."]
    capped = capped_text(comparison)
    if capped:
        lines += ["", f"{CAP_MARK} {capped}."]
    return "\n".join(lines) + "\n"


def _improvement_text(comparison: Comparison, metric: str) -> str:
    if comparison.ours[metric] is None or comparison.baseline[metric] is None:
        return "-"
    p = comparison.p_value[metric]
    p_text = f"p = {p:.3g}" if not np.isnan(p) else "p n/a"
    return f"{comparison.ours[metric]} vs {comparison.baseline[metric]}: {comparison.improvement[metric]:+.1%} ({p_text})"


def to_csv(comparison: Comparison, metrics) -> str:
    rows = []
    for model in comparison.table.index:
        row = {"candidates": comparison.candidates, "model": model, "label": comparison.label(model)}
        for metric in metrics:
            row[f"{metric}_mean"] = comparison.table.loc[model, (metric, "mean")]
            row[f"{metric}_sd"] = comparison.table.loc[model, (metric, "sd")]
            row[f"{metric}_best"] = comparison.best[metric] == model
        row["n_runs"] = int(comparison.table.loc[model, (metrics[0], "n")])
        row["n_runs_no_user_evaluated"] = len(comparison.unevaluated.get(model, []))
        row["n_runs_capped_improving"] = len(comparison.capped.get(model, []))
        rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False)


def to_latex(comparison: Comparison, metrics) -> str:
    def escape(text: str) -> str:
        return text.replace("_", r"\_").replace("%", r"\%").replace("@", "@")

    lines = [
        r"\begin{tabular}{l" + "c" * len(metrics) + "}",
        r"\toprule",
        "Model & " + " & ".join(escape(m) for m in metrics) + r" \\",
        r"\midrule",
    ]
    for model in comparison.table.index:
        cells = []
        for metric in metrics:
            text, is_best = _cell(comparison, model, metric)
            text = text.replace("±", r"$\pm$")
            cells.append(_marked(comparison, model, metric, rf"\textbf{{{text}}}" if is_best else text, r"$^\dagger$"))
        lines.append(escape(comparison.label(model)) + " & " + " & ".join(cells) + r" \\")
    lines.append(r"\midrule")
    improvements = [f"{comparison.improvement[m]:+.1%}" if not np.isnan(comparison.improvement[m]) else "-" for m in metrics]
    lines.append("Improv. & " + " & ".join(escape(i) for i in improvements) + r" \\")
    p_values = [f"{comparison.p_value[m]:.3g}" if not np.isnan(comparison.p_value[m]) else "-" for m in metrics]
    lines.append("$p$ (paired) & " + " & ".join(p_values) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    note = unevaluated_text(comparison)
    if note:
        lines.append(f"% {note}")
    capped = capped_text(comparison)
    if capped:
        lines.append(rf"% $^\dagger$ {capped}")
    return "\n".join(lines) + "\n"


def plot(comparisons: list[Comparison], metric: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(comparisons), figsize=(4.5 * len(comparisons), 3.6), squeeze=False)
    for ax, comparison in zip(axes[0], comparisons):
        means = comparison.table[(metric, "mean")]
        sds = comparison.table[(metric, "sd")].fillna(0)
        colors = ["tab:orange" if m == comparison.best[metric] else "tab:blue" for m in means.index]
        ax.bar(range(len(means)), means.to_numpy(), yerr=sds.to_numpy(), color=colors, capsize=3)
        ax.set_xticks(range(len(means)), [comparison.label(m) for m in means.index], rotation=30, ha="right")
        ax.set_title(f"{comparison.candidates} candidates")
        ax.set_ylabel(metric)
    fig.suptitle(title)
    fig.tight_layout()
    from recbole_mamex.files import atomic_path

    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- running
def run_file(out: Path, model: str, seed: int, split_seed: int | None = None) -> Path:
    split = f"-split{split_seed}" if split_seed is not None else ""
    return out / "runs" / f"{model}{split}-seed{seed}.json"


def run_settings(seed: int, protocol: str, extra: dict) -> dict:
    """The config_dict of one comparison run."""
    return {"seed": seed, "show_progress": False, "state": "WARNING", **PROTOCOLS[protocol], **extra}


def planned_config(model, seed, dataset, protocol, config_files, extra) -> dict:
    """The final config (as saved in a run record) that :func:`run_one` would train with, without training."""
    from recbole_mamex.config import Config

    config = Config(model=model, dataset=dataset, config_file_list=list(config_files) or None,
                    config_dict=run_settings(seed, protocol, extra), cmd_args=[])
    return jsonable(dict(config.final_config_dict))


def run_one(model, seed, dataset, protocol, config_files, extra, on_epoch, saved: bool = True) -> dict:
    """Train and test one (model, seed); returns the record saved for it."""
    from recbole_mamex.quick_start import run_recbole_mamex

    from recbole_mamex.search import TrialPruned

    settings = run_settings(seed, protocol, extra)
    measured = reset_peak_rss()
    start, cpu_start = time.time(), time.process_time()
    try:
        result = run_recbole_mamex(
            model=model, dataset=dataset, config_file_list=config_files or None, config_dict=settings,
            saved=saved, cmd_args=[], callback_fn=on_epoch,
        )
    except TrialPruned as pruned:  # a tuning trial the pruner stopped: what it cost goes with it
        pruned.info.update(wall_s=time.time() - start, cpu_s=time.process_time() - cpu_start)
        raise
    results = result["test_result_by_candidates"] or {"full": result["test_result"]}
    return {
        "model": model,
        "seed": seed,
        "dataset": dataset,
        "protocol": protocol,
        "results": {kind: {k: float(v) for k, v in metrics.items()} for kind, metrics in results.items()},
        "best_valid": {k: float(v) for k, v in result["best_valid_result"].items()},
        "best_valid_score": float(result["best_valid_score"]),
        "valid_metric": result["config"]["valid_metric"],
        "valid_curve": result["valid_curve"],
        "best_epoch": result["best_epoch"],
        "epochs_trained": result["epochs_trained"],
        "checkpoint": result["model_file"],
        "wall_s": time.time() - start,
        "cpu_s": time.process_time() - cpu_start,  # this process's CPU time, all its threads
        "peak_rss_gb": peak_rss_gb() if measured else None,
        "config": jsonable(dict(result["config"].final_config_dict)),
        "versions": versions(),
    }


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux: ``/proc/self/clear_refs``), so that
    :func:`peak_rss_gb` after a run is that run's peak; False where the platform cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float | None:
    """Peak resident memory (GiB) of this process since :func:`reset_peak_rss` (``VmHWM``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class Split:
    """One dataset the runs train on: the given one (``seed`` None), or its cold split made with ``seed``."""

    seed: int | None
    dataset: str


def run_all(models, seeds, dataset, protocol, out: Path, config_files=(), extra=None, runner=run_one, log=print,
            plan=None, rerun: bool = False, before_training=None, splits=None, jobs_at_once: int = 1,
            on_interrupt=None, metrics=()) -> list[dict]:
    """Run every missing (model, split, seed), saving each as it finishes; returns all records.

    ``splits``: the :class:`Split` datasets to run on (default: ``dataset`` alone); a run on a split
    records its ``split_seed``. A stored record is read with every field checked
    (:func:`check_run_record`: the run its file name says, metric types and ranges, ``metrics`` present);
    one that cannot be used is a :class:`RecordFileError` naming it (with ``rerun``: trained again). A
    finished run is reused only when it was made on its split's dataset and this protocol and, given
    ``plan`` (``plan(model, seed, dataset)`` -> the final config the run would use, see
    :func:`planned_config`), with the same settings and versions (:func:`setting_differences`) and on the
    same data (:func:`data_identity` of the planned config, which every new record stores). Otherwise: a
    :class:`CompareError` naming the differences, checked for every job before the first one trains; with
    ``rerun``, those runs are trained again and their records replaced. A record without a data identity
    (written before records stored one) is reused and listed as unchecked. ``before_training()`` is
    called once, before the stored records are checked against the data when some run has no record
    (so that the data is there), else before the first run that has to be trained (none when every run
    is on disk). A run whose training diverges (RecBole's "Training loss is nan") is a
    :class:`CompareError` naming it; the records of the runs that finished are kept. ``jobs_at_once`` >
    1: that many ``runner`` calls at once, from threads (the runner hands each run to a backend of
    :mod:`recbole_mamex.parallel`); records are written as runs finish, in any order, and returned in job
    order; ``on_interrupt()`` ends the runs in progress when the comparison is interrupted.
    """
    from recbole_mamex.config import listed_differences
    from recbole_mamex.data.identity import data_identity, identity_differences
    from recbole_mamex.trainer.candidates import candidate_kinds_for_test

    extra = extra or {}
    splits = list(splits) if splits else [Split(None, dataset)]
    jobs = [(m, split, s) for m in models for split in splits for s in seeds]
    prepared = []

    def prepare():
        if before_training is not None and not prepared:
            before_training()
            prepared.append(True)

    def identity_of(job):
        model, split, seed = job
        return data_identity(plan(model, seed, split.dataset)) if plan is not None else None

    if any(not run_file(out, m, s, split.seed).exists() for m, split, s in jobs):
        prepare()
    finished = {}  # job -> its record, when it can be reused
    stale, unchecked, undated = [], [], []  # data changed / data not there / no data identity stored
    for job in jobs:
        model, split, seed = job
        path = run_file(out, model, seed, split.seed)
        if not path.exists():
            continue
        planned = plan(model, seed, split.dataset) if plan is not None else None
        kinds = None
        if planned is not None:
            kinds = candidate_kinds_for_test({"test_candidates": planned.get("test_candidates")}) or ["full"]
        try:
            record = check_run_record(path, read_record(path), model, seed, split.seed, kinds, metrics)
        except RecordFileError as err:
            if not rerun:
                raise
            log(f"{path}: cannot be used ({err.found.split(';')[0]}): trained again (--rerun)")
            continue
        if (record.get("dataset"), record.get("protocol")) != (split.dataset, protocol):
            raise CompareError(
                f"{path}: expected a run on dataset '{split.dataset}' with protocol '{protocol}', found "
                f"'{record.get('dataset')}' / '{record.get('protocol')}'; use another --out"
            )
        diffs = setting_differences(record, planned) if planned is not None else []
        if diffs and not rerun:
            raise CompareError(
                f"{path}: a finished run made with other settings than this command: {listed_differences(diffs)}"
                ". Use another --out to keep both, or --rerun to train the differing runs again (their records are replaced)"
            )
        if diffs:
            continue
        if planned is not None:
            now = identity_of(job)
            if "data_identity" not in record:
                undated.append(path.name)
            elif not now:
                unchecked.append(path.name)
            else:
                changed = identity_differences(record["data_identity"], now)
                if changed:
                    stale.append((path.name, changed))
                    continue
        finished[job] = record
    if stale:
        names = [name for name, _ in stale]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        what = listed_differences(sorted({c for _, changes in stale for c in changes}))
        text = (f"{out / 'runs'}: {len(stale)} finished run(s) were trained on data that has changed since ({what}): "
                f"{shown}")
        if not rerun:
            raise CompareError(
                f"{text}. Use --rerun to train them again on the data there now (their records are replaced), or "
                "another --out to keep them apart"
            )
        log(f"{text}: trained again (--rerun)")
    if undated:
        log(f"note: {len(undated)} finished run(s) in {out / 'runs'} were recorded before records stored their data's "
            f"identity ({', '.join(undated[:4])}{' ...' if len(undated) > 4 else ''}): reused without checking that the "
            "data is the same; move them away to train them again")
    if unchecked:
        log(f"note: the data of {len(unchecked)} finished run(s) is not there to check them against "
            f"({', '.join(unchecked[:4])}{' ...' if len(unchecked) > 4 else ''}): reused as recorded")
    records: dict[int, dict] = {}
    todo = []
    for index, job in enumerate(jobs, start=1):
        model, split, seed = job
        name = f"{model}{f' split {split.seed}' if split.seed is not None else ''} seed {seed}"
        if job in finished:
            log(f"[{index}/{len(jobs)}] {name}: done before, skipped (same settings)")
            records[index] = finished[job]
        else:
            todo.append((index, job, name))
    if todo:
        prepare()
    identities = {index: identity_of(job) for index, job, _ in todo}  # the data each run reads, before it trains
    durations = []

    def train(index, job, name):
        model, split, seed = job
        remaining = sum(1 for i, _, _ in todo if i >= index)
        eta = f", ETA {np.mean(durations) * remaining / max(1, jobs_at_once) / 60:.1f} min" if durations else ""
        log(f"[{index}/{len(jobs)}] {name}: training{eta}")
        try:
            record = runner(model, seed, split.dataset, protocol, list(config_files), extra, EpochLog(name, log))
        except ValueError as err:
            from recbole_mamex.compare_tuning import training_diverged

            if not training_diverged(err):
                raise
            detail = str(err).split("\n")[0]
            if "training diverged" not in detail.lower():  # RecBole's own words
                rate = plan(model, seed, split.dataset).get("learning_rate") if plan is not None else None
                detail = (f"training diverged (RecBole: {detail}): lower learning_rate"
                          f"{f' ({rate} here)' if rate is not None else ''}, or check the item features for huge values")
            raise CompareError(
                f"{name}: {detail}; then run the same command again (the runs that finished are kept in {out / 'runs'})"
            ) from None
        if split.seed is not None:
            record["split_seed"] = split.seed
        return record

    def keep(index, job, name, record):
        model, split, seed = job
        path = run_file(out, model, seed, split.seed)
        if identities[index] is not None:
            changed = identity_differences(identities[index], identity_of(job))
            if changed:
                raise CompareError(
                    f"{name}: the data changed while this run trained ({listed_differences(changed)}), so its record "
                    f"is not kept ({path}); run the command again once the data stays as it is"
                )
            record["data_identity"] = identities[index]
        write_json_atomic(path, record)
        durations.append(record["wall_s"])
        records[index] = record
        log(f"[{index}/{len(jobs)}] {name}: finished in {record['wall_s']:.0f} s")

    jobs_at_once = max(1, jobs_at_once)
    if jobs_at_once == 1:
        for index, job, name in todo:
            keep(index, job, name, train(index, job, name))
    else:
        from recbole_mamex.parallel import locked_log, run_concurrently

        log = locked_log(log)
        tasks = [lambda i=index, j=job, n=name: train(i, j, n) for index, job, name in todo]
        for position, record in run_concurrently(tasks, jobs_at_once, on_interrupt=on_interrupt):
            keep(*todo[position], record)
    return [records[index] for index in sorted(records)]


def training_summary(records, labels) -> list[str]:
    """summary.md lines: per row, the runs' best epoch, epochs trained, wall time, peak resident memory
    (the largest over the row's runs; each run's own peak, where the platform can reset it: Linux) and the
    runs that ended at the epoch cap still improving (:func:`capped_run`)."""
    rows = list(dict.fromkeys(r["model"] for r in records))
    lines = ["## Training (per run: the epoch kept by early stopping, epochs trained, wall time)", "",
             "| model | runs | best epoch, mean [min, max] | epochs trained, mean [min, max] | wall s, mean [min, max] | "
             "peak RSS GB, max | at the cap, still improving |",
             "|---|---|---|---|---|---|---|"]

    def spread(values):
        values = [v for v in values if v is not None]
        if not values:
            return "-"
        return f"{np.mean(values):.1f} [{min(values):.0f}, {max(values):.0f}]"

    def peak(mine):
        values = [r["peak_rss_gb"] for r in mine if r.get("peak_rss_gb") is not None]
        return f"{max(values):.2f}" if values else "-"

    capped = 0
    for row in rows:
        mine = [r for r in records if r["model"] == row]
        at_cap = sum(capped_run(r) for r in mine)
        capped += at_cap
        lines.append(f"| {labels.get(row, row)} | {len(mine)} | {spread([r.get('best_epoch') for r in mine])} | "
                     f"{spread([r.get('epochs_trained') for r in mine])} | {spread([r.get('wall_s') for r in mine])} | "
                     f"{peak(mine)} | {f'{CAP_MARK} {at_cap} of {len(mine)}' if at_cap else '-'} |")
    if capped:
        lines += ["", f"{CAP_MARK} {capped} of {len(records)} runs {CAP_MEANING}."]
    return lines + [""]


def shared_settings(records) -> dict:
    """The config entries (neutral keys left out) that every run has with the same value."""
    from recbole_mamex.config import NEUTRAL_KEYS

    configs = [r.get("config") or {} for r in records]
    if not configs or not all(configs):
        return {}
    keys = set.intersection(*(set(c) for c in configs)) - NEUTRAL_KEYS
    return {k: configs[0][k] for k in sorted(keys) if all(c[k] == configs[0][k] for c in configs)}


# What RecBole's Config sets from the model class and the device, not settings of a run.
RECBOLE_DERIVED_KEYS = frozenset({"MODEL_TYPE", "MODEL_INPUT_TYPE", "local_rank", "single_spec"})


@functools.lru_cache(maxsize=1)
def recbole_defaults() -> dict:
    """The settings RecBole itself gives any general model on any dataset, as a run record stores them: its
    property files (``overall.yaml``, ``dataset/sample.yaml``) completed by its own ``Config`` steps
    (``eval_args`` and the negative sampling spelled out, ``eval_type``, ...); no device is set up."""
    from recbole.config import Config as RecBoleConfig
    from recbole.model.general_recommender import Pop

    from recbole_mamex.files import yaml_loader

    config = object.__new__(RecBoleConfig)  # its steps, without reading a command line or setting a device
    config._init_parameters_category()
    config.yaml_loader = yaml_loader()
    config.external_config_dict = {}
    config.model, config.model_class, config.dataset = "Pop", Pop, "sample"  # stand-ins, dropped below
    config._load_internal_config_dict(config.model, config.model_class, config.dataset)
    config.final_config_dict = config._get_final_config_dict()
    config._set_default_parameters()
    config._set_train_neg_sample_args()
    config._set_eval_neg_sample_args("valid")
    config._set_eval_neg_sample_args("test")
    defaults = jsonable(config.final_config_dict)
    for key in ("model", "dataset", "data_path", *RECBOLE_DERIVED_KEYS):
        defaults.pop(key, None)
    return defaults


def shared_settings_lines(records) -> list[str]:
    """summary.md's settings shared by every run: first what a reader of the tables needs, the settings that
    are not RecBole's defaults (set by the comparison, the dataset's yaml or this package), with RecBole's
    value; then RecBole's defaults (its internal field names among them) and what it derives."""
    shared = shared_settings(records)
    if not shared:
        return []
    defaults = recbole_defaults()
    own = {k: v for k, v in shared.items() if k not in RECBOLE_DERIVED_KEYS and defaults.get(k, ...) != v}
    rest = {k: v for k, v in shared.items() if k not in own}

    def lines(settings: dict, noted: bool) -> list[str]:
        return [f"- `{k}`: `{json.dumps(v)}`" + (f" (RecBole: `{json.dumps(defaults[k])}`)" if noted and k in defaults else "")
                for k, v in sorted(settings.items(), key=lambda kv: kv[0].lower())] + [""]

    out = ["## Settings shared by every run", ""]
    if own:
        out += ["Not RecBole's defaults (RecBole's value in brackets, where it has one):", ""] + lines(own, True)
    if rest:
        out += ["RecBole's defaults, its field names and what it derives:", ""] + lines(rest, False)
    return out


def data_notes(records) -> list[str]:
    """summary.md lines on the runs whose data could not be checked: recorded before records stored their
    data's identity (see :func:`run_all`)."""
    undated = [f"{r['model']} {pair_key(r)}" for r in records if "data_identity" not in r]
    if not undated:
        return []
    return ["## Data", "", f"{len(undated)} run(s) were recorded before records stored their data's identity, so they "
            f"are not checked against the data the other runs used: {', '.join(undated)}.", ""]


def write_outputs(records, metrics, out: Path, our_models, title: str, labels=None) -> list[Comparison]:
    """The tables, summary.md and the chart; a file that cannot be written is an :class:`OutputFileError`."""
    kinds = list(dict.fromkeys(k for r in records for k in r["results"]))
    comparisons = [aggregate(records, kind, metrics, our_models) for kind in kinds]
    for comparison in comparisons:
        comparison.labels = dict(labels or {})

    markdown = [f"## {title}", ""]
    for comparison in comparisons:
        name = comparison.candidates
        write_output(out / f"table_{name}.md", to_markdown(comparison, metrics))
        write_output(out / f"table_{name}.csv", to_csv(comparison, metrics))
        write_output(out / f"table_{name}.tex", to_latex(comparison, metrics))
        markdown.append(to_markdown(comparison, metrics))
    markdown += training_summary(records, labels or {})
    markdown += data_notes(records)
    markdown += shared_settings_lines(records)
    write_output(out / "summary.md", "\n".join(markdown))
    chart = out / "main_metric.png"
    try:
        plot(comparisons, metrics[1] if len(metrics) > 1 else metrics[0], chart, title)
    except OSError as err:
        raise OutputFileError(chart, err) from None
    return comparisons


def build_parser(prog: str = "python -m recbole_mamex.compare") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False, epilog="Any other --key=value is a config entry for every run "
                                     "(RecBole's syntax, as run_recbole_mamex.py takes it).")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="our models and/or any RecBole general model")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="cold")
    parser.add_argument("--config_files", nargs="*", default=[], help="yaml files applied to every run")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="deprecated spelling of --key=value")
    parser.add_argument("--out", type=Path, help="results directory (default: results/<dataset>-<protocol>)")
    parser.add_argument("--rerun", action="store_true", help="train again the finished runs (and tuning trials) whose settings "
                        "differ from this command's, whose data changed since, or whose record cannot be read (their records are replaced)")
    parser.add_argument("--variant", nargs="*", default=[], metavar="MODEL-LABEL=KEY:VALUE;...",
                        help="an extra row: MODEL with these settings on top of --set, e.g. MAMEX-text=use_modalities:[text]")
    parser.add_argument("--tune", type=int, default=0, metavar="N",
                        help="tune every row with N trials of TPE over properties/hyper/<Model>.hyper on the first split and "
                        "seed, selecting on validation, then train the selected parameters with every split and seed (default 0: "
                        "shipped defaults; needs the [hyper] extra)")
    parser.add_argument("--prune", choices=("median", "none"), default="median",
                        help="with --tune: stop a trial whose best validation score so far is below the median of the finished "
                        "trials' at the same epoch (median, the default: from the 4th trial on, after epoch 10), or train every "
                        "trial to its own early stop (none)")
    parser.add_argument("--split-seeds", nargs="+", type=int, default=None, metavar="SEED",
                        help="cold protocol: one cold split of the dataset's source per seed (made once by dataset_prep.coldstart "
                        "and kept as dataset <dataset>-split<seed>; the dataset's own seed is the dataset itself); every "
                        "(split, seed) is a run")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="train N runs (and N tuning trials) at once, each in a worker process with this machine's "
                        "CPUs divided between them (default 1: one after the other, in this process); with --ray: at most N "
                        "tasks at once (default: the cluster's CPUs // --ray-cpus)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="train every run and tuning trial as a task on a Ray cluster (ray.init(address=ADDRESS); no "
                        "ADDRESS: RAY_ADDRESS, else a local Ray instance); results are written here as with --jobs")
    parser.add_argument("--ray-cpus", type=int, default=1, metavar="N", help="with --ray: CPUs (and torch threads) per run (default 1)")
    return parser


def parse_command_line(argv=None, prog: str = "python -m recbole_mamex.compare") -> argparse.Namespace:
    """The command line's arguments; ``overrides``: its ``--key=value`` config entries."""
    from recbole_mamex.overrides import split_config_args

    parser = build_parser(prog)
    args, extra = parser.parse_known_args(argv)
    args.overrides = split_config_args(extra, parser.prog)
    return args


def main(argv=None, prog: str = "python -m recbole_mamex.compare") -> int:
    from recbole_mamex.errors import report_user_errors

    args = parse_command_line(argv, prog)
    return report_user_errors(lambda: _main(args))


def parse_set(items) -> dict:
    """``--set key=value ...`` (values read as yaml) as a dict."""
    import yaml

    from recbole_mamex.files import load_yaml, yaml_problem

    bad = [item for item in items if "=" not in item or not item.split("=", 1)[0]]
    if bad:
        raise CompareError(f"--set: expected key=value entries, found {bad}")
    pairs = [item.split("=", 1) for item in items]
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CompareError(f"--set: expected each key once, found {sorted(k for k in set(keys) if keys.count(k) > 1)} repeated")
    try:
        return {key: load_yaml(value) for key, value in pairs}
    except yaml.YAMLError as err:
        raise CompareError(f"--set: expected yaml values, found one yaml cannot read ({yaml_problem(err)})") from None


VARIANT_NAME = re.compile(r"([A-Za-z][A-Za-z0-9_]*)-([A-Za-z0-9_.]+)\Z")


def parse_variants(items) -> dict[str, tuple[str, dict]]:
    """``--variant MODEL-LABEL=key:value;key:value`` -> {row name: (model, settings)} (values read as yaml)."""
    import yaml

    from recbole_mamex.files import load_yaml, yaml_problem

    variants = {}
    for item in items:
        name, _, spec = item.partition("=")
        match = VARIANT_NAME.match(name)
        pairs = [pair.partition(":") for pair in spec.split(";") if pair.strip()]
        if not match or not pairs or any(not key.strip() or not sep for key, sep, _ in pairs):
            raise CompareError(
                f"--variant: expected MODEL-LABEL=key:value[;key:value] (e.g. MAMEX-text=use_modalities:[text]), found {item!r}"
            )
        if name in variants:
            raise CompareError(f"--variant: expected each name once, found {name!r} repeated")
        try:
            settings = {key.strip(): load_yaml(value) for key, _, value in pairs}
        except yaml.YAMLError as err:
            raise CompareError(f"--variant {name}: expected yaml values, found one yaml cannot read ({yaml_problem(err)})") from None
        variants[name] = (match.group(1), settings)
    return variants


def check_plan(models, seeds, metrics, plan, model_of=lambda row: row) -> None:
    """What would otherwise fail after hours of runs: repeated seeds or models, a model that is not a
    general recommender, metrics the runs would not compute."""
    from recbole.utils import ModelType

    from recbole_mamex.registry import get_model

    for name, values in (("--seeds", seeds), ("--models", models)):
        repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        if repeated:
            raise CompareError(f"{name}: expected each once, found {repeated} repeated (a run counted twice skews mean, sd and the paired test)")
    for model in models:
        model_type = get_model(model_of(model)).type
        if model_type not in (ModelType.GENERAL, ModelType.TRADITIONAL):
            raise CompareError(
                f"--models: expected general recommenders (ours, or RecBole's general models such as BPR, LightGCN, Pop), "
                f"found {model} of type {model_type.name}"
            )
        config = plan(model, seeds[0])
        computed = {f"{m.lower()}@{k}" for m in config["metrics"] for k in config["topk"]}
        missing = [m for m in metrics if m not in computed]
        if missing:
            raise CompareError(
                f"--metrics: expected metrics the runs compute ({sorted(computed)}; set metrics/topk with --set or "
                f"--config_files), found {missing}"
            )


def cold_splits(dataset: str, split_seeds, config, log=print) -> list[Split]:
    """The cold split of ``dataset``'s source for each of ``split_seeds`` (same fraction): ``dataset`` itself
    for its own seed, else ``<dataset>-split<seed>``, made by ``dataset_prep.coldstart`` (its yaml in
    ``./properties/dataset/``) unless it is there; ``config``: a Config of ``dataset``."""
    from dataset_prep.coldstart import base_dataset_of, make_cold_dataset, source_from_prepared

    cold_file = config["cold_items_file"]
    data_dir = Path(config["data_path"])
    if not cold_file:
        raise CompareError(f"--split-seeds: expected a cold-start dataset (with cold_items_file), found '{dataset}' without one")
    info = json.loads((data_dir / cold_file).read_text(encoding="utf-8"))
    base = base_dataset_of(info)
    if base is None:
        raise CompareError(
            f"--split-seeds: {data_dir / cold_file} says '{dataset}' was made from {info.get('source')!r}, not from a prepared "
            "dataset, so it cannot be split again here: make the splits with python -m dataset_prep.coldstart and compare each"
        )
    splits = []
    for seed in split_seeds:
        if seed == info.get("seed"):
            splits.append(Split(seed, dataset))
            continue
        name = f"{dataset}-split{seed}"
        made = data_dir.parent / name / f"{name}.cold_items.json"
        if made.is_file():
            other = json.loads(made.read_text(encoding="utf-8"))
            if (other.get("source"), other.get("fraction"), other.get("seed")) != (info.get("source"), info.get("fraction"), seed):
                raise CompareError(
                    f"{made}: expected a split of {info.get('source')} with fraction {info.get('fraction')} and seed {seed}, found "
                    f"{other.get('source')!r}, fraction {other.get('fraction')}, seed {other.get('seed')}; move it away"
                )
        else:
            log(f"making cold split {name} of dataset '{base}' (fraction {info['fraction']}, seed {seed})")
            frame, user_col, item_col, modalities, source = source_from_prepared(base, data_dir.parent)
            make_cold_dataset(frame, user_col, item_col, modalities, name, source, out_root=data_dir.parent,
                              properties_dir=Path.cwd() / "properties", fraction=info["fraction"], seed=seed, log=log)
        splits.append(Split(seed, name))
    return splits


def _main(args) -> int:
    from dataset_prep.prepare import ensure_dataset_files

    if args.tune < 0:
        raise CompareError(f"--tune: expected a number of trials >= 0, found {args.tune}")
    if args.split_seeds is not None and args.protocol != "cold":
        raise CompareError(f"--split-seeds: expected --protocol cold (cold splits), found --protocol {args.protocol}")
    if args.split_seeds is not None and len(set(args.split_seeds)) != len(args.split_seeds):
        raise CompareError(f"--split-seeds: expected each once, found {args.split_seeds}")
    check_backend_args(args)
    from recbole_mamex.overrides import overrides_dict

    extra = overrides_dict(getattr(args, "overrides", []))
    if args.set:
        deprecated = parse_set(args.set)
        print("compare: --set key=value is deprecated; write --key=value (RecBole's syntax, as run_recbole_mamex.py "
              "takes it)", file=sys.stderr)
        both = sorted(set(deprecated) & set(extra))
        if both:
            raise CompareError(f"config overrides: expected each key once, found {both} both in --set and as --key=value")
        extra.update(deprecated)
    variants = parse_variants(args.variant)
    clash = [name for name in variants if name in args.models]
    if clash:
        raise CompareError(f"--variant: expected names other than the --models, found {clash}")
    rows = list(args.models) + list(variants)
    metrics = [m.lower() for m in args.metrics]
    cache, tunings = {}, {}

    def resolve(row, tuned=True):
        """(model, settings) of a row: a model with --set, or a variant with its own settings on top; then,
        once tuned, the parameters its tuning selected."""
        model, own = variants.get(row, (row, {}))
        selected = tunings[row].params if tuned and row in tunings else {}
        return model, {**extra, **own, **selected}

    def plan(row, seed, dataset, params=None):
        model, settings = resolve(row, tuned=params is None)
        settings = {**settings, **(params or {})}
        key = (row, seed, dataset, json.dumps(jsonable(settings), sort_keys=True))
        if key not in cache:
            cache[key] = planned_config(model, seed, dataset, args.protocol, args.config_files, settings)
        return cache[key]

    def runner(row, seed, dataset, protocol, config_files, _extra, on_epoch):
        model, settings = resolve(row)
        record = backend.run_one(model, seed, dataset, protocol, config_files, settings, on_epoch)
        if row in variants:
            record.update({"model": row, "model_class": model, "variant": jsonable(variants[row][1])})
        if row in tunings:
            record["tuning"] = tunings[row].record()
        return record

    check_plan(rows, args.seeds, metrics, lambda row, seed: plan(row, seed, args.dataset),
               model_of=lambda row: resolve(row)[0])  # unknown model names fail here

    def dataset_config(dataset):
        from recbole_mamex.config import Config

        return Config(model=resolve(rows[0])[0], dataset=dataset, config_file_list=list(args.config_files) or None,
                      config_dict=run_settings(args.seeds[0], args.protocol, extra), cmd_args=[])

    def dataset_is_there():  # a missing dataset is one error line, not a traceback in the first run
        ensure_dataset_files(dataset_config(args.dataset))

    splits = None

    def data_ready():  # before the first training: the data there, and every row's settings possible with it
        dataset_is_there()
        datasets = [split.dataset for split in splits] if splits else [args.dataset]
        check_rows_data(rows, datasets, lambda row, dataset: plan(row, args.seeds[0], dataset))

    out = args.out or Path("results") / f"{args.dataset}-{args.protocol}"
    with locked_output(out):  # one comparison at a time in a folder, which this process can write
        if args.split_seeds is not None:
            dataset_is_there()
            splits = cold_splits(args.dataset, args.split_seeds, dataset_config(args.dataset))
        title = comparison_title(args, splits)
        start = time.time()
        backend = start_backend(args)
        try:
            code = _run_rows(args, rows, metrics, tunings, resolve, plan, runner, out, splits, title, start, data_ready,
                             extra, backend)
        except KeyboardInterrupt:  # Ctrl-C: the runs in progress ended, the finished ones kept, one line
            backend.close(cancel=True)
            kept = len(list((out / "runs").glob("*.json")))
            print(f"interrupted: {kept} finished run(s) kept in {out}; run the same command again to go on", file=sys.stderr)
            return 130
        except BaseException:
            backend.close(cancel=True)
            raise
        backend.close()
    return code


def check_rows_data(rows, datasets, plan) -> None:
    """What the data decides about each row's settings (``use_modalities`` naming modalities the dataset
    has), checked for every row and dataset before the first training, by the check each run's dataset
    makes (:func:`~recbole_mamex.data.dataset.selected_modality_specs`); ``plan(row, dataset)`` -> the
    row's final config."""
    from recbole_mamex.data.dataset import selected_modality_specs
    from recbole_mamex.errors import RecboleMamexError

    for row in rows:
        for dataset in datasets:
            config = plan(row, dataset)
            settings = {key: config.get(key) for key in ("modalities", "use_modalities")}
            try:
                selected_modality_specs(settings, config["data_path"], config["dataset"])
            except RecboleMamexError as err:
                raise CompareError(f"{row}: {err} (checked for every row before any training)") from None


PROCESS_GROUP_KEYS = ("nproc", "world_size", "ip", "port", "offset", "local_rank")  # run_recbole_mamex.py's DDP


def check_backend_args(args) -> None:
    """``--jobs``, ``--ray-cpus`` and ``--ray``'s address (its syntax, and that a cluster answers there, in
    seconds), checked before any data is read or made; a process group's settings (``--nproc=2``), which
    a comparison's one-process runs would ignore, refused."""
    from recbole_mamex.distributed import check_ray_address

    given = [item.lstrip("-").split("=", 1)[0] for item in [*getattr(args, "overrides", []), *(args.set or [])]]
    grouped = [key for key in given if key in PROCESS_GROUP_KEYS]
    if grouped:
        raise CompareError(
            f"config overrides: expected no process-group settings (each run of a comparison trains in one process; --jobs N "
            f"or --ray train several at once), found {', '.join('--' + key for key in grouped)}"
        )
    if args.jobs < 1:
        raise CompareError(f"--jobs: expected a number of runs at once >= 1, found {args.jobs}")
    if args.ray is None and args.ray_cpus != 1:
        raise CompareError("--ray-cpus: expected together with --ray, found it alone")
    if args.ray is not None:
        check_ray_address(args.ray or None, "--ray")


def start_backend(args):
    """The :mod:`recbole_mamex.parallel` backend of ``--jobs`` / ``--ray`` (checked by :func:`check_backend_args`)."""
    from recbole_mamex.parallel import backend_for

    backend = backend_for(run_one, args.jobs, ray_address=args.ray or None, use_ray=args.ray is not None, ray_cpus=args.ray_cpus)
    if backend.jobs > 1:
        print(f"compare: training on {backend.name}")
    return backend


def _run_rows(args, rows, metrics, tunings, resolve, plan, runner, out, splits, title, start, data_ready, extra,
              backend) -> int:
    from recbole_mamex.registry import proposed_models

    if args.tune:
        from recbole_mamex.compare_tuning import tune_rows, tuning_markdown

        first = splits[0] if splits else Split(None, args.dataset)
        data_ready()
        tunings.update(tune_rows(rows, lambda row: resolve(row, tuned=False), args.tune, first, args.seeds[0], args.protocol,
                                 args.config_files, out, plan, backend.run_one, rerun=args.rerun, jobs=backend.jobs, pruner=args.prune,
                                 on_interrupt=lambda: backend.close(cancel=True)))
        write_output(out / "tuning.md", tuning_markdown(tunings, title))
    records = run_all(rows, args.seeds, args.dataset, args.protocol, out, args.config_files, extra, runner=runner,
                      plan=plan, rerun=args.rerun, before_training=data_ready, splits=splits, jobs_at_once=backend.jobs,
                      on_interrupt=lambda: backend.close(cancel=True), metrics=metrics)
    ours = {row for row in rows if resolve(row)[0] in proposed_models()}  # a variant of MAMEX is ours
    labels = {row: tuning.label() for row, tuning in tunings.items()}
    comparisons = write_outputs(records, metrics, out, ours, title, labels=labels)
    for comparison in comparisons:
        print(to_markdown(comparison, metrics))
    print(f"wrote {out}/summary.md, table_*.md/.csv/.tex, main_metric.png{', tuning.md' if tunings else ''} "
          f"({time.time() - start:.0f} s)")
    return 0


def comparison_title(args, splits) -> str:
    """What the tables are: dataset, protocol, splits x seeds, tuning."""
    seeds = f"seeds {args.seeds}"
    if splits:
        seeds = f"{len(splits)} cold splits (split seeds {[s.seed for s in splits]}) x {len(args.seeds)} {seeds}"
    tuned = ""
    if args.tune:
        first = f"split {splits[0].seed}, " if splits else ""
        pruned = ", median-pruned" if args.prune == "median" else ""
        tuned = f"; every row tuned with {args.tune} TPE trials{pruned} on {first}seed {args.seeds[0]} (validation only)"
    return f"{args.dataset}, {args.protocol} protocol, {seeds}{tuned}"


if __name__ == "__main__":
    sys.exit(main())
