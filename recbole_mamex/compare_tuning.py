"""Equal-budget tuning inside a comparison (``python -m recbole_mamex.compare ... --tune N``).

Every row (a model, or a ``--variant`` of one) gets the same ``N`` trials of hyperopt's TPE
(:func:`recbole_mamex.tuning.tpe_search`, seeded with the first ``--seeds`` value) over its model's
search space, ``properties/hyper/<Model>.hyper`` (the working directory's ``properties/hyper/`` first,
then the one shipped with the package). A trial trains on the first split with the first seed, early
stopping on validation, and scores by its best validation ``valid_metric``; test results are not kept.
Keys that the row fixes (``--set``, the variant's own settings) are left out of its space. The
parameters of the best trial then train with every (split, seed) like any other run; a row whose model
has no search space (Pop has no parameters) runs untuned, and the tables say so.

Trials are saved as they finish (``<out>/tuning/<row>/trial-NNN.json``, with the identity of the data they
read; the search's own settings in ``search.json``); an interrupted tuning goes on where it stopped, and a
stored trial that cannot be read, or was made with other settings or on data that has changed since, is
refused (or trained again with ``--rerun``), as runs are. A trial whose training diverges, or whose
validation evaluated no user (a NaN score), is a failed trial and the search goes on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from recbole_mamex.config import listed_differences
from recbole_mamex.data.identity import data_identity, identity_differences
from recbole_mamex.parallel import EpochLog
from recbole_mamex.paths import properties_dir
from recbole_mamex.records import (
    CompareError,
    RecordFileError,
    check_trial_record,
    read_record,
    setting_differences,
    versions,
    write_json_atomic,
)
from recbole_mamex.tuning import (
    TPE_RANDOM_STARTS,
    TrialFailed,
    TrialRecordMismatch,
    best_trial,
    read_params_file,
    tpe_search,
)


def hyper_file_for(model: str) -> Path | None:
    """``properties/hyper/<model>.hyper`` of the working directory, else the package's; ``None`` if neither."""
    for root in (Path.cwd() / "properties", properties_dir()):
        path = root / "hyper" / f"{model}.hyper"
        if path.is_file():
            return path
    return None


@dataclass
class RowTuning:
    """The tuning of one comparison row."""

    row: str
    model: str
    n_trials: int
    space_file: Path | None  # None: the model has no search space, the row runs untuned
    space: dict = field(default_factory=dict)  # parameter -> (type, values), the row's fixed keys removed
    fixed: list = field(default_factory=list)  # space parameters the row fixes (left out of the search)
    trials: list = field(default_factory=list)
    best: dict | None = None
    tuned_on: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)  # the search's own settings (search.json)

    @property
    def params(self) -> dict:
        """The parameters the row's runs train with (none when untuned or every trial failed)."""
        return dict(self.best["params"]) if self.best else {}

    def label(self) -> str:
        if self.space_file is None:
            return f"{self.row} (untuned: no search space)"
        if self.best is None:
            return f"{self.row} (untuned: every trial failed)"
        return f"{self.row} (tuned, {self.n_trials} trials)"

    def record(self) -> dict:
        """What a run record keeps about the tuning of its parameters."""
        return {
            "trials": self.n_trials,
            "space_file": str(self.space_file) if self.space_file else None,
            "selected_trial": self.best["trial"] if self.best else None,
            "params": self.params,
            "valid_score": self.best["score"] if self.best else None,
            "tuned_on": self.tuned_on,
        }


def training_diverged(err: BaseException) -> bool:
    """Whether ``err`` ended a training whose loss became NaN: this package's trainers raise
    :class:`~recbole_mamex.trainer.resume.TrainingDivergedError`, RecBole's own ``ValueError("Training loss
    is nan")``. The one test of it, for tuning trials (a failed trial) and comparison runs (an error naming
    the run)."""
    from recbole_mamex.trainer.resume import TrainingDivergedError

    return isinstance(err, TrainingDivergedError) or (isinstance(err, ValueError) and "training loss is nan" in str(err).lower())


RERUN_TRIALS = "use --rerun to run the trials again (their records are replaced), or move the file away"


def _trial_dir(out: Path, row: str) -> Path:
    return out / "tuning" / row


def _trial_file(out: Path, row: str, number: int) -> Path:
    return _trial_dir(out, row) / f"trial-{number:03d}.json"


def tune_rows(rows, resolve, n_trials: int, split, seed: int, protocol: str, config_files, out: Path, plan,
              runner, rerun: bool = False, log=print, rows_at_once: int = 1, on_interrupt=None) -> dict[str, RowTuning]:
    """Tune every row (see the module docstring); returns row -> :class:`RowTuning`.

    ``resolve(row)`` -> (model, fixed settings); ``split``: the :class:`recbole_mamex.compare.Split` to
    tune on; ``plan(row, seed, dataset, params)`` -> the final config of a trial; ``runner``: as
    :func:`recbole_mamex.compare.run_one`. Stored trials are checked for every row before any trial trains.
    ``rows_at_once`` > 1: that many rows tune at once (each row's trials one after the other, as TPE picks
    each trial from the earlier ones), from threads calling ``runner``, which hands the trials to a backend
    of :mod:`recbole_mamex.parallel`; ``on_interrupt()`` ends the trials in progress on an interrupt.
    """

    tunings, stored = {}, {}
    for row in rows:
        model, settings = resolve(row)
        tuning = RowTuning(row, model, n_trials, hyper_file_for(model),
                           tuned_on={"dataset": split.dataset, "split_seed": split.seed, "seed": seed})
        tunings[row] = tuning
        if tuning.space_file is None:
            log(f"{row}: no properties/hyper/{model}.hyper, so it runs untuned (its defaults)")
            continue
        space = read_params_file(tuning.space_file)
        tuning.fixed = sorted(set(space) & set(settings))
        tuning.space = {name: value for name, value in space.items() if name not in settings}
        if not tuning.space:
            raise CompareError(f"{row}: every parameter of {tuning.space_file} is fixed by --set or the variant: nothing to tune")
        search = {"space": {k: list(v) for k, v in tuning.space.items()}, "search_seed": seed, "random_starts": TPE_RANDOM_STARTS,
                  "dataset": split.dataset, "split_seed": split.seed, "seed": seed, "protocol": protocol}
        search_file = _trial_dir(out, row) / "search.json"
        before = search
        if search_file.exists():
            try:
                before = read_record(search_file, proceed=RERUN_TRIALS)
            except RecordFileError:
                if not rerun:
                    raise
                before = None
        if before != search and not rerun:
            raise CompareError(
                f"{search_file}: trials of another search ({_search_differences(before, search)}). "
                "Use another --out to keep both, or --rerun to run the trials again (their records are replaced)"
            )
        stored[row] = {}
        stale, undated = [], []
        for number in range(1, n_trials + 1):
            path = _trial_file(out, row, number)
            if not path.exists() or before != search:
                continue
            try:
                trial = check_trial_record(path, read_record(path, proceed=RERUN_TRIALS), number, proceed=RERUN_TRIALS)
            except RecordFileError:
                if not rerun:
                    raise
                continue  # trained again
            planned = plan(row, seed, split.dataset, trial["params"])
            diffs = setting_differences(trial, planned)
            if diffs and not rerun:
                raise CompareError(
                    f"{path}: a finished trial made with other settings than this command: {listed_differences(diffs)}"
                    ". Use another --out to keep both, or --rerun to run the differing trials again"
                )
            if diffs:
                continue
            now = data_identity(planned)
            if "data_identity" not in trial:
                undated.append(path.name)
            elif now and identity_differences(trial["data_identity"], now):
                stale.append((path.name, identity_differences(trial["data_identity"], now)))
                continue
            stored[row][number] = trial
        if stale:
            changes = listed_differences(sorted({c for _, changed in stale for c in changed}))
            text = (f"{_trial_dir(out, row)}: {len(stale)} finished trial(s) were trained on data that has changed since "
                    f"({changes}): {', '.join(name for name, _ in stale)}")
            if not rerun:
                raise CompareError(f"{text}. Use --rerun to run them again on the data there now (their records are "
                                   "replaced), or another --out to keep them apart")
            log(f"{text}: run again (--rerun)")
        if undated:
            log(f"note: {len(undated)} finished trial(s) of {row} were recorded before records stored their data's identity "
                f"({', '.join(undated[:4])}{' ...' if len(undated) > 4 else ''}): reused without checking that the data is "
                "the same")
        tuning.search = search

    def tune(row):
        tuning = tunings[row]
        model, settings = resolve(row)
        log(f"{row}: tuning, {n_trials} trials of TPE over {sorted(tuning.space)} on {split.dataset}, seed {seed}")
        write_json_atomic(_trial_dir(out, row) / "search.json", tuning.search)

        def objective(params, _model=model, _settings=settings, _row=row):
            try:
                record = runner(_model, seed, split.dataset, protocol, list(config_files), {**_settings, **params},
                                EpochLog(f"{_row} trial", log), saved=False)
            except ValueError as err:
                if not training_diverged(err):
                    raise
                raise TrialFailed(str(err)) from None
            if math.isnan(record["best_valid_score"]):
                raise TrialFailed("no user evaluated in validation (score NaN)")
            return record["best_valid_score"], {k: record[k] for k in ("valid_metric", "best_valid", "best_epoch",
                                                                    "epochs_trained", "wall_s")}

        def keep(trial, _row=row):
            planned = plan(_row, seed, split.dataset, trial["params"])
            trial = {**trial, "config": planned, "versions": versions(), "data_identity": data_identity(planned)}
            write_json_atomic(_trial_file(out, _row, trial["trial"]), trial)

        def replay(number, _row=row):
            return stored[_row].get(number)

        try:
            tuning.trials = tpe_search(objective, tuning.space, n_trials, seed, stored=replay, store=keep, log=log)
        except TrialRecordMismatch as err:
            if not rerun:
                raise CompareError(f"{_trial_dir(out, row)}: {err} (another hyperopt version?); use --rerun to run the trials again") from None
            stored[row] = {}
            tuning.trials = tpe_search(objective, tuning.space, n_trials, seed, store=keep, log=log)
        tuning.best = best_trial(tuning.trials)
        chosen = f"trial {tuning.best['trial']}, valid {tuning.best['score']:.4f}: {tuning.params}" if tuning.best else "every trial failed"
        log(f"{row}: selected {chosen}")

    searched = [row for row, tuning in tunings.items() if tuning.space_file is not None]
    if rows_at_once <= 1:
        for row in searched:
            tune(row)
    else:
        from recbole_mamex.parallel import locked_log, run_concurrently

        log = locked_log(log)
        for _ in run_concurrently([lambda r=row: tune(r) for row in searched], rows_at_once, on_interrupt=on_interrupt):
            pass
    return tunings


def _search_differences(before: dict, now: dict) -> str:
    keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return "; ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys)


def tuning_markdown(tunings: dict[str, RowTuning], title: str) -> str:
    """``tuning.md``: every row's space, trials (validation scores only) and the selected trial."""
    lines = [f"# Tuning: {title}", ""]
    for tuning in tunings.values():
        lines += [f"## {tuning.row}", ""]
        if tuning.space_file is None:
            lines += [f"No search space (`properties/hyper/{tuning.model}.hyper`): runs with its defaults.", ""]
            continue
        on = tuning.tuned_on
        split = f", split {on['split_seed']}" if on.get("split_seed") is not None else ""
        lines.append(f"Space `{tuning.space_file.name}`; {tuning.n_trials} trials of TPE on {on['dataset']}{split}, seed {on['seed']}; "
                     "selected on the best validation score (test is not looked at).")
        if tuning.fixed:
            lines.append(f"Fixed by the row, not searched: {', '.join(f'`{k}`' for k in tuning.fixed)}.")
        names = list(tuning.space)
        lines += ["", "| trial | " + " | ".join(names) + " | status | valid score | best epoch | epochs | wall s |",
                  "|---|" + "---|" * (len(names) + 5)]
        for trial in tuning.trials:
            chosen = tuning.best is not None and trial["trial"] == tuning.best["trial"]
            values = [_value_text(trial["params"][n]) for n in names]
            details = trial.get("details") or {}
            status = trial["status"] if trial["status"] != "repeat" else f"repeat of {trial['repeat_of']}"
            score = "-" if trial["score"] is None else f"{trial['score']:.4f}"
            score = f"**{score}**" if chosen else score
            wall = "-" if trial["status"] == "repeat" or "wall_s" not in details else f"{details['wall_s']:.0f}"
            lines.append(f"| {trial['trial']} | " + " | ".join(values)
                         + f" | {status} | {score} | {details.get('best_epoch', '-')} | {details.get('epochs_trained', '-')} | {wall} |")
        lines += ["", f"Selected: {tuning.params if tuning.best else 'none (every trial failed; defaults)'}", ""]
    return "\n".join(lines)


def _value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return re.sub(r"\|", "/", str(value))
