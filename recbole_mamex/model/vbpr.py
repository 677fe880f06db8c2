r"""VBPR
################################################

Reference:
    Ruining He and Julian McAuley. "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback."
    AAAI 2016.

A baseline: matrix factorisation whose item side has an ID part and a projected content part,

``score(u, i) = gamma_u . gamma_i + beta_i + theta_u . (E f_i) + beta' . f_i``

with ``gamma_u, theta_u`` free user vectors, ``gamma_i`` a free item vector, ``beta_i`` an item bias,
``f_i`` the item's content features, ``E`` a linear projection (no bias) and ``beta'`` the content bias
vector; trained with BPR on RecBole's sampled pairs.

Where this version departs from the paper:

- ``f_i`` is the concatenation of every modality's features (each L2-normalised per row with
  ``feature_norm: l2``), not one CNN image feature: the multi-modal form of MMRec's VBPR. A modality an
  item lacks (mask 0 in the feature store) is a zero block of ``f_i``, so it adds nothing to the content
  score; an item with no modality at all is scored by its ID part alone (0 if it is also cold).
- The global and user biases are left out: they cancel in BPR and in every per-user ranking.
  ``use_bias: False`` also drops ``beta_i`` and ``beta'`` (MMRec's form: a plain dot product).
- Items with no training interaction (cold items) have an untrained ID part ``gamma_i, beta_i``
  (RecBole's sampler still draws them as negatives): it is set to 0 for them, in training and scoring,
  so they are scored by the content part ``theta_u . (E f_i) + beta' . f_i`` alone.
- Regularisation: ``reg_weight`` times RecBole's ``EmbLoss`` with squared norms (sum of squares / 2 /
  batch size) of the batch's user vectors ``[gamma_u; theta_u]``, item vectors ``[gamma_i; E f_i]`` and
  item biases, instead of weight decay on every parameter.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from recbole.model.init import xavier_normal_initialization
from recbole.model.loss import BPRLoss, EmbLoss
from recbole.utils import InputType

from recbole_mamex.model.abstract import MultimodalRecommender, append_zero_rows


class VBPR(MultimodalRecommender):
    r"""Visual (here: multimodal) BPR; see the module docstring. A baseline (``is_baseline``)."""

    prepares_features = True
    serves_new_items = True  # by the content part, as the dataset's cold items

    input_type = InputType.PAIRWISE
    is_baseline = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = config["embedding_size"]
        self.reg_weight = config["reg_weight"]
        self.use_bias = config["use_bias"]
        self.prepare_features(config["feature_norm"], "none", config["feature_storage"])
        content_dim = sum(self.modality_dims[name] for name in self.modality_names)

        self.user_id_embedding = nn.Embedding(self.n_users, d)  # gamma_u
        self.user_content_embedding = nn.Embedding(self.n_users, d)  # theta_u
        self.item_id_embedding = nn.Embedding(self.n_items, d)  # gamma_i
        self.content_projection = nn.Linear(content_dim, d, bias=False)  # E
        if self.use_bias:
            self.item_bias = nn.Embedding(self.n_items, 1)  # beta_i
            self.content_bias = nn.Linear(content_dim, 1, bias=False)  # beta'
        self.mf_loss = BPRLoss()
        self.reg_loss = EmbLoss()
        self.apply(xavier_normal_initialization)
        if self.use_bias:
            nn.init.zeros_(self.item_bias.weight)

    def user_vectors(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, 2d]``: ``[gamma_u; theta_u]`` (``users=None``: every user)."""
        if users is None:
            return torch.cat([self.user_id_embedding.weight, self.user_content_embedding.weight], dim=1)
        # lookups through the modules: sparse gradients under learner: sparse_adam
        return torch.cat([self.user_id_embedding(users), self.user_content_embedding(users)], dim=1)

    def item_vectors(self, items: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(``[N, 2d]`` item vectors ``[gamma_i; E f_i]``, ``[N]`` biases ``beta_i + beta' . f_i``, zeros
        with ``use_bias: False``), the ID part zeroed for items without a training interaction
        (``items=None``: whole catalogue)."""
        trained = self.item_has_training if items is None else self.item_has_training[items]
        keep = trained.to(self.item_id_embedding.weight.dtype).unsqueeze(1)
        gamma = self.item_id_embedding.weight if items is None else self.item_id_embedding(items)
        # E f_i and beta' . f_i as one product over the stored features (gathered into reusable buffers)
        weight = self.content_projection.weight
        if self.use_bias:
            weight = torch.cat([weight, self.content_bias.weight], dim=0)
        content = self.feature_product(weight, None, items)
        d = self.content_projection.weight.shape[0]
        vectors = torch.cat([gamma * keep, content[:, :d]], dim=1)
        if not self.use_bias:
            return vectors, vectors.new_zeros(len(vectors))
        beta = self.item_bias.weight if items is None else self.item_bias(items)
        biases = (beta * keep).squeeze(1) + content[:, d]
        return vectors, biases

    def extend_item_state(self, m: int) -> None:
        """New items have no ID part (``gamma_i``, ``beta_i``: zero rows), as the dataset's cold items."""
        append_zero_rows(self.item_id_embedding, m)
        if self.use_bias:
            append_zero_rows(self.item_bias, m)

    def calculate_loss(self, interaction):
        users = interaction[self.USER_ID]
        pos, neg = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        user_e = self.user_vectors(users)
        both_e, both_b = self.item_vectors(torch.cat([pos, neg]))  # one gather of the batch's items
        pos_e, neg_e = both_e[: len(pos)], both_e[len(pos) :]
        pos_b, neg_b = both_b[: len(pos)], both_b[len(pos) :]
        pos_score = (user_e * pos_e).sum(-1) + pos_b
        neg_score = (user_e * neg_e).sum(-1) + neg_b
        reg = self.reg_loss(user_e, pos_e, neg_e, pos_b.unsqueeze(1), neg_b.unsqueeze(1), require_pow=True)
        return self.mf_loss(pos_score, neg_score) + self.reg_weight * reg.squeeze()

    def _catalogue(self):
        return self.evaluation_cached(lambda: self.item_vectors())

    def predict(self, interaction):
        vectors, biases = self._catalogue()
        items = interaction[self.ITEM_ID]
        return (self.user_vectors(interaction[self.USER_ID]) * vectors[items]).sum(-1) + biases[items]

    def full_sort_predict(self, interaction):
        vectors, biases = self._catalogue()
        scores = torch.matmul(self.user_vectors(interaction[self.USER_ID]), vectors.T) + biases
        return scores.view(-1)
