"""Dataset and dataloaders of a run: RecBole's, with this package's dataset class and training negatives."""

from __future__ import annotations

import os
import pickle
from logging import getLogger

from recbole.utils import ModelType


def create_dataset(config):
    """Build the dataset for ``config``: RecBole's own rules, with :class:`MultimodalDataset` where
    RecBole would use its plain ``Dataset`` (so features named in the dataset yaml are loaded and
    validated for any general model, ours or RecBole's).

    The files must be there: :func:`dataset_prep.prepare.ensure_dataset_files` (which the run assembly,
    :mod:`recbole_mamex.quick_start`, calls first) prepares a bundled dataset and explains a missing one.
    """
    from recbole.data import create_dataset as recbole_create_dataset
    from recbole.data import dataset as recbole_dataset_module
    from recbole.utils import dataset_arguments, set_color

    from recbole_mamex.data.dataset import MultimodalDataset, selected_modality_specs

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
            # an optional modality file that appeared or vanished since the save changes what a build loads
            now = [spec.name for spec in selected_modality_specs(config, config["data_path"], config["dataset"])[0]]
            features = getattr(saved, "item_features", None)
            then = list(features.names) if features is not None else []
            if sorted(now) == sorted(then):
                getLogger().info(set_color("Load filtered dataset from", "pink") + f": [{file}]")
                return saved
            getLogger().info(f"saved dataset {file} holds the modalities {then}, the files give {now} now: rebuilt")
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
