"""Config: RecBole's configurator, with this package's models and defaults layered in.

Layers, lowest priority first (RecBole's rule, with ours inserted after RecBole's internal files):

1. RecBole's ``properties/overall.yaml``, its ``model/<Model>.yaml`` and ``dataset/<dataset>.yaml``;
2. our ``properties/overall.yaml``, ``properties/model/<Model>.yaml``, ``properties/dataset/<dataset>.yaml``
   (shipped with the package);
3. ``./properties/dataset/<dataset>.yaml`` in the working directory, if there is one (where
   ``dataset_prep`` writes the yaml of a dataset a user imports);
4. the user's ``config_file_list`` (in order), then ``config_dict``, then command-line ``--key=value``.
"""

from __future__ import annotations

import difflib
import functools
import numbers
import os
import sys
from pathlib import Path

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_mamex import compat
from recbole_mamex.errors import ConfigError
from recbole_mamex.files import read_yaml_mapping, yaml_loader
from recbole_mamex.data.dataset import COLD_CANDIDATE_RULES
from recbole_mamex.data.negatives import TRAIN_NEG_ITEMS
from recbole_mamex.errors import InputFileError
from recbole_mamex.paths import properties_dir
from recbole_mamex.registry import get_model


compat.apply_all()  # RecBole runs behind every Config: shims before any of its code does


class ConfigFileError(InputFileError):
    """A config file (``--config_files``) that is missing or not a yaml mapping."""


# Keys that RecBole or this package set while running, or read with a default, without a yaml entry.
RUNTIME_KEYS = frozenset({
    "encoding", "verbose",
    "model", "dataset", "config_files", "local_rank", "world_size", "nproc", "ip", "port", "offset", "device",
    "single_spec", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "valid_neg_sample_args", "test_neg_sample_args",
    "unchecked_keys",
})


@functools.lru_cache(maxsize=1)
def known_config_keys() -> frozenset:
    """Every key some layer defines: RecBole's property files (overall, dataset sample, quick-start, every
    model's yaml) and ours (overall, every model and dataset yaml), RecBole's argument lists and
    :data:`RUNTIME_KEYS`. A key set for one model that only another model reads is accepted: a comparison
    passes the same ``--set`` to every model."""
    import recbole
    from recbole.utils import argument_list

    roots = [Path(recbole.__file__).parent / "properties", properties_dir()]
    keys = set(RUNTIME_KEYS)
    for root in roots:
        for path in root.rglob("*.yaml"):
            with open(path, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
            if isinstance(loaded, dict):
                keys.update(map(str, loaded))
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys.update(getattr(argument_list, name))
    return frozenset(keys)


# Config keys that do not change what a run trains or reports: a finished run (a comparison's record) or an
# interrupted one (a resume) made with other values of these is still the same run.
NEUTRAL_KEYS = frozenset({
    "state", "show_progress", "verbose", "log_wandb", "wandb_project", "checkpoint_dir", "save_dataset",
    "save_dataloaders", "dataset_save_path", "dataloaders_save_path", "keep_last_checkpoint",
    "full_sort_batch_mb", "eval_batch_size", "device", "gpu_id", "use_gpu", "worker", "shuffle",
})


def config_differences(before: dict, now: dict) -> list[str]:
    """``key: before -> now`` for every config entry that differs, :data:`NEUTRAL_KEYS` left out."""
    missing = "(not set)"
    keys = sorted((set(before) | set(now)) - NEUTRAL_KEYS, key=str)
    return [f"{k}: {before.get(k, missing)!r} -> {now.get(k, missing)!r}" for k in keys if before.get(k, missing) != now.get(k, missing)]


def listed_differences(diffs: list[str], shown: int = 6) -> str:
    """The first ``shown`` of :func:`config_differences`' lines, joined, and how many more there are."""
    return "; ".join(diffs[:shown]) + (f" and {len(diffs) - shown} more" if len(diffs) > shown else "")


def is_int(value) -> bool:
    """An integer that is not a bool (the check of every integer setting and stored count)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _modality_list(value) -> bool:
    from recbole_mamex.data.dataset import modality_selection

    try:
        chosen = modality_selection(value)
    except Exception:  # yaml that does not parse
        return False
    return chosen is None or (bool(chosen) and all(isinstance(x, str) for x in chosen))


def is_number(value) -> bool:
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


#: RecBole's learner names (``AbstractTrainer._build_optimizer``; case does not matter): another name is an
#: error here, where RecBole warns and trains with Adam. sparse_adam: lazy Adam on the embedding tables
#: (:mod:`recbole_mamex.trainer.optimizer`).
LEARNERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam")

# key -> (test, what is expected); checked whenever the key is set (None is allowed where RecBole allows it)
VALUE_RULES = {
    "epochs": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "train_batch_size": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "eval_batch_size": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "eval_step": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "stopping_step": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    "embedding_size": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "n_experts": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "top_k": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "n_layers": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
    "learning_rate": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "learner": (lambda v: isinstance(v, str) and v.lower() in LEARNERS, "one of " + ", ".join(LEARNERS)),
    "full_sort_batch_mb": (lambda v: v is None or (is_number(v) and v > 0), "a number > 0 (MiB), or ~"),
    "cold_candidates": (lambda v: v in COLD_CANDIDATE_RULES, " or ".join(COLD_CANDIDATE_RULES)),
    "train_neg_items": (lambda v: v is None or v in TRAIN_NEG_ITEMS, " or ".join(TRAIN_NEG_ITEMS) + ", or ~"),
    "use_modalities": (lambda v: _modality_list(v), "a list of modality names, or ~ (all)"),
    # RecBole's KD_DAGFM eval()s its teacher's name: only the two names it knows
    "teacher": (lambda v: v in ("CrossNet", "CIN"), "CrossNet or CIN (the name KD_DAGFM's teacher is built from)"),
    # RecBole's saved datasets and dataloaders are pickles, read back whenever the file exists: never written
    # or read here (recbole_mamex.data.loading builds both from the dataset's files every run)
    "save_dataset": (lambda v: not v, "False (a saved dataset is a pickle, and reading one can run code in it: "
                     "the dataset is built from its files every run)"),
    "save_dataloaders": (lambda v: not v, "False (saved dataloaders are a pickle, and reading one can run code in "
                         "it: they are built from the dataset every run)"),
    "topk": (lambda v: (isinstance(v, list) and v and all(is_int(k) and k >= 1 for k in v)) or (is_int(v) and v >= 1),
             "a positive integer or a list of them"),
}


WEIGHT_RULE = (lambda v: (is_number(v) and v >= 0) or (isinstance(v, list) and all(is_number(x) and x >= 0 for x in v)),
               "a number >= 0")


def check_values(config: dict) -> None:
    """Every value :data:`VALUE_RULES` knows, and every ``*_weight`` (:data:`WEIGHT_RULE`), in range."""
    for key, value in config.items():
        rule = VALUE_RULES.get(key)
        if rule is None and key.endswith("_weight") and value is not None:
            rule = WEIGHT_RULE
        if rule is not None and not rule[0](value):
            raise ConfigError(f"{key}: expected {rule[1]}, found {value!r}")


def user_properties_dir() -> Path:
    """The working directory's ``properties/`` (layer 3 above)."""
    return Path.cwd() / "properties"


def dataset_yaml_files(dataset: str) -> list[Path]:
    """The dataset yaml files of layers 2 and 3 that exist, lowest priority first."""
    files = [properties_dir() / "dataset" / f"{dataset}.yaml"]
    user_file = user_properties_dir() / "dataset" / f"{dataset}.yaml"
    if user_file.resolve() != files[0].resolve():
        files.append(user_file)
    return [path for path in files if path.is_file()]


def dataset_config_dict(dataset: str) -> dict:
    """What this package's and the working directory's yaml files say about ``dataset`` (merged)."""
    merged = {}
    for path in dataset_yaml_files(dataset):
        merged.update(read_yaml_mapping(path))
    return merged


def run_device(config) -> "torch.device":
    """The one device rule of a one-process run (training, loading a checkpoint, serving): the CPU when
    ``use_gpu`` is False, no GPU is named (``gpu_id`` empty) or none is visible; else the first GPU that
    ``gpu_id`` makes visible. (RecBole's own rule ignores ``use_gpu``: it takes CUDA whenever it is there.)"""
    import torch

    use_gpu = config["use_gpu"] if "use_gpu" in config else True
    gpu_id = str(config["gpu_id"]) if "gpu_id" in config and config["gpu_id"] is not None else "0"
    if not use_gpu or not gpu_id or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


_LITERAL_TYPES = (str, int, float, list, tuple, dict, bool)


def literal_value(text: str):
    """A string config value as RecBole reads it (``"1e-3"`` -> 0.001, ``"[1, 2]"`` -> [1, 2], ``"None"`` ->
    None, ``"true"`` -> True), by Python's literal rules (``ast.literal_eval``) instead of RecBole's
    ``eval``: anything else, an expression or a call included, stays the string it is."""
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return {"true": True, "false": False}.get(text.strip().lower(), text)
    return value if value is None or isinstance(value, _LITERAL_TYPES) else text


class Config(RecBoleConfig):
    """RecBole's Config that finds our models (ours first, RecBole's after) and loads our yaml defaults.

    Args:
        model: model name or class; ``None`` reads ``model`` from the external config.
        dataset: dataset name; ``None`` reads ``dataset`` from the external config.
        config_file_list: yaml files, later ones override earlier ones.
        config_dict: parameters that override the files.
        cmd_args: ``--key=value`` strings that override everything; ``None`` reads ``sys.argv[1:]``
            exactly as RecBole does. Pass ``[]`` when calling from code that has its own arguments
            (a test runner, a notebook, a script with argparse).
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
        self._cmd_args = list(sys.argv[1:]) if cmd_args is None else list(cmd_args)
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
        self._check_keys(config_file_list)
        check_values(self.final_config_dict)

    def _check_keys(self, config_file_list) -> None:
        """Refuse a key that no layer defines (see :func:`known_config_keys`) in the config files, the
        config_dict or the command line, naming the closest known keys; ``unchecked_keys: [...]`` lets
        a user's own keys through."""
        unchecked = self.final_config_dict.get("unchecked_keys") or []
        if isinstance(unchecked, str):  # the command line's --unchecked_keys=[a,b] (RecBole keeps it a string)
            from recbole_mamex.files import load_yaml

            unchecked = load_yaml(unchecked)
            unchecked = [unchecked] if isinstance(unchecked, str) else unchecked or []
        allowed = known_config_keys() | set(self.internal_config_dict) | set(map(str, unchecked))
        layers = (
            (f"--config_files {' '.join(map(str, config_file_list or []))}", self.file_config_dict),
            ("config_dict", self.variable_config_dict),
            ("the command line", self.cmd_config_dict),
        )
        for where, layer in layers:
            unknown = sorted(str(key) for key in (layer or {}) if str(key) not in allowed)
            if unknown:
                key = unknown[0]
                close = difflib.get_close_matches(key, sorted(allowed), n=3, cutoff=0.7)
                hint = f" Did you mean {' or '.join(close)}?" if close else ""
                raise ConfigError(
                    f"{key} (in {where}): expected a config key of RecBole or recbole_mamex, found a key no layer "
                    f"defines.{hint} To pass keys of your own, list them: unchecked_keys: [{', '.join(unknown)}]"
                )

    def _build_yaml_loader(self):
        # RecBole's is yaml's FullLoader (python tags, aliases): ours builds plain values only
        return yaml_loader()

    def _convert_config_dict(self, config_dict):
        """RecBole's reading of string values (``--key=value``, config_dict) as Python literals, without
        RecBole's ``eval``: a value is a number, string, bool, None, list, tuple or dict written as a
        literal, or stays the string it is; nothing in it is ever run."""
        for key, param in config_dict.items():
            if isinstance(param, str):
                config_dict[key] = literal_value(param)
        return config_dict

    def _load_config_files(self, file_list):
        merged = {}
        for file in file_list or []:
            if not os.path.isfile(file):
                raise ConfigFileError(file, "a yaml config file", "no such file")
            merged.update(self._read_yaml_file(file))
        return merged

    def _update_internal_config_dict(self, file):
        # the property files of layers 1-3 (a dataset yaml in the working directory is the user's file)
        loaded = self._read_yaml_file(file)
        self.internal_config_dict.update(loaded)
        return loaded

    def _read_yaml_file(self, file) -> dict:
        """A config file's mapping (read as every yaml of the package is); anything else is a
        :class:`ConfigFileError`."""
        return read_yaml_mapping(file, ConfigFileError)

    def _init_device(self):
        super()._init_device()
        if self.final_config_dict["single_spec"]:
            self.final_config_dict["device"] = run_device(self.final_config_dict)

    def compatibility_settings(self):
        # RecBole re-aliases numpy names here; recbole_mamex.compat already did it once at import.
        pass

    def _load_cmd_line(self):
        saved_argv = sys.argv
        sys.argv = [saved_argv[0] if saved_argv else "recbole_mamex"] + self._cmd_args
        try:
            return super()._load_cmd_line()
        finally:
            sys.argv = saved_argv

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
            if model is None:
                raise KeyError(
                    "model must be given in one of these ways: the model argument, a config file, "
                    "config_dict or --model=<name> on the command line"
                )
        if isinstance(model, str):
            model_class = get_model(model)
            model_name = model
        else:
            model_class = model
            model_name = model.__name__
        if dataset is None:
            dataset = self.external_config_dict.get("dataset")
            if dataset is None:
                raise KeyError(
                    "dataset must be given in one of these ways: the dataset argument, a config file, "
                    "config_dict or --dataset=<name> on the command line"
                )
        return model_name, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        ours = properties_dir()
        layers = [ours / "overall.yaml", ours / "model" / f"{model}.yaml"]
        layers = [path for path in layers if path.is_file()] + dataset_yaml_files(dataset)
        self.loaded_property_files = []
        for path in layers:
            loaded = self._update_internal_config_dict(os.fspath(path)) or {}
            self.loaded_property_files.append(os.fspath(path))
            if path.parent.name == "dataset":
                self.parameters["Dataset"] += [key for key in loaded if key not in self.parameters["Dataset"]]


# ----------------------------------------------------------------------------- a Config as plain text
# What a checkpoint stores of its run's Config: JSON, read back without running anything (RecBole pickles
# the Config object, and unpickling a file can run any code in it). Values are JSON's, plus these tags.
_CONFIG_ATTRIBUTES = (
    "parameters", "file_config_dict", "variable_config_dict", "cmd_config_dict", "external_config_dict",
    "internal_config_dict", "final_config_dict", "model", "dataset", "loaded_property_files",
)
_TAGS = ("__enum__", "__device__", "__tuple__", "__pairs__")


def _encode(value, where: str):
    import enum

    import numpy as np
    import torch

    if isinstance(value, np.generic):  # first: numpy's float64 is a float too
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        from recbole.utils import enum_type

        if getattr(enum_type, type(value).__name__, None) is not type(value):
            raise ConfigError(f"{where}: expected plain values in a config, found {value!r} (an enum not of RecBole's)")
        return {"__enum__": type(value).__name__, "name": value.name}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not (set(value) & set(_TAGS)):
            return {k: _encode(v, f"{where}.{k}") for k, v in value.items()}
        return {"__pairs__": [[_encode(k, where), _encode(v, f"{where}.{k}")] for k, v in value.items()]}
    raise ConfigError(
        f"{where}: expected plain values in a config (numbers, strings, lists, mappings), found a "
        f"{type(value).__name__}, which a checkpoint cannot store"
    )


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__enum__" in value:
        import enum

        from recbole.utils import enum_type

        cls = getattr(enum_type, str(value["__enum__"]), None)
        if not (isinstance(cls, type) and issubclass(cls, enum.Enum)) or value.get("name") not in cls.__members__:
            raise ValueError(f"unknown enum {value!r}")
        return cls[value["name"]]
    if "__device__" in value:
        import torch

        return torch.device(str(value["__device__"]))
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__pairs__" in value:
        return {_decode(k): _decode(v) for k, v in value["__pairs__"]}
    return {k: _decode(v) for k, v in value.items()}


def config_to_text(config) -> str:
    """``config`` (a :class:`Config`) as JSON text; :func:`config_from_text` reads it back. A value JSON cannot
    hold (anything but numbers, strings, lists, mappings, RecBole's enums and a torch device) is a
    :class:`ConfigError` naming its key."""
    import json

    state = {name: _encode(getattr(config, name, None), name) for name in _CONFIG_ATTRIBUTES}
    return json.dumps(state)  # in order: the order of a mapping (e.g. modalities) is part of the config


def config_from_text(text: str) -> "Config":
    """The :class:`Config` that :func:`config_to_text` wrote, rebuilt without running anything from the text
    (the model class is looked up by its name). Raises ``ValueError`` for text that is not such a config."""
    import json

    try:
        state = json.loads(text)
        if not isinstance(state, dict) or not all(name in state for name in _CONFIG_ATTRIBUTES):
            raise ValueError("not a config written by config_to_text")
        decoded = {name: _decode(state[name]) for name in _CONFIG_ATTRIBUTES}
    except (TypeError, KeyError, RuntimeError, RecursionError) as err:  # e.g. a device torch does not know
        raise ValueError(f"not a config written by config_to_text ({type(err).__name__}: {err})") from None
    shapes = {"model": str, "dataset": str, "loaded_property_files": list, "parameters": dict}
    for name in _CONFIG_ATTRIBUTES:
        expected = shapes.get(name, dict)
        if not isinstance(decoded[name], expected):
            raise ValueError(f"config entry {name}: expected a {expected.__name__}, found a {type(decoded[name]).__name__}")
    final = decoded["final_config_dict"]
    for key in ("model", "dataset"):
        if final.get(key) != decoded[key]:
            raise ValueError(f"config entry {key}: {final.get(key)!r} in the settings, {decoded[key]!r} beside them")
    check_values(final)  # the checks every run's settings pass (a value RecBole's code would run is refused)
    config = Config.__new__(Config)
    for name, value in decoded.items():
        setattr(config, name, value)
    config._cmd_args = []
    config.yaml_loader = yaml_loader()
    config.model_class = get_model(config.model)
    return config
