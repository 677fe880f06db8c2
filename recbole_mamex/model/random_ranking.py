r"""Random
################################################

The chance-level row of a comparison: every (user, item) score an independent uniform draw, so each user
gets a random ranking of their own.

``--model=Random`` (and ``--models ... Random`` in a comparison) is this class: the registry finds this
package's models before RecBole's, and this one takes RecBole's name. It is RecBole 1.2.1's ``Random``
(same seeding, dummy parameter and loss, ``predict``; ``type = TRADITIONAL``, one pass through RecBole's
trainer) except for ``full_sort_predict``: RecBole's draws ONE random score per item and repeats it for
every user of the batch, so its metrics depend on how users are batched. With 2 users per batch (RecBole's
rule on Last.fm-2K) a validation averages ~900 random rankings; with every user in one batch (our
evaluation batches, :class:`recbole_mamex.data.loaders.FullSortLoader`) it is a single ranking, and
Recall@20 on Last.fm's cold split swings from 0.09 to 0.17 between seeds. Here the scores do not depend
on the batch size. RecBole's own class stays as RecBole has it.
"""

from __future__ import annotations

import torch
from recbole.model.general_recommender.random import Random as RecBoleRandom


class Random(RecBoleRandom):
    """RecBole's ``Random`` with a random score per (user, item) in ``full_sort_predict``."""

    is_baseline = True  # a comparison counts it with the baselines

    def full_sort_predict(self, interaction):
        users = interaction[self.USER_ID].shape[0]
        return torch.rand(users, self.n_items, device=self.device, dtype=torch.float64).view(-1)
