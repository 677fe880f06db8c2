"""The command line of ``python -m recbole_mamex.compare``: parses, checks, and calls plan, running, tuning
and report.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from recbole_mamex.errors import CompareError
from recbole_mamex.search import PRUNERS, STALL_EPOCHS
from recbole_mamex.records import locked_output, write_output
from recbole_mamex.compare.plan import DEFAULT_METRICS, PROTOCOLS, Plan, check_plan, check_rows_data, cold_splits
from recbole_mamex.compare.report import comparison_title, to_markdown, write_outputs
from recbole_mamex.compare.running import check_backend_args, run_all, start_backend


def build_parser(prog: str = "python -m recbole_mamex.compare") -> argparse.ArgumentParser:
    package = sys.modules[__package__]  # the command's description: the package docstring's first paragraph
    parser = argparse.ArgumentParser(prog=prog, description=package.__doc__.split("\n\n")[0],
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
    parser.add_argument("--prune", choices=PRUNERS, default="none",
                        help="with --tune: train every trial to its own early stop (none, the default), or stop a trial whose best "
                        "validation score so far is below the median of the finished trials' at the same epoch (median: from "
                        "the 4th trial on, after epoch 10; about half the tuning time, but it selected worse parameters for 4 "
                        "of 12 rows on Last.fm-2K, bench/results/tuning_cost_lastfm_2k_cold.md), or do so only once that best "
                        f"has not improved for {STALL_EPOCHS} epochs (stalled: a slow starter still climbing trains on; about "
                        "0.87 of the tuning time, and it changed 1 of 19 searches, LightGCN's on warm Last.fm-2K)")
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
    seeded = [f"--variant {name}" for name, (_, own) in variants.items() if "seed" in own]
    if "seed" in extra or seeded:
        where = "a config entry (--seed=, --set seed=)" if "seed" in extra else ", ".join(seeded)
        raise CompareError(f"seed: expected the seeds in --seeds (each run has one of them), found a seed set by {where}, "
                           "which would give every run the same seed")
    rows = list(args.models) + list(variants)
    metrics = [m.lower() for m in args.metrics]
    plan = Plan(args.dataset, args.protocol, rows, list(args.seeds), tuple(args.config_files), extra, variants)
    check_plan(plan, metrics)  # unknown model names fail here

    def dataset_config(dataset):
        from recbole_mamex.config import Config

        return Config(**plan.spec(rows[0], args.seeds[0], dataset, params={}).config_arguments())

    def dataset_is_there():  # a missing dataset is one error line, not a traceback in the first run
        ensure_dataset_files(dataset_config(args.dataset))

    def data_ready():  # before the first training: the data there, and every row's settings possible with it
        dataset_is_there()
        check_rows_data(plan)

    out = args.out or Path("results") / f"{args.dataset}-{args.protocol}"
    with locked_output(out):  # one comparison at a time in a folder, which this process can write
        if args.split_seeds is not None:
            dataset_is_there()
            plan.splits = cold_splits(args.dataset, args.split_seeds, dataset_config(args.dataset))
        title = comparison_title(args, plan.splits)
        start = time.time()
        backend = start_backend(args)
        try:
            code = _run_rows(args, plan, metrics, out, title, start, data_ready, backend)
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


def _run_rows(args, plan, metrics, out, title, start, data_ready, backend) -> int:
    from recbole_mamex.registry import proposed_models

    if args.tune:
        from recbole_mamex.compare.tuning import tune_rows, tuning_markdown

        data_ready()
        plan.tunings.update(tune_rows(plan, args.tune, plan.all_splits()[0], args.seeds[0], out, backend.run_one,
                                      rerun=args.rerun, jobs=backend.jobs, pruner=args.prune,
                                      on_interrupt=lambda: backend.close(cancel=True)))
        write_output(out / "tuning.md", tuning_markdown(plan.tunings, title))
    records = run_all(plan, out, runner=backend.run_one, rerun=args.rerun, before_training=data_ready,
                      jobs_at_once=backend.jobs, on_interrupt=lambda: backend.close(cancel=True), metrics=metrics)
    ours = {row for row in plan.rows if plan.model_of(row) in proposed_models()}  # a variant of MAMEX is ours
    labels = {row: tuning.label() for row, tuning in plan.tunings.items()}
    comparisons = write_outputs(records, metrics, out, ours, title, labels=labels)
    for comparison in comparisons:
        print(to_markdown(comparison, metrics))
    print(f"wrote {out}/summary.md, table_*.md/.csv/.tex, main_metric.png{', tuning.md' if plan.tunings else ''} "
          f"({time.time() - start:.0f} s)")
    return 0

