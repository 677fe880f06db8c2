"""What a comparison writes: tables (Markdown, CSV, LaTeX), the bar chart, ``summary.md`` (training
figures, shared settings, data notes) and the title every output carries.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_mamex.records import OutputFileError, jsonable, write_output
from recbole_mamex.compare.stats import CAP_MARK, CAP_MEANING, Comparison, aggregate, capped_run, pair_key


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


def comparison_title(args, splits) -> str:
    """What the tables are: dataset, protocol, splits x seeds, tuning."""
    seeds = f"seeds {args.seeds}"
    if splits:
        seeds = f"{len(splits)} cold splits (split seeds {[s.seed for s in splits]}) x {len(args.seeds)} {seeds}"
    tuned = ""
    if args.tune:
        first = f"split {splits[0].seed}, " if splits else ""
        pruned = {"median": ", median-pruned", "stalled": ", median-pruned once stalled"}.get(args.prune, "")
        tuned = f"; every row tuned with {args.tune} TPE trials{pruned} on {first}seed {args.seeds[0]} (validation only)"
    return f"{args.dataset}, {args.protocol} protocol, {seeds}{tuned}"

