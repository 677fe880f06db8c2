"""Candidate-restricted full-sort evaluation inside RecBole's trainer (the item cold-start protocol).

``eval_candidates: cold | warm | all`` restricts every full-sort evaluation (validation, hence early
stopping, and test) to one candidate set of the split being evaluated (see
:class:`recbole_mamex.data.dataset.MultimodalDataset`). In each evaluated batch, after RecBole has scored
all items and masked the user's training items:

- non-candidate items get ``-inf``, so they never enter the top-k;
- held-out items outside the candidate set are dropped from the user's positives;
- users left with no positive are dropped from the batch and counted ("skipped" in the log);
- equal scores are ranked in a fixed random order of the items (seeded by ``seed``): ``torch.topk``
  leaves the order of ties unspecified, and RecBole numbers items by first appearance in the files, where
  popular items come first, so a model that ties (Pop on cold items, any constant score) could get a
  popularity ranking for free. Each row's scores are replaced by their rank under (score descending, then
  that fixed order), which the collector's top-k then reads; no score changes the ranking otherwise.

RecBole's collector and metrics (Recall, NDCG, Hit, Precision, MRR, ...) then run unchanged on what is left.
``test_candidates: [cold, warm, all]`` makes :func:`recbole_mamex.quick_start.run_recbole_mamex` report
the test split once per listed candidate set.

Any RecBole trainer gets this behaviour through :func:`with_candidate_evaluation`, which derives a
subclass of it with :class:`CandidateEvaluationMixin` in front.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.utils import set_color

from recbole_mamex.data.dataset import CANDIDATE_KINDS

_UNSET = object()


class CandidateEvaluationError(ValueError):
    """Candidate evaluation asked for where it cannot run."""


def check_candidate_config(config) -> None:
    kind = config["eval_candidates"]
    if kind is not None and kind not in CANDIDATE_KINDS:
        raise CandidateEvaluationError(f"eval_candidates: expected one of {list(CANDIDATE_KINDS)} or none, found {kind!r}")
    kinds = config["test_candidates"]
    if kinds is not None:
        if isinstance(kinds, str):
            kinds = [kinds]
        bad = [k for k in kinds if k not in CANDIDATE_KINDS]
        if bad or not isinstance(kinds, (list, tuple)):
            raise CandidateEvaluationError(f"test_candidates: expected a list of {list(CANDIDATE_KINDS)}, found {config['test_candidates']!r}")
    mode = config["eval_args"]["mode"]
    modes = list(mode.values()) if isinstance(mode, dict) else [mode]
    if (kind is not None or kinds) and any(m != "full" for m in modes):
        raise CandidateEvaluationError(f"candidate evaluation needs eval_args.mode 'full', found {mode!r}")


def tie_break_order(n_items: int, seed) -> torch.Tensor:
    """The fixed random order in which equal scores are ranked under candidate evaluation."""
    generator = torch.Generator().manual_seed(int(seed or 0))
    return torch.randperm(n_items, generator=generator)


def rank_with_tie_order(scores, positive_i, order, position):
    """Scores as ranks with ties broken by ``order``; columns follow ``order``, so ``positive_i`` is
    mapped through ``position`` (the inverse permutation)."""
    permuted = scores[:, order]
    ranking = torch.sort(permuted, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(ranking)
    ranks.scatter_(1, ranking, torch.arange(permuted.shape[1], device=permuted.device).expand_as(ranking))
    return -ranks.to(scores.dtype), position[positive_i]


def candidate_kinds_for_test(config) -> list[str]:
    kinds = config["test_candidates"]
    if kinds is None:
        return []
    return [kinds] if isinstance(kinds, str) else list(kinds)


class CandidateEvaluationMixin:
    """Put in front of a RecBole trainer class; see the module docstring."""

    def __init__(self, config, model):
        super().__init__(config, model)
        check_candidate_config(config)
        self.eval_candidates = config["eval_candidates"]
        self._active_candidates = None
        self._mask_cache = {}
        self.last_eval_users = None

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False, candidates=_UNSET):
        """RecBole's ``evaluate``; ``candidates`` (``cold``/``warm``/``all``/``None``) overrides
        ``eval_candidates`` for this call."""
        kind = self.eval_candidates if candidates is _UNSET else candidates
        if kind is None:
            self._active_candidates = None
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        self._active_candidates = {
            "mask": self._candidate_mask(eval_data, kind),
            "tie_order": self._tie_order(),
            "evaluated": 0,
            "skipped": 0,
        }
        try:
            result = super().evaluate(eval_data, load_best_model, model_file, show_progress)
            stats = self._active_candidates
        finally:
            self._active_candidates = None
        split = getattr(eval_data._dataset, "split_name", None) or "eval"
        n_candidates = int(self._mask_cache[(id(eval_data._dataset), kind)].sum().item())
        self.last_eval_users = {"evaluated": stats["evaluated"], "skipped": stats["skipped"], "candidates": n_candidates}
        self.logger.info(
            set_color(f"{split} on {kind} candidates", "cyan")
            + f": {n_candidates} items, {stats['evaluated']} users evaluated, "
            f"{stats['skipped']} skipped (no held-out item among the candidates)"
        )
        if stats["evaluated"] == 0:
            self.logger.warning(f"{split}: no user has a held-out item among the {kind} candidates")
        return result

    def _tie_order(self):
        """(order, position): a seeded permutation of the item columns and its inverse, or None when a
        metric needs the recommended item ids themselves (then ties keep RecBole's id order)."""
        if any(self.eval_collector.register.need(key) for key in ("rec.items", "rec.score", "rec.meanrank")):
            return None
        if "tie_order" not in self._mask_cache:
            order = tie_break_order(self.model.n_items, self.config["seed"])
            position = torch.empty_like(order)
            position[order] = torch.arange(len(order))
            self._mask_cache["tie_order"] = (order.to(self.device), position.to(self.device))
        return self._mask_cache["tie_order"]

    def _candidate_mask(self, eval_data, kind) -> torch.Tensor:
        dataset = eval_data._dataset
        key = (id(dataset), kind)
        if key not in self._mask_cache:
            candidates = getattr(dataset, "candidate_items", None)
            if candidates is None:
                raise CandidateEvaluationError(
                    f"{kind} candidates need a dataset built by recbole_mamex (MultimodalDataset) with a "
                    "train/valid/test split; this evaluation data has none"
                )
            if kind not in candidates:
                raise CandidateEvaluationError(f"candidates: expected one of {list(candidates)}, found {kind!r}")
            self._mask_cache[key] = torch.from_numpy(np.asarray(candidates[kind], dtype=bool)).to(self.device)
        return self._mask_cache[key]

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        active = self._active_candidates
        if active is None:
            return interaction, scores, positive_u, positive_i
        mask = active["mask"]
        scores[:, ~mask] = -np.inf
        positive_u, positive_i = positive_u.to(scores.device), positive_i.to(scores.device)
        kept = mask[positive_i]
        positive_u, positive_i = positive_u[kept], positive_i[kept]
        if active["tie_order"] is not None:
            scores, positive_i = rank_with_tie_order(scores, positive_i, *active["tie_order"])
        has_positive = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
        has_positive[positive_u] = True
        n_kept = int(has_positive.sum().item())
        active["evaluated"] += n_kept
        active["skipped"] += scores.shape[0] - n_kept
        if n_kept < scores.shape[0]:
            new_row = torch.cumsum(has_positive.long(), 0) - 1
            positive_u = new_row[positive_u]
            rows = torch.nonzero(has_positive).squeeze(1)
            scores = scores[rows]
            interaction = interaction[rows.cpu()]
        return interaction, scores, positive_u, positive_i


_DERIVED: dict[type, type] = {}


def with_candidate_evaluation(trainer_class: type) -> type:
    """``trainer_class`` with candidate-restricted evaluation (a cached subclass)."""
    if issubclass(trainer_class, CandidateEvaluationMixin):
        return trainer_class
    if trainer_class not in _DERIVED:
        _DERIVED[trainer_class] = type(
            f"Candidate{trainer_class.__name__}",
            (CandidateEvaluationMixin, trainer_class),
            {"__module__": __name__, "__doc__": f"{trainer_class.__name__} with candidate-restricted evaluation."},
        )
    return _DERIVED[trainer_class]
