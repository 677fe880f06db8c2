"""Model, trainer and dataset lookup that knows this package's classes first and RecBole's after
(the way RecBole-GNN extends RecBole without forking it)."""

from __future__ import annotations

import difflib
import importlib
import os
import pickle
from logging import getLogger

from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import ModelType
from recbole.utils import get_model as _recbole_get_model
from recbole.utils import get_trainer as _recbole_get_trainer

_RECBOLE_MODEL_PACKAGES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


class UnknownModelError(ValueError):
    """A model name that neither this package nor RecBole defines."""


def _recommenders_in(module) -> dict[str, type]:
    """Concrete recommenders a model package exports (abstract bases are left out: RecBole's live in
    ``recbole.model.abstract_recommender``, ours set ``is_abstract_base = True`` in their own body)."""
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, AbstractRecommender)
        and value.__module__ != "recbole.model.abstract_recommender"
        and not vars(value).get("is_abstract_base", False)
    }


def our_models() -> dict[str, type]:
    """Models defined by this package, by class name (``recbole_mamex.model`` exports them)."""
    module = importlib.import_module("recbole_mamex.model")
    return _recommenders_in(module)


def proposed_models() -> dict[str, type]:
    """Models this package proposes: :func:`our_models` less the re-implemented baselines (classes with
    ``is_baseline = True``). The "ours" side of :mod:`recbole_mamex.compare`."""
    return {name: cls for name, cls in our_models().items() if not getattr(cls, "is_baseline", False)}


def recbole_model_names() -> list[str]:
    """Every model name RecBole 1.2.1 defines (read from its model packages' exports)."""
    names = []
    for package in _RECBOLE_MODEL_PACKAGES:
        try:
            module = importlib.import_module(f"recbole.model.{package}")
        except Exception:  # exlib needs optional packages (xgboost, lightgbm)
            continue
        names.extend(_recommenders_in(module))
    return sorted(set(names))


def available_model_names() -> list[str]:
    """Ours first, then RecBole's."""
    ours = sorted(our_models())
    return ours + [name for name in recbole_model_names() if name not in ours]


def get_model(model_name: str) -> type:
    """The model class called ``model_name``: ours first, RecBole's after.

    Raises:
        UnknownModelError: listing the available names (and the closest ones) when neither has it.
    """
    if not isinstance(model_name, str) or not model_name:
        raise UnknownModelError(f"model name must be a non-empty string, got {model_name!r}")
    ours = our_models()
    if model_name in ours:
        return ours[model_name]
    try:
        return _recbole_get_model(model_name)
    except (ValueError, AttributeError, ImportError):
        pass
    names = available_model_names()
    close = difflib.get_close_matches(model_name, names, n=3, cutoff=0.5)
    close += [n for n in names if n.lower() == model_name.lower() and n not in close]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model '{model_name}'.{hint} Available models (ours first, then RecBole's): "
        + ", ".join(names)
    )


def get_trainer(model_type, model_name: str, config=None) -> type:
    """``<Model>Trainer`` from this package if it defines one, else RecBole's choice; given ``config``,
    with fused Adam (``fused_optimizer``), top-k metrics collected without dense matrices, a resumable last checkpoint (:mod:`recbole_mamex.resume`), exact multi-process evaluation for a
    distributed run (:mod:`recbole_mamex.distributed`), and candidate-restricted evaluation when it sets
    ``eval_candidates`` or ``test_candidates``."""
    from recbole_mamex import trainer as our_trainers
    from recbole_mamex.distributed import with_distributed_evaluation
    from recbole_mamex.resume import with_last_checkpoint

    trainer = getattr(our_trainers, f"{model_name}Trainer", None) or _recbole_get_trainer(model_type, model_name)
    if config is not None:
        trainer = our_trainers.with_topk_collector(our_trainers.with_fused_optimizer(with_last_checkpoint(trainer)))
        if not config["single_spec"]:
            trainer = with_distributed_evaluation(trainer)
    if config is not None and (config["eval_candidates"] is not None or config["test_candidates"]):
        trainer = our_trainers.with_candidate_evaluation(trainer)
    return trainer


def create_dataset(config):
    """Build the dataset for ``config``: RecBole's own rules, with :class:`MultimodalDataset` where
    RecBole would use its plain ``Dataset`` (so features named in the dataset yaml are loaded and
    validated for any general model, ours or RecBole's).

    The dataset's files are prepared first when it is a bundled dataset that is not there yet, and a
    missing dataset is a clear error (see :func:`recbole_mamex.data.prepare.ensure_dataset_files`).
    """
    from recbole.data import create_dataset as recbole_create_dataset
    from recbole.data import dataset as recbole_dataset_module
    from recbole.utils import dataset_arguments, set_color

    from recbole_mamex.data.dataset import MultimodalDataset
    from recbole_mamex.data.prepare import ensure_dataset_files

    ensure_dataset_files(config)

    model_specific = hasattr(recbole_dataset_module, config["model"] + "Dataset")
    if model_specific or config["MODEL_TYPE"] in (ModelType.SEQUENTIAL, ModelType.KNOWLEDGE):
        return recbole_create_dataset(config)

    # Same save/reuse rule as recbole.data.create_dataset, for our dataset class.
    default_file = os.path.join(config["checkpoint_dir"], f'{config["dataset"]}-{MultimodalDataset.__name__}.pth')
    file = config["dataset_save_path"] or default_file
    if os.path.exists(file):
        with open(file, "rb") as f:
            saved = pickle.load(f)
        if all(config[arg] == saved.config[arg] for arg in dataset_arguments + ["seed", "repeatable", "modalities", "use_modalities", "cold_items_file", "cold_candidates"]):
            getLogger().info(set_color("Load filtered dataset from", "pink") + f": [{file}]")
            return saved
    dataset = MultimodalDataset(config)
    if config["save_dataset"]:
        dataset.save()
    return dataset


def data_preparation(config, dataset):
    """RecBole's ``data_preparation`` (train, valid and test loaders), with the training negatives that
    ``train_neg_items`` asks for (:mod:`recbole_mamex.data.negatives`)."""
    from recbole.data import data_preparation as recbole_data_preparation

    from recbole_mamex.data.negatives import restrict_training_negatives

    train_data, valid_data, test_data = recbole_data_preparation(config, dataset)
    restrict_training_negatives(config, train_data)
    return train_data, valid_data, test_data
