r"""FREEDOM
################################################

Reference:
    Xin Zhou and Zhiqi Shen. "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
    Recommendation." ACM MM 2023 (public code: the FREEDOM repository, also ``freedom.py`` of MMRec).

A baseline: LightGCN-style propagation of ID embeddings over two graphs, an item-item graph built once
from the items' content and then frozen, and the user-item graph with edges pruned at random each epoch.

- **Frozen item-item graph.** For each modality m, the cosine similarity of the items' raw features
  ``x^m`` (not ``feature_norm``'s rows: the authors build it from the features as they are); each item
  keeps its ``knn_k`` most similar items (itself among them, its own similarity 1 being the largest) with
  weight 1, and the kNN matrix is normalised as ``D^-1/2 S^m D^-1/2``, ``D`` its row sums (as the
  authors' code: every row has k entries, so every entry is 1/k). The modalities are combined as
  ``S = sum_m alpha_m S^m`` (the paper's ``alpha_m``), built at construction and never updated.
- **Degree-sensitive edge pruning.** At the first training step of each epoch (RecBole's trainer calls
  ``model.train()`` when an epoch starts; the authors' trainer calls ``pre_epoch_processing``),
  ``floor(|E| (1 - dropout))`` of the training graph's |E| user-item edges are *kept*, drawn without
  replacement with probabilities proportional to ``1 / sqrt(d_u d_i)`` (degrees in the whole training
  graph), so the edges between high-degree nodes are dropped most often; the kept edges form a new
  symmetric-normalised graph ``A_hat'``. With ``dropout`` 0 the whole graph is used.
- **Propagation.** ``h = S^L E_I`` (``L = n_mm_layers`` products, no layer mean); ``[u; i] =
  mean_{l=0..n_ui_layers} A_hat'^l [E_U; E_I]`` (LightGCN); item vector ``i + h``, user vector ``u``;
  ``score(u, i) = u . (i + h_i)``.
- **Loss.** ``BPR(u, i + h) + reg_weight * sum_m BPR(u, W_m x^m + b_m)``: each modality's projected
  features (``nn.Linear``, bias) scored against the propagated user vectors of the batch, as the
  authors' code (the projected features are used in this loss only, never in scoring).
- **Evaluation** propagates over the whole training graph, unpruned (as the authors).

Defaults (``properties/model/FREEDOM.yaml``) are the authors' config: d = 64, k = 10, one item-item
layer, two user-item layers, image weight 0.1, Adam 1e-3, batch 2048; ``dropout`` and ``reg_weight``
the first and third values of the authors' grids ({0.8, 0.9}, {0, 1e-5, 1e-4, 1e-3}), which
``properties/hyper/FREEDOM.hyper`` searches.

Where this version departs from the paper and the authors' code, and why:

- **Any number M of modalities.** ``modality_weights`` (modality -> weight) gives ``alpha`` directly,
  normalised to sum 1 (a modality it leaves out gets weight 0 and no graph). Left at ``~``: a modality
  named ``image`` gets ``mm_image_weight`` and the other M - 1 share ``1 - mm_image_weight`` equally
  (two modalities, image and text: exactly the authors' ``mm_image_weight * S_image + (1 -
  mm_image_weight) * S_text``); without an ``image`` modality, equal weights ``1 / M``.
- **Missing modalities** (mask 0 in the feature store, a zero row). An item lacking modality m has no
  row in ``S^m`` and is nobody's neighbour in it (its zero row has no cosine; the authors' code would
  divide by its zero norm). Its row of ``S`` is the sum over the modalities it has, with their weights
  renormalised over them (``alpha_m / sum_{m' it has} alpha_m'``); an item with every modality gets the
  authors' row. An item with no modality has an empty row (``h = 0``). In the modality BPR terms, a
  batch triple counts for modality m only when its positive and its negative both have m (the mean is
  over those triples); the authors' data has every modality for every item.
- **Cold items** (no training interaction; the authors' catalogues have none). Their ID embedding is
  untrained, so it is set to 0, in training and scoring (as VBPR here), and the candidates for
  neighbours are the training items that have the modality, plus the item itself: a training item's
  row is the authors' row over the training items; a cold item gets itself (a zero embedding: it adds
  nothing but its share of the normalisation, as the authors' self-neighbour) and its k - 1 most similar
  training items. A cold item has no user-item edge, so its ``i`` is 0 and its score is ``u . h_i``:
  with ``n_mm_layers: 1``, ``h_i = sum_m (alpha_m / sum_{m' it has} alpha_m') sum_{j in N_m(i)}
  e_j / sqrt(r_i r_j)`` over its neighbours' ID embeddings ``e_j`` (``r``: row sums, k when the
  catalogue has k training items with the modality), i.e. a weighted mean of the ID embeddings of the
  training items whose content is most like its own; more layers add neighbours of neighbours.
- **New items at serving time are served** (``serves_new_items``): :meth:`FREEDOM.extend_item_state`
  gives each one a zero ID embedding, no user-item edge and a row of ``S`` computed as a cold item's,
  from the raw rows it arrives with (:meth:`FREEDOM.add_items` keeps them for that), against the same
  candidates (training items only, so no existing row changes: the graph stays frozen). A dataset cold
  item passed again as new therefore gets exactly its dataset score.
- **Sampling.** Drawn from torch's global generator, which RecBole seeds with ``seed + local_rank``: in a
  multi-process run each process prunes its own graph (seeded, not the same one). The kept edges are drawn with exponential keys (Efraimidis-Spirakis: the ``n`` smallest
  ``Exp(1) / w_e``), the same distribution as the authors' ``torch.multinomial`` without replacement,
  which refuses more than 2^24 edges. Each user-item pair counts once.
- **Features.** The authors' features are trainable (``nn.Embedding.from_pretrained(..., freeze=False)``)
  and move only through the modality BPR terms; ``feature_finetune: True`` keeps that (a float32 copy of
  every modality's rows, initialised from ``feature_norm``'s rows; ``feature_norm: none`` gives the
  authors' raw rows), ``False`` keeps them frozen (the rows ``feature_norm`` and ``feature_storage``
  prepared, gathered per batch). The kNN graph always comes from the raw features.
- **Feature scale.** ``feature_norm: l2`` (the default, as every model of this package) gives the
  projections and the trainable copy unit rows; the authors feed their raw features (``feature_norm:
  none``). Unit rows keep modalities of very different scales (Last.fm-2K's VGGish against its text
  embeddings) from weighing by their norms in the modality BPR terms; the kNN graph is built from the
  raw features either way.
- The projection width is ``embedding_size`` (the authors' ``feat_embed_dim`` must equal it for the dot
  product with ``u``); the keys their code reads but never uses (``lambda_coeff``, ``cf_model``,
  ``degree_ratio``, ``weight_size``) are left out. The authors cache the kNN graph in a file beside the
  data; here it is built when the model is (each run and each checkpoint load).

Memory at scale: the kNN graph is built modality by modality from the feature store's blocks, on the
run's device: the unit rows of the candidate items (one float32 copy of that modality) and a block of
query rows' similarities of about :data:`KNN_BLOCK_BYTES` (twice that while its top k is taken) are held at
a time, never an ``n_items x n_items`` matrix; time ``O(n_items * n_candidates * dim)``. ``S`` keeps at most ``k`` entries per item
and modality, stored twice (``S`` and its transpose, for the backward). ``feature_finetune: True`` adds a
float32 copy of every modality's features, its gradient and Adam's two moments of it (four times their
size; the authors' trainable features cost the same), saved in checkpoints and bundles too.

Results: the paper reports Recall@20 0.1089 on MMRec's Amazon Sports (warm items, every item a
candidate), 26% above LightGCN's 0.0864; this project has not yet run FREEDOM on Sports. On warm
Last.fm-2K (text and audio features; 10 tuning trials, 3 seeds,
``bench/results/compare_tuned_all_lastfm_2k_warm.md``) FREEDOM ties LightGCN: Recall@20 0.4299 against
0.4297 (p = 0.94), above VBPR (+0.007, p = 0.03). On Last.fm-2K's cold split (mostly a
different task: ranking items that have no training interaction, by their item-item neighbours alone),
tuned with 10 trials and run on 3 splits x 3 seeds (``bench/results/compare_tuned_all_lastfm_2k_cold.md``),
FREEDOM gave test Recall@20 0.667 ± 0.013 among the cold-test items, below VBPR (0.718) and MAMEX
(0.753), and 0.457 ± 0.012 among the warm items of the same runs, second only to CLCRec (0.466) and
above VBPR (0.436): the warm-item strength the paper reports, and a weak cold-start model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_mamex.errors import ConfigError
from recbole_mamex.model.abstract import MultimodalRecommender, append_zero_rows
from recbole_mamex.model.graph import normalized_adjacency, propagate
from recbole_mamex.model.layers import l2_normalize_rows

#: the most bytes of query-candidate similarities held at a time while the kNN graph is built
KNN_BLOCK_BYTES = 256 * 2**20


# ----------------------------------------------------------------------------- the item-item graph
def knn_edges(queries, candidates: torch.Tensor, candidate_ids: torch.Tensor, k: int, block_rows: int | None = None):
    """One modality's normalised kNN edges ``(rows, cols, values)`` (item ids; values ``1 / sqrt(r_i r_j)``,
    ``r`` the number of neighbours of a row).

    ``queries``: ``(ids, unit rows, self_loop)`` blocks of the items that get a row; ``self_loop[q]`` True
    for a query that is not among the candidates, which then counts itself as one (its own similarity, 1,
    the largest). ``candidates``: ``[n_c, dim]`` unit rows of the items that can be neighbours, with ids
    ``candidate_ids``. Each query keeps the ``min(k, pool)`` most similar of its pool, so a candidate's row
    (which the columns point to) has ``min(k, n_c)`` entries, whatever the queries are. Similarities are
    computed ``block_rows`` queries at a time (default: a block of at most :data:`KNN_BLOCK_BYTES`)."""
    n_c = len(candidates)
    take = min(k, n_c + 1)
    if block_rows is None:
        block_rows = max(1, KNN_BLOCK_BYTES // (4 * (n_c + 1)))
    candidate_degree = float(min(k, n_c))
    lookup = torch.cat([candidate_ids.new_zeros(1), candidate_ids])  # column 0 of the similarities: the query
    rows, cols, values = [], [], []
    for ids, unit, self_loop in queries:
        for start in range(0, len(ids), block_rows):
            q_ids, q_self = ids[start : start + block_rows], self_loop[start : start + block_rows]
            similarity = unit[start : start + block_rows] @ candidates.T
            own = torch.full((len(q_ids), 1), float("-inf"), device=similarity.device)
            own[q_self] = float("inf")
            best, index = torch.cat([own, similarity], dim=1).topk(take, dim=1)
            found = best > float("-inf")
            neighbour = torch.where(index == 0, q_ids.unsqueeze(1), lookup[index])
            degree = found.sum(1, keepdim=True).float()
            column_degree = torch.where(index == 0, degree, torch.full_like(degree, candidate_degree))
            rows.append(q_ids.unsqueeze(1).expand_as(index)[found])
            cols.append(neighbour[found])
            values.append((degree * column_degree).rsqrt()[found])
    if not rows:
        empty = torch.zeros(0, dtype=torch.long, device=candidates.device)
        return empty, empty, torch.zeros(0, device=candidates.device)
    return torch.cat(rows), torch.cat(cols), torch.cat(values)


def unit_blocks(blocks, has: torch.Tensor, device):
    """``(ids, unit rows)`` of the rows ``has`` marks in ``(start, rows)`` blocks (arrays or tensors), L2-normalised
    (:func:`~recbole_mamex.model.layers.l2_normalize_rows`), on ``device``."""
    for start, block in blocks:
        chosen = torch.nonzero(has[start : start + len(block)].cpu()).flatten()
        if len(chosen):
            if isinstance(block, np.ndarray):
                block = torch.from_numpy(np.ascontiguousarray(block[chosen.numpy()], dtype=np.float32))
            else:
                block = block[chosen]
            yield chosen.to(device) + start, l2_normalize_rows(block.to(device=device, dtype=torch.float32))


def modality_knn(blocks, has: torch.Tensor, trained: torch.Tensor, k: int, device="cpu", block_rows=None):
    """:func:`knn_edges` of one modality over a catalogue: ``blocks()`` gives its raw ``(start, float32
    rows)`` blocks (called twice: once for the candidates, once for the queries), ``has[i]``: item ``i`` has
    the modality, ``trained[i]``: it has a training interaction. The candidates are the training items that
    have it; every item that has it gets a row (itself a neighbour when it is not a candidate)."""
    has, trained = has.cpu(), trained.cpu()
    candidate = has & trained
    found = list(unit_blocks(blocks(), candidate, device))
    dim = found[0][1].shape[1] if found else 0
    candidate_ids = torch.cat([ids for ids, _ in found]) if found else torch.zeros(0, dtype=torch.long, device=device)
    candidates = torch.cat([rows for _, rows in found]) if found else torch.zeros((0, dim), device=device)
    del found
    queries = ((ids, rows, ~candidate[ids.cpu()].to(device)) for ids, rows in unit_blocks(blocks(), has, device))
    return knn_edges(queries, candidates, candidate_ids, k, block_rows)


def combine_modalities(edges: dict, weights: dict, mask: torch.Tensor, n_items: int) -> torch.Tensor:
    """``S = sum_m alpha_m S^m`` as a coalesced ``[n_items, n_items]`` sparse COO tensor: ``edges``: modality
    -> :func:`knn_edges`' ``(rows, cols, values)``; ``weights``: modality -> ``alpha_m`` (a modality with
    weight 0 is left out); ``mask``: ``[n_items, M]`` in ``edges``' order. Each row's weights are renormalised
    over the modalities its item has (the authors' ``alpha`` when it has them all)."""
    names = list(edges)
    alpha = torch.tensor([float(weights.get(name, 0.0)) for name in names], device=mask.device)
    total = mask.float() @ alpha  # per item: the weight of the modalities it has
    rows, cols, values = [], [], []
    for j, name in enumerate(names):
        if alpha[j] <= 0:
            continue
        r, c, v = edges[name]
        rows.append(r), cols.append(c), values.append(v * alpha[j].to(v.device) / total.to(v.device)[r])
    device = mask.device if not rows else rows[0].device
    indices = torch.stack([torch.cat(rows), torch.cat(cols)]) if rows else torch.zeros((2, 0), dtype=torch.long, device=device)
    data = torch.cat(values) if values else torch.zeros(0, device=device)
    return torch.sparse_coo_tensor(indices, data, (n_items, n_items), check_invariants=False).coalesce()


def modality_weights(names, image_weight, weights) -> dict:
    """``alpha_m`` for each modality, summing to 1: from ``weights`` (the ``modality_weights`` option: modality
    -> weight, normalised; a modality it leaves out gets 0), else ``image_weight`` for a modality named
    ``image`` and the rest shared equally by the others, else equal weights."""
    names = list(names)
    if weights is not None:
        if not isinstance(weights, dict) or not weights:
            raise ConfigError(f"modality_weights: expected ~ or a mapping modality -> weight, found {weights!r}")
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ConfigError(f"modality_weights: expected modalities of the dataset ({', '.join(names)}), found {unknown}")
        bad = {name: w for name, w in weights.items() if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0}
        if bad or not sum(weights.values()) > 0:
            raise ConfigError(f"modality_weights: expected numbers >= 0 with a positive sum, found {weights!r}")
        total = float(sum(weights.values()))
        return {name: float(weights.get(name, 0.0)) / total for name in names}
    if isinstance(image_weight, bool) or not isinstance(image_weight, (int, float)) or not 0 <= image_weight <= 1:
        raise ConfigError(f"mm_image_weight: expected a number in [0, 1], found {image_weight!r}")
    if "image" in names and len(names) > 1:
        rest = (1.0 - float(image_weight)) / (len(names) - 1)
        return {name: float(image_weight) if name == "image" else rest for name in names}
    return {name: 1.0 / len(names) for name in names}


class _DirectedProduct(torch.autograd.Function):
    """``S @ x`` for a sparse ``S`` that needs no gradient and is not symmetric: the backward is one product
    with ``S^T``, kept beside it (autograd's own backward of ``torch.sparse.mm`` transposes ``S`` each step)."""

    @staticmethod
    def forward(ctx, matrix, transposed, x):
        ctx.transposed = transposed
        return torch.sparse.mm(matrix, x)

    @staticmethod
    def backward(ctx, grad):
        return None, None, torch.sparse.mm(ctx.transposed, grad)


# ----------------------------------------------------------------------------- user-item edge pruning
def keep_edges(weights: torch.Tensor, n_keep: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``n_keep`` edges drawn without replacement with probabilities proportional to ``weights``
    (exponential keys: the ``n_keep`` smallest ``Exp(1) / w``), in ascending order."""
    keys = torch.empty_like(weights).exponential_(generator=generator) / weights
    return torch.topk(keys, n_keep, largest=False, sorted=False).indices.sort().values


def edge_keep_weights(users: torch.Tensor, items: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """``1 / sqrt(d_u d_i)`` of each (unique) user-item edge, degrees over these edges (+1e-7, as the
    authors' normalisation)."""
    d_u = torch.bincount(users, minlength=n_users).float() + 1e-7
    d_i = torch.bincount(items, minlength=n_items).float() + 1e-7
    return (d_u[users] * d_i[items]).rsqrt()


class FREEDOM(MultimodalRecommender):
    r"""Frozen item-item kNN graph + degree-sensitive pruned user-item graph; see the module docstring. A
    baseline (``is_baseline``)."""

    prepares_features = True
    serves_new_items = True  # a cold item's row of the frozen graph, computed from its features

    input_type = InputType.PAIRWISE
    is_baseline = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = config["embedding_size"]
        self.knn_k = config["knn_k"]
        self.n_mm_layers = config["n_mm_layers"]
        self.n_ui_layers = config["n_ui_layers"]
        self.reg_weight = config["reg_weight"]
        self.dropout = config["dropout"]
        self.feature_finetune = config["feature_finetune"]
        if isinstance(self.knn_k, bool) or not isinstance(self.knn_k, int) or self.knn_k < 1:
            raise ConfigError(f"knn_k: expected an integer >= 1, found {self.knn_k!r}")
        for key, value in (("n_mm_layers", self.n_mm_layers), ("n_ui_layers", self.n_ui_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{key}: expected an integer >= 0, found {value!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: expected a number in [0, 1), found {self.dropout!r}")
        self.alpha = modality_weights(self.modality_names, config["mm_image_weight"], config["modality_weights"])
        self.prepare_features(config["feature_norm"], "none", config["feature_storage"])

        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_id_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.projections = nn.ModuleDict({name: nn.Linear(self.modality_dims[name], d) for name in self.modality_names})
        if self.feature_finetune:  # the authors' trainable features, from the prepared rows
            self.tuned_features = nn.ParameterList(
                [nn.Parameter(self.modality_features(name).float().clone()) for name in self.modality_names]
            )

        # the training graph: unique user-item edges, their keep weights, the whole normalised graph (CSR)
        inter = dataset.inter_feat
        users = torch.as_tensor(np.asarray(inter[dataset.uid_field]), dtype=torch.long)
        items = torch.as_tensor(np.asarray(inter[dataset.iid_field]), dtype=torch.long)
        pairs = torch.unique(users * self.n_items + items)
        users, items = pairs // self.n_items, pairs % self.n_items
        self.register_buffer("edge_users", users, persistent=False)
        self.register_buffer("edge_items", items, persistent=False)
        self.register_buffer("edge_weights", edge_keep_weights(users, items, self.n_users, self.n_items), persistent=False)
        self._register_csr("adjacency", normalized_adjacency(users, items, self.n_users, self.n_items))
        self._pruned = None  # this epoch's pruned graph (CSR), drawn at its first training step

        # the frozen item-item graph
        device = torch.device(config["device"]) if config["device"] is not None else torch.device("cpu")
        edges = {}
        for j, name in enumerate(self.modality_names):
            edges[name] = modality_knn(lambda name=name: self._item_features.blocks(name), self.modality_mask[:, j],
                                       self.item_has_training, self.knn_k, device)
        self._set_item_graph(combine_modalities(edges, self.alpha, self.modality_mask.to(device), self.n_items))

    # ----------------------------------------------------------------- graphs
    def _register_csr(self, name: str, coo: torch.Tensor) -> None:
        csr = coo.coalesce().to_sparse_csr()
        device = self.modality_mask.device
        self.register_buffer(f"{name}_crow", csr.crow_indices().to(device), persistent=False)
        self.register_buffer(f"{name}_col", csr.col_indices().to(device), persistent=False)
        self.register_buffer(f"{name}_values", csr.values().to(device), persistent=False)

    def _csr(self, name: str, n: int) -> torch.Tensor:
        return torch.sparse_csr_tensor(getattr(self, f"{name}_crow"), getattr(self, f"{name}_col"),
                                       getattr(self, f"{name}_values"), (n, n), check_invariants=False)

    def _set_item_graph(self, coo: torch.Tensor) -> None:
        self._register_csr("item_graph", coo)
        self._register_csr("item_graph_t", coo.t())

    @property
    def norm_adj_matrix(self) -> torch.Tensor:
        """The whole normalised training graph ``D^-1/2 A D^-1/2`` (CSR; users first, then items)."""
        return self._csr("adjacency", self.n_users + self.n_items)

    @property
    def item_graph(self) -> torch.Tensor:
        """The frozen item-item graph ``S`` (CSR, ``[n_items, n_items]``)."""
        return self._csr("item_graph", self.n_items)

    def pruned_graph(self) -> torch.Tensor:
        """The normalised graph of ``floor(|E| (1 - dropout))`` edges kept by :func:`keep_edges` (drawn with
        torch's generator); the whole graph with ``dropout`` 0."""
        if self.dropout <= 0:
            return self.norm_adj_matrix
        kept = keep_edges(self.edge_weights, int(len(self.edge_weights) * (1.0 - self.dropout)))
        coo = normalized_adjacency(self.edge_users[kept], self.edge_items[kept], self.n_users, self.n_items)
        return coo.to_sparse_csr()

    def train(self, mode: bool = True):
        if mode:
            self._pruned = None  # a new epoch: a new draw at its first step
        return super().train(mode)

    # ----------------------------------------------------------------- embeddings
    def item_id_vectors(self) -> torch.Tensor:
        """Item ID embeddings, 0 for items without a training interaction."""
        weight = self.item_id_embedding.weight
        return weight * self.item_has_training.unsqueeze(1).to(weight.dtype)

    def forward(self, adjacency: torch.Tensor):
        """(users ``[n_users, d]``, items ``[n_items, d]``): LightGCN over ``adjacency`` plus ``S^L`` of the
        item ID embeddings."""
        ids = self.item_id_vectors()
        h = ids
        if self.n_mm_layers:
            graph, transposed = self.item_graph, self._csr("item_graph_t", self.n_items)
            for _ in range(self.n_mm_layers):
                h = _DirectedProduct.apply(graph, transposed, h)
        layers = propagate(adjacency, torch.cat([self.user_embedding.weight, ids]), self.n_ui_layers)
        users, items = torch.split(layers, [self.n_users, self.n_items])
        return users, items + h

    def modality_loss(self, users_e: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``sum_m BPR(u, W_m x^m + b_m)`` over the triples whose positive and negative both have modality m."""
        items = torch.cat([pos, neg])
        total = users_e.new_zeros(())
        for j, name in enumerate(self.modality_names):
            projection = self.projections[name]
            if self.feature_finetune:
                projected = F.linear(self.tuned_features[j][items], projection.weight, projection.bias)
            else:
                projected = self.feature_product(projection.weight, projection.bias, items, modalities=[name])
            has = self.modality_mask[items, j]
            valid = has[: len(pos)] & has[len(pos) :]
            if not valid.any():
                continue
            diff = (users_e * (projected[: len(pos)] - projected[len(pos) :])).sum(-1)
            total = total - F.logsigmoid(diff[valid]).mean()
        return total

    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        pos, neg = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        if self._pruned is None:
            self._pruned = self.pruned_graph()
        users, items = self.forward(self._pruned)
        u = users[user]
        loss = -F.logsigmoid((u * (items[pos] - items[neg])).sum(-1)).mean()
        if self.reg_weight:
            loss = loss + self.reg_weight * self.modality_loss(u, pos, neg)
        return loss

    def _final_embeddings(self):
        return self.evaluation_cached(lambda: self.forward(self.norm_adj_matrix))

    def predict(self, interaction):
        users, items = self._final_embeddings()
        return (users[interaction[self.USER_ID]] * items[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        users, items = self._final_embeddings()
        return torch.matmul(users[interaction[self.USER_ID]], items.T).view(-1)

    # ----------------------------------------------------------------- new items
    @torch.no_grad()
    def add_items(self, features: dict, mask) -> None:
        """:meth:`MultimodalRecommender.add_items`, keeping the raw rows for the new items' rows of ``S``."""
        self._arrivals = (features, np.asarray(mask, dtype=bool))
        try:
            super().add_items(features, mask)
        finally:
            self._arrivals = None

    def extend_item_state(self, m: int) -> None:
        """New items: zero ID embeddings, no user-item edge (``m`` empty rows of the graph), and rows of ``S``
        as cold items get (their raw features against the training items; no existing row changes)."""
        features, mask = self._arrivals
        old = self.n_items - m
        device = self.modality_mask.device
        append_zero_rows(self.item_id_embedding, m)
        crow = self.adjacency_crow
        self.register_buffer("adjacency_crow", torch.cat([crow, crow[-1:].expand(m)]), persistent=False)
        if self.feature_finetune:
            for j, name in enumerate(self.modality_names):
                tuned = self.tuned_features[j]
                added = self.modality_features(name)[old:].to(tuned.dtype)
                self.tuned_features[j] = nn.Parameter(torch.cat([tuned.detach(), added]), requires_grad=tuned.requires_grad)
        edges = {}
        for j, name in enumerate(self.modality_names):
            rows = torch.from_numpy(np.ascontiguousarray(features[name], dtype=np.float32)) if name in features else None
            has = torch.from_numpy(mask[:, j].copy())
            trained = self.item_has_training[:old].cpu()
            candidates = list(unit_blocks(self._item_features.blocks(name), self.modality_mask[:old, j].cpu() & trained, device))
            dim = self.modality_dims[name]
            candidate_ids = torch.cat([ids for ids, _ in candidates]) if candidates else torch.zeros(0, dtype=torch.long, device=device)
            unit = torch.cat([r for _, r in candidates]) if candidates else torch.zeros((0, dim), device=device)
            queries = []
            if rows is not None and has.any():
                for ids, unit_rows in unit_blocks([(0, rows)], has, device):
                    queries.append((ids + old, unit_rows, torch.ones(len(ids), dtype=torch.bool, device=device)))
            edges[name] = knn_edges(queries, unit, candidate_ids, self.knn_k)
        added = combine_modalities(edges, self.alpha, self.modality_mask, self.n_items)
        graph = self._csr("item_graph", old).to_sparse_coo()  # the graph as it was, at its own size
        existing = torch.sparse_coo_tensor(graph.indices(), graph.values(), (self.n_items, self.n_items), check_invariants=False)
        self._set_item_graph((existing + added).coalesce())
