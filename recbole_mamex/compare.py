"""Batch comparison: models x seeds on one dataset -> tables (Markdown, CSV, LaTeX) and a bar chart.

    python -m recbole_mamex.compare --dataset lastfm-2k-cold --protocol cold \\
        --models MAMEX RLMultimodalRec BPR LightGCN Pop --seeds 2020 2021 2022

Every (model, seed) is trained with RecBole's trainer and early stopping on the validation split (the
candidate set of the protocol's ``eval_candidates``), saved, then evaluated on test; test is never used
for selection. Each finished run is written at once (atomically) to ``<out>/runs/<model>-seed<seed>.json``
with its full config and the package versions; running the same command again skips finished runs, so an
interrupted comparison loses at most the run in progress.

Tables, one per candidate set (cold / warm / all under the cold protocol, one under the warm protocol):
mean +- sd over seeds of each metric, the best mean per column in bold, the relative improvement of the
best of our proposed models (:func:`recbole_mamex.utils.proposed_models`) over the best baseline (every
other model: RecBole's and our re-implemented baselines VBPR, MILK, CLCRec), and the p-value of a paired
t-test across seeds between those two (scipy.stats.ttest_rel; pairs are seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

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
    p_value: dict[str, float]  # metric -> paired t-test p-value across seeds


def aggregate(runs: list[dict], candidates: str, metrics, our_models) -> Comparison:
    """Aggregate ``runs`` (dicts with ``model``, ``seed``, ``results[candidates][metric]``)."""
    from scipy import stats

    rows = [
        {"model": r["model"], "seed": r["seed"], **{m: float(r["results"][candidates][m]) for m in metrics}}
        for r in runs
        if candidates in r["results"]
    ]
    frame = pd.DataFrame(rows)
    order = list(dict.fromkeys(r["model"] for r in rows))
    grouped = frame.groupby("model", sort=False)[list(metrics)]
    table = pd.concat({"mean": grouped.mean(), "sd": grouped.std(ddof=1), "n": grouped.count()}, axis=1)
    table = table.swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False).loc[order]
    best, ours, baseline, improvement, p_value = {}, {}, {}, {}, {}
    for metric in metrics:
        means = table[(metric, "mean")]
        best[metric] = str(means.idxmax())
        mine = means[[m for m in means.index if m in our_models]]
        theirs = means[[m for m in means.index if m not in our_models]]
        ours[metric] = str(mine.idxmax()) if len(mine) else None
        baseline[metric] = str(theirs.idxmax()) if len(theirs) else None
        if ours[metric] is None or baseline[metric] is None:
            improvement[metric], p_value[metric] = float("nan"), float("nan")
            continue
        improvement[metric] = float((mine.max() - theirs.max()) / theirs.max()) if theirs.max() else float("nan")
        a = frame[frame["model"] == ours[metric]].set_index("seed")[metric]
        b = frame[frame["model"] == baseline[metric]].set_index("seed")[metric]
        seeds = sorted(set(a.index) & set(b.index))
        if len(seeds) >= 2 and not np.allclose(a[seeds].to_numpy() - b[seeds].to_numpy(), 0):
            p_value[metric] = float(stats.ttest_rel(a[seeds], b[seeds]).pvalue)
        else:
            p_value[metric] = float("nan")
    return Comparison(candidates, table, best, ours, baseline, improvement, p_value)


def _cell(comparison: Comparison, model: str, metric: str) -> tuple[str, bool]:
    mean = comparison.table.loc[model, (metric, "mean")]
    sd = comparison.table.loc[model, (metric, "sd")]
    text = f"{mean:.4f} ± {sd:.4f}" if not np.isnan(sd) else f"{mean:.4f}"
    return text, comparison.best[metric] == model


def to_markdown(comparison: Comparison, metrics) -> str:
    lines = [f"### {comparison.candidates} candidates", "", "| model | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for model in comparison.table.index:
        cells = []
        for metric in metrics:
            text, is_best = _cell(comparison, model, metric)
            cells.append(f"**{text}**" if is_best else text)
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("| best ours vs best baseline | " + " | ".join(_improvement_text(comparison, m) for m in metrics) + " |")
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
        row = {"candidates": comparison.candidates, "model": model}
        for metric in metrics:
            row[f"{metric}_mean"] = comparison.table.loc[model, (metric, "mean")]
            row[f"{metric}_sd"] = comparison.table.loc[model, (metric, "sd")]
            row[f"{metric}_best"] = comparison.best[metric] == model
        row["n_seeds"] = int(comparison.table.loc[model, (metrics[0], "n")])
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
            cells.append(rf"\textbf{{{text}}}" if is_best else text)
        lines.append(escape(model) + " & " + " & ".join(cells) + r" \\")
    lines.append(r"\midrule")
    improvements = [f"{comparison.improvement[m]:+.1%}" if not np.isnan(comparison.improvement[m]) else "-" for m in metrics]
    lines.append("Improv. & " + " & ".join(escape(i) for i in improvements) + r" \\")
    p_values = [f"{comparison.p_value[m]:.3g}" if not np.isnan(comparison.p_value[m]) else "-" for m in metrics]
    lines.append("$p$ (paired) & " + " & ".join(p_values) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
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
        ax.set_xticks(range(len(means)), means.index, rotation=30, ha="right")
        ax.set_title(f"{comparison.candidates} candidates")
        ax.set_ylabel(metric)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- running
def versions() -> dict[str, str]:
    import recbole
    import torch

    import recbole_mamex

    return {
        "recbole_mamex": recbole_mamex.__version__,
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
    }


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def write_json_atomic(path: Path, payload: dict) -> None:
    from dataset_prep.common import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def run_file(out: Path, model: str, seed: int) -> Path:
    return out / "runs" / f"{model}-seed{seed}.json"


class CompareError(ValueError):
    """A comparison that cannot run as asked (found before any training)."""


VERSION_KEYS = ("recbole_mamex", "recbole", "torch")


def run_settings(seed: int, protocol: str, extra: dict) -> dict:
    """The config_dict of one comparison run."""
    return {"seed": seed, "show_progress": False, "state": "WARNING", **PROTOCOLS[protocol], **extra}


def planned_config(model, seed, dataset, protocol, config_files, extra) -> dict:
    """The final config (as saved in a run record) that :func:`run_one` would train with, without training."""
    from recbole_mamex.config import Config

    config = Config(model=model, dataset=dataset, config_file_list=list(config_files) or None,
                    config_dict=run_settings(seed, protocol, extra), cmd_args=[])
    return _jsonable(dict(config.final_config_dict))


def setting_differences(record: dict, planned: dict) -> list[str]:
    """``key: recorded -> planned`` for every setting (and version) that differs, neutral keys left out."""
    from recbole_mamex.config import config_differences

    diffs = config_differences(record.get("config") or {}, planned)
    now = versions()
    diffs += [f"{k} version: {record.get('versions', {}).get(k)!r} -> {now[k]!r}" for k in VERSION_KEYS
              if record.get("versions", {}).get(k) != now[k]]
    return diffs


def run_one(model, seed, dataset, protocol, config_files, extra, on_epoch) -> dict:
    """Train and test one (model, seed); returns the record saved for it."""
    from recbole_mamex.quick_start import run_recbole_mamex

    settings = run_settings(seed, protocol, extra)
    start = time.time()
    result = run_recbole_mamex(
        model=model, dataset=dataset, config_file_list=config_files or None, config_dict=settings,
        saved=True, cmd_args=[], callback_fn=on_epoch,
    )
    results = result["test_result_by_candidates"] or {"full": result["test_result"]}
    return {
        "model": model,
        "seed": seed,
        "dataset": dataset,
        "protocol": protocol,
        "results": {kind: {k: float(v) for k, v in metrics.items()} for kind, metrics in results.items()},
        "best_valid": {k: float(v) for k, v in result["best_valid_result"].items()},
        "checkpoint": result["model_file"],
        "wall_s": time.time() - start,
        "config": _jsonable(dict(result["config"].final_config_dict)),
        "versions": versions(),
    }


def run_all(models, seeds, dataset, protocol, out: Path, config_files=(), extra=None, runner=run_one, log=print,
            plan=None, rerun: bool = False, before_training=None) -> list[dict]:
    """Run every missing (model, seed), saving each as it finishes; returns all records.

    A finished run is reused only when it was made on this dataset and protocol and, given ``plan``
    (``plan(model, seed)`` -> the final config the run would use, see :func:`planned_config`), with the
    same settings and versions (:func:`setting_differences`). Otherwise: a :class:`CompareError` naming
    the differences, checked for every job before the first one trains; with ``rerun``, those runs are
    trained again and their records replaced. ``before_training()`` is called once, before the first
    run that has to be trained (none when every run is on disk).
    """
    from recbole_mamex.config import listed_differences

    extra = extra or {}
    jobs = [(m, s) for m in models for s in seeds]
    finished = {}  # (model, seed) -> its record, when it can be reused
    for model, seed in jobs:
        path = run_file(out, model, seed)
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        if (record.get("dataset"), record.get("protocol")) != (dataset, protocol):
            raise CompareError(
                f"{path}: expected a run on dataset '{dataset}' with protocol '{protocol}', found "
                f"'{record.get('dataset')}' / '{record.get('protocol')}'; use another --out"
            )
        diffs = setting_differences(record, plan(model, seed)) if plan is not None else []
        if diffs and not rerun:
            raise CompareError(
                f"{path}: a finished run made with other settings than this command: {listed_differences(diffs)}"
                ". Use another --out to keep both, or --rerun to train the differing runs again (their records are replaced)"
            )
        if not diffs:
            finished[(model, seed)] = record
    records, durations = [], []
    for index, (model, seed) in enumerate(jobs, start=1):
        path = run_file(out, model, seed)
        if (model, seed) in finished:
            log(f"[{index}/{len(jobs)}] {model} seed {seed}: done before, skipped (same settings)")
            records.append(finished[(model, seed)])
            continue
        if before_training is not None:
            before_training()
            before_training = None
        remaining = len(jobs) - index + 1
        eta = f", ETA {np.mean(durations) * remaining / 60:.1f} min" if durations else ""
        log(f"[{index}/{len(jobs)}] {model} seed {seed}: training{eta}")

        def on_epoch(epoch, valid_score, _label=f"{model} seed {seed}"):
            log(f"    {_label}: epoch {epoch}, valid score {valid_score:.4f}")

        record = runner(model, seed, dataset, protocol, list(config_files), extra, on_epoch)
        write_json_atomic(path, record)
        durations.append(record["wall_s"])
        records.append(record)
        log(f"[{index}/{len(jobs)}] {model} seed {seed}: finished in {record['wall_s']:.0f} s")
    return records


def shared_settings(records) -> dict:
    """The config entries (neutral keys left out) that every run has with the same value."""
    from recbole_mamex.config import NEUTRAL_KEYS

    configs = [r.get("config") or {} for r in records]
    if not configs or not all(configs):
        return {}
    keys = set.intersection(*(set(c) for c in configs)) - NEUTRAL_KEYS
    return {k: configs[0][k] for k in sorted(keys) if all(c[k] == configs[0][k] for c in configs)}


def write_outputs(records, metrics, out: Path, our_models, title: str) -> list[Comparison]:
    kinds = list(dict.fromkeys(k for r in records for k in r["results"]))
    comparisons = [aggregate(records, kind, metrics, our_models) for kind in kinds]
    from dataset_prep.common import atomic_write_text

    markdown = [f"## {title}", ""]
    for comparison in comparisons:
        name = comparison.candidates
        atomic_write_text(out / f"table_{name}.md", to_markdown(comparison, metrics))
        atomic_write_text(out / f"table_{name}.csv", to_csv(comparison, metrics))
        atomic_write_text(out / f"table_{name}.tex", to_latex(comparison, metrics))
        markdown.append(to_markdown(comparison, metrics))
    shared = shared_settings(records)
    if shared:
        markdown += ["## Settings shared by every run", ""] + [f"- `{k}`: `{json.dumps(v)}`" for k, v in shared.items()] + [""]
    atomic_write_text(out / "summary.md", "\n".join(markdown))
    plot(comparisons, metrics[1] if len(metrics) > 1 else metrics[0], out / "main_metric.png", title)
    return comparisons


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_mamex.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", nargs="+", required=True, help="our models and/or any RecBole general model")
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="cold")
    parser.add_argument("--config_files", nargs="*", default=[], help="yaml files applied to every run")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config entries for every run")
    parser.add_argument("--out", type=Path, help="results directory (default: results/<dataset>-<protocol>)")
    parser.add_argument("--rerun", action="store_true", help="train again the finished runs whose settings differ from this command's")
    parser.add_argument("--variant", nargs="*", default=[], metavar="MODEL-LABEL=KEY:VALUE;...",
                        help="an extra row: MODEL with these settings on top of --set, e.g. MAMEX-text=use_modalities:[text]")
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except user_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def user_errors() -> tuple[type, ...]:
    """The errors a comparison reports as one ``error:`` line (exit status 2)."""
    import yaml

    from recbole_mamex.config import ConfigError
    from recbole_mamex.data.features import InputFileError
    from recbole_mamex.data.prepare import DatasetNotPreparedError
    from recbole_mamex.utils import UnknownModelError

    return (CompareError, ConfigError, UnknownModelError, DatasetNotPreparedError, InputFileError, FileNotFoundError,
            yaml.YAMLError)


def parse_set(items) -> dict:
    """``--set key=value ...`` (values read as yaml) as a dict."""
    import yaml

    bad = [item for item in items if "=" not in item or not item.split("=", 1)[0]]
    if bad:
        raise CompareError(f"--set: expected key=value entries, found {bad}")
    pairs = [item.split("=", 1) for item in items]
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CompareError(f"--set: expected each key once, found {sorted(k for k in set(keys) if keys.count(k) > 1)} repeated")
    try:
        return {key: yaml.safe_load(value) for key, value in pairs}
    except yaml.YAMLError as err:
        raise CompareError(f"--set: expected yaml values, found one yaml cannot read ({err})") from None


VARIANT_NAME = re.compile(r"([A-Za-z][A-Za-z0-9_]*)-([A-Za-z0-9_.]+)\Z")


def parse_variants(items) -> dict[str, tuple[str, dict]]:
    """``--variant MODEL-LABEL=key:value;key:value`` -> {row name: (model, settings)} (values read as yaml)."""
    import yaml

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
            settings = {key.strip(): yaml.safe_load(value) for key, _, value in pairs}
        except yaml.YAMLError as err:
            raise CompareError(f"--variant {name}: expected yaml values, found one yaml cannot read ({err})") from None
        variants[name] = (match.group(1), settings)
    return variants


def check_plan(models, seeds, metrics, plan, model_of=lambda row: row) -> None:
    """What would otherwise fail after hours of runs: repeated seeds or models, a model that is not a
    general recommender, metrics the runs would not compute."""
    from recbole.utils import ModelType

    from recbole_mamex.utils import get_model

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


def _main(args) -> int:
    from recbole_mamex.data.prepare import ensure_dataset_files
    from recbole_mamex.utils import proposed_models

    extra = parse_set(args.set)
    variants = parse_variants(args.variant)
    clash = [name for name in variants if name in args.models]
    if clash:
        raise CompareError(f"--variant: expected names other than the --models, found {clash}")
    rows = list(args.models) + list(variants)
    metrics = [m.lower() for m in args.metrics]
    cache = {}

    def resolve(row):
        """(model, settings) of a row: a model with --set, or a variant with its own settings on top."""
        model, own = variants.get(row, (row, {}))
        return model, {**extra, **own}

    def plan(row, seed):
        if (row, seed) not in cache:
            model, settings = resolve(row)
            cache[(row, seed)] = planned_config(model, seed, args.dataset, args.protocol, args.config_files, settings)
        return cache[(row, seed)]

    def runner(row, seed, dataset, protocol, config_files, _extra, on_epoch):
        model, settings = resolve(row)
        record = run_one(model, seed, dataset, protocol, config_files, settings, on_epoch)
        if row in variants:
            record.update({"model": row, "model_class": model, "variant": _jsonable(variants[row][1])})
        return record

    check_plan(rows, args.seeds, metrics, plan, model_of=lambda row: resolve(row)[0])  # unknown model names fail here

    def dataset_is_there():  # a missing dataset is one error line, not a traceback in the first run
        from recbole_mamex.config import Config

        ensure_dataset_files(Config(model=args.models[0], dataset=args.dataset, config_file_list=list(args.config_files) or None,
                                    config_dict=run_settings(args.seeds[0], args.protocol, extra), cmd_args=[]))

    out = args.out or Path("results") / f"{args.dataset}-{args.protocol}"
    title = f"{args.dataset}, {args.protocol} protocol, seeds {args.seeds}"
    start = time.time()
    records = run_all(rows, args.seeds, args.dataset, args.protocol, out, args.config_files, extra, runner=runner,
                      plan=plan, rerun=args.rerun, before_training=dataset_is_there)
    ours = {row for row in rows if resolve(row)[0] in proposed_models()}  # a variant of MAMEX is ours
    comparisons = write_outputs(records, metrics, out, ours, title)
    for comparison in comparisons:
        print(to_markdown(comparison, metrics))
    print(f"wrote {out}/summary.md, table_*.md/.csv/.tex, main_metric.png ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
