"""Resuming an interrupted training where it stopped, to the same result as an uninterrupted run.

RecBole saves only the best model (at each improvement on validation). :class:`LastCheckpointMixin`, which
:func:`recbole_mamex.trainer.get_trainer` puts in front of any RecBole ``Trainer``, also keeps a *last*
checkpoint next to it, ``<best file>-last.pth``, where the best file is RecBole's name made unique per
run (:func:`unique_checkpoint_path`), rewritten (atomically) at the start of every epoch after
the first: the state at the end of the previous epoch, after its validation and early-stopping update.
It holds what RecBole's ``resume_checkpoint`` reads (weights, optimizer, epoch, early-stopping counter and
best score) plus what an exact continuation needs: the best valid result, the best checkpoint's path,
and the random states that the next epoch draws from (python, numpy: RecBole's negative sampler, torch:
dropout and initialisation, the training dataloader's shuffling generator). When the training finishes
(``fit`` returns), the last checkpoint it wrote is removed, unless ``keep_last_checkpoint: True``: an
interrupted training leaves it, a finished one leaves only RecBole's best checkpoint.

``run_recbole_mamex(..., resume_from=FILE)`` (``--resume FILE`` on the command line, with the same
arguments as the interrupted run) rebuilds model, data and trainer from the config, then loads the
checkpoint with RecBole's ``Trainer.resume_checkpoint`` and restores the rest: training goes on at the
next epoch, keeps writing the best model to the interrupted run's best checkpoint, and ends with the
metrics the uninterrupted run would have given (tested on CPU with one thread; see docs/getting-started.md on
multi-threaded float sums). A RecBole best checkpoint can be passed too: RecBole's behaviour then
(weights, optimizer and counters only).

Resuming is for one-process runs: in a multi-process run only the first process writes the last
checkpoint, with its own random state, and ``recbole_mamex.quick_start.run`` refuses ``resume_from``
with ``nproc > 1``.
"""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_mamex.errors import RecboleMamexError
from recbole_mamex.trainer.checkpoint import (
    CheckpointFileError, check_token_maps, read_checkpoint, write_checkpoint,
)
from recbole_mamex.trainer.compose import derive_trainer

__all__ = ["CheckpointFileError", "LastCheckpointMixin", "MissingCheckpointError", "ResumeError",
           "TrainingDivergedError", "read_checkpoint", "with_last_checkpoint"]


class ResumeError(RecboleMamexError, ValueError):
    """A checkpoint that this run cannot go on from."""


class MissingCheckpointError(RecboleMamexError, FileNotFoundError):
    """A checkpoint to resume from that is not there."""


class TrainingDivergedError(RecboleMamexError, ValueError):
    """A training whose loss became NaN (RecBole's "Training loss is nan")."""


def unique_checkpoint_path(recbole_file) -> str:
    """RecBole's ``saved/<Model>-<time>.pth`` with a random suffix, ``saved/<Model>-<time>-<6 hex>.pth``:
    two runs of one model started in the same second get different files (RecBole's name has a
    one-second resolution, so one run's checkpoint could hold the other's weights). The suffix comes from
    the operating system's randomness, not from the seeded generators a run draws from."""
    import secrets

    stem, ext = os.path.splitext(os.fspath(recbole_file))
    return f"{stem}-{secrets.token_hex(3)}{ext or '.pth'}"


def last_checkpoint_path(best_file) -> str:
    """``saved/MAMEX-<time>.pth`` -> ``saved/MAMEX-<time>-last.pth``."""
    stem, ext = os.path.splitext(os.fspath(best_file))
    return f"{stem}-last{ext or '.pth'}"


def rng_state(train_data=None) -> dict:
    """The random states a training epoch draws from."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    # numpy's state as plain values (a checkpoint holds no numpy objects: see trainer.checkpoint)
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(train_data, "generator", None)
    if isinstance(generator, torch.Generator):
        state["loader"] = generator.get_state()
    return state


def set_rng_state(state: dict, train_data=None) -> None:
    """Put back what :func:`rng_state` returned."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # the GPUs both hosts have: a checkpoint written where more GPUs were visible resumes here too
        # (torch.cuda.set_rng_state_all would fail on the first GPU this host lacks)
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    generator = getattr(train_data, "generator", None)
    if "loader" in state and isinstance(generator, torch.Generator):
        generator.set_state(state["loader"])


class LastCheckpointMixin:
    """Put in front of a RecBole ``Trainer`` class; see the module docstring."""

    def __init__(self, config, model):
        from recbole_mamex.config import config_to_text

        super().__init__(config, model)
        self.saved_model_file = unique_checkpoint_path(self.saved_model_file)
        config_to_text(self.checkpoint_config())  # a value a checkpoint cannot hold is an error now, not after epoch 0
        self.token_maps = None  # the dataset's token -> id maps (set by the run's assembly), kept in checkpoints
        self._resumed_from = None
        self._keep_last = False
        self._pending_rng = None
        self._wrote_last = False
        self.epochs_trained = 0  # epochs whose training finished, resumed ones included

    def checkpoint_config(self):
        """The config written into checkpoints (the hook a mixin in front overrides: a distributed run
        writes a one-process copy)."""
        return self.config

    @property
    def last_model_file(self) -> str:
        """Where the last checkpoint goes: the file resumed from, else next to the best checkpoint."""
        return self._resumed_from or last_checkpoint_path(self.saved_model_file)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        from recbole_mamex.trainer.checkpoint import token_maps

        if self.token_maps is None:  # a trainer driven from code: the maps of the data it trains on
            self.token_maps = token_maps(train_data._dataset)
        self._keep_last = saved
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        if self._wrote_last and not self.config["keep_last_checkpoint"]:
            # finished: nothing to resume; only what this training wrote is removed
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.last_model_file)
            self._wrote_last = False
        return result

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng, train_data)
            self._pending_rng = None
        elif self._keep_last and epoch_idx > self.start_epoch:
            self.save_last_checkpoint(epoch_idx - 1, train_data)
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epochs_trained = epoch_idx + 1
        return loss

    def checkpoint_state(self, epoch: int) -> dict:
        """What every checkpoint holds: RecBole's entries and the token maps (see
        :mod:`recbole_mamex.trainer.checkpoint`)."""
        return {
            "config": self.checkpoint_config(),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": self.best_valid_score,
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            "token_maps": self.token_maps,
        }

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole's best checkpoint, in this package's format (plain values, written atomically)."""
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        write_checkpoint(self.checkpoint_state(epoch), saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def save_last_checkpoint(self, epoch: int, train_data=None) -> None:
        """Write the state at the end of ``epoch`` to :attr:`last_model_file` (first process only); a failed
        write keeps the previous one."""
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        state = {
            **self.checkpoint_state(epoch),
            "best_valid_result": self.best_valid_result,
            "best_model_file": self.saved_model_file,
            "rng_state": rng_state(train_data),
        }
        write_checkpoint(state, self.last_model_file)
        self._wrote_last = True

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False, **kwargs):
        """RecBole's ``evaluate``, the best checkpoint read by :func:`read_checkpoint` (its format, settings and
        token maps checked) instead of RecBole's plain ``torch.load``."""
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file
            checkpoint = read_checkpoint(checkpoint_file, map_location=self.device)
            check_token_maps(checkpoint_file, checkpoint["token_maps"], self.token_maps, self.config)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, False, model_file, show_progress, **kwargs)

    def save_pretrained_model(self, epoch, saved_model_file):
        """RecBole's pre-training checkpoint (RaCT, S3Rec, ...), in this package's format; as RecBole's, it is
        the file a later ``evaluate`` loads."""
        write_checkpoint(self.checkpoint_state(epoch), saved_model_file)
        self.saved_model_file = saved_model_file

    def _check_nan(self, loss):
        if torch.isnan(loss):
            if getattr(self, "tensorboard", None) is not None:
                self.tensorboard.close()  # its writer thread would go on writing after the run ended
            raise TrainingDivergedError(
                f"training diverged: the loss became nan in epoch {self.epochs_trained} (learning_rate "
                f"{self.config['learning_rate']}). Lower learning_rate, or check the item features for huge values"
            )

    def resume_checkpoint(self, resume_file):
        """RecBole's ``resume_checkpoint``, plus (for a last checkpoint) the best result, the best
        checkpoint's path and the random states."""
        from recbole_mamex.config import config_differences, listed_differences

        if not os.path.isfile(resume_file):
            raise MissingCheckpointError(f"resume: checkpoint {resume_file} not found")
        checkpoint = read_checkpoint(resume_file)
        for key in ("model", "dataset"):
            if checkpoint["config"][key] != self.config[key]:
                raise ResumeError(
                    f"resume: {resume_file} was written for {key} {checkpoint['config'][key]!r}, "
                    f"this run has {self.config[key]!r}: run the interrupted command again"
                )
        # the optimizer state and counters come from the checkpoint: a changed setting would be logged but
        # not used (an lr given now would be replaced by the saved one), so a resume takes none
        diffs = config_differences(dict(checkpoint["config"].final_config_dict), dict(self.config.final_config_dict))
        if diffs:
            raise ResumeError(
                f"resume: {resume_file} was written with other settings than this command: {listed_differences(diffs)}"
                ". Resume with the interrupted run's own arguments, or start a new run to change them"
            )
        check_token_maps(resume_file, checkpoint.get("token_maps"), self.token_maps, self.config)
        # RecBole's resume_checkpoint, from the checkpoint read above (RecBole's would read its config as a Config)
        self.saved_model_file = os.fspath(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if "best_model_file" in checkpoint:
                rng = checkpoint["rng_state"]
                set_rng_state(rng)  # checked now (and put back before the next epoch, see _train_epoch)
                best_valid_result = dict(checkpoint["best_valid_result"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
            raise ResumeError(f"resume: {resume_file}: expected the optimizer state and random states a training "
                              f"wrote, found entries that are not ({type(err).__name__}: {err})") from None
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")
        if "best_model_file" not in checkpoint:
            return  # a best checkpoint: RecBole's behaviour (weights, optimizer, counters; it becomes the best file)
        # the best checkpoint is the one beside this last one (never a path the file names: it is written to)
        stem, ext = os.path.splitext(os.fspath(resume_file))
        if not stem.endswith("-last"):
            raise ResumeError(f"resume: {resume_file}: expected a last checkpoint's name, <best file>-last{ext}")
        self.saved_model_file = stem[: -len("-last")] + ext
        self._resumed_from = os.fspath(resume_file)
        self.best_valid_result = best_valid_result
        self._pending_rng = rng
        self.logger.info(
            set_color("resumed", "blue") + f": {resume_file} (end of epoch {checkpoint['epoch']}); "
            f"best model: {self.saved_model_file}"
        )


def with_last_checkpoint(trainer_class: type) -> type:
    """``trainer_class`` with :class:`LastCheckpointMixin` in front, for RecBole's ``Trainer`` family (other
    trainers, e.g. the decision-tree ones, are returned unchanged)."""
    if not issubclass(trainer_class, Trainer):
        return trainer_class
    return derive_trainer(trainer_class, LastCheckpointMixin, "Resumable", "that keeps a last checkpoint")
