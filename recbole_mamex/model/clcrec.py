r"""CLCRec
################################################

Reference:
    Yinwei Wei et al. "Contrastive Learning for Cold-Start Recommendation." ACM Multimedia 2021.

A baseline: a classic cold-start method that learns to map content into the collaborative space, end to
end in one stage (DropoutNet and ALDI, :mod:`~recbole_mamex.model.dropoutnet` and
:mod:`~recbole_mamex.model.aldi`, start from a pre-trained teacher), for any number of modalities through
one content encoder.

- Users and items have free ID embeddings ``p_u``, ``q_i``; a content encoder
  ``c_i = W_2 LeakyReLU(W_1 f_i + b_1) + b_2`` maps the item's content ``f_i`` to the same space.
- Each positive ``(u, i)`` of a batch is contrasted with ``num_negatives`` sampled items ``j``
  (InfoNCE, temperature ``temperature``):

  - R-E (representation-embedding): anchor ``normalize(q_i)``, candidates ``normalize(c_i)`` (positive)
    and ``normalize(c_j)``: the encoder learns to reproduce the collaborative embedding;
  - U-I (user-item): anchor ``p_u``, candidates ``q_i`` and ``q_j``, each candidate replaced by its
    content vector ``c`` with probability ``content_ratio``, so users learn to rank content vectors too.

- Loss: ``contrast_weight * L_RE + (1 - contrast_weight) * L_UI + reg_weight * L_reg`` with ``L_reg`` the
  mean L2 norm (not squared) of the batch's user and candidate ID embeddings, as the authors' code.
- Scoring: ``p_u . q_i`` for items with a training interaction, ``p_u . c_i`` for the others (cold
  items), as the authors' code.

Where this version departs from the authors' code:

- ``f_i`` is the concatenation of every modality's features, each L2-normalised per row
  (``feature_norm: l2``); a modality an item lacks (mask 0 in the feature store) is a zero block of
  ``f_i``, so the encoder maps the item from the modalities it has (an item with none gets the encoder's
  output for a zero input).
- Negatives: RecBole samples one negative item per positive (uniform over items the user has no training
  interaction with); the batch's rows are taken in groups of ``num_negatives`` consecutive rows (the last
  group wrapping around) and each row is contrasted with the negatives of its group, so every positive
  gets ``min(num_negatives, batch size)`` sampled negatives without a second sampler, and the logits are
  ``[K, K]`` block products. The authors sample ``num_negatives`` per positive directly.
- ``content_ratio``: each candidate is replaced independently with that probability (the authors draw
  that fraction of row indices with replacement, which replaces somewhat fewer).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_normal_initialization
from recbole.utils import InputType

from recbole_mamex.errors import ConfigError
from recbole_mamex.model.abstract import DotProductScoring, MultimodalRecommender, append_zero_rows


def info_nce(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over rows of ``-log softmax(logits / temperature)[0]`` (``[B, 1 + K]``, the positive first)."""
    targets = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits / temperature, targets)


def negative_groups(size: int, n_negatives: int, device=None) -> torch.Tensor:
    """``[G, K]`` batch rows in groups of ``K = min(n_negatives, size)`` consecutive rows, the last group
    wrapping around to the first rows: a row is contrasted with the negatives of its group's rows."""
    k = min(n_negatives, size)
    groups = -(-size // k)
    return (torch.arange(groups * k, device=device) % size).view(groups, k)


def contrast_logits(anchor, positive, negatives, groups) -> torch.Tensor:
    """``[B, 1 + K]`` dot products: ``anchor_r . positive_r``, then ``anchor_r . negatives_j`` for the K
    rows j of the first group (``negative_groups``) that holds r; one batched product of ``[K, K]``
    blocks (B * K * d operations, not B * B * d)."""
    size, k = len(anchor), groups.shape[1]
    rows = groups.reshape(-1)
    blocks = torch.bmm(anchor[rows].view(-1, k, anchor.shape[1]), negatives[rows].view(-1, k, negatives.shape[1]).transpose(1, 2))
    neg = blocks.reshape(-1, k)[:size]
    pos = (anchor * positive).sum(-1, keepdim=True)
    return torch.cat([pos, neg], dim=1)


class CLCRec(DotProductScoring, MultimodalRecommender):
    r"""Contrastive learning for cold-start recommendation; see the module docstring. A baseline."""

    prepares_features = True
    serves_new_items = True  # by the content encoder, as the dataset's cold items

    input_type = InputType.PAIRWISE
    is_baseline = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = config["embedding_size"]
        self.temperature = config["temperature"]
        self.n_negatives = config["num_negatives"]
        self.contrast_weight = config["contrast_weight"]
        self.content_ratio = config["content_ratio"]
        self.reg_weight = config["reg_weight"]
        for key, value, low, high in (
            ("contrast_weight", self.contrast_weight, 0.0, 1.0),
            ("content_ratio", self.content_ratio, 0.0, 1.0),
        ):
            if not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"{key}: expected a number in [{low}, {high}], found {value!r}")
        if not isinstance(self.n_negatives, int) or self.n_negatives < 1:
            raise ConfigError(f"num_negatives: expected an integer >= 1, found {self.n_negatives!r}")
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise ConfigError(f"temperature: expected a number > 0, found {self.temperature!r}")
        self.prepare_features(config["feature_norm"], "none", config["feature_storage"])
        content_dim = sum(self.modality_dims[name] for name in self.modality_names)

        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        hidden = config["encoder_hidden_size"]
        self.encoder = nn.Sequential(nn.Linear(content_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, d))
        self.apply(xavier_normal_initialization)

    def content_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, d]`` encoder outputs of ``items`` (``None``: whole catalogue)."""
        first = self.encoder[0]  # on the stored features: one product per modality, gathered into reusable buffers
        return self.encoder[1:](self.feature_product(first.weight, first.bias, items))

    def losses(self, interaction) -> dict:
        """The loss terms of one batch: ``re`` (R-E), ``ui`` (U-I) and ``reg``."""
        user = interaction[self.USER_ID]
        pos, neg = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        groups = negative_groups(len(pos), self.n_negatives, pos.device)
        items, inverse = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        content = self.content_vectors(items)[inverse]
        content_pos, content_neg = content[: len(pos)], content[len(pos) :]
        id_pos, id_neg = self.item_embedding(pos), self.item_embedding(neg)
        user_e = self.user_embedding(user)

        unit_id, unit_pos, unit_neg = (F.normalize(x, dim=-1) for x in (id_pos, content_pos, content_neg))
        re = info_nce(contrast_logits(unit_id, unit_pos, unit_neg, groups), self.temperature)
        by_id = contrast_logits(user_e, id_pos, id_neg, groups)
        by_content = contrast_logits(user_e, content_pos, content_neg, groups)
        replace = torch.rand(by_id.shape, device=by_id.device) < self.content_ratio
        ui = info_nce(torch.where(replace, by_content, by_id), self.temperature)
        neg_norms = id_neg.norm(dim=-1)[groups].repeat_interleave(groups.shape[1], dim=0)[: len(pos)]
        candidate_norms = torch.cat([id_pos.norm(dim=-1, keepdim=True), neg_norms], dim=1)
        reg = (user_e.norm(dim=-1).mean() + candidate_norms.mean()) / 2
        return {"re": re, "ui": ui, "reg": reg}

    def calculate_loss(self, interaction):
        terms = self.losses(interaction)
        return (
            self.contrast_weight * terms["re"]
            + (1 - self.contrast_weight) * terms["ui"]
            + self.reg_weight * terms["reg"]
        )

    def extend_item_state(self, m: int) -> None:
        """New items get (unused) zero ID rows: without a training interaction they are scored by ``c_i``."""
        append_zero_rows(self.item_embedding, m)

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]``: the ID embedding of items with a training interaction, the content vector of
        the others (cached in evaluation)."""

        def compute():
            trained = self.item_has_training.unsqueeze(1)
            return torch.where(trained, self.item_embedding.weight, self.content_vectors())

        return self.evaluation_cached(compute)
