"""The trainer side of a multi-process run (see :mod:`recbole_mamex.distributed`, the launcher, for what
it makes exact): metrics weighted by the users each process evaluated, the sampler's padding dropped,
one checkpoint name, one-process configs in checkpoints, data buffers not broadcast."""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
from recbole.evaluator import Evaluator

from recbole_mamex.trainer.compose import derive_trainer


class _RowCountingEvaluator(Evaluator):
    """RecBole's Evaluator that remembers how many users (rows) its last evaluation averaged over."""

    rows = 0

    def evaluate(self, dataobject):
        key = "rec.topk" if "rec.topk" in dataobject else "rec.score"
        self.rows = len(dataobject.get(key)) if key in dataobject else 0
        return super().evaluate(dataobject)


def ddp_ignored_buffers(model: torch.nn.Module) -> list[str]:
    """Names of the model's buffers that are not in its state dict (data, not learnt state)."""
    persistent = set(model.state_dict())
    return [name for name, _ in model.named_buffers() if name not in persistent]


def single_process_config(config):
    """A copy of a distributed run's Config that reads as a one-process run (what checkpoints store)."""
    single = copy.copy(config)
    single.final_config_dict = {**config.final_config_dict, "single_spec": True, "local_rank": 0}
    return single


def own_rows(eval_data) -> int | None:
    """How many of ``eval_data``'s samples are this process's own (not the sampler's padding), or None
    when the loader is not split by a ``DistributedSampler`` in order."""
    sampler = getattr(eval_data, "sampler", None)
    if not isinstance(sampler, torch.utils.data.distributed.DistributedSampler) or sampler.shuffle:
        return None
    return len(range(sampler.rank, len(sampler.dataset), sampler.num_replicas))


class DistributedTrainerMixin:
    """Put in front of a RecBole trainer class for a distributed run; see the module docstring."""

    def __init__(self, config, model):
        distributed = not config["single_spec"]
        if distributed:
            ignored = ddp_ignored_buffers(model)
            if ignored:
                torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
        super().__init__(config, model)
        self.evaluator = _RowCountingEvaluator(config)
        self._rows_left = None
        if distributed:
            name = [self.saved_model_file]
            dist.broadcast_object_list(name, src=0)
            self.saved_model_file = name[0]

    def checkpoint_config(self):
        """The config written into checkpoints: a one-process copy for a distributed run."""
        return self.config if self.config["single_spec"] else single_process_config(self.config)

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if self.config["single_spec"]:
            return super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        if self.config["local_rank"] != 0:
            return  # as RecBole: the first process writes
        distributed_config, self.config = self.config, self.checkpoint_config()
        try:
            super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        finally:
            self.config = distributed_config

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if self.config["single_spec"]:
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if load_best_model and eval_data:
            dist.barrier()  # the first process has written the checkpoint the others are about to read
        self._rows_left = own_rows(eval_data)
        try:
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        finally:
            self._rows_left = None

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self._rows_left is None or self._rows_left >= scores.shape[0]:
            if self._rows_left is not None:
                self._rows_left -= scores.shape[0]
            return interaction, scores, positive_u, positive_i
        keep, self._rows_left = self._rows_left, 0  # the rest are the sampler's repeats
        kept = positive_u < keep
        return interaction[torch.arange(keep)], scores[:keep], positive_u[kept], positive_i[kept.to(positive_i.device)]

    def _map_reduce(self, result, num_sample):
        rows = float(self.evaluator.rows)
        totals = torch.tensor([rows] + [float(value) * rows for value in result.values()], dtype=torch.float64)
        totals = totals.to(self.device)
        dist.all_reduce(totals)
        totals = totals.cpu().tolist()
        places = self.config["metric_decimal_place"]
        if totals[0] == 0:
            return {key: 0.0 for key in result}
        return {key: round(total / totals[0], places) for key, total in zip(result, totals[1:])}


def with_distributed_evaluation(trainer_class: type) -> type:
    """``trainer_class`` with :class:`DistributedTrainerMixin` in front (a cached subclass)."""
    return derive_trainer(trainer_class, DistributedTrainerMixin, "Distributed", "for multi-process runs")
