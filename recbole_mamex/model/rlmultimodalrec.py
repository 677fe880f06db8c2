r"""RLMultimodalRec
################################################

Reference:
    "Gated Multimodal Graph Learning for Personalized Recommendation" (arXiv 2506.00107).

The paper states the ideas: a gated fusion that balances the visual and textual contribution per item,
and a two-layer LightGCN encoder with no non-linear transformation. It gives no formulas and has no
public code, so **the formulas below are this project's design**:

- Each modality's features are L2-normalised and projected to d: ``h_m = W_m x_m`` (no bias).
- Gate (``gate_form``):

  - ``dimension`` (default): per item and per dimension, a softmax over modalities of
    ``W_g [h_1; ...; h_M] + b_g`` (``W_g``: M*d -> M*d). With two modalities this is exactly the sigmoid
    gate ``g = sigmoid(.)``, ``c = g * h_image + (1 - g) * h_text``;
  - ``item``: one weight per modality per item, softmax of ``W_g [h_1; ...; h_M] + b_g`` (M*d -> M).

  A modality the item lacks is masked out of the softmax (weight exactly 0), the same masked softmax as
  MAMEX's fusion (:func:`~recbole_mamex.model.layers.masked_modality_softmax`).
  Content ``c = sum_m w_m * h_m``.
- Item ego embedding = ID embedding + ``s * c``: warm items keep collaborative freedom, cold items still
  get a content vector. ``content_scale``: ``~`` (``s = 1``, fixed) or a number, the initial value of a
  learned scalar ``s`` (0: the model starts as its ID part, LightGCN, and learns how much content to
  add). ``content_position: after`` adds ``s * c`` to the propagated item embedding instead of the ego
  embedding (content is then not smoothed over the graph). ``projection_reg_weight``: L2 (squared
  Frobenius norm) of the projection matrices, added to the loss. ``cold_item_id: False`` drops the (untrained) ID part of items that have no training
  interaction. ``use_content: False`` removes the content part: the model is then RecBole's LightGCN.
- Two LightGCN layers over the symmetric-normalised user-item graph of the training interactions
  (:mod:`recbole_mamex.model.graph`); final embedding = mean of layers 0..n_layers; score = dot product.
- Loss: BPR + ``reg_weight`` * RecBole's EmbLoss of the batch's ego embeddings (users, positives,
  negatives), as RecBole's LightGCN does.

The content projection runs over all items every step (propagation needs every item's ego embedding);
``mixed_precision: bf16`` runs it under bfloat16 autocast with bf16-stored features.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from recbole.model.init import xavier_uniform_initialization
from recbole.model.loss import BPRLoss, EmbLoss
from recbole.utils import InputType

from recbole_mamex.errors import ConfigError
from recbole_mamex.model.abstract import MultimodalRecommender, append_zero_rows
from recbole_mamex.model.graph import csr_adjacency, dataset_adjacency, propagate
from recbole_mamex.model.layers import gathered_linear, masked_modality_softmax

GATE_FORMS = ("dimension", "item")
CONTENT_POSITIONS = ("before", "after")


class RLMultimodalRec(MultimodalRecommender):
    r"""Gated multimodal fusion + LightGCN; see the module docstring (our design, stated there)."""

    prepares_features = True
    new_items_refusal = "with use_content: False it is LightGCN, which scores items by ID embeddings only"

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.latent_dim = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        self.require_pow = config["require_pow"]
        self.use_content = config["use_content"]
        self.gate_form = config["gate_form"]
        if self.gate_form not in GATE_FORMS:
            raise ConfigError(f"gate_form: expected one of {GATE_FORMS}, found {self.gate_form!r}")
        self.content_position = config["content_position"]
        if self.content_position not in CONTENT_POSITIONS:
            raise ConfigError(f"content_position: expected one of {CONTENT_POSITIONS}, found {self.content_position!r}")
        self.projection_reg_weight = config["projection_reg_weight"] or 0.0
        self.serves_new_items = bool(self.use_content)  # without content it is LightGCN: ID embeddings only
        self.prepare_features(config["feature_norm"], config["mixed_precision"], config["feature_storage"])

        # Same creation order as RecBole's LightGCN, so that with use_content False the same seed gives
        # the same initial weights.
        self.user_embedding = nn.Embedding(self.n_users, self.latent_dim)
        self.item_embedding = nn.Embedding(self.n_items, self.latent_dim)
        if self.use_content:
            m = len(self.modality_names)
            self.projections = nn.ModuleDict(
                {name: nn.Linear(self.modality_dims[name], self.latent_dim, bias=False) for name in self.modality_names}
            )
            gate_out = m * self.latent_dim if self.gate_form == "dimension" else m
            self.gate = nn.Linear(m * self.latent_dim, gate_out)
        self.mf_loss = BPRLoss()
        self.reg_loss = EmbLoss()
        # the compressed-row graph as three plain buffers (they move with the model and deep-copy, which a
        # CSR tensor does not); norm_adj_matrix wraps them without a copy
        csr = csr_adjacency(dataset_adjacency(dataset))
        self.register_buffer("adjacency_crow", csr.crow_indices(), persistent=False)
        self.register_buffer("adjacency_col", csr.col_indices(), persistent=False)
        self.register_buffer("adjacency_values", csr.values(), persistent=False)
        self.cold_item_id = config["cold_item_id"]
        self.apply(xavier_uniform_initialization)
        scale = config["content_scale"]
        if scale is not None and self.use_content:  # created after the initialisation: same ID weights as without
            self.content_scale = nn.Parameter(torch.tensor(float(scale)))
        else:
            self.register_buffer("content_scale", torch.tensor(1.0), persistent=False)

    # ----------------------------------------------------------------- content and ego embeddings
    def content(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(content vectors ``[n_items, d]``, gate weights ``[n_items, M]`` or ``[n_items, M, d]``)."""
        mask = self.modality_mask
        with self.content_autocast():
            stacked = torch.stack(
                [gathered_linear(self.modality_features(name), None, self.projections[name].weight,
                                 self.projections[name].bias, None) for name in self.modality_names], dim=1
            )
            logits = self.gate(stacked.reshape(stacked.shape[0], -1))
        stacked, logits = stacked.float(), logits.float()
        if self.gate_form == "dimension":
            weights = masked_modality_softmax(logits.view_as(stacked), mask, dim=1)
        else:
            weights = masked_modality_softmax(logits, mask, dim=1).unsqueeze(-1)
        return (weights * stacked).sum(1), weights

    def item_ego_embeddings(self, content: torch.Tensor | None = None) -> torch.Tensor:
        """ID part (+ scaled content when ``content_position: before``; ``content``: already computed)."""
        ids = self.item_embedding.weight
        if not self.cold_item_id:
            ids = ids * self.item_has_training.unsqueeze(1).to(ids.dtype)
        if not self.use_content or self.content_position == "after":
            return ids
        return ids + self.content_scale * (self.content()[0] if content is None else content)

    @property
    def norm_adj_matrix(self) -> torch.Tensor:
        """The normalised training graph ``D^-1/2 A D^-1/2`` (CSR, on the model's device)."""
        n = self.n_users + self.n_items
        return torch.sparse_csr_tensor(self.adjacency_crow, self.adjacency_col, self.adjacency_values, (n, n),
                                       check_invariants=False)

    def propagate(self, user_ego: torch.Tensor, item_ego: torch.Tensor):
        """LightGCN: mean of layers 0..n_layers of ``A_hat^k [users; items]``; returns (users, items)."""
        layers = propagate(self.norm_adj_matrix, torch.cat([user_ego, item_ego], dim=0), self.n_layers)
        return torch.split(layers, [self.n_users, self.n_items])

    def _embeddings(self):
        """(ego users, ego items, final users, final items)."""
        content = self.content()[0] if self.use_content else None
        item_ego = self.item_ego_embeddings(content)
        users, items = self.propagate(self.user_embedding.weight, item_ego)
        if content is not None and self.content_position == "after":
            items = items + self.content_scale * content
        return self.user_embedding.weight, item_ego, users, items

    def forward(self):
        return self._embeddings()[2:]

    def extend_item_state(self, m: int) -> None:
        """New items: no ID part (zero rows, whatever ``cold_item_id``: a new item has no ID vector, trained
        or not) and no edges (``m`` empty rows of the graph, which the item nodes end; layers 1.. of an
        isolated node are zero, as for the dataset's cold items)."""
        append_zero_rows(self.item_embedding, m)
        crow = self.adjacency_crow
        self.register_buffer("adjacency_crow", torch.cat([crow, crow[-1:].expand(m)]), persistent=False)

    # ----------------------------------------------------------------- RecBole interface
    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos_item, neg_item = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        all_users, all_items, final_users, final_items = self._embeddings()
        u, pos, neg = final_users[user], final_items[pos_item], final_items[neg_item]
        mf_loss = self.mf_loss((u * pos).sum(1), (u * neg).sum(1))
        reg_loss = self.reg_loss(all_users[user], all_items[pos_item], all_items[neg_item], require_pow=self.require_pow)
        loss = mf_loss + self.reg_weight * reg_loss
        if self.use_content and self.projection_reg_weight:
            loss = loss + self.projection_reg_weight * sum(p.weight.pow(2).sum() for p in self.projections.values())
        return loss

    def _final_embeddings(self):
        return self.evaluation_cached(self.forward)

    def predict(self, interaction):
        users, items = self._final_embeddings()
        return (users[interaction[self.USER_ID]] * items[interaction[self.ITEM_ID]]).sum(1)

    def full_sort_predict(self, interaction):
        users, items = self._final_embeddings()
        return torch.matmul(users[interaction[self.USER_ID]], items.T).view(-1)

    # ----------------------------------------------------------------- interpretation
    @torch.no_grad()
    def modality_report(self, item_tokens) -> pd.DataFrame:
        """Per item (original token): the mean gate weight of each modality (over dimensions for the
        ``dimension`` gate); 0 for a modality the item lacks."""
        if not self.use_content:
            raise ConfigError("modality_report needs use_content: True")
        _, weights = self.content()
        mean = weights.mean(-1) if weights.dim() == 3 else weights
        mean = mean[1:].float().cpu().numpy()
        columns = {"item": np.asarray(item_tokens)[1:]}
        for j, name in enumerate(self.modality_names):
            columns[f"weight_{name}"] = mean[:, j]
        return pd.DataFrame(columns)
