"""The search of ``compare --tune``: seeded TPE with a median pruner (Optuna), resumable, trials in parallel.

**Sampler.** Optuna's TPE over a ``.hyper`` space (:func:`recbole_mamex.tuning.read_params_file`; ``choice``
is categorical over the list's positions, ``loguniform`` bounds are natural logs as in RecBole's reading).
The first :data:`TPE_RANDOM_STARTS` finished trials are random draws. Trial ``k`` is drawn with a sampler
seeded from (search seed, ``k``), so a proposal is a function of the search seed, ``k`` and the trials
already in the study: a search started again from its stored trials proposes what an uninterrupted one
would have (exactly so when the trials ran one after the other).

**Pruner.** A trial reports, after each validation, the best validation score it has reached so far, and
is stopped (``pruned``) when that is below the median of the finished trials' best scores *at the same
epoch* (Optuna's ``MedianPruner``: only after :data:`MEDIAN_STARTUP_TRIALS` trials have finished, never
before epoch :data:`MEDIAN_WARMUP_EPOCHS`). The ``stalled`` rule adds one condition: the trial's best has
not improved for :data:`STALL_EPOCHS` epochs, so a slow starter that is still climbing trains on. A
finished trial that early-stopped keeps its best score for
the later epochs (it had reached that much by then). A pruned trial is recorded with the epoch it reached
and its best score so far; it counts as one of the ``N`` trials and is never selected. The rule's
reference is a snapshot taken when the trial starts (:class:`PruningMonitor`, plain data), so the same
check runs in this process, in a worker process and in a Ray task.

**Parallel trials.** Several trials of one search may be out at once (:meth:`Search.ask` before the
earlier ones are told): TPE then treats the running ones as if they had scored the worst value so far
(Optuna's ``constant_liar``), so it spreads its proposals instead of repeating one; each running trial is
judged by the pruner against the trials that had finished when it started. The search is then no longer a
function of its seed alone (which trials have finished when the next is drawn depends on timing); the
records it leaves are the same kind and a later search (serial or parallel) goes on from them.
"""

from __future__ import annotations

import ast
import itertools
import math
import warnings
from dataclasses import dataclass, field

from recbole_mamex.errors import RecboleMamexError

TPE_RANDOM_STARTS = 5  # finished trials drawn at random before TPE models the scores
PRUNERS = ("median", "stalled", "none")
MEDIAN_STARTUP_TRIALS = 3  # finished trials before the pruner judges any trial (a median of at least three)
MEDIAN_WARMUP_EPOCHS = 10  # no trial is pruned before its epoch 10
STALL_EPOCHS = 20  # the stalled rule: below the median and no new best for this many epochs


class TrialPruned(Exception):
    """Raised from a trial's epoch callback when the pruner stops it; ``info``: ``epoch`` (the last one
    validated), ``score`` (the best validation score so far), ``curve`` ((epoch, valid score) of every
    validation); the code that ran the trial adds ``wall_s`` and ``cpu_s``. Plain data: it crosses process
    boundaries (a worker process, a Ray task) by pickling, as any exception raised there does."""

    def __init__(self, info: dict):
        super().__init__(info)
        self.info = info

    def __str__(self) -> str:
        return f"pruned at epoch {self.info.get('epoch')} (best valid score so far {self.info.get('score', math.nan):.4f})"


class StoredTrialError(RecboleMamexError, ValueError):
    """A stored trial whose parameters lie outside the search's space."""


def _optuna():
    try:
        import optuna
    except ImportError:
        raise RecboleMamexError("compare --tune needs Optuna: pip install 'recbole-mamex[hyper]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass(frozen=True)
class Dimension:
    """One parameter of the space: its Optuna distribution and, for a ``choice``, the listed values."""

    name: str
    kind: str
    distribution: object
    choices: tuple | None = None

    def decode(self, value):
        """Optuna's value -> the parameter's value (a choice's position -> the listed value)."""
        if self.choices is not None:
            return self.choices[int(value)]
        return float(value)

    def encode(self, value):
        """A stored parameter's value -> Optuna's, or :class:`StoredTrialError` when it is outside the space."""
        if self.choices is not None:
            for position, choice in enumerate(self.choices):
                if type(choice) is type(value) and choice == value:
                    return position
            raise StoredTrialError(f"{self.name} = {value!r}: expected one of {list(self.choices)}")
        low, high = self.distribution.low, self.distribution.high
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low - 1e-12 * abs(low) <= value <= high + 1e-12 * abs(high):
            raise StoredTrialError(f"{self.name} = {value!r}: expected a number in [{self.distribution.low}, {self.distribution.high}]")
        return float(value)


def dimensions(params: dict[str, tuple[str, str]]) -> dict[str, Dimension]:
    """The search space of ``params`` (``name -> (type, values text)``, as :func:`read_params_file` gives)."""
    optuna = _optuna()
    out = {}
    for name, (kind, text) in params.items():
        if kind == "choice":
            choices = tuple(ast.literal_eval(text))
            out[name] = Dimension(name, kind, optuna.distributions.CategoricalDistribution(list(range(len(choices)))), choices)
            continue
        bounds = [float(part) for part in text.split(",")]
        if kind == "loguniform":
            distribution = optuna.distributions.FloatDistribution(math.exp(bounds[0]), math.exp(bounds[1]), log=True)
        elif kind == "quniform":
            low, high, step = bounds
            high = low + math.floor((high - low) / step + 1e-9) * step  # Optuna wants high - low to be a multiple of step
            distribution = optuna.distributions.FloatDistribution(low, high, step=step)
        else:
            distribution = optuna.distributions.FloatDistribution(*bounds)
        out[name] = Dimension(name, kind, distribution)
    return out


def running_best(curve) -> list[tuple[int, float]]:
    """(epoch, best score up to that epoch) of a validation curve ((epoch, score) pairs; NaN scores skipped)."""
    best, out = -math.inf, []
    for epoch, score in curve:
        if score is not None and not math.isnan(score):
            best = max(best, float(score))
        if best > -math.inf:
            out.append((int(epoch), best))
    return out


@dataclass
class PruningMonitor:
    """The epoch callback of one trial under the median pruner (see the module docstring): plain data until
    its first call (it is sent to where the trial trains), then it keeps the trial's curve and an in-memory
    Optuna study holding the reference curves.

    ``references``: the running-best curves of the finished trials when this one started; ``horizon``: the
    epochs a trial may train (the config's ``epochs``; ``None``: the longest reference's): a reference that
    stopped earlier keeps its best to it."""

    references: tuple
    horizon: int | None
    startup: int = MEDIAN_STARTUP_TRIALS
    warmup: int = MEDIAN_WARMUP_EPOCHS
    stall: int = 0  # epochs without a new best before the median is consulted (0: the plain median rule)
    _curve: list = field(default_factory=list, repr=False)
    _best: float = field(default=-math.inf, repr=False)
    _best_epoch: int = field(default=0, repr=False)
    _trial: object = field(default=None, repr=False)

    def __call__(self, epoch, valid_score) -> None:
        epoch, valid_score = int(epoch), float(valid_score)
        self._curve.append((epoch, valid_score))
        if not math.isnan(valid_score) and valid_score > self._best:  # the running best, as running_best() gives it
            self._best, self._best_epoch = valid_score, epoch
        if self._best == -math.inf:
            return  # no score yet
        if self._trial is None:
            self._trial = self._start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._trial.report(self._best, epoch)
        if epoch - self._best_epoch >= self.stall and self._trial.should_prune():
            raise TrialPruned({"epoch": epoch, "score": self._best, "curve": list(self._curve)})

    def _start(self):
        optuna = _optuna()
        pruner = optuna.pruners.MedianPruner(n_startup_trials=self.startup, n_warmup_steps=self.warmup)
        study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
        horizon = self.horizon or max((reference[-1][0] + 1 for reference in self.references), default=0)
        for reference in self.references:
            study.add_trial(optuna.trial.create_trial(value=reference[-1][1], intermediate_values=_filled(reference, horizon)))
        return study.ask()


def _filled(curve, horizon: int) -> dict[int, float]:
    """A running-best curve as a value at every epoch from its first validation to ``horizon`` (the last
    value carried forward)."""
    values, known, position = {}, dict(curve), None
    if not curve:
        return values
    last = max(horizon, curve[-1][0] + 1)
    for epoch in range(curve[0][0], last):
        position = known.get(epoch, position)
        values[epoch] = position
    return values


STATUSES_SELECTABLE = ("ok", "repeat")


def best_trial(trials: list[dict]) -> dict | None:
    """The first trial with the highest score among those that finished (``ok``, or a ``repeat`` of one);
    ``None`` when none did (a pruned trial is never selected)."""
    scored = [t for t in trials if t["status"] in STATUSES_SELECTABLE and t["score"] is not None]
    return max(scored, key=lambda t: t["score"]) if scored else None


@dataclass
class Asked:
    """A trial handed out by :meth:`Search.ask`: its number and parameters, and the pruner's callback for
    it (``None``: no pruning); ``record`` is set when it needs no training (a repeat of an earlier trial)."""

    number: int
    params: dict
    monitor: PruningMonitor | None
    record: dict | None = None
    _trial: object = field(default=None, repr=False)


class Search:
    """One row's search: ``n_trials`` trials over ``params`` seeded with ``seed``, maximising the score;
    ``stored``: number -> an earlier trial's record (replayed into the study, not trained again);
    ``pruner``: ``median``, ``stalled`` or ``none``; ``horizon``: the epochs a trial may train (see :class:`PruningMonitor`)."""

    def __init__(self, params: dict[str, tuple[str, str]], n_trials: int, seed: int, stored: dict | None = None,
                 pruner: str = "none", horizon: int | None = None):
        if pruner not in PRUNERS:
            raise ValueError(f"pruner: expected one of {PRUNERS}, found {pruner!r}")
        optuna = _optuna()
        self._optuna = optuna
        self.dims = dimensions(params)
        self.n_trials, self.seed, self.pruner, self.horizon = n_trials, seed, pruner, horizon
        self.records: dict[int, dict] = {}
        self._running: set[int] = set()
        self._study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
        for number in sorted(stored or {}):
            self._add(stored[number])

    def _distributions(self) -> dict:
        return {name: dim.distribution for name, dim in self.dims.items()}

    def _state_and_value(self, record: dict):
        states = self._optuna.trial.TrialState
        if record["status"] == "failed":
            return states.FAIL, None
        if record["status"] == "pruned":
            return states.PRUNED, None
        return states.COMPLETE, record["score"]

    def _intermediate(self, record: dict) -> dict[int, float]:
        return dict(running_best(((record.get("details") or {}).get("valid_curve")) or []))

    def _add(self, record: dict) -> None:
        """A stored trial into the study, as if it had just been told."""
        missing = sorted(set(self.dims) - set(record["params"]))
        extra = sorted(set(record["params"]) - set(self.dims))
        if missing or extra:
            raise StoredTrialError(f"trial {record['trial']}: expected the parameters {sorted(self.dims)}, found {sorted(record['params'])}")
        encoded = {}
        for name, dim in self.dims.items():
            try:
                encoded[name] = dim.encode(record["params"][name])
            except StoredTrialError as err:
                raise StoredTrialError(f"trial {record['trial']}: {err}") from None
        state, value = self._state_and_value(record)
        self._study.add_trial(self._optuna.trial.create_trial(
            state=state, value=value, params=encoded, distributions=self._distributions(),
            intermediate_values=self._intermediate(record), user_attrs={"number": record["trial"]}))
        self.records[record["trial"]] = record

    def done(self) -> bool:
        return len(self.records) >= self.n_trials

    def can_ask(self) -> bool:
        return len(self.records) + len(self._running) < self.n_trials

    @property
    def running(self) -> int:
        return len(self._running)

    def _sampler(self, number: int):
        import numpy as np

        seed = int(np.random.SeedSequence([self.seed, number]).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant_liar is marked experimental
            return self._optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_RANDOM_STARTS, constant_liar=True)

    def ask(self) -> Asked:
        """The next trial: the lowest number not yet stored or running."""
        number = next(n for n in itertools.count(1) if n not in self.records and n not in self._running)
        self._study.sampler = self._sampler(number)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = self._study.ask(self._distributions())
        trial.set_user_attr("number", number)
        params = {name: dim.decode(trial.params[name]) for name, dim in self.dims.items()}
        asked = Asked(number, params, self.monitor(), _trial=trial)
        earlier = next((r for _, r in sorted(self.records.items()) if r["params"] == params and r["status"] != "failed"), None)
        if earlier is not None:
            origin = earlier.get("repeat_of", earlier["trial"])
            asked.record = {"trial": number, "params": params, "status": "pruned" if earlier["status"] == "pruned" else "repeat",
                            "repeat_of": origin, "score": earlier["score"], "details": earlier["details"]}
        self._running.add(number)
        return asked

    def monitor(self) -> PruningMonitor | None:
        """The pruner's callback for a trial starting now (its references: the trials finished so far)."""
        if self.pruner == "none":
            return None
        finished = [running_best((r.get("details") or {}).get("valid_curve") or [])
                    for _, r in sorted(self.records.items()) if r["status"] in STATUSES_SELECTABLE]
        return PruningMonitor(tuple(tuple(curve) for curve in finished if curve), self.horizon,
                              stall=STALL_EPOCHS if self.pruner == "stalled" else 0)

    def tell(self, asked: Asked, record: dict) -> None:
        """``record`` (``trial``, ``params``, ``status``, ``score``, ``details``) ends ``asked``."""
        state, value = self._state_and_value(record)
        trial = asked._trial
        if state == self._optuna.trial.TrialState.PRUNED:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for epoch, score in sorted(self._intermediate(record).items()):
                    trial.report(score, epoch)
        self._study.tell(trial, value if state == self._optuna.trial.TrialState.COMPLETE else None, state=state)
        self._running.discard(asked.number)
        self.records[asked.number] = record

    def abandon(self, asked: Asked) -> None:
        """``asked`` will not be told (its training, or keeping its record, ended with an error): it leaves
        the running set; one already told stays as it was."""
        if asked.number not in self._running:
            return
        self._running.discard(asked.number)
        self._study.tell(asked._trial, None, state=self._optuna.trial.TrialState.FAIL)

    def trials(self) -> list[dict]:
        return [record for _, record in sorted(self.records.items())]


def score_text(record: dict) -> str:
    """One line of a trial's outcome for the log."""
    if record["status"] == "failed":
        return f"failed ({record.get('error')})"
    repeat = f", repeat of trial {record['repeat_of']}" if "repeat_of" in record else ""
    if record["status"] == "pruned":
        at = (record.get("details") or {}).get("pruned_at")
        return f"pruned at epoch {at}, best valid score so far {record['score']:.4f}{repeat}"
    return f"valid score {record['score']:.4f}{repeat}"
