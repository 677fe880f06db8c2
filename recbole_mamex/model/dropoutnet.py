r"""DropoutNet
################################################

Reference:
    Maksims Volkovs, Guangwei Yu and Tomi Poutanen. "DropoutNet: Addressing Cold Start in Recommender
    Systems." NeurIPS 2017. Authors' code: github.com/layer6ai-labs/DropoutNet.

A baseline: two towers trained to reproduce a warm model's scores while the item's preference input is
dropped, so that an item without one (a cold item) is scored from its content.

- Preference input: a BPR matrix factorisation teacher trained first, on the training split
  (:mod:`recbole_mamex.model.teacher`), frozen: ``p_u``, ``q_i``. The towers read them standardised per
  column over the users / items that have one (mean 0, variance 1, clipped to [-5, 5]), as the authors
  prepare theirs: ``P_u``, ``Q_i``. An item without a training interaction has ``Q_i = 0``.
- Towers (the authors'): hidden layers ``tanh(BatchNorm(W x + b))`` (``hidden_sizes``; their CiteULike
  cold-item script: one of 200 units), then a linear layer to ``embedding_size`` (theirs 200); weights
  from a truncated normal of std 0.01. User tower ``U_u = f_U(P_u)``; item tower ``V_i = f_V([Q_i ; c_i])``
  with ``c_i`` the item's content. ``score(u, i) = U_u . V_i``.
- Training: for pairs ``(u, i)`` the target is the teacher's score ``p_u . q_i`` and the loss the mean
  squared error ``(U_u . V_i - p_u . q_i)^2``. In each batch, ``floor(dropout_rate * n)`` of its ``n``
  pairs, chosen uniformly, have their item preference input set to zero (``Q_i = 0``): the towers learn to
  reproduce the teacher's score from the content alone, as they must for a cold item.
- Scoring (the paper's inference): every item through the item tower, a warm item with ``[Q_i ; c_i]``,
  a cold item (or a new one served after training) with ``[0 ; c_i]``; every user through the user tower.

The teacher is trained inside ``__init__`` (``teacher_*`` keys): its time is part of the run's and of every
tuning trial (each trial builds its own; a process reuses a teacher it trained with the same data, settings and seed). A cold item's teacher row is zero: its preference input is the
zero the dropout trained for.

Where this version departs from the paper and the authors' code:

- Users have no content in this package's datasets, so the user tower takes the preference vector only,
  and user preference is never dropped (with no content beside it, a dropped user would be an empty
  input; every user scored has training interactions). The authors' scripts also drop the user input of
  as many pairs, even in their item cold-start script without user content.
- ``c_i`` is the concatenation of every modality's features, each L2-normalised per row
  (``feature_norm: l2``); a modality an item lacks (mask 0 in the feature store) is a zero block, so the
  tower maps the item from the modalities it has (an item with neither preference nor content gets the
  tower's output for a zero input). The authors use TF-IDF/SVD content vectors, standardised.
- Training pairs are RecBole's: each training interaction once per epoch and one sampled negative item
  for its user, both pairs with their teacher targets (as ColdRec's DropoutNet), instead of each user's
  2,500 highest-scored items by the teacher plus 2,500 random ones. A negative without a training
  interaction (only under ``train_neg_items: all``) is replaced by a uniformly drawn warm item.
- Adam at RecBole's learning rate 1e-3 and batches of 2048 pairs (the authors: SGD with momentum 0.9 at
  0.005, decayed 10x every 100 user batches, batches of 100 pairs).
- The teacher is trained in the run, a BPR-MF for a fixed number of epochs (the authors' preference
  input is a WRMF of rank 200 trained beforehand).

Results: the paper reports recall on CiteULike and the RecSys 2017 challenge data, neither of them
Last.fm; there is no comparable figure. On Last.fm-2K's cold split, tuned with 10 trials and run on 3
splits x 3 seeds (``bench/results/compare_tuned_all_lastfm_2k_cold.md``), DropoutNet gave cold-test
Recall@20 0.730 ± 0.012, tied with ALDI, below CLCRec (0.762, p = 0.004) and MAMEX (0.753, p = 0.008),
and 0.412 among the warm items of the same runs (ALDI 0.451): input dropout keeps the cold items, at
some cost to the warm ones.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_mamex.errors import ConfigError
from recbole_mamex.model.abstract import DotProductScoring, MultimodalRecommender
from recbole_mamex.model.teacher import (
    attach_teacher, check_hidden_sizes, first_linear, run_tower, tanh_tower, truncated_normal_init, warm_negatives,
)


def standardize_rows(vectors: torch.Tensor, present: torch.Tensor, clip: float = 5.0) -> torch.Tensor:
    """The authors' preparation of preference vectors: each column standardised (mean 0, population
    variance 1; a constant column is only centred) over the rows ``present`` marks, clipped to ``[-clip,
    clip]``, values under 1e-5 in size set to 0; the other rows stay zero."""
    rows = vectors[present].double()
    out = torch.zeros_like(vectors)
    if len(rows) == 0:
        return out
    std = rows.std(0, unbiased=False)
    scaled = ((rows - rows.mean(0)) / torch.where(std > 0, std, torch.ones_like(std))).clamp(-clip, clip)
    scaled = torch.where(scaled.abs() < 1e-5, torch.zeros_like(scaled), scaled)
    out[present] = scaled.to(vectors.dtype)
    return out


def dropped_rows(n: int, rate: float, device=None) -> torch.Tensor:
    """``[n]`` bool: ``floor(rate * n)`` rows, chosen uniformly (torch's global generator), are True."""
    drop = torch.zeros(n, dtype=torch.bool, device=device)
    count = int(math.floor(rate * n))
    if count:
        drop[torch.randperm(n, device=device)[:count]] = True
    return drop


class DropoutNet(DotProductScoring, MultimodalRecommender):
    r"""Two towers on [preference ; content] trained with input dropout; see the module docstring. A baseline."""

    prepares_features = True
    serves_new_items = True  # by the item tower with a zero preference input, as the dataset's cold items

    input_type = InputType.PAIRWISE
    is_baseline = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.dropout_rate = config["dropout_rate"]
        rate = self.dropout_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ConfigError(f"dropout_rate: expected a number in [0, 1], found {rate!r}")
        size = config["embedding_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"embedding_size: expected an integer >= 1, found {size!r}")
        hidden = check_hidden_sizes(config["hidden_sizes"])
        self.prepare_features(config["feature_norm"], "none", config["feature_storage"])
        content_dim = sum(self.modality_dims[name] for name in self.modality_names)

        teacher = attach_teacher(self, config, dataset)
        users_with = torch.zeros(self.n_users, dtype=torch.bool, device=teacher.user.device)
        users_with[torch.as_tensor(np.asarray(dataset.inter_feat[dataset.uid_field]), dtype=torch.long).to(users_with.device)] = True
        self.register_buffer("user_preference", standardize_rows(teacher.user, users_with))
        self.register_buffer("item_preference", standardize_rows(teacher.item, self.item_has_training.to(teacher.item.device)))
        d = teacher.user.shape[1]
        self.preference_dim = d

        self.user_tower = tanh_tower(d, hidden, size)
        self.item_tower = tanh_tower(d + content_dim, hidden, size)
        truncated_normal_init(self)

    # ------------------------------------------------------------------ towers
    def item_vectors(self, items: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, embedding_size]`` item tower outputs of ``items`` (``None``: the whole catalogue), the
        preference input zeroed where ``drop`` is True; items without a training interaction have a zero
        preference input anyway."""
        first = first_linear(self.item_tower)
        d = self.preference_dim
        preference = self.item_preference if items is None else self.item_preference[items]
        if drop is not None:
            preference = preference.masked_fill(drop.unsqueeze(1), 0.0)
        pre = F.linear(preference, first.weight[:, :d]) + self.feature_product(first.weight[:, d:], first.bias, items)
        return run_tower(self.item_tower, None, pre)

    def user_vectors(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, embedding_size]`` user tower outputs of ``users`` (``None``: every user)."""
        return run_tower(self.user_tower, self.user_preference if users is None else self.user_preference[users])

    # ------------------------------------------------------------------ training
    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = warm_negatives(interaction[self.NEG_ITEM_ID], self.item_has_training)
        pair_users, pair_items = torch.cat([users, users]), torch.cat([pos, neg])
        target = (self.teacher_user[pair_users] * self.teacher_item[pair_items]).sum(-1)
        drop = dropped_rows(len(pair_items), self.dropout_rate, pair_items.device)
        prediction = (self.user_vectors(pair_users) * self.item_vectors(pair_items, drop)).sum(-1)
        return F.mse_loss(prediction, target)

    # ------------------------------------------------------------------ scoring
    def scoring_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(every user's ``U_u``, every item's ``V_i``), cached in evaluation."""
        return self.evaluation_cached(lambda: (self.user_vectors(), self.item_vectors()))

    def extend_item_state(self, m: int) -> None:
        """New items get zero teacher and preference rows: they are scored from ``[0 ; c_i]``, as the
        dataset's cold items."""
        for name in ("teacher_item", "item_preference"):
            rows = getattr(self, name)
            setattr(self, name, torch.cat([rows, rows.new_zeros(m, rows.shape[1])]))
