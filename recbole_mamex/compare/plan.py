"""What a comparison trains: the protocols, the settings of a run, the final config it will have (for
the stale checks), the cold splits of ``--split-seeds``, and the checks of the rows before any training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from recbole_mamex.errors import CompareError
from recbole_mamex.records import jsonable
from recbole_mamex.runspec import RunSpec


DEFAULT_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


PROTOCOLS = {
    "cold": {"eval_candidates": "cold", "test_candidates": ["cold", "warm", "all"]},
    "warm": {"eval_candidates": None, "test_candidates": None},
}


def run_settings(seed: int, protocol: str, extra: dict) -> dict:
    """The config_dict of one comparison run."""
    return {"seed": seed, "show_progress": False, "state": "WARNING", **PROTOCOLS[protocol], **extra}


def planned_config(spec: RunSpec) -> dict:
    """The final config (as saved in a run record) that the run ``spec`` would train with, without training."""
    from recbole_mamex.config import Config

    return jsonable(dict(Config(**spec.config_arguments()).final_config_dict))


@dataclass(frozen=True)
class Split:
    """One dataset the runs train on: the given one (``seed`` None), or its cold split made with ``seed``."""

    seed: int | None
    dataset: str


@dataclass
class Plan:
    """What a comparison trains: its rows (``--models``, and ``--variant`` rows: a model with settings of
    its own), seeds, splits (:class:`Split`; ``None``: the dataset alone), protocol, config files and the
    settings every run shares (``extra``: ``--key=value``); once tuned, each row's tuning (``tunings``: row
    -> an object with ``params`` and ``record()``, :class:`~recbole_mamex.compare.tuning.RowTuning`).

    Every run is a :class:`~recbole_mamex.runspec.RunSpec` (:meth:`spec`); :meth:`config` is the final
    config it would have (``configure``: how that is found, :func:`planned_config`; ``None``: not checked,
    for code that drives the runs itself), which the stale checks compare with the records.
    """

    dataset: str
    protocol: str
    rows: list
    seeds: list
    config_files: tuple = ()
    extra: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)
    splits: list | None = None
    tunings: dict = field(default_factory=dict)
    configure: object = planned_config
    _configs: dict = field(default_factory=dict, repr=False)

    def model_of(self, row: str) -> str:
        return self.variants.get(row, (row, {}))[0]

    def settings_of(self, row: str, tuned: bool = True) -> dict:
        """A row's settings: the shared ones, its variant's on top, then (``tuned``) its selected parameters."""
        selected = self.tunings[row].params if tuned and row in self.tunings else {}
        return {**self.extra, **self.variants.get(row, (row, {}))[1], **selected}

    def all_splits(self) -> list:
        return list(self.splits) if self.splits else [Split(None, self.dataset)]

    def jobs(self) -> list:
        """(row, split, seed) of every run, rows first."""
        return [(row, split, seed) for row in self.rows for split in self.all_splits() for seed in self.seeds]

    def spec(self, row: str, seed: int, dataset: str | None = None, params: dict | None = None, saved: bool = True) -> RunSpec:
        """The run of ``row`` with ``seed`` on ``dataset`` (default: the comparison's); ``params``: a tuning
        trial's parameters, on top of the row's untuned settings."""
        settings = {**self.settings_of(row, tuned=params is None), **(params or {})}
        return RunSpec(self.model_of(row), dataset or self.dataset, self.config_files,
                       run_settings(seed, self.protocol, settings), (), saved)

    def config(self, spec: RunSpec) -> dict | None:
        """The final config of ``spec`` (cached), or ``None`` when this plan does not check configs."""
        if self.configure is None:
            return None
        key = json.dumps(jsonable(spec.to_record()), sort_keys=True)
        if key not in self._configs:
            self._configs[key] = self.configure(spec)
        return self._configs[key]

    def labelled(self, row: str, record: dict) -> dict:
        """A run record of ``row`` as the comparison stores it: the row's name (a variant's, with its model
        class and settings), the protocol, and its tuning."""
        record = {**record, "model": row, "protocol": self.protocol}
        if row in self.variants:
            record.update(model_class=self.model_of(row), variant=jsonable(self.variants[row][1]))
        if row in self.tunings:
            record["tuning"] = self.tunings[row].record()
        return record


def check_plan(plan: Plan, metrics) -> None:
    """What would otherwise fail after hours of runs: repeated seeds or models, a model that is not a
    general recommender, metrics the runs would not compute."""
    from recbole.utils import ModelType

    from recbole_mamex.registry import get_model

    for name, values in (("--seeds", plan.seeds), ("--models", plan.rows)):
        repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
        if repeated:
            raise CompareError(f"{name}: expected each once, found {repeated} repeated (a run counted twice skews mean, sd and the paired test)")
    for model in plan.rows:
        model_type = get_model(plan.model_of(model)).type
        if model_type not in (ModelType.GENERAL, ModelType.TRADITIONAL):
            raise CompareError(
                f"--models: expected general recommenders (ours, or RecBole's general models such as BPR, LightGCN, Pop), "
                f"found {model} of type {model_type.name}"
            )
        config = plan.config(plan.spec(model, plan.seeds[0]))
        computed = {f"{m.lower()}@{k}" for m in config["metrics"] for k in config["topk"]}
        missing = [m for m in metrics if m not in computed]
        if missing:
            raise CompareError(
                f"--metrics: expected metrics the runs compute ({sorted(computed)}; set metrics/topk with --set or "
                f"--config_files), found {missing}"
            )


def cold_splits(dataset: str, split_seeds, config, log=print) -> list[Split]:
    """The cold split of ``dataset``'s source for each of ``split_seeds`` (same fraction): ``dataset`` itself
    for its own seed, else ``<dataset>-split<seed>``, made by ``dataset_prep.coldstart`` (its yaml in
    ``./properties/dataset/``) unless it is there; ``config``: a Config of ``dataset``."""
    from dataset_prep.coldstart import base_dataset_of, make_cold_dataset, source_from_prepared

    cold_file = config["cold_items_file"]
    data_dir = Path(config["data_path"])
    if not cold_file:
        raise CompareError(f"--split-seeds: expected a cold-start dataset (with cold_items_file), found '{dataset}' without one")
    info = json.loads((data_dir / cold_file).read_text(encoding="utf-8"))
    base = base_dataset_of(info)
    if base is None:
        raise CompareError(
            f"--split-seeds: {data_dir / cold_file} says '{dataset}' was made from {info.get('source')!r}, not from a prepared "
            "dataset, so it cannot be split again here: make the splits with python -m dataset_prep.coldstart and compare each"
        )
    splits = []
    for seed in split_seeds:
        if seed == info.get("seed"):
            splits.append(Split(seed, dataset))
            continue
        name = f"{dataset}-split{seed}"
        made = data_dir.parent / name / f"{name}.cold_items.json"
        if made.is_file():
            other = json.loads(made.read_text(encoding="utf-8"))
            if (other.get("source"), other.get("fraction"), other.get("seed")) != (info.get("source"), info.get("fraction"), seed):
                raise CompareError(
                    f"{made}: expected a split of {info.get('source')} with fraction {info.get('fraction')} and seed {seed}, found "
                    f"{other.get('source')!r}, fraction {other.get('fraction')}, seed {other.get('seed')}; move it away"
                )
        else:
            log(f"making cold split {name} of dataset '{base}' (fraction {info['fraction']}, seed {seed})")
            frame, user_col, item_col, modalities, source = source_from_prepared(base, data_dir.parent)
            make_cold_dataset(frame, user_col, item_col, modalities, name, source, out_root=data_dir.parent,
                              properties_dir=Path.cwd() / "properties", fraction=info["fraction"], seed=seed, log=log)
        splits.append(Split(seed, name))
    return splits


def check_rows_data(plan: Plan) -> None:
    """What the data decides about each row's settings (``use_modalities`` naming modalities the dataset
    has), checked for every row and split before the first training, by the check each run's dataset
    makes (:func:`~recbole_mamex.data.dataset.selected_modality_specs`)."""
    from recbole_mamex.data.dataset import selected_modality_specs
    from recbole_mamex.errors import RecboleMamexError

    for row in plan.rows:
        for split in plan.all_splits():
            config = plan.config(plan.spec(row, plan.seeds[0], split.dataset))
            settings = {key: config.get(key) for key in ("modalities", "use_modalities")}
            try:
                selected_modality_specs(settings, config["data_path"], config["dataset"])
            except RecboleMamexError as err:
                raise CompareError(f"{row}: {err} (checked for every row before any training)") from None

