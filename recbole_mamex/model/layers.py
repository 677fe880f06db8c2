"""Building blocks shared by the multimodal models: a sparse mixture of experts, the masked softmax over
modalities, a modality fusion gate, and the KL-to-uniform balance loss."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_mamex.errors import ConfigError


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


#: SparseMoE pads its fused projection to a multiple of this many output columns: on this project's CPUs
#: (oneDNN/MKL, avx512) an (N x 4096) @ (4096 x 516) product ran ~20% slower than one 528 columns wide,
#: and GPU tensor cores also want multiples of 8/16.
PROJECTION_COLUMN_MULTIPLE = 16


class _ProjectionWorkspace:
    """Buffers one :class:`SparseMoE` reuses from training step to training step: the gathered input rows,
    the zero-padded weight and bias, and the assembled output gradient.

    Fresh tensors of these sizes (tens of MB at 4096-d features) are page-faulted on every step on a CPU,
    which cost as much as a quarter of the projection itself. ``ticket`` counts gathers, so a backward
    pass knows whether ``rows`` still holds its own forward's input or must gather it again.
    Not shared between threads: a training step must not run concurrently with another on the same layer.
    """

    def __init__(self):
        self.rows = self.grad = self.weight = self.bias = None
        self.ticket = 0

    @staticmethod
    def _fit(buffer, n: int, width: int, like: torch.Tensor) -> torch.Tensor:
        if (
            buffer is None or buffer.shape[0] < n or buffer.shape[1] != width
            or buffer.dtype != like.dtype or buffer.device != like.device
        ):
            # head room: the number of unique rows moves a little from batch to batch
            return torch.empty((n + n // 8, width), dtype=like.dtype, device=like.device)
        return buffer

    def gather(self, source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        self.rows = self._fit(self.rows, len(index), source.shape[1], source)
        out = self.rows[: len(index)]
        torch.index_select(source, 0, index, out=out)
        self.ticket += 1
        return out

    def padded_parameters(self, weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype):
        """``weight`` and ``bias`` copied into zero-padded ``[width, in]`` / ``[width]`` buffers of ``dtype``."""
        n_out, n_in = weight.shape
        width = -(-n_out // PROJECTION_COLUMN_MULTIPLE) * PROJECTION_COLUMN_MULTIPLE
        if self.weight is None or self.weight.shape != (width, n_in) or self.weight.dtype != dtype or self.weight.device != weight.device:
            self.weight = torch.zeros((width, n_in), dtype=dtype, device=weight.device)
            self.bias = torch.zeros(width, dtype=dtype, device=weight.device)
        self.weight[:n_out].copy_(weight)
        self.bias[:n_out].copy_(bias)
        return self.weight, self.bias

    def output_grad(self, n: int, width: int, like: torch.Tensor) -> torch.Tensor:
        self.grad = self._fit(self.grad, n, width, like)
        return self.grad[:n]


class _GatheredProjection(torch.autograd.Function):
    """``source[index] @ weight.T + bias`` (``index`` None: all of ``source``), returned as two views, the
    first ``split`` columns and the rest, for a ``source`` that needs no gradient (stored features).

    The same numbers as ``F.linear(source[index], weight, bias)``, but the gathered rows live in the
    workspace instead of a fresh tensor kept for backward (backward re-gathers them only if another
    forward has used the workspace since), the product is computed zero-padded to a multiple of
    :data:`PROJECTION_COLUMN_MULTIPLE` columns, and it runs in ``dtype`` (:func:`product_dtype`: bf16 under
    autocast, with the weight gradient returned in the parameter's dtype, as autocast would). Rows stored
    in another dtype are converted block by block, never as a whole.
    """

    @staticmethod
    def forward(ctx, source, index, weight, bias, split, workspace, dtype):
        with torch.autocast(source.device.type, enabled=False):
            x = source if index is None else workspace.gather(source, index)
            padded_weight, padded_bias = workspace.padded_parameters(weight, bias, dtype)
            out = _widened_addmm(padded_bias, x, padded_weight)
        ctx.save_for_backward(source, index)
        ctx.workspace, ctx.ticket, ctx.split, ctx.n_out = workspace, workspace.ticket, split, weight.shape[0]
        ctx.weight_dtype, ctx.bias_dtype = weight.dtype, bias.dtype
        return out[:, :split], out[:, split : weight.shape[0]]

    @staticmethod
    def backward(ctx, grad_first, grad_rest):
        source, index = ctx.saved_tensors
        workspace = ctx.workspace
        if index is None:
            x = source
        elif workspace.ticket == ctx.ticket:
            x = workspace.rows[: len(index)]
        else:
            x = workspace.gather(source, index)
        grad = workspace.output_grad(x.shape[0], ctx.n_out, workspace.weight)
        grad[:, : ctx.split].copy_(grad_first)
        grad[:, ctx.split :].copy_(grad_rest)
        grad_weight = grad_bias = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[2]:
                grad_weight = _widened_grad_weight(grad, x).to(ctx.weight_dtype)
            if ctx.needs_input_grad[3]:
                grad_bias = grad.sum(0).to(ctx.bias_dtype)
        return None, None, grad_weight, grad_bias, None, None, None


#: rows of stored features widened to the product's dtype at a time (``feature_storage`` narrower than the
#: product): a block, never a widened copy of the whole catalogue
WIDEN_ROWS = 8192


def _widened_addmm(bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``bias + x @ weight.T`` in ``weight``'s dtype; ``x`` in another dtype is widened block by block."""
    if x.dtype == weight.dtype:
        return torch.addmm(bias, x, weight.t())
    out = torch.empty((x.shape[0], weight.shape[0]), dtype=weight.dtype, device=x.device)
    for start in range(0, x.shape[0], WIDEN_ROWS):
        torch.addmm(bias, x[start : start + WIDEN_ROWS].to(weight.dtype), weight.t(), out=out[start : start + WIDEN_ROWS])
    return out


def _widened_grad_weight(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``grad.T @ x`` in ``grad``'s dtype; ``x`` in another dtype is widened block by block."""
    if x.dtype == grad.dtype:
        return torch.mm(grad.t(), x)
    total = torch.zeros((grad.shape[1], x.shape[1]), dtype=grad.dtype, device=x.device)
    for start in range(0, x.shape[0], WIDEN_ROWS):
        total.addmm_(grad[start : start + WIDEN_ROWS].t(), x[start : start + WIDEN_ROWS].to(grad.dtype))
    return total


def product_dtype(source: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype a product over stored features ``source`` runs in: autocast's where autocast is on for
    their device (``mixed_precision: bf16``), else the weight's (float32), whatever dtype the features are
    stored in (``feature_storage``)."""
    device = source.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return weight.dtype


def project_rows(source: torch.Tensor, index: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor | None,
                 split: int, workspace: _ProjectionWorkspace | None):
    """``F.linear(source[index], weight, bias)`` (``index`` None: all rows) as two views, its first ``split``
    columns and the rest. While training on a ``source`` that needs no gradient (stored features) and a
    ``weight`` that does, the rows are gathered into ``workspace``'s reusable buffers
    (:class:`_GatheredProjection`). Features stored narrower than the product (``feature_storage: bf16`` or
    ``fp16`` without autocast) go the same way, widened block by block (:data:`WIDEN_ROWS`); otherwise (or
    with no ``workspace``) a plain gather and product."""
    dtype = product_dtype(source, weight)
    buffered = workspace is not None and torch.is_grad_enabled() and not source.requires_grad and weight.requires_grad
    if buffered or (source.dtype != dtype and not source.requires_grad):
        if bias is None:
            bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
        return _GatheredProjection.apply(source, index, weight, bias, split, workspace or new_workspace(), dtype)
    rows = source if index is None else torch.index_select(source, 0, index)
    out = nn.functional.linear(rows, weight, bias)
    return out[:, :split], out[:, split:]


def new_workspace() -> _ProjectionWorkspace:
    """Reusable gather buffers for :func:`gathered_linear` (one per call site and modality)."""
    return _ProjectionWorkspace()


def gathered_linear(source: torch.Tensor, index: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor | None,
                    workspace: _ProjectionWorkspace | None) -> torch.Tensor:
    """``F.linear(source[index], weight, bias)`` (``index`` None: all rows), through :func:`project_rows`."""
    return project_rows(source, index, weight, bias, weight.shape[0], workspace)[0]


class SparseMoE(nn.Module):
    """Top-k mixture of linear experts: ``h = sum_{e in topk(g)} softmax_topk(g)_e * (W_e x + b_e)``.

    All E experts and the router are computed as one matrix product ``x @ [W_1 ... W_E  W_router]`` (one
    GEMM and one pass over ``x``, forward and backward, which at E = 4 is cheaper than gathering
    per-expert inputs); top-k sparsity is in the weights: the experts outside the top-k get weight
    exactly 0, hence no gradient from that input.

    ``forward(x, index)`` runs on the rows ``x[index]`` (``index`` None: all rows). When training on an
    ``x`` that needs no gradient (the stored features), the gather and the product go through reusable
    buffers (:class:`_GatheredProjection`); otherwise it is a plain ``nn.Linear`` on the gathered rows.

    Returns ``(h, gates, router_probs)``: the mixed output ``[N, out_dim]`` (float32), the sparse weights ``[N, E]``
    (k non-zero entries per row, summing to 1), and the dense router softmax ``[N, E]`` used by the
    load-balance loss.
    """

    def __init__(self, in_dim: int, out_dim: int, n_experts: int, top_k: int):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ConfigError(f"top_k must be in [1, n_experts={n_experts}], got {top_k}")
        self.n_experts, self.top_k, self.out_dim = n_experts, top_k, out_dim
        # rows [0, E*out): the E experts; rows [E*out, E*out + E): the router
        self.projection = nn.Linear(in_dim, n_experts * out_dim + n_experts)
        self._workspace = _ProjectionWorkspace()

    def expert_weight(self, e: int) -> torch.Tensor:
        """``[out_dim, in_dim]`` weight of expert ``e`` (a view into the fused projection)."""
        return self.projection.weight[e * self.out_dim : (e + 1) * self.out_dim]

    def forward(self, x: torch.Tensor, index: torch.Tensor | None = None):
        experts_out = self.n_experts * self.out_dim
        weight, bias = self.projection.weight, self.projection.bias
        outputs, logits = project_rows(x, index, weight, bias, experts_out, self._workspace)
        router_probs = torch.softmax(logits.float(), dim=-1)
        top_logits, top_index = logits.topk(self.top_k, dim=-1)
        gates = torch.zeros_like(logits).scatter(-1, top_index, torch.softmax(top_logits, dim=-1))
        # the gate-weighted sum in float32: as an element-wise product and sum it is several times faster on
        # a CPU than a batched [1 x E] @ [E x out] product per row, and bf16 outputs lose nothing in it
        outputs = outputs.reshape(outputs.shape[0], self.n_experts, self.out_dim).float()
        h = (gates.float().unsqueeze(-1) * outputs).sum(1)
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


def l2_normalize_rows(x: torch.Tensor, center: torch.Tensor | None = None, centred: torch.Tensor | None = None) -> torch.Tensor:
    """Row-wise L2 normalisation (of ``x - center`` in the rows ``centred`` marks, every row by default, when
    ``center`` is given), a unit row for every finite non-zero row: each row is first scaled by the power of
    two that brings its largest magnitude into [0.5, 1), so its squares neither overflow (|x| ~ 1e19 in
    float32 made zero rows) nor fall under F.normalize's eps (|x| < ~1e-13 made short rows). Scaling by a
    power of two is exact: the other rows get F.normalize's very bits. All-zero rows (missing features)
    stay zero. Computed in float32 at least, returned in ``x``'s dtype."""
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if center is not None:
        shift = center.to(work.dtype).expand_as(work)
        if centred is not None:
            shift = torch.where(centred.unsqueeze(1), shift, torch.zeros((), dtype=work.dtype, device=work.device))
        # x - center can leave the dtype's range: both scaled by the larger one's power of two first
        exponent = _peak_exponent(torch.maximum(work.abs().amax(dim=1, keepdim=True), shift.abs().amax(dim=1, keepdim=True)))
        work = _times_power_of_two(work, -exponent) - _times_power_of_two(shift, -exponent)
    work = _times_power_of_two(work, -_peak_exponent(work.abs().amax(dim=1, keepdim=True)))
    return F.normalize(work, p=2, dim=1).to(x.dtype)


def _peak_exponent(peak: torch.Tensor) -> torch.Tensor:
    """``e`` with ``peak = m * 2**e``, ``m`` in [0.5, 1) (0 for a zero peak)."""
    return torch.frexp(peak).exponent


def _times_power_of_two(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``x * 2**exponent``, exactly, in two steps (2**149, what a float32 subnormal needs, is beyond float32)."""
    half = torch.div(exponent, 2, rounding_mode="floor")
    return torch.ldexp(torch.ldexp(x, half), exponent - half).to(x.dtype)
