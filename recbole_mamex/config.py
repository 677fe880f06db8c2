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

import os
import sys
from pathlib import Path

import yaml
from recbole.config import Config as RecBoleConfig

from recbole_mamex.data.features import InputFileError
from recbole_mamex.paths import properties_dir
from recbole_mamex.utils import get_model


class ConfigFileError(InputFileError):
    """A config file (``--config_files``) that is missing or not a yaml mapping."""


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
        with open(path, encoding="utf-8") as f:
            merged.update(yaml.safe_load(f) or {})
    return merged


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

    def _load_config_files(self, file_list):
        merged = {}
        for file in file_list or []:
            if not os.path.isfile(file):
                raise ConfigFileError(file, "a yaml config file", "no such file")
            try:
                loaded = super()._load_config_files([file])
            except yaml.YAMLError as err:
                mark = getattr(err, "problem_mark", None)
                where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                raise ConfigFileError(file, "a yaml mapping of config keys", f"text yaml cannot read{where}: {getattr(err, 'problem', err)}") from None
            except (TypeError, ValueError, AttributeError):
                raise ConfigFileError(file, "a yaml mapping of config keys (key: value lines)", "another yaml value") from None
            merged.update(loaded or {})
        return merged

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
