"""Building blocks shared by the multimodal models: a sparse mixture of experts, the masked softmax over
modalities, a modality fusion gate, and the KL-to-uniform balance loss."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def kl_from_uniform(mean_probs: torch.Tensor) -> torch.Tensor:
    """KL(uniform || p) = sum_e (1/E) (log(1/E) - log p_e) for a probability vector ``p`` of length E.

    Zero exactly when ``p`` is uniform, positive otherwise; the balance losses of MAMEX use it.
    """
    n = mean_probs.shape[-1]
    return (math.log(1.0 / n) - torch.log(mean_probs.clamp_min(1e-12))).sum(-1) / n


def masked_modality_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Softmax over modalities that gives exactly 0 to a missing modality (``mask`` False).

    ``logits`` is ``[N, M]`` or ``[N, M, ...]`` with the modality axis ``dim``; ``mask`` is ``[N, M]``.
    A row with no modality at all gets all-zero weights (its fused vector is then zero).
    """
    expanded = mask.view(mask.shape + (1,) * (logits.dim() - mask.dim()))
    # The lowest finite value instead of -inf: exp() still gives exactly 0, and a row with no modality
    # gets a uniform softmax (then zeroed by the mask) instead of NaN, in the forward and backward pass.
    filled = logits.masked_fill(~expanded, torch.finfo(logits.dtype).min)
    return torch.softmax(filled, dim=dim) * expanded.to(logits.dtype)


class SparseMoE(nn.Module):
    """Top-k mixture of linear experts: ``h = sum_{e in topk(g)} softmax_topk(g)_e * (W_e x + b_e)``.

    All E experts and the router are computed as one matrix product ``x @ [W_1 ... W_E  W_router]`` (one
    GEMM and one pass over ``x``, forward and backward, which at E = 4 is cheaper than gathering
    per-expert inputs); top-k sparsity is in the weights: the experts outside the top-k get weight
    exactly 0, hence no gradient from that input.

    Returns ``(h, gates, router_probs)``: the mixed output ``[N, out_dim]``, the sparse weights ``[N, E]``
    (k non-zero entries per row, summing to 1), and the dense router softmax ``[N, E]`` used by the
    load-balance loss.
    """

    def __init__(self, in_dim: int, out_dim: int, n_experts: int, top_k: int):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={n_experts}], got {top_k}")
        self.n_experts, self.top_k, self.out_dim = n_experts, top_k, out_dim
        # rows [0, E*out): the E experts; rows [E*out, E*out + E): the router
        self.projection = nn.Linear(in_dim, n_experts * out_dim + n_experts)

    def expert_weight(self, e: int) -> torch.Tensor:
        """``[out_dim, in_dim]`` weight of expert ``e`` (a view into the fused projection)."""
        return self.projection.weight[e * self.out_dim : (e + 1) * self.out_dim]

    def forward(self, x: torch.Tensor):
        fused = self.projection(x)
        experts_out = self.n_experts * self.out_dim
        logits = fused[:, experts_out:]
        router_probs = torch.softmax(logits.float(), dim=-1)
        top_logits, top_index = logits.topk(self.top_k, dim=-1)
        gates = torch.zeros_like(logits).scatter(-1, top_index, torch.softmax(top_logits, dim=-1))
        outputs = fused[:, :experts_out].reshape(x.shape[0], self.n_experts, self.out_dim)
        h = torch.bmm(gates.unsqueeze(1).to(outputs.dtype), outputs).squeeze(1)
        return h, gates, router_probs


class ModalityGate(nn.Module):
    """Per-item weights over M modality vectors: ``softmax(MLP([h_1; ...; h_M]))`` with missing modalities
    masked out (:func:`masked_modality_softmax`). MLP = Linear(M*d, d), ReLU, Dropout, Linear(d, M)."""

    def __init__(self, n_modalities: int, dim: int, dropout: float = 0.1):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(n_modalities * dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, n_modalities)
        )

    def forward(self, stacked: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``stacked`` ``[N, M, d]``, ``mask`` ``[N, M]`` -> weights ``[N, M]`` (rows sum to 1, or 0)."""
        logits = self.mlp(stacked.reshape(stacked.shape[0], -1))
        return masked_modality_softmax(logits, mask)


def l2_normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Row-wise L2 normalisation; all-zero rows (missing features) stay zero."""
    return F.normalize(x, p=2, dim=1)
