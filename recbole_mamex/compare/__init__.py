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

The package, by job: :mod:`~recbole_mamex.compare.plan` (what trains: protocols, run settings, cold
splits, checks before training), :mod:`~recbole_mamex.compare.tuning` (``--tune``),
:mod:`~recbole_mamex.compare.running` (runs, resumption, backends), :mod:`~recbole_mamex.compare.stats`
(aggregation and paired tests), :mod:`~recbole_mamex.compare.report` (tables, chart, ``summary.md``) and
:mod:`~recbole_mamex.compare.cli` (the command line, which only parses and calls them).
"""

from recbole_mamex.compare.cli import build_parser, main, parse_command_line, parse_set, parse_variants
from recbole_mamex.compare.plan import DEFAULT_METRICS, PROTOCOLS, Plan, Split, cold_splits, planned_config, run_settings
from recbole_mamex.compare.report import to_csv, to_latex, to_markdown, training_summary, write_outputs
from recbole_mamex.compare.running import peak_rss_gb, reset_peak_rss, run_all, run_file, run_one
from recbole_mamex.compare.stats import CAP_MARK, Comparison, aggregate, capped_run, pair_key

__all__ = ["CAP_MARK", "DEFAULT_METRICS", "PROTOCOLS", "Comparison", "Plan", "Split", "aggregate", "build_parser", "capped_run",
           "cold_splits", "main", "pair_key", "parse_command_line", "parse_set", "parse_variants", "peak_rss_gb",
           "planned_config", "reset_peak_rss", "run_all", "run_file", "run_one", "run_settings", "to_csv", "to_latex",
           "to_markdown", "training_summary", "write_outputs"]
