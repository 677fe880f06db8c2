r"""ALDI
################################################

Reference:
    Feiran Huang, Zefan Wang, Xiao Huang, Yufeng Qian, Zhetao Li and Hao Chen. "Aligning Distillation For
    Cold-start Item Recommendation." SIGIR 2023. Authors' code: github.com/zfnWong/ALDI (TensorFlow).

A baseline: a content-to-embedding student distilled from a warm teacher.

- Teacher: a BPR matrix factorisation trained first, on the training split
  (:mod:`recbole_mamex.model.teacher`), frozen: user vectors ``p_u``, item vectors ``q_i``; teacher scores
  ``t_ui = p_u . q_i``.
- Student: an item tower ``g_i = f_I(c_i)`` from the item's content ``c_i`` and a user tower
  ``r_u = f_U(p_u)`` on the teacher's user vector; student scores ``s_ui = r_u . g_i``. Each tower is the
  authors': hidden layers ``tanh(BatchNorm(W x + b))`` (``hidden_sizes``; theirs: one of 200 units), then
  a linear layer to the teacher's dimension; weights initialised from a truncated normal of std 0.01.
- Loss of a batch of training pairs ``(u, i)`` with a sampled negative ``j``, ``w_i`` the trust weight of
  the positive item (below):

  - supervised (BPR on the student): ``mean softplus(-(s_ui - s_uj))``;
  - rating distribution alignment, ``gamma`` = ``rating_weight``: ``gamma * mean(|t_ui - s_ui| + |t_uj - s_uj|)``;
  - ranking alignment, ``alpha`` = ``ranking_weight``:
    ``alpha * mean(w_i * BCE(sigmoid(s_ui - s_uj), sigmoid(t_ui - t_uj)))``;
  - identification alignment, ``beta`` = ``identification_weight``: with ``d_i = e_i . e_i - mean_j e_i . e_j``
    over the batch's negatives ``j`` (``e = g`` for the student, ``q`` for the teacher),
    ``beta * mean(w_i * BCE(sigmoid(d^S_i), sigmoid(d^T_i)))``;
  - ``reg_weight`` times half the sum of the squared weights and biases of both towers (TensorFlow's
    ``l2_regularizer``, as the authors; batch-norm parameters are not regularised).

- Trust weighting (the paper's teacher-qualifying weights; ``trust_weighting``): an item's
  ``x_i = sum over its training users u of 1 / |N(u)|`` (how much of its users' attention it gets),
  ``w_i = min(tanh(a x_i), tanh(M))`` with ``M`` = ``trust_cap`` and ``a = M / E[x]``,
  ``E[x] = n_users / n_items``, so an item of average ``x`` reaches the cap. Off: ``w_i = 1``.
- Scoring, as the authors' code: an item with a training interaction by the teacher, ``t_ui = p_u . q_i``;
  an item without one (a cold item, or a new one served after training) by the student,
  ``s_ui = f_U(p_u) . f_I(c_i)``. Users are always the teacher's ``p_u`` (their mapped ``f_U(p_u)`` for cold
  items). So warm-item rankings are the teacher's, and the student decides where cold items stand.

The teacher is trained inside ``__init__`` (``teacher_*`` keys): its time is part of the run's and of every
tuning trial (each trial builds its own; a process reuses a teacher it trained with the same data, settings and seed). A cold item's teacher row is zero and is never used.

Where this version departs from the authors' code:

- ``c_i`` is the concatenation of every modality's features, each L2-normalised per row
  (``feature_norm: l2``); a modality an item lacks (mask 0 in the feature store) is a zero block, so the
  student maps the item from the modalities it has (an item with none gets the tower's output for a zero
  input). The authors read one content matrix.
- The teacher is trained in the run, for a fixed number of epochs (the authors pretrain their BPR-MF
  separately, early-stopped on warm validation recall), with this package's BPR-MF (Adam, d = 64 by
  default; theirs d = 200).
- Training pairs are RecBole's: each training interaction once per epoch with one sampled negative
  (the authors draw users uniformly, then a positive of the user, and a negative among warm items). A
  negative without a training interaction (only possible under ``train_neg_items: all``) is replaced
  by a uniformly drawn warm item: its teacher vector is untrained.
- ``trust_weighting`` defaults to on, the method the paper describes (the authors' script has it off by
  default, ``--tws 0``). As in their code, the weights multiply the ranking and identification terms only.
- Batch size 2048 (the package's; theirs 1024); the teacher trains with the same batch size.
- A training batch of one user normalises the user tower with its running statistics (batch norm is
  undefined on one row).

Results: the paper reports ALDI ahead of its baselines (dropout and generative cold-start models) on
cold, warm and all items of three datasets, none of them Last.fm-2K; no absolute figure transfers. On
Last.fm-2K's cold split, every row tuned with 10 trials and run on 3 splits x 3 seeds
(``bench/results/compare_tuned_all_lastfm_2k_cold.md``), ALDI gave cold-test Recall@20 0.728 ± 0.008,
tied with DropoutNet (0.730, p = 0.53) and below CLCRec (0.762, p = 0.002) and MAMEX (0.753,
p = 0.001), but the best Recall@20 over all items (0.382, MAMEX 0.357): the balance of warm and cold
recommendation the paper aims at, without its lead on cold items.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_mamex.errors import ConfigError
from recbole_mamex.model.abstract import DotProductScoring, MultimodalRecommender
from recbole_mamex.model.teacher import (
    attach_teacher, check_hidden_sizes, first_linear, run_tower, tanh_tower, truncated_normal_init,
    warm_negatives,
)


def trust_weights(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, cap: float) -> torch.Tensor:
    """``[n_items]`` ALDI's teacher-qualifying weights from the training interactions ``(users, items)``
    (internal ids; id 0 is RecBole's padding and counts as no user or item): ``min(tanh(a x_i), tanh(cap))``
    with ``x_i`` the sum of ``1 / |N(u)|`` over the item's users and ``a = cap / ((n_users - 1) / (n_items -
    1))``. Items without a training interaction get 0."""
    degree = np.bincount(users, minlength=n_users).astype(np.float64)
    share = np.bincount(items, weights=1.0 / degree[users], minlength=n_items)
    expected = (n_users - 1) / max(n_items - 1, 1)
    a = cap / expected
    return torch.from_numpy(np.minimum(np.tanh(a * share), np.tanh(cap))).float()


def rating_alignment(teacher_pos, teacher_neg, student_pos, student_neg) -> torch.Tensor:
    """Mean over the batch of ``|t_ui - s_ui| + |t_uj - s_uj|``."""
    return ((teacher_pos - student_pos).abs() + (teacher_neg - student_neg).abs()).mean()


def ranking_alignment(teacher_pos, teacher_neg, student_pos, student_neg, weights=None) -> torch.Tensor:
    """Mean over the batch of ``w_i * BCE(sigmoid(s_ui - s_uj), sigmoid(t_ui - t_uj))`` (``weights`` None: 1)."""
    target = torch.sigmoid(teacher_pos - teacher_neg)
    loss = F.binary_cross_entropy_with_logits(student_pos - student_neg, target, reduction="none")
    return (loss if weights is None else weights * loss).mean()


def identification_gap(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """``[B]``: ``e_i . e_i - mean_j e_i . e_j``, ``e_i`` the rows of ``positive``, ``j`` over every row of
    ``negative``."""
    return (positive * positive).sum(-1) - (positive @ negative.T).mean(-1)


def identification_alignment(teacher_pos, teacher_neg, student_pos, student_neg, weights=None) -> torch.Tensor:
    """Mean over the batch of ``w_i * BCE(sigmoid(d^S_i), sigmoid(d^T_i))`` with the gaps of
    :func:`identification_gap` of the student's and the teacher's item vectors."""
    target = torch.sigmoid(identification_gap(teacher_pos, teacher_neg))
    loss = F.binary_cross_entropy_with_logits(identification_gap(student_pos, student_neg), target, reduction="none")
    return (loss if weights is None else weights * loss).mean()


def _number(config, key, low, inclusive=True):
    value = config[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if inclusive else value > low)
    if not ok:
        raise ConfigError(f"{key}: expected a number {'>=' if inclusive else '>'} {low}, found {value!r}")
    return float(value)


class ALDI(DotProductScoring, MultimodalRecommender):
    r"""Aligning distillation from a BPR-MF teacher to a content student; see the module docstring. A baseline."""

    prepares_features = True
    serves_new_items = True  # by the student towers, as the dataset's cold items

    input_type = InputType.PAIRWISE
    is_baseline = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.rating_weight = _number(config, "rating_weight", 0.0)
        self.ranking_weight = _number(config, "ranking_weight", 0.0)
        self.identification_weight = _number(config, "identification_weight", 0.0)
        self.reg_weight = _number(config, "reg_weight", 0.0)
        self.trust_cap = _number(config, "trust_cap", 0.0, inclusive=False)
        self.trust_weighting = config["trust_weighting"]
        if not isinstance(self.trust_weighting, bool):
            raise ConfigError(f"trust_weighting: expected True or False, found {self.trust_weighting!r}")
        hidden = check_hidden_sizes(config["hidden_sizes"])
        self.prepare_features(config["feature_norm"], "none", config["feature_storage"])
        content_dim = sum(self.modality_dims[name] for name in self.modality_names)

        teacher = attach_teacher(self, config, dataset)
        d = teacher.user.shape[1]
        users = np.asarray(dataset.inter_feat[dataset.uid_field], dtype=np.int64)
        items = np.asarray(dataset.inter_feat[dataset.iid_field], dtype=np.int64)
        self.register_buffer("item_trust", trust_weights(users, items, self.n_users, self.n_items, self.trust_cap),
                             persistent=False)

        self.item_tower = tanh_tower(content_dim, hidden, d)  # f_I
        self.user_tower = tanh_tower(d, hidden, d)  # f_U
        truncated_normal_init(self)

    # ------------------------------------------------------------------ towers
    def student_items(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, d]`` ``f_I(c_i)`` of ``items`` (``None``: the whole catalogue); the first layer is one
        product per modality over the stored features."""
        first = first_linear(self.item_tower)
        return run_tower(self.item_tower, None, self.feature_product(first.weight, first.bias, items))

    def student_users(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, d]`` ``f_U(p_u)`` of ``users`` (``None``: every user)."""
        p = self.teacher_user if users is None else self.teacher_user[users]
        return run_tower(self.user_tower, p)

    def regularisation(self) -> torch.Tensor:
        """Half the sum of the squared weights and biases of the towers' linear layers."""
        squares = [p.pow(2).sum() for module in self.modules() if isinstance(module, nn.Linear)
                   for p in (module.weight, module.bias) if p is not None]
        return torch.stack(squares).sum() / 2

    # ------------------------------------------------------------------ training
    def losses(self, interaction) -> dict:
        """The terms of one batch, unweighted: ``supervised``, ``rating``, ``ranking``, ``identification``, ``reg``."""
        users = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = warm_negatives(interaction[self.NEG_ITEM_ID], self.item_has_training)
        p_u = self.teacher_user[users]
        q_pos, q_neg = self.teacher_item[pos], self.teacher_item[neg]
        r_u = run_tower(self.user_tower, p_u)
        both = self.student_items(torch.cat([pos, neg]))
        g_pos, g_neg = both[: len(pos)], both[len(pos):]
        t_pos, t_neg = (p_u * q_pos).sum(-1), (p_u * q_neg).sum(-1)
        s_pos, s_neg = (r_u * g_pos).sum(-1), (r_u * g_neg).sum(-1)
        weights = self.item_trust[pos] if self.trust_weighting else None
        return {
            "supervised": F.softplus(-(s_pos - s_neg)).mean(),
            "rating": rating_alignment(t_pos, t_neg, s_pos, s_neg),
            "ranking": ranking_alignment(t_pos, t_neg, s_pos, s_neg, weights),
            "identification": identification_alignment(q_pos, q_neg, g_pos, g_neg, weights),
            "reg": self.regularisation(),
        }

    def calculate_loss(self, interaction):
        terms = self.losses(interaction)
        return (terms["supervised"] + self.rating_weight * terms["rating"] + self.ranking_weight * terms["ranking"]
                + self.identification_weight * terms["identification"] + self.reg_weight * terms["reg"])

    # ------------------------------------------------------------------ scoring
    def scoring_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(``[n_users, 2d]`` ``[p_u; f_U(p_u)]``, ``[n_items, 2d]`` ``[q_i; 0]`` for items with a training
        interaction and ``[0; f_I(c_i)]`` for the others): their dot product is the teacher's score of a warm
        item and the student's of a cold one. Cached in evaluation."""

        def compute():
            user = torch.cat([self.teacher_user, self.student_users()], dim=1)
            trained = self.item_has_training.unsqueeze(1)
            zero = torch.zeros((), device=self.teacher_item.device)
            item = torch.cat([torch.where(trained, self.teacher_item, zero),
                              torch.where(trained, zero, self.student_items())], dim=1)
            return user, item

        return self.evaluation_cached(compute)

    def extend_item_state(self, m: int) -> None:
        """New items get zero teacher rows and trust weights: without a training interaction they are
        scored by the student, as the dataset's cold items."""
        self.teacher_item = torch.cat([self.teacher_item, self.teacher_item.new_zeros(m, self.teacher_item.shape[1])])
        self.item_trust = torch.cat([self.item_trust, self.item_trust.new_zeros(m)])

