r"""MILK
################################################

Reference:
    Haoyue Bai et al. "Multimodality Invariant Learning for Multimedia-Based New Item Recommendation."
    SIGIR 2024.

A baseline, and the framework MAMEX builds on. Items have no ID embedding: a new item is scored from its
content exactly like a trained one.

- Each modality m is projected linearly to d: ``h_m = W_m x_m + b_m`` (``x_m`` L2-normalised per row).
- Item vector for scoring: the average ``e_i = (1/M) sum_m h_m``; users have free ID embeddings;
  ``score(u, i) = p_u . e_i``.
- Environments (cyclic mixup): each training batch draws ``lambda ~ Dirichlet(alpha, ..., alpha)`` over
  the M modalities; environment 0 mixes the modalities uniformly (the scoring vector), environment k >= 1
  with ``lambda`` cyclically shifted by k - 1 (for two modalities: ``(l1, l2)`` and ``(l2, l1)``). Every
  environment's weights sum to 1.
- Loss: ``sum_k BPR_k + penalty_weight * Var_k(BPR_k) + align_weight * L_align + reg_weight * L_reg``,
  ``BPR_k`` the batch BPR loss with environment k's item vectors, ``Var`` the unbiased variance over
  environments (0 for a single environment); ``L_align`` the MSE between the modality vectors of the
  batch's positive items; ``L_reg = (||p_u||^2 + ||e_pos||^2 + ||e_neg||^2) / 2`` (batch mean, uniform
  environment).

Defaults (``properties/model/MILK.yaml``) are the authors' public ones: d = 64, penalty 50, alignment
0.05, reg 1e-4, alpha 0.1, three environments, Adam 1e-3.

Where this version departs from the authors' code:

- Any number of modalities M (their code: two, three for TikTok). Environments beyond M cyclic shifts
  repeat shifts; the alignment loss is the mean over modality pairs of the per-pair MSE (their code:
  the one image-text pair).
- Missing modalities (mask 0 in the feature store): an environment's weights are multiplied by the
  item's mask and renormalised over the modalities it has (uniform over them when every weight it has
  is 0), so the scoring vector averages the present modalities only; an item with no modality gets a
  zero vector (score 0). The alignment loss uses, for each pair, only items that have both modalities.
- The item vectors and BPR losses are computed on the batch's items only (the authors project the
  whole catalogue every batch); this gives the same BPR losses. Batch size follows RecBole's
  ``train_batch_size`` (the yaml sets 2048, as for MAMEX; the authors use 256).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_mamex.errors import ConfigError
from recbole_mamex.model.abstract import DotProductScoring, MultimodalRecommender


def environment_weights(n_modalities: int, n_environments: int, alpha: float) -> torch.Tensor:
    """``[n_environments, n_modalities]`` mixing weights, rows summing to 1: row 0 uniform, row k >= 1 a
    Dirichlet(alpha) draw (one per call) cyclically shifted by k - 1."""
    uniform = torch.full((1, n_modalities), 1.0 / n_modalities)
    if n_environments == 1:
        return uniform
    concentration = torch.full((n_modalities,), float(alpha), dtype=torch.float64)
    lam = torch.distributions.Dirichlet(concentration).sample().float()
    shifted = [torch.roll(lam, shifts=k) for k in range(n_environments - 1)]
    return torch.cat([uniform, torch.stack(shifted)], dim=0)


def mix_modalities(stacked: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum_m w_m h_m`` per item with the weights restricted to the item's modalities and renormalised.

    ``stacked`` ``[N, M, d]``, ``weights`` ``[M]``, ``mask`` ``[N, M]`` (bool) -> ``[N, d]``. An item whose
    modalities all have weight 0 mixes them uniformly; an item with no modality gets a zero vector.
    """
    present = mask.to(stacked.dtype)
    w = weights.to(stacked.dtype).unsqueeze(0) * present
    total = w.sum(1, keepdim=True)
    w = torch.where(total > 0, w, present)
    w = w / w.sum(1, keepdim=True).clamp_min(torch.finfo(stacked.dtype).tiny)
    return (w.unsqueeze(-1) * stacked).sum(1)


def variance_penalty(losses: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of the environment losses; 0 for a single environment."""
    if losses.numel() < 2:
        return losses.new_zeros(())
    return losses.var()


def pairwise_alignment(stacked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over modality pairs of the MSE between the two modality vectors, over items that have both."""
    pairs = list(itertools.combinations(range(stacked.shape[1]), 2))
    if not pairs:
        return stacked.new_zeros(())
    total = stacked.new_zeros(())
    for a, b in pairs:
        both = (mask[:, a] & mask[:, b]).to(stacked.dtype)
        error = (stacked[:, a] - stacked[:, b]).pow(2).mean(-1)
        total = total + (error * both).sum() / both.sum().clamp_min(1.0)
    return total / len(pairs)


class MILK(DotProductScoring, MultimodalRecommender):
    r"""Multimodality invariant learning for new items; see the module docstring. A baseline."""

    prepares_features = True
    serves_new_items = True  # item vectors from content alone

    input_type = InputType.PAIRWISE
    is_baseline = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.penalty_weight = config["penalty_weight"]
        self.align_weight = config["align_weight"]
        self.reg_weight = config["reg_weight"]
        self.dirichlet_alpha = config["dirichlet_alpha"]
        self.n_environments = config["n_environments"]
        if not isinstance(self.n_environments, int) or self.n_environments < 1:
            raise ConfigError(f"n_environments: expected an integer >= 1, found {self.n_environments!r}")
        if not self.dirichlet_alpha or self.dirichlet_alpha <= 0:
            raise ConfigError(f"dirichlet_alpha: expected a number > 0, found {self.dirichlet_alpha!r}")
        self.prepare_features(config["feature_norm"], "none", config["feature_storage"])

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        nn.init.normal_(self.user_embedding.weight, std=0.1)  # as the authors; projections: torch's default
        self.projections = nn.ModuleDict(
            {name: nn.Linear(self.modality_dims[name], self.embedding_size) for name in self.modality_names}
        )

    def modality_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, M, d]`` projected modalities of ``items`` (``None``: whole catalogue)."""
        per_modality = []
        for name in self.modality_names:
            projection = self.projections[name]  # gathered into reusable buffers while training
            per_modality.append(self.feature_product(projection.weight, projection.bias, items, modalities=[name]))
        return torch.stack(per_modality, dim=1)

    def _uniform(self) -> torch.Tensor:
        return torch.full((len(self.modality_names),), 1.0 / len(self.modality_names), device=self.modality_mask.device)

    def losses(self, interaction) -> dict:
        """The loss terms of one batch: ``env`` ``[n_environments]`` BPR losses, ``penalty``, ``align``, ``reg``."""
        user = interaction[self.USER_ID]
        pos, neg = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        items, inverse = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        pos_index, neg_index = inverse[: len(pos)], inverse[len(pos) :]
        stacked, mask = self.modality_vectors(items), self.modality_mask[items]
        user_e = self.user_embedding(user)
        weights = environment_weights(len(self.modality_names), self.n_environments, self.dirichlet_alpha)
        env_losses = []
        for k in range(self.n_environments):
            item_e = mix_modalities(stacked, weights[k].to(stacked.device), mask)
            diff = (user_e * item_e[neg_index]).sum(-1) - (user_e * item_e[pos_index]).sum(-1)
            env_losses.append(F.softplus(diff).mean())
            if k == 0:
                uniform_e = item_e
        env = torch.stack(env_losses)
        positives = torch.unique(pos_index)
        align = pairwise_alignment(stacked[positives], mask[positives])
        reg = 0.5 * (user_e.pow(2).sum(-1) + uniform_e[pos_index].pow(2).sum(-1) + uniform_e[neg_index].pow(2).sum(-1)).mean()
        return {"env": env, "penalty": variance_penalty(env), "align": align, "reg": reg}

    def calculate_loss(self, interaction):
        terms = self.losses(interaction)
        return (
            terms["env"].sum()
            + self.penalty_weight * terms["penalty"]
            + self.align_weight * terms["align"]
            + self.reg_weight * terms["reg"]
        )

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]``: the average of each item's present modality vectors (cached in evaluation)."""
        return self.evaluation_cached(lambda: mix_modalities(self.modality_vectors(), self._uniform(), self.modality_mask))
