"""Training negatives from warm items only (``train_neg_items: warm``).

RecBole's training sampler draws negatives from every item id, so under the item cold-start protocol a
model sees the cold items' features as negatives while it trains, items that in a strict protocol do not
exist yet (CLCRec's authors exclude them). ``train_neg_items: warm`` restricts the training sampler of
any model, ours or RecBole's (knowledge-graph models aside: their loader keeps RecBole's sampler), to the
items with a training interaction; validation and test are not touched. The sampler is passed to the
training loader where :func:`recbole_mamex.data.loading.data_preparation` builds it
(:func:`training_sampler`). ``all`` is RecBole's behaviour. ``~`` (the default) is ``warm`` on a
cold-start dataset (one with a ``cold_items_file``) and ``all`` on any other: the strict protocol where
there are cold items, RecBole's sampler where there are none (see :func:`resolved_train_neg_items`).
"""

from __future__ import annotations

import numpy as np
from recbole.sampler import Sampler

from recbole_mamex.errors import RecboleMamexError

TRAIN_NEG_ITEMS = ("all", "warm")  # train_neg_items: the values Config accepts (and ~)


class NegativeSamplingError(RecboleMamexError, ValueError):
    """Negatives that cannot be drawn as configured."""


class WarmItemSampler(Sampler):
    """RecBole's :class:`~recbole.sampler.Sampler` (same phases, used ids and rejection of a user's
    positives) drawing only from ``warm_items``: uniformly, or by training popularity."""

    @classmethod
    def restricting(cls, sampler: Sampler, warm_items) -> "WarmItemSampler":
        """A copy of the phase sampler ``sampler`` that draws from ``warm_items`` (internal ids)."""
        restricted = cls.__new__(cls)
        restricted.__dict__.update(sampler.__dict__)
        restricted.warm_items = np.asarray(warm_items, dtype=np.int64)
        if len(restricted.warm_items) == 0:
            raise NegativeSamplingError("train_neg_items: warm needs at least one item with a training interaction, found none")
        warm = set(restricted.warm_items.tolist())
        full = [user for user, items in enumerate(restricted.used_ids) if sum(item in warm for item in items) >= len(warm)]
        if full:
            raise NegativeSamplingError(
                f"train_neg_items: warm: users {full[:5]} interacted with every warm item, so no negative can be drawn "
                "for them; filter them (user_inter_num_interval) or use train_neg_items: all"
            )
        if restricted.distribution == "popularity":
            restricted._build_alias_table()
        return restricted

    def _uni_sampling(self, sample_num):
        return self.warm_items[np.random.randint(0, len(self.warm_items), sample_num)]

    def _get_candidates_list(self):
        train = self.datasets[self.phases.index("train")]
        items = train.inter_feat[self.iid_field].numpy()
        return list(items[np.isin(items, self.warm_items)])


def warm_item_ids(train_dataset) -> np.ndarray:
    """Internal ids of the items with an interaction in ``train_dataset``, sorted."""
    return np.unique(train_dataset.inter_feat[train_dataset.iid_field].numpy())


def resolved_train_neg_items(config) -> str:
    """``train_neg_items`` of ``config``, with ``~`` resolved: ``warm`` where the dataset has a
    ``cold_items_file`` (the item cold-start protocol), ``all`` elsewhere."""
    choice = config["train_neg_items"]
    if choice is None:
        return "warm" if config["cold_items_file"] else "all"
    return choice


def training_sampler(config, sampler: Sampler | None, train_dataset) -> Sampler | None:
    """The negative sampler to build a training loader with: RecBole's phase sampler ``sampler`` (``None``
    when the model draws no negatives), or, under ``train_neg_items: warm``, a :class:`WarmItemSampler`
    restricted to the items of ``train_dataset`` (the training split the loader reads)."""
    if resolved_train_neg_items(config) == "all" or sampler is None:
        return sampler
    return WarmItemSampler.restricting(sampler, warm_item_ids(train_dataset))
