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
  popularity ranking for free. :func:`top_with_tie_order` gives the collector each row's top-k under
  (score descending, then that fixed order); only rows with a tie among their top ``max(topk) + 1``
  scores (rare for a trained model) need more than one ``torch.topk``.

RecBole's collector and metrics (Recall, NDCG, Hit, Precision, MRR, ...) then run unchanged on what is left.
``test_candidates: [cold, warm, all]`` makes :func:`recbole_mamex.quick_start.run_recbole_mamex` report
the test split once per listed candidate set.

Any RecBole trainer gets this behaviour through :func:`with_candidate_evaluation`, which derives a
subclass of it with :class:`CandidateEvaluationMixin` in front.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.evaluator import Collector
from recbole.evaluator.collector import DataStruct
from recbole.utils import set_color

from recbole_mamex.errors import RecboleMamexError
from recbole_mamex.data.dataset import CANDIDATE_KINDS
from recbole_mamex.trainer.compose import derive_trainer

_UNSET = object()


class CandidateEvaluationError(RecboleMamexError, ValueError):
    """Candidate evaluation asked for where it cannot run."""


def check_candidate_config(config) -> None:
    kind = config["eval_candidates"]
    if kind is not None and kind not in CANDIDATE_KINDS:
        raise CandidateEvaluationError(f"eval_candidates: expected one of {list(CANDIDATE_KINDS)} or none, found {kind!r}")
    listed = config["test_candidates"]
    kinds = candidate_kinds_for_test(config) if isinstance(listed, (str, list, tuple, type(None))) else [listed]
    if any(k not in CANDIDATE_KINDS for k in kinds):
        raise CandidateEvaluationError(f"test_candidates: expected a list of {list(CANDIDATE_KINDS)}, found {config['test_candidates']!r}")
    mode = config["eval_args"]["mode"]
    modes = list(mode.values()) if isinstance(mode, dict) else [mode]
    if (kind is not None or kinds) and any(m != "full" for m in modes):
        raise CandidateEvaluationError(f"candidate evaluation needs eval_args.mode 'full', found {mode!r}")


def tie_break_order(n_items: int, seed) -> torch.Tensor:
    """The fixed random order in which equal scores are ranked under candidate evaluation."""
    generator = torch.Generator().manual_seed(int(seed or 0))
    return torch.randperm(n_items, generator=generator)


def top_with_tie_order(scores: torch.Tensor, order: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each row's ``k`` best scores, best first, equal scores ranked by position in ``order``.

    One ``torch.topk`` of depth ``k + 1`` gives the answer for every row whose top ``k + 1`` values are
    all different (its top ``k`` cannot depend on how ties are broken). A row with a tie there is ranked
    from at most ``2k`` candidates: the items scoring above its ``k``-th best score ``t`` (fewer than
    ``k``), and the ``k`` items scoring exactly ``t`` that come first in ``order`` (a second top-k, over
    positions). No row is sorted in full: with real content many items share one vector (the same
    brand and categories), so most rows hold ties and a full sort per row cost ten times the top-k."""
    n = scores.shape[1]
    top = torch.topk(scores, min(k + 1, n), dim=1)
    k = min(k, n)
    indices = top.indices[:, :k]
    tied = (top.values[:, 1:] == top.values[:, :-1]).any(dim=1)
    if bool(tied.any()):
        rows = torch.nonzero(tied).squeeze(1)
        indices[rows] = _tied_rows_top(scores[rows], top.values[rows, k - 1 : k], top.indices[rows, :k], order, k)
    return indices


def _tied_rows_top(scores: torch.Tensor, kth: torch.Tensor, top: torch.Tensor, order: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`top_with_tie_order` for rows that hold a tie: ``kth`` = each row's ``k``-th best score,
    ``top`` = the row's top ``k`` indices in any tie order."""
    n = scores.shape[1]
    position = torch.empty_like(order)
    position[order] = torch.arange(n, device=order.device, dtype=order.dtype)
    # the items above the k-th score are all in the top k, whatever the tie order
    above = torch.gather(scores, 1, top) > kth
    # the k items scoring exactly the k-th score that come first in `order`
    at_kth = scores == kth
    key = torch.where(at_kth, position.to(torch.int32), n)  # n: not at the k-th score
    first = torch.topk(key, k, dim=1, largest=False)
    candidates = torch.cat([top, first.indices], dim=1)
    valid = torch.cat([above, first.values < n], dim=1)
    cand_scores = torch.gather(scores, 1, candidates)
    cand_position = position[candidates]
    # rank by (valid first, score descending, position in `order`): stable sorts, last key first
    rank = torch.argsort(cand_position, dim=1, stable=True)
    rank = rank.gather(1, torch.argsort(cand_scores.gather(1, rank), dim=1, descending=True, stable=True))
    rank = rank.gather(1, torch.argsort((~valid).gather(1, rank).to(torch.int8), dim=1, stable=True))
    return candidates.gather(1, rank[:, :k])


def candidate_kinds_for_test(config) -> list[str]:
    """``test_candidates`` as a list (a single name is allowed; absent means none)."""
    kinds = config["test_candidates"]
    if kinds is None:
        return []
    return [kinds] if isinstance(kinds, str) else list(kinds)


class _RegisterWithout:
    """A view of RecBole's metric register in which ``keys`` are not needed."""

    def __init__(self, register, keys):
        self.register, self.keys = register, keys

    def need(self, key):
        return key not in self.keys and self.register.need(key)


class AppendingDataStruct(DataStruct):
    """RecBole's ``DataStruct`` whose :meth:`update_tensor` keeps each batch's tensor in a list and
    concatenates them once, when the struct is read. RecBole's concatenates at every batch, copying all
    that was collected so far: quadratic in the batches, which a large catalogue has many of (16x Amazon
    Sports: about 40,000 full-sort batches of 14 users, several TB copied). What is read is the same."""

    def __init__(self):
        super().__init__()
        self._parts: dict[str, list] = {}

    def update_tensor(self, name: str, value: torch.Tensor):
        if name in self._data_dict and not isinstance(self._data_dict[name], torch.Tensor):
            raise ValueError(f"{name} is not a tensor.")
        self._parts.setdefault(name, []).append(value.clone().detach())

    def flush(self) -> None:
        """Concatenate the collected parts into the struct's tensors."""
        for name, parts in self._parts.items():
            before = [self._data_dict[name]] if name in self._data_dict else []
            self._data_dict[name] = torch.cat(before + parts, dim=0) if len(before) + len(parts) > 1 else parts[0]
        self._parts = {}

    def __getitem__(self, name: str):
        self.flush()
        return super().__getitem__(name)

    def __setitem__(self, name: str, value):
        self._parts.pop(name, None)
        super().__setitem__(name, value)

    def __delitem__(self, name: str):
        self.flush()
        super().__delitem__(name)

    def __contains__(self, key: str):
        return key in self._parts or super().__contains__(key)

    def get(self, name: str):
        self.flush()
        return super().get(name)

    def set(self, name: str, value):
        self[name] = value


class TopkCollector(Collector):
    """RecBole's ``Collector`` with the inputs of the top-k metrics built from lists instead of matrices.

    For ``rec.topk`` (Recall, NDCG, Hit, MRR, Precision, MAP) RecBole fills a zero int matrix of the
    scores' shape, sets each (user, positive item) to 1, sums it per row and gathers it at the top-k,
    and it runs a second ``torch.topk`` for ``rec.items``: three passes over a users x items matrix
    besides the top-k. Here one top-k serves both keys, and the positives stay a list: unique
    ``user * n_items + item`` keys, counted per user with ``bincount`` and looked up at the top-k with
    ``isin``. The tensors handed to RecBole's metrics are equal to RecBole's (``tests/test_eval_batches.py``).

    A trainer that has already ranked the batch (with ties broken, see :func:`top_with_tie_order`) hands
    that top-k over with :meth:`give_topk` for the next :meth:`eval_batch_collect` of the same scores.
    """

    TOPK_KEYS = ("rec.items", "rec.topk")

    def __init__(self, config):
        super().__init__(config)
        self.data_struct = AppendingDataStruct()
        self._given = None

    def get_data_struct(self):
        self.data_struct.flush()  # RecBole's reads the struct's dict directly
        return super().get_data_struct()

    def give_topk(self, scores: torch.Tensor, indices: torch.Tensor) -> None:
        self._given = (scores, indices)

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        given, self._given = self._given, None
        need_items, need_topk = (self.register.need(key) for key in self.TOPK_KEYS)
        if need_items or need_topk:
            depth = max(self.topk)
            if given is None:
                top = torch.topk(scores_tensor, depth, dim=-1).indices
            elif given[0] is scores_tensor:
                top = given[1][:, :depth]
            else:  # a trainer mixin after the one that ranked replaced the scores: its ranking would be lost
                raise RuntimeError("TopkCollector: the top-k handed over belongs to other scores than those collected")
            if need_items:
                self.data_struct.update_tensor("rec.items", top)
            if need_topk:
                self.data_struct.update_tensor("rec.topk", topk_hits(top, scores_tensor.shape[1], positive_u, positive_i))
        register = self.register
        self.register = _RegisterWithout(register, self.TOPK_KEYS)
        try:
            super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        finally:
            self.register = register


def topk_hits(top: torch.Tensor, n_items: int, positive_u: torch.Tensor, positive_i: torch.Tensor) -> torch.Tensor:
    """RecBole's ``rec.topk`` for one batch: per row, 1/0 whether each of the ``top`` items is a positive
    of that row, then the row's number of distinct positives (int64, ``rows x (k + 1)``)."""
    rows = top.shape[0]
    keys = torch.unique(positive_u.to(top.device).long() * n_items + positive_i.to(top.device).long())
    counts = torch.bincount(torch.div(keys, n_items, rounding_mode="floor"), minlength=rows)
    top_keys = torch.arange(rows, device=top.device).unsqueeze(1) * n_items + top
    return torch.cat((torch.isin(top_keys, keys).long(), counts.unsqueeze(1)), dim=1)


class TopkCollectorMixin:
    """Put in front of a RecBole trainer class: its evaluations collect with :class:`TopkCollector`."""

    def __init__(self, config, model):
        super().__init__(config, model)
        if type(self.eval_collector) is Collector:
            self.eval_collector = TopkCollector(config)


def with_topk_collector(trainer_class: type) -> type:
    """``trainer_class`` collecting top-k metrics with :class:`TopkCollector` (a cached subclass)."""
    return derive_trainer(trainer_class, TopkCollectorMixin, "Topk", "collecting top-k metrics without dense matrices")


class CandidateEvaluationMixin(TopkCollectorMixin):
    """Put in front of a RecBole trainer class; see the module docstring."""

    def __init__(self, config, model):
        super().__init__(config, model)
        check_candidate_config(config)
        if not isinstance(self.eval_collector, TopkCollector):
            raise CandidateEvaluationError(
                f"candidate evaluation needs RecBole's Collector, found {type(self.eval_collector).__name__}"
            )
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
        mask = self._candidate_mask(eval_data, kind)
        self._active_candidates = {
            "mask": mask,
            "cap": torch.where(mask, np.inf, -np.inf).to(torch.float32),
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
        """A seeded permutation of the items that ranks equal scores, or None when a metric reads the
        scores themselves (then ties keep torch's order)."""
        if any(self.eval_collector.register.need(key) for key in ("rec.score", "rec.meanrank")):
            return None
        if "tie_order" not in self._mask_cache:
            self._mask_cache["tie_order"] = tie_break_order(self.model.n_items, self.config["seed"]).to(self.device)
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
        # -inf outside the candidates: min(score, +-inf), as masked_fill_ but 3x faster on a CPU
        torch.minimum(scores, active["cap"].to(scores.dtype), out=scores)
        positive_u, positive_i = positive_u.to(scores.device), positive_i.to(scores.device)
        kept = mask[positive_i]
        positive_u, positive_i = positive_u[kept], positive_i[kept]
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
        if active["tie_order"] is not None:
            # the collector's top-k, with equal scores in the fixed order
            self.eval_collector.give_topk(scores, top_with_tie_order(scores, active["tie_order"], max(self.config["topk"])))
        return interaction, scores, positive_u, positive_i


def with_candidate_evaluation(trainer_class: type) -> type:
    """``trainer_class`` with candidate-restricted evaluation (a cached subclass)."""
    return derive_trainer(trainer_class, CandidateEvaluationMixin, "Candidate", "with candidate-restricted evaluation")

