"""Run records of a comparison (runs and tuning trials): what they store beside the metrics (the package
versions, the data's identity), how they are written (atomically, into an output folder one comparison
holds at a time), how a stored record is read (every field a comparison uses checked) and how it is
checked against the settings and the data a command would use now."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_mamex.config import is_int, is_number
from recbole_mamex.errors import CompareError, InputFileError
from recbole_mamex.files import OutputError, atomic_write_text, pid_lock, read_json


RERUN_HINT = "use --rerun to train it again (its record is replaced), or move the file away"


class RecordFileError(InputFileError, CompareError):
    """A stored record (a run's or a tuning trial's) that cannot be used: unreadable, or a field of the wrong
    type or out of range. The message names the file, the field, what was expected and found, and how to
    go on."""

    def __init__(self, path, expected: str, found: str, proceed: str = RERUN_HINT):
        super().__init__(path, expected, f"{found}; {proceed}")


class OutputFileError(OutputError, CompareError):
    """A file of a comparison's output that could not be written (a full disk, a read-only folder): the
    :class:`~recbole_mamex.files.OutputError` line ("cannot write PATH: cause") with how to go on, and a
    :class:`CompareError`."""

    HINT = "free space or give write access there and run the same command again (the runs that finished are kept)"

    def __init__(self, path, err: OSError):
        super().__init__(path, err, hint=self.HINT)


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


VERSION_KEYS = ("recbole_mamex", "recbole", "torch")


def jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def write_output(path: Path, text: str) -> None:
    """:func:`atomic_write_text` of an output file; an ``OSError`` is an :class:`OutputFileError` naming it."""
    try:
        atomic_write_text(path, text)
    except OSError as err:
        raise OutputFileError(path, err) from None


def write_json_atomic(path: Path, payload: dict) -> None:
    """A record as JSON (a metric of a candidate set with no evaluated user is ``NaN``, as Python's json
    writes it), through :func:`write_output`."""
    write_output(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- one comparison per folder
LOCK_FILE = ".compare.lock"


@contextlib.contextmanager
def locked_output(out: Path):
    """Hold ``<out>/.compare.lock`` (``fcntl.flock``, not waiting) for the block: a second comparison into the
    same folder is refused (naming the process that holds it) instead of replacing the first one's records
    and summary. Opening the lock and writing this process's id into it is also the check that the folder
    can be written, before any work. The lock goes with the process (a killed comparison holds nothing);
    worker processes of ``--jobs`` do not take it, and this process writes every record."""
    out = Path(out)
    lock = out / LOCK_FILE

    def refuse(holder):
        raise CompareError(
            f"--out {out}: expected a folder no other comparison is writing, found one held by process {holder} "
            f"({lock}); wait for it to end, or choose another --out"
        )

    def unwritable(err, step):
        where = f" (writing {lock})" if step == "write" else ""
        return CompareError(f"--out {out}: expected a folder this process can write, found {type(err).__name__}: "
                            f"{err.strerror or err}{where}")

    with pid_lock(lock, refuse, unwritable):
        yield


# ----------------------------------------------------------------------------- reading stored records
def read_record(path: Path, proceed: str = RERUN_HINT) -> dict:
    """A stored record's JSON object (``NaN`` read as a float), read by :func:`~recbole_mamex.files.read_json`;
    an unreadable, empty, truncated, non-UTF-8 or non-object file is a :class:`RecordFileError` naming it."""
    record = read_json(path, functools.partial(RecordFileError, proceed=proceed), "a JSON record written by compare",
                       parse_hint="truncated?")
    if not isinstance(record, dict):
        raise RecordFileError(path, "a JSON object (a record written by compare)", f"a JSON {type(record).__name__}", proceed)
    return record


# Metrics whose values are shares (RecBole's top-k and AUC metrics and its share-valued item metrics): in [0, 1].
SHARE_METRICS = frozenset({"recall", "ndcg", "precision", "hit", "mrr", "map", "auc", "gauc", "itemcoverage",
                           "giniindex", "tailpercentage"})


def _shown(value) -> str:
    kind = {str: "string", bool: "boolean", list: "list", dict: "object", type(None): "null"}.get(type(value))
    text = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{text} (a {kind})" if kind else text


class _Fields:
    """Field checks of one record, each failure a :class:`RecordFileError` naming the file and the field."""

    def __init__(self, path, record: dict, proceed: str, prefix: str = ""):
        self.path, self.record, self.proceed, self.prefix = path, record, proceed, prefix

    def fail(self, field: str, expected: str, value) -> None:
        raise RecordFileError(self.path, f"{self.prefix}{field} to be {expected}", _shown(value), self.proceed)

    def get(self, field: str, test, expected: str, required: bool = False, optional_null: bool = True):
        if field not in self.record:
            if required:
                raise RecordFileError(self.path, f"a field {self.prefix}{field} ({expected})", "none", self.proceed)
            return None
        value = self.record[field]
        if value is None and optional_null and not required:
            return None
        if not test(value):
            self.fail(field, expected, value)
        return value

    def mapping(self, field: str, required: bool = False):
        return self.get(field, lambda v: isinstance(v, dict), "an object", required)

    def count(self, field: str):
        return self.get(field, lambda v: is_int(v) and v >= 0, "an integer >= 0 or null")

    def amount(self, field: str):
        return self.get(field, lambda v: is_number(v) and math.isfinite(v) and v >= 0, "a finite number >= 0 or null")

    def common(self) -> None:
        """What every record of a comparison may hold, if it holds it."""
        self.mapping("config")
        versions_ = self.mapping("versions")
        if versions_ is not None:
            for key, value in versions_.items():
                if not isinstance(value, str):
                    self.fail(f"versions.{key}", "a version string", value)
        identity = self.mapping("data_identity")
        if identity is not None:
            for key, value in identity.items():
                if not isinstance(value, str):
                    self.fail(f"data_identity.{key}", "a file hash (a string)", value)


def metric_problem(name: str, value) -> str | None:
    """What is wrong with a stored metric value (``None``: nothing). NaN is a value: the run evaluated no
    user in that candidate set."""
    if not is_number(value):
        return "a number"
    if math.isnan(value):
        return None
    kind = name.split("@")[0].lower()
    if kind in SHARE_METRICS:
        return None if 0 <= value <= 1 else "a number in [0, 1] (or NaN: no user evaluated)"
    return None if math.isfinite(value) and value >= 0 else "a finite number >= 0 (or NaN: no user evaluated)"


def check_run_record(path, record: dict, model: str, seed: int, split_seed: int | None = None, kinds=None,
                     metrics=(), proceed: str = RERUN_HINT) -> dict:
    """``record`` (read from ``path``, the file of run ``model`` / ``seed`` / ``split_seed``) with every field a
    comparison reads checked: the run its file name says, ``dataset`` and ``protocol`` strings, ``results``
    (candidate set -> metric -> value; ``kinds``: the candidate sets it may hold, given; ``metrics``: the
    metrics each must hold; shares in [0, 1], NaN where no user was evaluated), ``config``, ``versions``,
    ``variant``, ``tuning`` and ``data_identity`` objects, and the training figures of the summary."""
    fields = _Fields(path, record, proceed)
    fields.get("model", lambda v: v == model, f"'{model}', the model of the file's name (a string)", required=True)
    fields.get("seed", lambda v: is_int(v) and v == seed, f"{seed}, the seed of the file's name (an integer)", required=True)
    if split_seed is None:
        fields.get("split_seed", lambda v: False, "absent (the file's name has no split)")
    else:
        fields.get("split_seed", lambda v: is_int(v) and v == split_seed,
                   f"{split_seed}, the split seed of the file's name (an integer)", required=True)
    for name in ("dataset", "protocol"):
        fields.get(name, lambda v: isinstance(v, str), "a string", required=True)
    results = fields.get("results", lambda v: isinstance(v, dict) and v and all(isinstance(m, dict) for m in v.values()),
                         "an object: candidate set -> {metric: value}", required=True)
    if kinds is not None and not set(results) <= set(kinds):
        fields.fail("results", f"an object of the candidate sets {list(kinds)}", sorted(results))
    for kind, values in results.items():
        missing = [m for m in metrics if m not in values]
        if missing:
            raise RecordFileError(path, f"results.{kind} to hold the metrics {list(metrics)}", f"{missing} missing", proceed)
        for name, value in values.items():
            problem = metric_problem(name, value)
            if problem:
                fields.fail(f"results.{kind}.{name}", problem, value)
    fields.common()
    fields.mapping("variant")
    fields.get("model_class", lambda v: isinstance(v, str), "a model name (a string)")
    tuning = fields.mapping("tuning")
    if tuning is not None and not isinstance(tuning.get("params", {}) or {}, dict):
        fields.fail("tuning.params", "an object", tuning.get("params"))
    fields.amount("wall_s")
    fields.amount("peak_rss_gb")
    fields.count("best_epoch")
    fields.count("epochs_trained")
    return record


TRIAL_STATUSES = ("ok", "failed", "repeat", "pruned")


def _is_curve(value) -> bool:
    """A validation curve: [epoch, score] pairs, epochs integers >= 0 in increasing order, scores numbers."""
    if not isinstance(value, list):
        return False
    epochs = []
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and is_int(pair[0]) and pair[0] >= 0 and is_number(pair[1])):
            return False
        epochs.append(pair[0])
    return epochs == sorted(set(epochs))


def check_trial_record(path, trial: dict, number: int, proceed: str = RERUN_HINT) -> dict:
    """A stored tuning trial (``trial-NNN.json``) with every field the tuning reads checked: its number,
    ``params``, ``status``, ``score`` (a finite number: the best validation score, so far for a pruned
    trial; null for a failed one), ``repeat_of``, ``details`` (with the figures ``tuning.md`` shows and the
    validation curve the pruner replays), ``config``, ``versions`` and ``data_identity``."""
    fields = _Fields(path, trial, proceed)
    fields.get("trial", lambda v: is_int(v) and v == number, f"{number}, the number of the file's name", required=True)
    fields.mapping("params", required=True)
    status = fields.get("status", lambda v: v in TRIAL_STATUSES, f"one of {', '.join(TRIAL_STATUSES)}", required=True)
    if status == "failed":
        fields.get("score", lambda v: v is None, "null (a failed trial)", optional_null=False)
    else:
        fields.get("score", lambda v: is_number(v) and math.isfinite(v), "a finite number", required=True)
    fields.get("repeat_of", lambda v: is_int(v) and v >= 1 and v != number, "the number of another trial",
               required=status == "repeat")
    details = fields.mapping("details", required=status == "pruned")
    if details is not None:
        sub = _Fields(path, details, proceed, prefix="details.")
        sub.amount("wall_s")
        sub.amount("cpu_s")
        sub.count("best_epoch")
        sub.count("epochs_trained")
        sub.count("pruned_at")
        sub.get("valid_curve", _is_curve, "a list of [epoch, score] pairs, epochs increasing")
    fields.common()
    return trial


def row_settings(record: dict) -> tuple[str, dict]:
    """(model class, settings) a comparison row trained a run record with: its variant's settings, then the
    parameters its tuning selected (the rest of the record's config came from defaults and config files)."""
    params = (record.get("tuning") or {}).get("params") or {}
    return record.get("model_class", record["model"]), {**(record.get("variant") or {}), **params}


def setting_differences(record: dict, planned: dict) -> list[str]:
    """``key: recorded -> planned`` for every setting (and version) that differs, neutral keys left out."""
    from recbole_mamex.config import config_differences

    diffs = config_differences(record.get("config") or {}, planned)
    now = versions()
    diffs += [f"{k} version: {record.get('versions', {}).get(k)!r} -> {now[k]!r}" for k in VERSION_KEYS
              if record.get("versions", {}).get(k) != now[k]]
    return diffs
