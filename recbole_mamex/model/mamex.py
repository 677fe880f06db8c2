r"""MAMEX
################################################

Reference:
    "Multi-modal Adaptive Mixture of Experts for Cold-start Recommendation", CIKM 2025 (arXiv 2508.08042).

Item vectors come from content only, so a cold item (no interaction) is scored exactly like a warm one:

1. Modality extraction: for every modality m (any number of them), the L2-normalised feature x_m goes
   through a sparse mixture of E linear experts with a top-k router,
   ``h_m = sum_{e in topk} w_e (W_e x_m + b_e)`` (:class:`~recbole_mamex.model.layers.SparseMoE`).
2. Modality fusion: ``a = softmax(MLP([h_1; ...; h_M]))`` per item, ``e = sum_m a_m h_m``; a modality the
   item lacks (mask 0 in the feature store) gets weight exactly 0, so its other modalities carry it; an
   item with no modality at all gets a zero vector (score 0 for every user).

Users have free ID embeddings; ``score(u, i) = p_u . e_i``.

Loss (the authors' code):
``L = BPR + reg_weight * L_reg + align_weight * L_align + moe_balance_weight * L_moe + fusion_balance_weight * L_fuse``

- ``L_reg``: batch mean of ``||p_u||^2 + ||e_i||^2 + ||e_j||^2``;
- ``L_align = sum_m MSE(e, h_m)``, over items that have modality m;
- ``L_moe = sum_m KL(uniform_E || mean router softmax of modality m)``;
- ``L_fuse = KL(uniform_M || mean fusion weights)`` (``fusion_balance_weight: 0``: no fusion-balance target).

``aux_loss_reduction``: ``sum`` over modalities (above; the authors' objective, whatever M) or ``mean``
(divided by the number of modalities, so that three modalities pull no harder than one).
``weight_init``: ``xavier_normal`` (RecBole's, every layer) or ``authors`` (the authors' code: user
embeddings N(0, 0.1), every linear layer at torch's default).

Item-tower scope (``tower_scope``):

- ``batch`` (default, our choice): each minibatch runs the item tower only on its unique positive and
  negative items, and the auxiliary losses are estimated on those items: plug-in estimates of the
  catalogue means, taken over items drawn as positives (by popularity) and negatives (uniformly), not
  over the catalogue uniformly. Cost per batch is O(unique batch items) instead of O(catalogue).
- ``catalogue``: the authors' objective exactly: the tower and the auxiliary losses over all items every
  minibatch.

For evaluation the tower runs once over the catalogue and is cached until the model trains again.
All E experts run on every input (one matrix product); top-k sparsity is in the weights.
``mixed_precision: bf16`` keeps the features in bfloat16 and runs the item tower under bfloat16
autocast (fused vectors, scores and losses in float32).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_normal_initialization
from recbole.utils import InputType

from recbole_mamex.data.features import rows_per_block
from recbole_mamex.errors import ConfigError
from recbole_mamex.model.abstract import DotProductScoring, MultimodalRecommender
from recbole_mamex.model.layers import ModalityGate, SparseMoE, kl_from_uniform

TOWER_SCOPES = ("batch", "catalogue")
AUX_REDUCTIONS = ("sum", "mean")
WEIGHT_INITS = ("xavier_normal", "authors")


class MAMEX(DotProductScoring, MultimodalRecommender):
    r"""Multi-modal adaptive mixture of experts; see the module docstring."""

    prepares_features = True
    serves_new_items = True  # item vectors from content alone

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.n_experts = config["n_experts"]
        self.top_k = config["top_k"]
        self.reg_weight = config["reg_weight"]
        self.align_weight = config["align_weight"]
        self.moe_balance_weight = config["moe_balance_weight"]
        self.fusion_balance_weight = config["fusion_balance_weight"]
        self.tower_scope = config["tower_scope"]
        if self.tower_scope not in TOWER_SCOPES:
            raise ConfigError(f"tower_scope: expected one of {TOWER_SCOPES}, found {self.tower_scope!r}")
        self.aux_loss_reduction = config["aux_loss_reduction"]
        if self.aux_loss_reduction not in AUX_REDUCTIONS:
            raise ConfigError(f"aux_loss_reduction: expected one of {AUX_REDUCTIONS}, found {self.aux_loss_reduction!r}")
        weight_init = config["weight_init"]
        if weight_init not in WEIGHT_INITS:
            raise ConfigError(f"weight_init: expected one of {WEIGHT_INITS}, found {weight_init!r}")
        self.prepare_features(config["feature_norm"], config["mixed_precision"], config["feature_storage"])

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.modality_moe = nn.ModuleDict(
            {
                name: SparseMoE(self.modality_dims[name], self.embedding_size, self.n_experts, self.top_k)
                for name in self.modality_names
            }
        )
        self.fusion_gate = ModalityGate(len(self.modality_names), self.embedding_size, config["fusion_dropout"])
        if weight_init == "authors":  # linear layers keep torch's default initialisation
            nn.init.normal_(self.user_embedding.weight, std=0.1)
        else:
            self.apply(xavier_normal_initialization)

    # ----------------------------------------------------------------- item tower
    def item_tower(self, items: torch.Tensor | slice | None = None) -> dict:
        """Run the tower on ``items``: internal ids (a tensor, gathered), a ``slice`` of the id range (a view,
        no copy) or ``None`` (whole catalogue, padding row 0 included).

        Returns a dict with ``item`` ``[N, d]`` (fused vectors), ``modality`` ``[N, M, d]``, ``fusion``
        ``[N, M]`` weights, ``gates`` and ``router`` (per modality ``[N, E]``) and ``mask`` ``[N, M]``.
        """
        gathered = isinstance(items, torch.Tensor)
        rows = slice(None) if items is None else items
        mask = self.modality_mask[rows]
        per_modality, gates, router = [], {}, {}
        with self.content_autocast():
            for name in self.modality_names:
                x = self.modality_features(name)
                moe = self.modality_moe[name]
                h, gates[name], router[name] = moe(x, items) if gathered else moe(x[rows])
                per_modality.append(h)
            stacked = torch.stack(per_modality, dim=1).float()
        fusion = self.fusion_gate(stacked, mask).float()
        item = (fusion.unsqueeze(-1) * stacked).sum(1)
        return {"item": item, "modality": stacked, "fusion": fusion, "gates": gates, "router": router, "mask": mask}

    def auxiliary_losses(self, tower: dict) -> dict:
        """Alignment and balance losses over the items of ``tower``."""
        # Means over the items that have each modality, as masked sums (no boolean indexing: no host sync).
        present = tower["mask"].to(tower["item"].dtype)
        count = present.sum(0).clamp_min(1.0)
        squared_error = (tower["item"].unsqueeze(1) - tower["modality"]).pow(2).mean(-1)
        align = ((squared_error * present).sum(0) / count).sum()
        moe = tower["item"].new_zeros(())
        for j, name in enumerate(self.modality_names):
            mean_probs = (tower["router"][name] * present[:, j : j + 1]).sum(0) / count[j]
            moe = moe + kl_from_uniform(mean_probs) * (present[:, j].sum() > 0)
        fuse = kl_from_uniform(tower["fusion"].mean(0))
        if self.aux_loss_reduction == "mean":
            align, moe = align / len(self.modality_names), moe / len(self.modality_names)
        return {"align": align, "moe": moe, "fuse": fuse}

    # ----------------------------------------------------------------- RecBole interface
    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos, neg = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        if self.tower_scope == "batch":
            items, inverse = torch.unique(torch.cat([pos, neg]), return_inverse=True)
            tower = self.item_tower(items)
            pos_index, neg_index = inverse[: len(pos)], inverse[len(pos) :]
        else:
            tower = self.item_tower(slice(1, None))
            pos_index, neg_index = pos - 1, neg - 1
        user_e = self.user_embedding(user)
        pos_e, neg_e = tower["item"][pos_index], tower["item"][neg_index]
        bpr = F.softplus((user_e * neg_e).sum(-1) - (user_e * pos_e).sum(-1)).mean()
        reg = (user_e.pow(2).sum(-1) + pos_e.pow(2).sum(-1) + neg_e.pow(2).sum(-1)).mean()
        aux = self.auxiliary_losses(tower)
        return (
            bpr
            + self.reg_weight * reg
            + self.align_weight * aux["align"]
            + self.moe_balance_weight * aux["moe"]
            + self.fusion_balance_weight * aux["fuse"]
        )

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]`` fused item vectors, computed once per evaluation (cached while not training).

        The tower runs on blocks of items (each block's expert outputs about
        :data:`~recbole_mamex.data.features.BLOCK_BYTES`): on 16x Amazon Sports the whole catalogue at once
        held 1.2 GB of intermediate products at the start of every evaluation, for a ``[n_items, d]`` result."""

        def blocks():
            step = rows_per_block(4 * len(self.modality_names) * self.n_experts * (self.embedding_size + 1))
            return torch.cat([self.item_tower(slice(start, start + step))["item"] for start in range(0, self.n_items, step)])

        return self.evaluation_cached(blocks)

    # ----------------------------------------------------------------- interpretation
    @torch.no_grad()
    def modality_report(self, item_tokens) -> pd.DataFrame:
        """Per item (original token): the fusion weight of each modality, whether the item has it, and
        the expert with the largest gate weight in each modality (-1 where the modality is missing)."""
        was_training = self.training
        self.eval()
        try:
            tower = self.item_tower(slice(1, None))
        finally:
            self.train(was_training)
        columns = {"item": np.asarray(item_tokens)[1:]}
        fusion = tower["fusion"].cpu().numpy()
        mask = tower["mask"].cpu().numpy()
        for j, name in enumerate(self.modality_names):
            columns[f"weight_{name}"] = fusion[:, j]
        for j, name in enumerate(self.modality_names):
            top = tower["gates"][name].float().argmax(-1).cpu().numpy()
            columns[f"top_expert_{name}"] = np.where(mask[:, j], top, -1)
        return pd.DataFrame(columns)
