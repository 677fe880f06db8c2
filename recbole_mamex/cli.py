"""Command lines: training (``python run_recbole_mamex.py --model=BPR --dataset=lastfm-2k --epochs=2``) and
the console script ``recbole-mamex``, whose subcommands are the package's command lines.

Training takes the flags of RecBole's ``run_recbole.py`` (``--model``, ``--dataset``, ``--config_files``);
every other ``--key=value`` is a config entry, as in RecBole.

``recbole-mamex <command> ...`` runs the entry point of :data:`COMMANDS` (``prepare <importer>``: of
:data:`IMPORTERS`) with the same arguments, its parser named after the subcommand; the module entry
points keep working on their own. Training flags without a command (``recbole-mamex --model=BPR``) train,
as before the console script had subcommands; ``recbole-mamex`` alone lists the commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys

DEFAULT_MODEL = "MAMEX"  # what run_recbole_mamex.py trains without --model / --dataset
DEFAULT_DATASET = "lastfm-2k-cold"
RUN_PROG = "run_recbole_mamex.py"
RUN_DESCRIPTION = "Train and evaluate a model (ours or any RecBole model) on a RecBole dataset."


def build_parser(prog: str = RUN_PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        allow_abbrev=False,  # an unknown --key=value is a config entry, never an abbreviation of a flag
        description=RUN_DESCRIPTION + " Any other --key=value sets that config entry (e.g. --epochs=2 --learning_rate=0.01).",
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


def parse_command_line(argv=None, prog: str = RUN_PROG) -> argparse.Namespace:
    """The training command line's arguments; ``overrides``: its ``--key=value`` config entries."""
    from recbole_mamex.overrides import split_config_args

    parser = build_parser(prog)
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    args.overrides = [] if args.list_models else split_config_args(extra, parser.prog)
    return args


def main(argv=None, prog: str = RUN_PROG) -> int:
    """Training: ``run_recbole_mamex.py`` and ``recbole-mamex run``."""
    args = parse_command_line(argv, prog)
    if args.list_models:
        from recbole_mamex.registry import available_model_names

        print("\n".join(available_model_names()))
        return 0
    config_files = args.config_files.split() if args.config_files else None

    from recbole_mamex.errors import report_user_errors

    return report_user_errors(lambda: _train(args, config_files, args.overrides))


def _train(args, config_files, cmd_args) -> int:
    from recbole_mamex.quick_start import cap_warning, run
    from recbole_mamex.runspec import RunSpec

    spec = RunSpec(args.model, args.dataset, config_files or (), {}, cmd_args)
    if args.hyper:
        return run_hyper(args, spec)
    result = run(spec, nproc=args.nproc, world_size=args.world_size, ip=args.ip, port=args.port,
                 group_offset=args.group_offset, resume_from=args.resume)
    kind = result["config"]["eval_candidates"]
    label = f" [{kind} candidates]" if kind else ""
    print(f"best valid{label}: {format_metrics(result['best_valid_result'])}")
    if kind not in result["test_result_by_candidates"]:
        print(f"test{label}:       {format_metrics(result['test_result'])}")
    for other, metrics in result["test_result_by_candidates"].items():
        print(f"test [{other} candidates]: {format_metrics(metrics)}")
    if result["model_file"]:
        print(f"checkpoint: {result['model_file']}")
    if result["capped_improving"]:
        print(f"warning: {cap_warning(result['best_epoch'], result['config']['epochs'])}", file=sys.stderr)
    return 0


def run_hyper(args, spec) -> int:
    """``--hyper FILE``: RecBole's HyperTuning over our run function; prints the best parameters."""
    import os

    from recbole_mamex.tuning import tune, tune_with_ray

    if args.hyper_tool == "ray":
        found = tune_with_ray(spec, args.hyper, num_samples=args.max_evals, local_mode="RAY_ADDRESS" not in os.environ)
        best = found["best"]
        valid = {key[6:]: value for key, value in best.items() if key.startswith("valid_")}
        test = {key[5:]: value for key, value in best.items() if key.startswith("test_")}
    else:
        found = tune(spec, args.hyper, algo=args.hyper_algo, max_evals=args.max_evals, output_file=args.hyper_output)
        best = found["best"]
        valid, test = best["best_valid_result"], best["test_result"]
    print(f"trials: {len(found['trials'])}")
    print(f"best parameters: {found['best_params']}")
    print(f"best valid: {format_metrics(valid)}")
    print(f"its test:   {format_metrics(test)}")
    if best["model_file"]:
        print(f"checkpoint: {best['model_file']}")
    return 0


# ----------------------------------------------------------------------------- the console script
# subcommand -> the module whose main(argv, prog) it runs, imported only when that subcommand runs (so
# `recbole-mamex --help` stays as light as run_recbole_mamex.py's); prepare <importer> runs IMPORTERS'
COMMANDS = {
    "run": __name__,
    "compare": "recbole_mamex.compare",
    "serve": "recbole_mamex.serving",
    "interpret": "recbole_mamex.interpret",
    "prepare": None,
    "split": "dataset_prep.coldstart",
}
IMPORTERS = {name: f"dataset_prep.{name}" for name in ("amazon", "attributes", "images", "lattice", "mmrec", "s3rec")}
CONSOLE_PROG = "recbole-mamex"
CONSOLE_DESCRIPTION = ("Multimodal and cold-start recommendation on RecBole 1.2.1. Each command is one of the package's "
                       "command lines, with the same arguments; training flags without a command (recbole-mamex "
                       "--model=BPR) are run's.")
PREPARE_HELP = "Import a dataset or build item features: prepare <importer> (python -m dataset_prep.<importer>)."


def summary(module: str) -> str:
    """What ``module``'s command line does: its docstring's first paragraph (the description its
    ``--help`` opens with), read without importing it."""
    import ast
    from importlib.util import find_spec

    if module == __name__:
        return RUN_DESCRIPTION
    with open(find_spec(module).origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return " ".join(doc.split("\n\n")[0].replace("``", "").split())


def _menu(prog: str, choices: dict, what: str, description: str) -> argparse.ArgumentParser:
    """A parser of the first argument only: one of ``choices`` (listed by ``--help``, each with its summary)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, usage=f"{prog} <{what}> [arguments]",
        epilog=f"'{prog} <{what}> --help' shows that {what}'s arguments.",
    )
    sub = parser.add_subparsers(title=f"{what}s", metavar=f"<{what}>", dest=what, required=True)
    for name, module in choices.items():
        same = f"python {RUN_PROG}" if module == __name__ else f"python -m {module}"
        sub.add_parser(name, help=f"{summary(module)} ({same})" if module else PREPARE_HELP, add_help=False)
    return parser


def entry_point(argv: list[str]) -> tuple[str, str, list[str]]:
    """(module, prog, its arguments) that ``recbole-mamex ARGV`` runs. Training flags without a command
    (``recbole-mamex --model=BPR``) are ``run``'s, as before the console script had subcommands; no argument
    at all prints the commands; a wrong command is a usage error (argparse's exit)."""
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        return __name__, CONSOLE_PROG, argv
    menu = _menu(CONSOLE_PROG, COMMANDS, "command", CONSOLE_DESCRIPTION)
    if not argv:
        menu.print_help()
        menu.exit(2)
    command = menu.parse_args(argv[:1]).command
    if command != "prepare":
        return COMMANDS[command], f"{CONSOLE_PROG} {command}", argv[1:]
    prepare = _menu(f"{CONSOLE_PROG} prepare", IMPORTERS, "importer", PREPARE_HELP)
    importer = prepare.parse_args(argv[1:2]).importer
    return IMPORTERS[importer], f"{CONSOLE_PROG} prepare {importer}", argv[2:]


def console_main(argv=None) -> int:
    """``recbole-mamex``: the subcommand's own entry point, with its arguments, output and exit status."""
    module, prog, arguments = entry_point(sys.argv[1:] if argv is None else list(argv))
    return importlib.import_module(module).main(arguments, prog=prog)
