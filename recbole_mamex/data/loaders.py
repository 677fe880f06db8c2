"""The full-sort evaluation loader of a run: RecBole's ``FullSortEvalDataLoader`` with batches sized by a
score-memory budget and its per-user item lists in compressed rows.

:func:`recbole_mamex.data.loading.data_preparation` builds :class:`FullSortLoader` for the valid and test
splits wherever RecBole's ``get_dataloader`` would build a ``FullSortEvalDataLoader`` (full-sort
evaluation). RecBole's own class is left as it is: code that calls RecBole's ``data_preparation`` gets
RecBole's loaders.
"""

from __future__ import annotations

from logging import getLogger

import numpy as np
import torch
from recbole.data.dataloader.abstract_dataloader import AbstractDataLoader
from recbole.data.dataloader.general_dataloader import FullSortEvalDataLoader
from recbole.data.interaction import Interaction
from recbole.utils import ModelType

SCORE_BYTES = 4  # a float32 score


def full_sort_users_per_batch(config, n_items: int) -> int:
    """Users per full-sort evaluation batch of a general model: as many as fit ``full_sort_batch_mb`` MiB
    of float32 scores (``n_items`` per user), at least one. Without that key (``~``, or a checkpoint from
    before it existed): RecBole's rule, ``eval_batch_size // n_items``. Evaluation (:class:`FullSortLoader`)
    and serving both size their batches here."""
    budget = config["full_sort_batch_mb"]
    if budget is None:
        return max(int(config["eval_batch_size"]) // n_items, 1)
    return max(int(float(budget) * 2**20) // (SCORE_BYTES * n_items), 1)


class PerUserRows:
    """Per-user item lists in compressed rows (``indptr``, ``items``: user ``u``'s items are
    ``items[indptr[u]:indptr[u + 1]]``, sorted), indexed like the object arrays of tensors RecBole's
    ``FullSortEvalDataLoader`` keeps (``rows[u]`` a tensor, ``rows[list of users]`` an array of them)."""

    def __init__(self, indptr: np.ndarray, items: np.ndarray):
        self.indptr, self.items = indptr, items

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def lengths(self, users: np.ndarray) -> np.ndarray:
        return self.indptr[users + 1] - self.indptr[users]

    def flat(self, users: np.ndarray):
        """(row of each item in ``users``' order, the items): every listed user's items, concatenated."""
        lengths = self.lengths(users)
        rows = np.repeat(np.arange(len(users)), lengths)
        starts = np.repeat(self.indptr[users] - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        positions = starts + np.arange(int(lengths.sum()))
        return torch.from_numpy(rows), torch.from_numpy(self.items[positions])

    def __getitem__(self, users):
        if np.ndim(users) == 0:
            u = int(users)
            return torch.from_numpy(self.items[self.indptr[u] : self.indptr[u + 1]].copy())
        out = np.empty(len(users), dtype=object)
        out[:] = [self[u] for u in users]
        return out


def _rows_by_user(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> PerUserRows:
    """The distinct (user, item) pairs as :class:`PerUserRows`, items sorted within each user."""
    keys = np.unique(users.astype(np.int64) * n_items + items.astype(np.int64))
    counts = np.bincount(keys // n_items, minlength=n_users)
    return PerUserRows(np.concatenate(([0], np.cumsum(counts))).astype(np.int64), keys % n_items)


class FullSortLoader(FullSortEvalDataLoader):
    """RecBole 1.2.1's ``FullSortEvalDataLoader`` for a general model, with two changes; a sequential model
    gets RecBole's loader unchanged.

    **Batches sized by memory.** RecBole puts ``eval_batch_size // n_items`` users in a batch, at least one:
    with its default 4096 that is 2 users on Last.fm-2K and ONE user on any catalogue of more than 4,096
    items, so a validation of Amazon Sports is 35,598 Python iterations around a 1 x 18,357 product. Here a
    batch holds ``full_sort_batch_mb`` MiB of scores (:func:`full_sort_users_per_batch`; our default 16: 228
    users on Sports, every user at once on Last.fm); ``full_sort_batch_mb: ~`` is RecBole's rule.
    ``eval_batch_size`` keeps its other RecBole roles (sampled evaluation, pairs per ``predict`` call for
    models without ``full_sort_predict``, sequential models' batches). Metrics do not depend on the batch
    size (``tests/test_eval_batches.py``).

    **Per-user lists in compressed rows.** RecBole keeps two object arrays with one tensor per user, the
    evaluated positives and the history to mask, built by a Python loop over every interaction: on 16x
    Amazon Sports (570k users, 4.7M interactions) about 0.8 GB per loader
    (``bench/results/scaling_build_memory_16x.md``). Here the same lists are two flat int64 arrays
    (:class:`PerUserRows`), built with array operations; batches are assembled by indexing them. Users,
    batches and the items of each user are RecBole's (only the order of items within a user's lists, which
    no metric reads, becomes ascending); ``uid2history_item`` / ``uid2positive_item`` stay indexable as in
    RecBole (``recbole.utils.case_study`` reads the first).
    """

    def __init__(self, config, dataset, sampler, shuffle=False):
        if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
            super().__init__(config, dataset, sampler, shuffle)
            return
        self.logger = getLogger()
        self.uid_field, self.iid_field = dataset.uid_field, dataset.iid_field
        self.is_sequential = False
        dataset.sort(by=self.uid_field, ascending=True)  # as RecBole does (its callers may rely on it)
        users = dataset.inter_feat[self.uid_field].numpy()
        items = dataset.inter_feat[self.iid_field].numpy()
        n_users, n_items = dataset.user_num, dataset.item_num
        self.uid2positive_item = _rows_by_user(users, items, n_users, n_items)
        used = sampler.used_ids  # per user, a set of the items of this phase and the ones before it
        lengths = np.fromiter(map(len, used), dtype=np.int64, count=len(used))
        used_items = np.fromiter((i for row in used for i in row), dtype=np.int64, count=int(lengths.sum()))
        used_keys = np.repeat(np.arange(len(used), dtype=np.int64), lengths) * n_items + used_items
        positive_keys = users.astype(np.int64) * n_items + items.astype(np.int64)
        history = np.setdiff1d(used_keys, positive_keys)  # sorted, distinct
        counts = np.bincount(history // n_items, minlength=n_users)
        self.uid2history_item = PerUserRows(np.concatenate(([0], np.cumsum(counts))).astype(np.int64), history % n_items)
        self.uid2items_num = self.uid2positive_item.lengths(np.arange(n_users))
        self.uid_list = torch.as_tensor(np.unique(users), dtype=torch.int64)
        self.user_df = dataset.join(Interaction({self.uid_field: self.uid_list}))
        self.sample_size = len(self.user_df)
        if shuffle:
            self.logger.warning("FullSortEvalDataLoader can't shuffle")
        AbstractDataLoader.__init__(self, config, dataset, sampler, shuffle=False)

    def _init_batch_size_and_step(self):
        if self.is_sequential or self.config["full_sort_batch_mb"] is None:
            return super()._init_batch_size_and_step()
        users = full_sort_users_per_batch(self.config, self._dataset.item_num)
        self.step = users
        self.set_batch_size(users * self._dataset.item_num)

    def collate_fn(self, index):
        if self.is_sequential:
            return super().collate_fn(index)
        user_df = self.user_df[np.array(index)]
        users = user_df[self.uid_field].numpy()
        history = self.uid2history_item.flat(users)
        positive_u, positive_i = self.uid2positive_item.flat(users)
        return user_df, history, positive_u, positive_i


def evaluation_loader(config, phase: str) -> type:
    """The loader class for the ``valid`` or ``test`` split: RecBole's choice (``get_dataloader``), with
    :class:`FullSortLoader` where that is RecBole's ``FullSortEvalDataLoader``."""
    from recbole.data.utils import get_dataloader

    loader = get_dataloader(config, phase)
    return FullSortLoader if loader is FullSortEvalDataLoader else loader


__all__ = ["FullSortLoader", "PerUserRows", "evaluation_loader", "full_sort_users_per_batch"]
