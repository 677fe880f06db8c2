"""Dataset and dataloaders of a run: RecBole's, with this package's dataset class, training negatives and
full-sort evaluation loader."""

from __future__ import annotations

from logging import getLogger

from recbole.utils import ModelType


def create_dataset(config):
    """Build the dataset for ``config`` from its files: RecBole's choice of dataset class, with
    :class:`MultimodalDataset` where RecBole would use its plain ``Dataset`` (so features named in the dataset
    yaml are loaded and validated for any general model, ours or RecBole's).

    Never from a saved file: RecBole's ``create_dataset`` and ``data_preparation`` unpickle
    ``saved/<dataset>-<class>.pth`` and ``saved/<dataset>-for-<model>-dataloader.pth`` whenever such a file
    exists (unpickling can run any code the file holds, and the file may be of data that changed since), so
    this package builds both itself, and ``save_dataset`` / ``save_dataloaders`` are refused by the Config.

    The files must be there: :func:`dataset_prep.prepare.ensure_dataset_files` (which the run assembly,
    :mod:`recbole_mamex.quick_start`, calls first) prepares a bundled dataset and explains a missing one.
    """
    from recbole.data import dataset as recbole_dataset_module

    from recbole_mamex.data.dataset import MultimodalDataset

    model_specific = getattr(recbole_dataset_module, config["model"] + "Dataset", None)
    if model_specific is not None:
        return model_specific(config)
    by_type = {
        ModelType.SEQUENTIAL: recbole_dataset_module.SequentialDataset,
        ModelType.KNOWLEDGE: recbole_dataset_module.KnowledgeBasedDataset,
    }
    return by_type.get(config["MODEL_TYPE"], MultimodalDataset)(config)


def data_preparation(config, dataset):
    """The train, valid and test loaders, built as RecBole's ``data_preparation`` builds them (never read from a
    saved file), with two of this package's choices passed in where they are built:

    - the training sampler that ``train_neg_items`` asks for (:func:`recbole_mamex.data.negatives.training_sampler`);
    - for full-sort evaluation, :class:`recbole_mamex.data.loaders.FullSortLoader` (batches sized by
      ``full_sort_batch_mb``, per-user lists in compressed rows) instead of RecBole's ``FullSortEvalDataLoader``.
    """
    from recbole.data.utils import create_samplers, get_dataloader
    from recbole.sampler import KGSampler
    from recbole.utils import set_color

    from recbole_mamex.data.loaders import evaluation_loader
    from recbole_mamex.data.negatives import training_sampler

    train_set, valid_set, test_set = built = dataset.build()
    train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, built)
    if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
        # RecBole's sampler: train_neg_items has never applied to the knowledge-graph loader
        neg = config["train_neg_sample_args"]
        kg_sampler = KGSampler(dataset, neg["distribution"], neg["alpha"])
        train_data = get_dataloader(config, "train")(config, train_set, train_sampler, kg_sampler, shuffle=True)
    else:
        train_sampler = training_sampler(config, train_sampler, train_set)
        train_data = get_dataloader(config, "train")(config, train_set, train_sampler, shuffle=config["shuffle"])
    valid_data = evaluation_loader(config, "valid")(config, valid_set, valid_sampler, shuffle=False)
    test_data = evaluation_loader(config, "test")(config, test_set, test_sampler, shuffle=False)
    getLogger().info(
        set_color("[Training]: ", "pink") + f"train_batch_size = [{config['train_batch_size']}] "
        f"train_neg_sample_args: [{config['train_neg_sample_args']}]"
    )
    getLogger().info(
        set_color("[Evaluation]: ", "pink") + f"eval_batch_size = [{config['eval_batch_size']}] "
        f"eval_args: [{config['eval_args']}]"
    )
    return train_data, valid_data, test_data
