"""Command line: ``python run_recbole_mamex.py --model=BPR --dataset=lastfm-2k --epochs=2``.

The flags of RecBole's ``run_recbole.py`` (``--model``, ``--dataset``, ``--config_files``); every other
``--key=value`` is a config entry, as in RecBole.
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_MODEL = "MAMEX"  # what run_recbole_mamex.py trains without --model / --dataset
DEFAULT_DATASET = "lastfm-2k-cold"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_recbole_mamex.py",
        allow_abbrev=False,  # an unknown --key=value is a config entry, never an abbreviation of a flag
        description="Train and evaluate a model (ours or any RecBole model) on a RecBole dataset. "
        "Any other --key=value sets that config entry (e.g. --epochs=2 --learning_rate=0.01).",
    )
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model name (default: {DEFAULT_MODEL})")
    parser.add_argument("--dataset", "-d", default=DEFAULT_DATASET, help=f"dataset name (default: {DEFAULT_DATASET})")
    parser.add_argument(
        "--config_files", default=None, help="space-separated yaml files, later ones override earlier ones"
    )
    parser.add_argument("--list-models", action="store_true", help="print the available model names and exit")
    parser.add_argument("--resume", metavar="FILE", default=None,
                        help="go on from this checkpoint (the -last.pth one an interrupted run left), same arguments")
    ddp = parser.add_argument_group("several processes (RecBole's DDP path; gloo on CPU, NCCL on GPU)")
    ddp.add_argument("--nproc", type=int, default=1, help="processes to start on this machine (default: 1)")
    ddp.add_argument("--world_size", type=int, default=-1, help="processes on all machines (default: nproc)")
    ddp.add_argument("--ip", default="localhost", help="address of the machine with rank 0 (default: localhost)")
    ddp.add_argument("--port", default="5678", help="its free TCP port (default: 5678)")
    ddp.add_argument("--group_offset", type=int, default=0, help="rank of this machine's first process (default: 0)")
    hyper = parser.add_argument_group("hyper-parameter search (RecBole's HyperTuning; needs the [hyper] extra)")
    hyper.add_argument("--hyper", metavar="FILE", default=None,
                       help="search this .hyper space, selecting on validation (e.g. properties/hyper/MAMEX.hyper)")
    hyper.add_argument("--hyper_algo", choices=["exhaustive", "random", "bayes"], default="exhaustive",
                       help="exhaustive (every choice combination), random, or bayes (TPE) (default: exhaustive)")
    hyper.add_argument("--max_evals", type=int, default=100, help="trials for random/bayes (default: 100)")
    hyper.add_argument("--hyper_output", metavar="FILE", default=None, help="write every trial's metrics here")
    hyper.add_argument("--hyper_tool", choices=["hyperopt", "ray"], default="hyperopt",
                       help="hyperopt (RecBole's HyperTuning) or ray (Ray Tune random search, --max_evals samples, "
                       "local mode unless RAY_ADDRESS names a cluster; needs the [ray] extra) (default: hyperopt)")
    return parser


def format_metrics(metrics) -> str:
    return "  ".join(f"{name}: {float(value):.4f}" for name, value in metrics.items())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.list_models:
        from recbole_mamex.registry import available_model_names

        print("\n".join(available_model_names()))
        return 0
    from recbole_mamex.overrides import split_config_args

    cmd_args = split_config_args(extra, parser.prog)
    config_files = args.config_files.split() if args.config_files else None

    from recbole_mamex.errors import report_user_errors

    return report_user_errors(lambda: _train(args, config_files, cmd_args))


def _train(args, config_files, cmd_args) -> int:
    from recbole_mamex.quick_start import run

    if args.hyper:
        return run_hyper(args, config_files, cmd_args)
    result = run(
        model=args.model, dataset=args.dataset, config_file_list=config_files, cmd_args=cmd_args,
        nproc=args.nproc, world_size=args.world_size, ip=args.ip, port=args.port, group_offset=args.group_offset,
        resume_from=args.resume,
    )
    kind = result["config"]["eval_candidates"]
    label = f" [{kind} candidates]" if kind else ""
    print(f"best valid{label}: {format_metrics(result['best_valid_result'])}")
    if kind not in result["test_result_by_candidates"]:
        print(f"test{label}:       {format_metrics(result['test_result'])}")
    for other, metrics in result["test_result_by_candidates"].items():
        print(f"test [{other} candidates]: {format_metrics(metrics)}")
    if result["model_file"]:
        print(f"checkpoint: {result['model_file']}")
    return 0


def run_hyper(args, config_files, cmd_args) -> int:
    """``--hyper FILE``: RecBole's HyperTuning over our run function; prints the best parameters."""
    import os

    from recbole_mamex.tuning import tune, tune_with_ray

    if args.hyper_tool == "ray":
        found = tune_with_ray(
            args.model, args.dataset, args.hyper, config_file_list=config_files, cmd_args=cmd_args,
            num_samples=args.max_evals, local_mode="RAY_ADDRESS" not in os.environ,
        )
        best = found["best"]
        valid = {key[6:]: value for key, value in best.items() if key.startswith("valid_")}
        test = {key[5:]: value for key, value in best.items() if key.startswith("test_")}
    else:
        found = tune(
            args.model, args.dataset, args.hyper, config_file_list=config_files, cmd_args=cmd_args,
            algo=args.hyper_algo, max_evals=args.max_evals, output_file=args.hyper_output,
        )
        best = found["best"]
        valid, test = best["best_valid_result"], best["test_result"]
    print(f"trials: {len(found['trials'])}")
    print(f"best parameters: {found['best_params']}")
    print(f"best valid: {format_metrics(valid)}")
    print(f"its test:   {format_metrics(test)}")
    if best["model_file"]:
        print(f"checkpoint: {best['model_file']}")
    return 0
