"""Entry points in RecBole's style: train and test one model, reload a saved one.

Same flow as ``recbole.quick_start.run_recbole`` and ``load_data_and_model``, through this package's
Config, dataset and model lookup, so our models and RecBole's run the same way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from logging import getLogger

import torch
from recbole.utils import dict2str, get_environment, init_logger, init_seed, set_color

from recbole_mamex.config import Config, run_device
from recbole_mamex.files import check_writable
from recbole_mamex.paths import make_log_dir
from dataset_prep.prepare import ensure_dataset_files
from recbole_mamex.trainer.checkpoint import (
    CheckpointMismatchError, check_token_maps, read_checkpoint, token_maps,
)
from recbole_mamex.trainer.candidates import candidate_kinds_for_test
from recbole_mamex.data.loading import create_dataset, data_preparation
from recbole_mamex.model.teacher import restoring_saved_weights
from recbole_mamex.registry import get_model
from recbole_mamex.runspec import RunSpec
from recbole_mamex.trainer import get_trainer



def run_recbole_mamex(
    model=None,
    dataset=None,
    config_file_list=None,
    config_dict=None,
    saved: bool = True,
    cmd_args=None,
    callback_fn=None,
    resume_from=None,
):
    """Train ``model`` on ``dataset`` with early stopping on validation, then evaluate on test: RecBole's
    ``run_recbole`` with this package's config, data and models, the same arguments (``cmd_args``:
    ``--key=value`` overrides; ``None`` reads ``sys.argv`` as RecBole does, ``[]`` ignores it). The run as
    a :class:`~recbole_mamex.runspec.RunSpec`: :func:`run_spec`, which says what is returned."""
    spec = RunSpec(model, dataset, config_file_list or (), config_dict or {}, cmd_args, saved=saved)
    return run_spec(spec, callback_fn=callback_fn, resume_from=resume_from)


def run_spec(spec: RunSpec, callback_fn=None, resume_from=None) -> dict:
    """Train and test the run ``spec`` describes (early stopping on validation, then test).

    ``callback_fn(epoch, valid_score)`` is passed to RecBole's ``Trainer.fit`` (called after each
    validation); ``resume_from`` is a checkpoint to go on from (the ``-last.pth`` one an interrupted run
    left, see :mod:`recbole_mamex.trainer.resume`).

    Returns:
        dict with ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``, ``test_result``,
        ``test_result_by_candidates`` (candidate set -> test metrics, for each of ``test_candidates``),
        ``model_file`` (the checkpoint, or ``None`` when ``spec.saved`` is False), ``config``, ``valid_curve``
        ((epoch, valid score) of each validation), ``best_epoch`` (the kept one), ``epochs_trained`` and
        ``capped_improving`` (:func:`capped_improving`: the epoch cap ended a run still improving; then a
        warning is logged).
    """
    saved = spec.saved
    config = Config(**spec.config_arguments())
    ensure_dataset_files(config)  # a missing dataset is reported before the config is logged
    # RecBole's trainer makes checkpoint_dir, and the first checkpoint is written after epoch 0: refused now
    check_writable(config["checkpoint_dir"])
    init_seed(config["seed"], config["reproducibility"])
    make_log_dir(config["model"])
    init_logger(config)
    logger = getLogger()
    logger.info(sys.argv)
    logger.info(config)

    built = build_run(config)
    data, train_data, valid_data, test_data, model = built.dataset, built.train_data, built.valid_data, built.test_data, built.model
    logger.info(data)
    logger.info(model)

    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model)
    trainer.token_maps = token_maps(data)
    if resume_from is not None:
        trainer.resume_checkpoint(resume_from)
    curve = []  # (epoch, valid score) of every validation of this training

    def on_validation(epoch, valid_score):
        curve.append((int(epoch), float(valid_score)))
        if callback_fn is not None:
            callback_fn(epoch, valid_score)

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=on_validation
    )
    best_valid_result = best_valid_result or {}  # a pre-training stage (RaCT, S3Rec) validates nothing
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    test_by_candidates = {}
    for kind in candidate_kinds_for_test(config):
        if kind == config["eval_candidates"]:
            test_by_candidates[kind] = test_result  # just evaluated on these candidates
        else:
            test_by_candidates[kind] = trainer.evaluate(
                test_data, load_best_model=False, show_progress=config["show_progress"], candidates=kind
            )
        logger.info(set_color(f"test result [{kind} candidates]", "yellow") + f": {dict2str(test_by_candidates[kind])}")

    logger.info("The running environment of this training is as follows:\n" + get_environment(config).draw())
    # dict2str, not the dicts' repr: under numpy 2 that reads OrderedDict([('recall@10', np.float64(0.4005)), ...])
    logger.info(set_color("best valid ", "yellow") + f": {dict2str(best_valid_result)}")
    logger.info(set_color("test result", "yellow") + f": {dict2str(test_result)}")
    if saved:
        logger.info(set_color("checkpoint", "yellow") + f": {trainer.saved_model_file}")
    kept = best_epoch(curve, best_valid_score)
    capped = capped_improving(kept, trainer.epochs_trained, config.final_config_dict)
    if capped:
        logger.warning(set_color("warning", "red") + f": {cap_warning(kept, config['epochs'])}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "test_result_by_candidates": test_by_candidates,
        "model_file": trainer.saved_model_file if saved else None,
        "config": config,
        "valid_curve": curve,
        "best_epoch": kept,
        "epochs_trained": trainer.epochs_trained,
        "capped_improving": capped,
    }


def best_epoch(curve, best_valid_score):
    """The epoch whose validation RecBole kept as best: the last one with the best score (its early
    stopping counts a tie as a new best); ``None`` without validations."""
    kept = [epoch for epoch, score in curve if score == float(best_valid_score)]
    return kept[-1] if kept else None


def capped_improving(best_epoch, epochs_trained, config) -> bool:
    """Whether a run ended at the epoch cap while still improving: it trained all ``epochs`` and its best
    validation (``best_epoch``, 0-based as RecBole logs epochs) is within the last ``stopping_step``
    validations before the cap. ``stopping_step`` is in RecBole's early stopping's unit
    (``recbole.utils.early_stopping``): validations, one every ``eval_step`` epochs (at most ``epochs``), so
    the window is ``stopping_step * eval_step`` epochs wide. That is: early stopping had not judged the run
    converged when the cap ended it (one that stopped at the very last epoch is not marked). ``config``: a
    mapping (a Config's ``final_config_dict``, a run record's ``config``). False for a one-pass model
    (``TRADITIONAL``, which RecBole trains one epoch whatever ``epochs`` says), a run without validations,
    and a record without these fields."""
    from recbole.utils import ModelType

    epochs, eval_step, stopping_step = (config.get(key) for key in ("epochs", "eval_step", "stopping_step"))
    # a live config holds the enum, a record its str()
    if str(config.get("MODEL_TYPE")) == str(ModelType.TRADITIONAL):
        return False
    if not all(isinstance(v, int) for v in (best_epoch, epochs_trained, epochs, eval_step, stopping_step)) or min(epochs, eval_step) < 1:
        return False
    eval_step = min(eval_step, epochs)  # as RecBole's Trainer sets it
    last_validation = epochs // eval_step * eval_step - 1  # validations end epochs (e + 1) % eval_step == 0
    return epochs_trained >= epochs and 0 <= last_validation - best_epoch <= stopping_step * eval_step


def cap_warning(best_epoch: int, epochs: int) -> str:
    """The warning line of a run that :func:`capped_improving` marks (epochs counted, not RecBole's 0-based index)."""
    return (f"best validation after {best_epoch + 1} of {epochs} epochs: still improving at the cap; raise --epochs "
            "(early stopping ends the run when it converges)")


@dataclass
class BuiltRun:
    """What :func:`build_run` assembles for a config."""

    config: object
    dataset: object
    train_data: object
    valid_data: object
    test_data: object
    model: torch.nn.Module


def build_run(config) -> BuiltRun:
    """The one assembly of a run from its Config: the dataset's files (a bundled one prepared, a missing
    one explained), the dataset, RecBole's three dataloaders (with ``train_neg_items``), and the model,
    seeded as RecBole seeds it and on ``config["device"]`` (:func:`recbole_mamex.config.run_device`).
    Training, :func:`load_data_and_model`, serving, interpretation and the benchmarks build through it."""
    ensure_dataset_files(config)
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    return BuiltRun(config, data, train_data, valid_data, test_data, model)


def run(spec: RunSpec, nproc=1, world_size=-1, ip="localhost", port=5678, group_offset=0, resume_from=None):
    """One process (:func:`run_spec`) or several (:func:`recbole_mamex.distributed.run_distributed`,
    RecBole's DDP path), as ``recbole.quick_start.run`` chooses: several when ``nproc > 1`` or
    ``world_size > 0``."""
    if nproc == 1 and world_size <= 0:
        return run_spec(spec, resume_from=resume_from)
    from recbole_mamex.distributed import DistributedConfigError, run_distributed

    if resume_from is not None:
        raise DistributedConfigError("resume_from: resuming is supported for one-process runs only")

    return run_distributed(run_spec, spec, nproc=nproc, world_size=world_size, ip=ip, port=port, group_offset=group_offset)


def load_data_and_model(model_file, allow_changed_features: bool = False):
    """Rebuild config, model, dataset and dataloaders from a checkpoint that a run of this package (or of
    RecBole) saved; the model holds the saved weights.

    The checkpoint is read without unpickling any object (:mod:`recbole_mamex.trainer.checkpoint`), so a
    file from anywhere runs no code. The users and items must have the ids they had in training (the
    checkpoint records RecBole's token maps): a dataset whose lines were re-ordered, or another dataset of the
    same name, is a :class:`CheckpointMismatchError`.

    The item features must be those the model was trained on (the checkpoint records a fingerprint of
    each modality, see ``ItemFeatures.fingerprints``): other features of the same shape are a
    :class:`CheckpointMismatchError` naming the files, unless ``allow_changed_features``.

    A model bundle (:mod:`recbole_mamex.bundle`) is loaded, with the same checks, by
    :func:`recbole_mamex.bundle.load_bundle`; :func:`recbole_mamex.bundle.load_model` takes either.

    Returns:
        (config, model, dataset, train_data, valid_data, test_data), as RecBole's function does.
    """
    _, built = load_checkpoint(model_file, allow_changed_features)
    return built.config, built.model, built.dataset, built.train_data, built.valid_data, built.test_data


def load_checkpoint(model_file, allow_changed_features: bool = False):
    """``(checkpoint, built)``: the checkpoint as :func:`~recbole_mamex.trainer.checkpoint.read_checkpoint`
    reads it and the :class:`BuiltRun` :func:`load_data_and_model` returns, its model holding the checkpoint's
    weights (after the same checks)."""
    checkpoint = read_checkpoint(model_file)
    built = rebuild_run(checkpoint["config"])
    load_checked_weights(
        model_file, built, checkpoint["state_dict"], checkpoint.get("other_parameter"), checkpoint.get("token_maps"),
        allow_changed_features,
    )
    return checkpoint, built


def rebuild_run(config) -> BuiltRun:
    """The run of a saved model's ``config`` (a checkpoint's, a bundle's), built (:func:`build_run`) on this
    process's device (:func:`~recbole_mamex.config.run_device`, whatever device trained it), seeded and
    logged as :func:`load_data_and_model` does."""
    config.final_config_dict["device"] = run_device(config)  # this process's device, whatever trained it
    init_seed(config["seed"], config["reproducibility"])
    make_log_dir(config["model"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)
    with restoring_saved_weights():  # a teacher (ALDI, DropoutNet) is not trained again: its saved vectors are loaded
        built = build_run(config)
    logger.info(built.dataset)
    return built


def load_checked_weights(source, built: BuiltRun, state_dict, other_parameter, saved_token_maps,
                         allow_changed_features: bool = False) -> None:
    """The checks of a saved model against the run rebuilt from today's files (``built``), then its weights
    loaded into ``built.model``: the one loading step of a checkpoint (:func:`load_data_and_model`) and of a
    bundle (:func:`recbole_mamex.bundle.load_bundle`). ``source`` is the file or folder errors name.

    Checked, in order: the token maps (:func:`~recbole_mamex.trainer.checkpoint.check_token_maps`), the
    modalities (:func:`check_feature_modalities`), the parameter shapes and dtypes
    (:func:`check_checkpoint_shapes`) and, unless ``allow_changed_features``, the feature fingerprints and
    ``center_l2`` centres (:func:`check_feature_fingerprints`, :func:`check_feature_centers`). The model keeps
    the fingerprints and centres of the features it now holds; the rest of ``other_parameter`` is loaded."""
    config, model = built.config, built.model
    check_token_maps(source, saved_token_maps, token_maps(built.dataset), config)
    other = dict(other_parameter or {})
    check_feature_modalities(source, other.get("feature_fingerprints"), model)
    check_checkpoint_shapes(source, state_dict, model.state_dict())
    if not allow_changed_features:
        check_feature_fingerprints(source, other.get("feature_fingerprints"), model)
        check_feature_centers(source, other.get("feature_centers"), model)
    # the model keeps the fingerprints and centres of the features it now holds
    other.pop("feature_fingerprints", None)
    other.pop("feature_centers", None)
    model.load_state_dict(state_dict)
    model.load_other_parameter(other)


def check_feature_modalities(model_file, saved, model) -> None:
    """Refuse a checkpoint whose model was trained on other modalities than a build from today's files
    loads (an optional modality's file that appeared or vanished since training, another use_modalities),
    naming them, before the parameters that differ because of it are compared."""
    current = getattr(model, "feature_fingerprints", None)
    if not saved or current is None or set(saved) == set(current):
        return
    gone, new = sorted(set(saved) - set(current)), sorted(set(current) - set(saved))
    found = []
    if gone:
        found.append(f"no {', '.join(gone)} now (an optional modality whose file is absent, or not in use_modalities)")
    if new:
        found.append(", ".join(f"{name} ({model.feature_sources.get(name)})" for name in new) + " now as well")
    raise CheckpointMismatchError(
        model_file, f"the modalities the model was trained on ({', '.join(sorted(saved))})",
        "; ".join(found) + ". Restore the dataset's files as they were in training, or train again",
    )


def check_feature_fingerprints(model_file, saved, model) -> None:
    """Refuse a checkpoint whose model was trained on other item features than the dataset's files hold now
    (same shapes, other values), naming the modalities and their files."""
    current = getattr(model, "feature_fingerprints", None)
    if not saved or current is None:
        return  # a model without features, or a checkpoint from before fingerprints were recorded
    changed = sorted(name for name in set(saved) | set(current) if saved.get(name) != current.get(name))
    if changed:
        files = ", ".join(f"{name} ({model.feature_sources.get(name, 'not in the dataset now')})" for name in changed)
        raise CheckpointMismatchError(
            model_file, "the item features the model was trained on",
            f"other features for {files}. Did a feature file change since training? To use the checkpoint with "
            "these features anyway, pass allow_changed_features=True (serving: --allow-changed-features)",
        )


def check_feature_centers(model_file, saved, model) -> None:
    """Refuse a checkpoint whose ``feature_norm: center_l2`` centres (means over the training items) differ
    from those rebuilt now: the training interactions changed, so cold and warm items would be normalised
    otherwise than in training."""
    current = getattr(model, "feature_centers", None)
    if not saved or current is None:
        return
    changed = sorted(
        name for name in set(saved) | set(current)
        if name not in saved or name not in current or not torch.equal(saved[name].cpu(), current[name].cpu())
    )
    if changed:
        raise CheckpointMismatchError(
            model_file, "the training items the model's feature centres were computed on (feature_norm: center_l2)",
            f"other centres for {changed}. Did the training interactions change since training? To use the checkpoint "
            "anyway (with the centres of today's training items), pass allow_changed_features=True (serving: "
            "--allow-changed-features)",
        )


def check_checkpoint_shapes(model_file, saved: dict, current: dict) -> None:
    """Refuse a checkpoint whose parameter shapes differ from the model rebuilt from today's files (item
    features of another width, items or users added), naming the parameters, instead of torch's error."""
    diff = [
        f"{name} {tuple(saved[name].shape)} vs {tuple(current[name].shape)}"
        for name in saved
        if name in current and tuple(saved[name].shape) != tuple(current[name].shape)
    ]
    diff += [f"{name} {tuple(saved[name].shape)} vs none" for name in saved if name not in current]
    diff += [f"{name} none vs {tuple(current[name].shape)}" for name in current if name not in saved]
    dtypes = [f"{name} {saved[name].dtype} vs {current[name].dtype}" for name in saved
              if name in current and saved[name].dtype != current[name].dtype]
    if dtypes and not diff:  # a checkpoint this package wrote holds the model's own dtypes
        raise CheckpointMismatchError(
            model_file, "parameters of the model's dtypes (as training wrote them)",
            f"other dtypes (checkpoint vs model): {'; '.join(dtypes[:4])}" + (f" and {len(dtypes) - 4} more" if len(dtypes) > 4 else ""),
        )
    if diff:
        raise CheckpointMismatchError(
            model_file, "the dataset files the model was trained on (parameter shapes in the checkpoint)",
            f"files that build other shapes (checkpoint vs now): {'; '.join(diff[:4])}"
            + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
            + ". Did the item features or the interactions change since training?",
        )
