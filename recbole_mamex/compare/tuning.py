"""Equal-budget tuning inside a comparison (``python -m recbole_mamex.compare ... --tune N``).

Every row (a model, or a ``--variant`` of one) gets the same ``N`` trials of TPE
(:mod:`recbole_mamex.search`, seeded with the first ``--seeds`` value; ``--prune median`` or ``stalled``:
with a median pruner, off by default) over
its model's search space, ``properties/hyper/<Model>.hyper`` (the working directory's
``properties/hyper/`` first, then the one shipped with the package). A trial trains on the first split
with the first seed, early stopping on validation, and scores by its best validation ``valid_metric``;
test results are not kept. A trial the pruner stops is recorded as pruned, with the epoch it reached, and
is never selected. Keys that the row fixes (``--set``, the variant's own settings) are left out of its
space. The parameters of the best trial then train with every (split, seed) like any other run; a row
whose model has no search space (Pop has no parameters) runs untuned, and the tables say so.

Trials are saved as they finish (``<out>/tuning/<row>/trial-NNN.json``, with their validation curve and
the identity of the data they read; the search's own settings in ``search.json``); an interrupted tuning
goes on where it stopped (the stored trials are replayed into the search, not trained again), and a
stored trial that cannot be read, or was made with other settings or on data that has changed since, is
refused (or trained again with ``--rerun``), as runs are. A trial whose training diverges, or whose
validation evaluated no user (a NaN score), is a failed trial and the search goes on. With ``--jobs N``
(or ``--ray``) N trials train at once, of one row or several.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from recbole_mamex.compare.running import training_diverged
from recbole_mamex.compare.stats import CAP_MARK, CAP_MEANING, capped_run
from recbole_mamex.config import listed_differences
from recbole_mamex.data.identity import data_identity, identity_differences
from recbole_mamex.errors import CompareError
from recbole_mamex.parallel import EpochLog
from recbole_mamex.paths import properties_dir
from recbole_mamex.records import (
    RecordFileError,
    check_trial_record,
    read_record,
    setting_differences,
    versions,
    write_json_atomic,
)
from recbole_mamex.search import PRUNERS, TrialPruned, best_trial
from recbole_mamex.tuning import read_params_file


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


RERUN_TRIALS = "use --rerun to run the trials again (their records are replaced), or move the file away"


def _trial_dir(out: Path, row: str) -> Path:
    return out / "tuning" / row


def _trial_file(out: Path, row: str, number: int) -> Path:
    return _trial_dir(out, row) / f"trial-{number:03d}.json"


def tune_rows(plan, n_trials: int, split, seed: int, out: Path, runner, rerun: bool = False, log=print, jobs: int = 1,
              on_interrupt=None, pruner: str = "none") -> dict[str, RowTuning]:
    """Tune every row of ``plan`` (a :class:`~recbole_mamex.compare.plan.Plan`; see the module docstring);
    returns row -> :class:`RowTuning`.

    ``split``: the :class:`~recbole_mamex.compare.plan.Split` to tune on, with ``seed``; a trial is the
    row's untuned run with the trial's parameters (:meth:`Plan.spec`, not saved), its final config
    :meth:`Plan.config`; ``runner(spec, on_epoch)``: as :func:`recbole_mamex.compare.running.run_one`.
    Stored trials are checked for every row before any trial trains. ``jobs`` > 1: that many trials at
    once, from threads calling ``runner`` (which hands them to a backend of :mod:`recbole_mamex.parallel`):
    the rows' trials interleave, a row with fewer trials running first, so one row's trials also run at
    once when the other rows are done; ``on_interrupt()`` ends the trials in progress on an interrupt.
    ``pruner``: ``none``, ``median`` or ``stalled`` (:mod:`recbole_mamex.search`; ``compare --prune``).
    """
    from recbole_mamex.search import Search, StoredTrialError, score_text

    tunings, searches = {}, {}
    protocol = plan.protocol
    discarded = []  # rows whose stored trials belong to another search, which --rerun replaces

    def trial_config(row, params):
        return plan.config(plan.spec(row, seed, split.dataset, params=params, saved=False)) or {}

    for row in plan.rows:
        model, settings = plan.model_of(row), plan.settings_of(row, tuned=False)
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
        horizon = trial_config(row, {}).get("epochs")  # the config's epoch cap
        tuning.search = search_settings(tuning.space, seed, split, protocol, pruner)
        stored = _stored_trials(row, tuning.search, n_trials, out, lambda params, r=row: trial_config(r, params), rerun, log)
        try:
            searches[row] = Search(tuning.space, n_trials, seed, stored or {}, pruner=pruner, horizon=horizon)
        except StoredTrialError as err:
            if not rerun:
                raise CompareError(f"{_trial_dir(out, row)}: {err}; {RERUN_TRIALS}") from None
            stored = None
            searches[row] = Search(tuning.space, n_trials, seed, {}, pruner=pruner, horizon=horizon)
        if stored is None:  # --rerun of another search: its trials go, none is taken into this one later
            discarded.append(row)
        for record in searches[row].trials():
            log(f"  {row} trial {record['trial']}/{n_trials}: done before ({score_text(record)})")

    for row, search in searches.items():
        if row in discarded:
            for path in sorted(_trial_dir(out, row).glob("trial-*.json")):
                path.unlink()
            log(f"{row}: the trials of the earlier search are removed (--rerun)")
        write_json_atomic(_trial_dir(out, row) / "search.json", tunings[row].search)
        if not search.done():
            log(f"{row}: tuning, {n_trials - len(search.records)} of {n_trials} trials of TPE "
                f"({ {'median': 'median pruner', 'stalled': 'median pruner on stalled trials'}.get(pruner, 'no pruner')}) over {sorted(tunings[row].space)} on "
                f"{split.dataset}, seed {seed}")

    def train(row, asked) -> dict:
        number = asked.number
        log(f"  {row} trial {number}/{n_trials}: {asked.params}")
        trial = {"trial": number, "params": asked.params}
        start = time.time()
        try:
            record = runner(plan.spec(row, seed, split.dataset, params=asked.params, saved=False),
                            EpochLog(f"{row} trial {number}", log, monitor=asked.monitor))
        except TrialPruned as pruned:
            info = pruned.info
            return {**trial, "status": "pruned", "score": info["score"],
                    "details": {"pruned_at": info["epoch"], "epochs_trained": info["epoch"] + 1,
                                "wall_s": info.get("wall_s", time.time() - start), "cpu_s": info.get("cpu_s"),
                                "torch_threads": info.get("torch_threads"), "valid_curve": _plain_curve(info["curve"])}}
        except ValueError as err:
            if not training_diverged(err):
                raise
            return {**trial, "status": "failed", "score": None, "error": str(err), "details": {"wall_s": time.time() - start}}
        if math.isnan(record["best_valid_score"]):
            return {**trial, "status": "failed", "score": None, "error": "no user evaluated in validation (score NaN)",
                    "details": {"wall_s": record.get("wall_s"), "cpu_s": record.get("cpu_s"),
                                "torch_threads": record.get("torch_threads")}}
        details = {k: record[k] for k in ("valid_metric", "best_valid", "best_epoch", "epochs_trained", "wall_s")}
        details.update(cpu_s=record.get("cpu_s"), torch_threads=record.get("torch_threads"),
                       valid_curve=_plain_curve(record.get("valid_curve") or []))
        return {**trial, "status": "ok", "score": float(record["best_valid_score"]), "details": details}

    lock = threading.Lock()
    order = list(searches)
    stop = threading.Event()  # an error or an interrupt: no trial starts after it

    def next_trial():
        with lock:
            if stop.is_set():
                return None
            open_rows = [row for row in order if searches[row].can_ask()]
            if not open_rows:
                return None
            row = min(open_rows, key=lambda r: (searches[r].running, order.index(r)))
            return row, searches[row].ask()

    def finish(row, asked, trial):
        planned = trial_config(row, trial["params"])
        trial = {**trial, "config": planned, "versions": versions(), "data_identity": data_identity(planned)}
        with lock:
            write_json_atomic(_trial_file(out, row, trial["trial"]), trial)
            searches[row].tell(asked, trial)
            log(f"  {row} trial {trial['trial']}/{n_trials}: {score_text(trial)}")
            if searches[row].done():
                _select(tunings[row], searches[row], log)

    def work():
        while (job := next_trial()) is not None:
            row, asked = job
            try:
                finish(row, asked, asked.record if asked.record is not None else train(row, asked))
            except BaseException:
                stop.set()
                with lock:
                    searches[row].abandon(asked)
                raise

    def interrupted():
        stop.set()
        if on_interrupt is not None:
            on_interrupt()

    for row, search in searches.items():
        if search.done():
            _select(tunings[row], search, log)
    if jobs <= 1:
        work()
    else:
        from recbole_mamex.parallel import locked_log, run_concurrently

        log = locked_log(log)
        for _ in run_concurrently([work] * jobs, jobs, on_interrupt=interrupted):
            pass
    return tunings


def _select(tuning: RowTuning, search, log) -> None:
    tuning.trials = search.trials()
    tuning.best = best_trial(tuning.trials)
    chosen = (f"trial {tuning.best['trial']}, valid {tuning.best['score']:.4f}: {tuning.params}" if tuning.best
              else "no trial finished (every one failed or was pruned)")
    log(f"{tuning.row}: selected {chosen}")


def _plain_curve(curve) -> list:
    """A validation curve as JSON-ready [epoch, score] pairs."""
    return [[int(epoch), float(score)] for epoch, score in curve]


def search_settings(space: dict, seed: int, split, protocol: str, pruner: str) -> dict:
    """What ``search.json`` holds: a stored trial is replayed only into a search with the same settings."""
    from recbole_mamex.search import MEDIAN_STARTUP_TRIALS, MEDIAN_WARMUP_EPOCHS, STALL_EPOCHS, TPE_RANDOM_STARTS

    pruning = {"rule": "none"}
    if pruner in ("median", "stalled"):
        pruning = {"rule": pruner, "startup_trials": MEDIAN_STARTUP_TRIALS, "warmup_epochs": MEDIAN_WARMUP_EPOCHS}
    if pruner == "stalled":
        pruning["stall_epochs"] = STALL_EPOCHS
    return {"space": {k: list(v) for k, v in space.items()}, "search_seed": seed, "sampler": "optuna TPE, seeded per trial",
            "random_starts": TPE_RANDOM_STARTS, "pruner": pruning, "dataset": split.dataset, "split_seed": split.seed,
            "seed": seed, "protocol": protocol}


def _stored_trials(row, search, n_trials, out, config_of, rerun, log) -> dict[int, dict] | None:
    """The row's stored trials that this search replays (number -> record), each checked; those made with
    other settings (``config_of(params)``: a trial's final config) or on data changed since refused (or
    left to train again with ``rerun``). ``None``: the stored trials are another search's (another space,
    seed, sampler or pruner) and ``rerun`` replaces them all."""
    search_file = _trial_dir(out, row) / "search.json"
    before = search
    if search_file.exists():
        try:
            before = read_record(search_file, proceed=RERUN_TRIALS)
        except RecordFileError:
            if not rerun:
                raise
            before = None
    if before != search:
        if not rerun:
            differing = {k for k in set(before or {}) | set(search) if (before or {}).get(k) != search.get(k)}
            rule = ((before or {}).get("pruner") or {}).get("rule")
            go_on = (f"--prune {rule} to go on with that search, " if differing == {"pruner"} and rule in PRUNERS else "")
            raise CompareError(
                f"{search_file}: trials of another search ({_search_differences(before, search)}). "
                f"Use {go_on}another --out to keep both, or --rerun to run the trials again (their records are replaced)"
            )
        return None
    stored, stale, undated = {}, [], []
    for number in range(1, n_trials + 1):
        path = _trial_file(out, row, number)
        if not path.exists():
            continue
        try:
            trial = check_trial_record(path, read_record(path, proceed=RERUN_TRIALS), number, proceed=RERUN_TRIALS)
        except RecordFileError:
            if not rerun:
                raise
            continue  # trained again
        planned = config_of(trial["params"])
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
        elif now and identity_differences(trial["data_identity"], now, planned.get("data_path")):
            stale.append((path.name, identity_differences(trial["data_identity"], now, planned.get("data_path"))))
            continue
        stored[number] = trial
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
    # a repeat refers to its trial: without it the repeat is trained again
    return {n: t for n, t in stored.items() if "repeat_of" not in t or t["repeat_of"] in stored}


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
        pruner = (tuning.search.get("pruner") or {}).get("rule", "none")
        rule = tuning.search.get("pruner") or {}
        stalled = (f", only once its best has not improved for {rule.get('stall_epochs')} epochs"
                   if pruner == "stalled" else "")
        pruning = (f" with the median pruner (from trial {rule.get('startup_trials', 0) + 1}, after epoch "
                   f"{rule.get('warmup_epochs')}{stalled}; a pruned trial's score is its best so far and it is never "
                   "selected)") if pruner in ("median", "stalled") else ""
        lines.append(f"Space `{tuning.space_file.name}`; {tuning.n_trials} trials of TPE{pruning} on {on['dataset']}{split}, "
                     f"seed {on['seed']}; selected on the best validation score (test is not looked at).")
        if tuning.fixed:
            lines.append(f"Fixed by the row, not searched: {', '.join(f'`{k}`' for k in tuning.fixed)}.")
        names = list(tuning.space)
        lines += ["", "| trial | " + " | ".join(names) + " | status | valid score | best epoch | epochs | wall s | CPU s |",
                  "|---|" + "---|" * (len(names) + 6)]
        capped = 0
        for trial in tuning.trials:
            chosen = tuning.best is not None and trial["trial"] == tuning.best["trial"]
            values = [_value_text(trial["params"][n]) for n in names]
            details = trial.get("details") or {}
            status = trial["status"]
            if status == "pruned":
                status = f"pruned at epoch {details.get('pruned_at')}"
            if "repeat_of" in trial:
                status = f"repeat of {trial['repeat_of']}" + (" (pruned)" if trial["status"] == "pruned" else "")
            score = "-" if trial["score"] is None else f"{trial['score']:.4f}"
            score = f"**{score}**" if chosen else score
            repeat = "repeat_of" in trial
            wall = "-" if repeat or details.get("wall_s") is None else f"{details['wall_s']:.0f}"
            cpu = "-" if repeat or details.get("cpu_s") is None else f"{details['cpu_s']:.0f}"
            mark = ""
            # a trial keeps a run record's fields in its details: the runs' rule applies as it is
            if trial["status"] == "ok" and not repeat and capped_run({**details, "config": trial.get("config") or {}}):
                capped, mark = capped + 1, CAP_MARK
            lines.append(f"| {trial['trial']} | " + " | ".join(values) + f" | {status} | {score} | "
                         f"{details.get('best_epoch', '-')}{mark} | {details.get('epochs_trained', '-')} | {wall} | {cpu} |")
        if capped:
            lines += ["", f"{CAP_MARK} {capped} trial(s) {CAP_MEANING}: the score is what the trial reached, "
                          "not what it would have reached."]
        lines += ["", _cost_line(tuning.trials)]
        lines += ["", f"Selected: {tuning.params if tuning.best else 'none (every trial failed; defaults)'}", ""]
    return "\n".join(lines)


def _cost_line(trials) -> str:
    """Epochs and time the row's trials took (repeats trained nothing)."""
    own = [t.get("details") or {} for t in trials if "repeat_of" not in t]
    pruned = sum(t["status"] == "pruned" and "repeat_of" not in t for t in trials)
    cpu = [d["cpu_s"] for d in own if d.get("cpu_s") is not None]
    cpu_text = f", {sum(cpu) / 60:.1f} CPU min" if len(cpu) == len(own) and own else ""
    return (f"Trials trained {sum(d.get('epochs_trained') or 0 for d in own)} epochs in {sum(d.get('wall_s') or 0 for d in own) / 60:.1f} "
            f"min{cpu_text}; {pruned} pruned.")


def _value_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return re.sub(r"\|", "/", str(value))
