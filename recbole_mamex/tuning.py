"""Hyper-parameter search with RecBole's ``HyperTuning`` (hyperopt), selecting on validation.

Every trial is one :func:`recbole_mamex.quick_start.run_recbole_mamex` run (our models and RecBole's, on
our datasets and candidate sets, early stopping on ``valid_metric``); HyperTuning keeps the parameters
with the best validation score. The test metrics of each trial are reported and exported, never used
to select.

The search space is a RecBole ``.hyper`` file, one parameter per line::

    learning_rate choice [0.0005,0.001,0.005]
    reg_weight loguniform -16,-6
    n_experts choice [2,4,8]

(types: ``choice`` (a Python list), ``uniform low,high``, ``quniform low,high,q``, ``loguniform low,high``
with natural-log bounds). ``properties/hyper/MAMEX.hyper`` ships with the package; ``--hyper MAMEX.hyper``
finds it by name. ``algo``: ``exhaustive`` (every combination of ``choice`` parameters), ``random`` or
``bayes`` (TPE) with ``max_evals`` trials; the random draws are seeded (``HYPEROPT_FMIN_SEED``, default
``search_seed``).

Needs the ``hyper`` extra: ``pip install recbole-mamex[hyper]`` (hyperopt 0.2.5, RecBole's own pin;
0.2.7 breaks RecBole's exhaustive search: it hands hyperopt a ``RandomState`` where 0.2.7 wants a numpy
``Generator``).

For a cluster, RecBole's other route is Ray Tune (``ray`` 2.6.3 is installed with RecBole): see
:func:`tune_with_ray` and docs/user-guide/scaling-out.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import replace
from functools import partial
from pathlib import Path

from recbole_mamex.errors import RecboleMamexError
from recbole_mamex.paths import properties_dir

HYPER_TYPES = ("choice", "uniform", "quniform", "loguniform")
ALGOS = ("exhaustive", "random", "bayes")


class HyperFileError(RecboleMamexError, ValueError):
    """A search-space file that is missing or that RecBole's HyperTuning could not read."""


def resolve_params_file(path) -> Path:
    """``path`` as given, else a file of that name in the package's ``properties/hyper/``."""
    given = Path(path)
    if given.is_file():
        return given
    shipped = properties_dir() / "hyper" / given.name
    if shipped.is_file():
        return shipped
    available = sorted(p.name for p in (properties_dir() / "hyper").glob("*.hyper"))
    raise HyperFileError(f"{path}: no such search-space file (shipped with the package: {available})")


def _literal_choices(text: str) -> bool:
    """Whether ``text`` is a non-empty list literal (read by ``ast.literal_eval``, never run: RecBole's
    HyperTuning ``eval``s it)."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return isinstance(value, list) and bool(value)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


HYPER_LINE_MAX = 2**16


def read_params_file(path) -> dict[str, tuple[str, str]]:
    """Parameter -> (type, value text) of a ``.hyper`` file, checked line by line."""
    params = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise HyperFileError(f"{path}: expected a text file of '<parameter> <type> <values>' lines, found bytes that are not UTF-8 (at byte {err.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > HYPER_LINE_MAX:  # ast.literal_eval takes some 470 times a line's size in memory
            raise HyperFileError(f"{path}, line {number}: expected a line of at most {HYPER_LINE_MAX:,} characters, found {len(line):,}")
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 3 or parts[1] not in HYPER_TYPES:
            raise HyperFileError(
                f"{path}, line {number}: expected '<parameter> <{'|'.join(HYPER_TYPES)}> <values>', found {line.strip()!r}"
            )
        value = "".join(parts[2:])
        bounds = {"uniform": 2, "loguniform": 2, "quniform": 3}.get(parts[1])
        if bounds is not None and len(value.split(",")) != bounds:
            raise HyperFileError(f"{path}, line {number}: {parts[1]} expects {bounds} comma-separated numbers, found {value!r}")
        if parts[1] == "choice" and not _literal_choices(value):
            raise HyperFileError(
                f"{path}, line {number}: choice expects a list of numbers, strings, booleans or lists, written as "
                f"literals (like [1,2] or ['a','b']), found {value!r}"
            )
        if bounds is not None and not all(_is_float(part) for part in value.split(",")):
            raise HyperFileError(f"{path}, line {number}: {parts[1]} expects {bounds} comma-separated numbers, found {value!r}")
        params[parts[0]] = (parts[1], value)
    if not params:
        raise HyperFileError(f"{path}: expected at least one '<parameter> <type> <values>' line, found none")
    return params


def objective(params, config_file_list, spec) -> dict:
    """One trial (the function RecBole's ``HyperTuning`` calls with a trial's parameters and its fixed config
    files): train the run ``spec`` (a :class:`~recbole_mamex.runspec.RunSpec`) with ``params`` on top of its
    settings and return what ``HyperTuning`` reads (``best_valid_score`` selects; ``test_result`` is only
    reported)."""
    from recbole_mamex.quick_start import run_spec

    root = logging.getLogger()
    for handler in root.handlers[:]:  # as RecBole's objective_function: each trial logs to its own file
        root.removeHandler(handler)
    trial = replace(spec, config_files=tuple(config_file_list or ()), cmd_args=spec.cmd_args or ()).with_settings(**params)
    result = run_spec(trial)
    return {
        "model": spec.model,
        "best_valid_score": result["best_valid_score"],
        "valid_score_bigger": result["valid_score_bigger"],
        "best_valid_result": result["best_valid_result"],
        "test_result": result["test_result"],
        "model_file": result["model_file"],
    }


@contextlib.contextmanager
def _search_seed(seed: int):
    """hyperopt's fmin draws from ``HYPEROPT_FMIN_SEED`` when set (RecBole's HyperTuning passes no seed)."""
    previous = os.environ.get("HYPEROPT_FMIN_SEED")
    if previous is None:
        os.environ["HYPEROPT_FMIN_SEED"] = str(seed)
    try:
        yield
    finally:
        if previous is None:
            del os.environ["HYPEROPT_FMIN_SEED"]


def tune(
    spec,
    params_file,
    algo: str = "exhaustive",
    max_evals: int = 100,
    early_stop: int = 10,
    output_file=None,
    search_seed: int = 2020,
) -> dict:
    """Search ``params_file``'s space for the run ``spec`` (a :class:`~recbole_mamex.runspec.RunSpec`: model,
    dataset and the config every trial keeps) with RecBole's ``HyperTuning``.

    A tuned parameter may not also be set by ``spec.cmd_args`` (the command line), which would override
    it. ``early_stop``: stop after that many trials without improvement. ``output_file``: RecBole's export
    of every trial's valid and test metrics.

    Returns:
        dict with ``best_params``, ``best_valid_score``, ``best`` (the best trial's objective result) and
        ``trials`` (parameter string -> objective result, in trial order).
    """
    from recbole.trainer import HyperTuning

    try:
        import hyperopt  # noqa: F401
    except ImportError as err:
        raise ImportError("hyper-parameter search needs hyperopt: pip install 'recbole-mamex[hyper]'") from err
    if algo not in ALGOS:
        raise ValueError(f"algo: expected one of {ALGOS}, found {algo!r}")
    params_file = resolve_params_file(params_file)
    tuned = read_params_file(params_file)
    fixed_on_command_line = {arg[2:].split("=", 1)[0] for arg in spec.cmd_args or []}
    clash = sorted(fixed_on_command_line & set(tuned))
    if clash:
        raise HyperFileError(f"{params_file} tunes {clash}, which the command line also sets: remove them from one")
    hyper = HyperTuning(
        partial(objective, spec=spec),
        space=hyperopt_space(tuned),  # read here: RecBole's reading of a params_file eval()s its choice lists
        fixed_config_file_list=list(spec.config_files) or None,
        algo=algo,
        max_evals=max_evals,
        early_stop=early_stop,
    )
    with _search_seed(search_seed):
        hyper.run()
    if output_file:
        hyper.export_result(output_file=os.fspath(output_file))
    best_key = hyper.params2str(hyper.best_params)
    return {
        "best_params": hyper.best_params,
        "best_valid_score": hyper.best_score,
        "best": hyper.params2result[best_key],
        "trials": hyper.params2result,
    }


def hyperopt_space(params: dict[str, tuple[str, str]]) -> dict:
    """hyperopt's space for ``params`` (as :func:`read_params_file` returns them), with RecBole's reading
    of each type (``loguniform`` bounds are natural logs)."""
    import ast

    from hyperopt import hp

    space = {}
    for name, (kind, value) in params.items():
        if kind == "choice":
            space[name] = hp.choice(name, ast.literal_eval(value))
            continue
        bounds = [float(part) for part in value.split(",")]
        space[name] = {"uniform": hp.uniform, "quniform": hp.quniform, "loguniform": hp.loguniform}[kind](name, *bounds)
    return space


def ray_search_space(params_file) -> dict:
    """A ``.hyper`` file as a Ray Tune search space (``loguniform`` bounds are natural logs, as in RecBole's
    hyperopt reading)."""
    import ast
    import math

    from ray import tune as ray_tune

    space = {}
    for name, (kind, value) in read_params_file(params_file).items():
        if kind == "choice":
            space[name] = ray_tune.choice(ast.literal_eval(value))
            continue
        bounds = [float(part) for part in value.split(",")]
        if kind == "uniform":
            space[name] = ray_tune.uniform(*bounds)
        elif kind == "quniform":
            space[name] = ray_tune.quniform(*bounds)
        else:
            space[name] = ray_tune.loguniform(math.exp(bounds[0]), math.exp(bounds[1]))
    return space


def _ray_trial(params, spec, workdir):
    from ray.air import session

    os.chdir(workdir)  # Ray Tune 2.6 starts each trial in its own directory, whatever chdir_to_trial_dir says
    result = objective(params, spec.config_files, spec)
    session.report(
        {
            "best_valid_score": float(result["best_valid_score"]),
            **{f"valid_{key}": float(value) for key, value in result["best_valid_result"].items()},
            **{f"test_{key}": float(value) for key, value in result["test_result"].items()},
            "model_file": result["model_file"],
        }
    )


def tune_with_ray(
    spec,
    params_file,
    num_samples: int = 4,
    local_mode: bool = True,
    storage_dir=None,
    cpus_per_trial: float = 1,
) -> dict:
    """Random search of ``params_file``'s space for the run ``spec`` with Ray Tune (``ray[tune]``), one trial
    per sample, selecting on the best validation score; the cluster route (RecBole's ``run_hyper.py --tool
    Ray``).

    ``local_mode=True`` runs the trials one after another in this process (``ray.init(local_mode=True)``);
    ``local_mode=False`` connects to a running cluster when ``RAY_ADDRESS`` is set (``ray start --head``,
    then ``ray start --address=...`` on each node), else starts a local one. Every node must reach the
    same dataset directory (RecBole's ``data_path``) and this working directory's ``properties/``: trials
    run in the caller's working directory, not Ray's trial directory.

    Returns:
        dict with ``best_params``, ``best_valid_score``, ``best`` (the best trial's reported metrics) and
        ``trials`` (one dict of parameters and metrics per trial).
    """
    try:
        import pyarrow  # noqa: F401  (ray.tune's results need it; plain `ray` does not bring it)
        import ray
    except ImportError as err:
        raise ImportError("Ray Tune needs the ray extra: pip install 'recbole-mamex[ray]'") from err

    params_file = resolve_params_file(params_file)
    workdir = os.getcwd()
    started = not ray.is_initialized()
    if started:
        from recbole_mamex.distributed import AddressError, check_ray_address

        check_ray_address(None, "RAY_ADDRESS")
        try:
            ray.init(local_mode=local_mode, include_dashboard=False, log_to_driver=False)
        except ConnectionError as err:
            raise AddressError(f"RAY_ADDRESS: expected a running Ray cluster, found none ({err})") from None
    try:
        return _run_ray(params_file, spec, num_samples, storage_dir, cpus_per_trial, workdir)
    finally:
        os.chdir(workdir)
        if started:
            ray.shutdown()


def _run_ray(params_file, spec, num_samples, storage_dir, cpus_per_trial, workdir) -> dict:
    from ray import tune as ray_tune

    trainable = ray_tune.with_parameters(_ray_trial, spec=replace(spec, cmd_args=spec.cmd_args or ()), workdir=workdir)
    analysis = ray_tune.run(
        ray_tune.with_resources(trainable, {"cpu": cpus_per_trial}),
        config=ray_search_space(params_file),
        num_samples=num_samples,
        metric="best_valid_score",
        mode="max",
        storage_path=os.fspath(storage_dir or Path(workdir) / "ray_results"),
        verbose=1,
    )
    trials = [{**trial.config, **trial.last_result} for trial in analysis.trials]
    best = analysis.best_trial
    return {
        "best_params": best.config,
        "best_valid_score": best.last_result["best_valid_score"],
        "best": best.last_result,
        "trials": trials,
    }
