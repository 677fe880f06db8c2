"""Base class for models that read the multimodal feature store."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from recbole.model.abstract_recommender import GeneralRecommender

from recbole_mamex.data.features import rows_per_block
from recbole_mamex.errors import ConfigError
from recbole_mamex.model.layers import gathered_linear, l2_normalize_rows, new_workspace

FEATURE_NORMS = ("l2", "center_l2", "none", None)
PRECISIONS = ("none", "fp32", "bf16", None)
STORAGE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, None: None}


def _accepted(values) -> str:
    """The accepted ``values`` as an error message lists them: ``None`` as yaml writes it (``~``), the last
    one after "or"."""
    names = ["~" if value is None else str(value) for value in values]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


class MultimodalRecommender(GeneralRecommender):
    """A RecBole general recommender whose items carry pre-computed modality features.

    The dataset's features (see :mod:`recbole_mamex.data.features`) become float32 buffers, already in
    internal item-id order, that move with the model (``.to(device)``) and are *not* saved in
    checkpoints (``persistent=False``): they are data, re-read from the dataset when a checkpoint is
    loaded. ``modality_mask[i, m]`` is True when item ``i`` has modality ``m`` (row 0 is padding).
    :meth:`evaluation_cached` keeps what evaluation needs (item vectors, propagated embeddings) between
    evaluation batches.
    """

    is_abstract_base = True
    #: True: the model calls :meth:`prepare_features` in its ``__init__``, which then makes its feature
    #: buffers straight from the dataset's files, in blocks (no unnormalised copy of the catalogue beside
    #: them); False: the buffers hold the dataset's features as they are, from the start
    prepares_features = False
    #: True for re-implemented baselines: a comparison counts them as baselines, not as our models.
    is_baseline = False
    #: True: an item that arrives after training is scored from its features alone (:meth:`add_items`);
    #: False: the model's scores rest on something a new item cannot have (:attr:`new_items_refusal` says what)
    serves_new_items = False
    #: why a model that does not serve new items cannot (completes "<Model> cannot score new items: ...")
    new_items_refusal = "it scores items by what it learned from their training interactions, which a new item has none of"
    #: saved in checkpoints by RecBole's other_parameter mechanism; checked when a checkpoint is loaded
    other_parameter_name = ["feature_fingerprints", "feature_centers"]

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        features = getattr(dataset, "item_features", None)
        if features is None:
            raise ValueError(
                f"{type(self).__name__} needs item features, but the config of dataset '{config['dataset']}' "
                "names none: add `modalities: {<name>: <file>.npy, ...}` to its yaml "
                "(dataset_prep.mmrec writes it for imported data)"
            )
        if features.n_items != self.n_items:
            raise ValueError(
                f"item features cover {features.n_items} items but the dataset has {self.n_items}"
            )
        self.modality_names = list(features.names)
        self.modality_dims = features.dims()
        self._item_features = features
        if not self.prepares_features:  # the features as they are, until the model transforms them
            for name in self.modality_names:
                self.register_buffer(self._buffer_name(name), torch.from_numpy(features.matrices[name]), persistent=False)
        self.register_buffer("modality_mask", torch.from_numpy(features.mask), persistent=False)
        self.feature_fingerprints = features.fingerprints()
        self.feature_sources = dict(features.sources)
        self.feature_centers = {}  # modality -> the row feature_norm: center_l2 subtracted (training items' mean)
        self.register_training_items(dataset)
        self._eval_cache = None
        self._workspaces = {}  # modality -> the reusable gather buffers of feature_product

    def evaluation_cached(self, compute):
        """``compute()`` while training; in evaluation its result, computed once (without gradients) and
        kept until the model trains again or loads other weights."""
        if self.training:
            return compute()
        if self._eval_cache is None:
            with torch.no_grad():
                self._eval_cache = compute()
        return self._eval_cache

    def train(self, mode: bool = True):
        if mode:
            self._eval_cache = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._eval_cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def register_training_items(self, dataset) -> None:
        """Buffer ``item_has_training[i]``: True when item ``i`` has an interaction in ``dataset`` (the
        training split, which RecBole passes to the model); False for cold items and the padding row."""
        trained = torch.zeros(self.n_items, dtype=torch.bool)
        items = dataset.inter_feat[dataset.iid_field]
        trained[torch.as_tensor(np.asarray(items), dtype=torch.long)] = True  # an Interaction or, unsplit, a DataFrame
        self.register_buffer("item_has_training", trained, persistent=False)

    def concatenated_features(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, sum of dims]``: every modality's features side by side (``items``: internal ids, ``None`` =
        whole catalogue). A missing modality is a zero block (absent rows are zero in the store)."""
        blocks = [self.modality_features(name) for name in self.modality_names]
        if items is not None:
            blocks = [torch.index_select(block, 0, items) for block in blocks]
        return torch.cat(blocks, dim=1)

    def feature_product(self, weight: torch.Tensor, bias: torch.Tensor | None, items: torch.Tensor | None = None,
                        modalities=None) -> torch.Tensor:
        """``concat(features of modalities)[items] @ weight.T + bias`` (``modalities``: default every one, in
        order; ``items`` None: the whole catalogue), without concatenating: one product per modality block
        of ``weight``'s columns, summed. While training, each block's rows are gathered into buffers reused
        from step to step (:func:`recbole_mamex.model.layers.gathered_linear`; a fresh tensor of the rows
        per step is page-faulted on a CPU); each modality keeps its own buffers."""
        names = list(self.modality_names if modalities is None else modalities)
        out, start = None, 0
        for name in names:
            features = self.modality_features(name)
            block = weight[:, start : start + features.shape[1]]
            start += features.shape[1]
            part_bias = bias if out is None else None
            part = gathered_linear(features, items, block, part_bias, self._workspaces.setdefault(name, new_workspace()))
            out = part if out is None else out + part
        if start != weight.shape[1]:
            raise ValueError(f"feature_product: weight has {weight.shape[1]} columns, the modalities {names} {start}")
        return out

    @staticmethod
    def _buffer_name(modality: str) -> str:
        return f"modality_feat_{modality}"

    def modality_features(self, modality: str) -> torch.Tensor:
        """``[n_items, dim]`` features of one modality, on the model's device."""
        return getattr(self, self._buffer_name(modality))

    def prepare_features(self, feature_norm, mixed_precision, feature_storage=None) -> None:
        """Normalise every modality's rows and store them in ``feature_storage``'s dtype; validates the keys.

        ``feature_norm``: ``l2`` (row-wise L2), ``center_l2`` (subtract the mean row of the training items
        that have the modality, then L2: a direction every item shares stops dominating; the mean is kept
        in :attr:`feature_centers` and saved with a checkpoint) or ``none``. Only training items enter the
        mean, so a cold item's features change nothing but its own row.

        ``feature_storage``: ``fp32``, ``bf16`` or ``fp16`` (half the memory of the catalogue's features;
        the products still run in float32, or in bf16 under ``mixed_precision: bf16``, rows widened block
        by block: :func:`recbole_mamex.model.layers.project_rows`); ``~``: bf16 when ``mixed_precision``
        is bf16 (half the memory traffic when rows are gathered), else fp32.
        """
        if feature_norm not in FEATURE_NORMS:
            raise ConfigError(f"feature_norm: expected one of l2, center_l2, none, found {feature_norm!r}")
        if mixed_precision not in PRECISIONS:
            raise ConfigError(f"mixed_precision: expected {_accepted(PRECISIONS)}, found {mixed_precision!r}")
        if feature_storage not in STORAGE_DTYPES:
            raise ConfigError(f"feature_storage: expected {_accepted(STORAGE_DTYPES)}, found {feature_storage!r}")
        self.mixed_precision = mixed_precision
        self.feature_norm = feature_norm
        if feature_storage is None:
            feature_storage = "bf16" if mixed_precision == "bf16" else "fp32"
        dtype = STORAGE_DTYPES[feature_storage]
        for j, name in enumerate(self.modality_names):
            has = self.modality_mask[:, j].cpu()
            center = None
            if feature_norm == "center_l2":
                center = training_mean(self._feature_blocks(name), has & self.item_has_training.cpu(), self.modality_dims[name])
                self.feature_centers[name] = center
            out = torch.empty((self.n_items, self.modality_dims[name]), dtype=dtype)
            for start, block in self._feature_blocks(name):  # block by block: one copy of the catalogue
                if feature_norm in ("l2", "center_l2"):  # centred (the rows that have the modality) and normalised at once
                    block = l2_normalize_rows(block, center, has[start : start + len(block)])
                out[start : start + len(block)] = block
            self.register_buffer(self._buffer_name(name), out.to(self.modality_mask.device), persistent=False)

    def _feature_blocks(self, name: str):
        """``(start, float32 rows)`` of one modality as the dataset has it: from the model's buffer where it
        holds them, else from the dataset's feature store in blocks (:meth:`ItemFeatures.blocks`)."""
        if hasattr(self, self._buffer_name(name)):
            features = self.modality_features(name).float().cpu()
            step = rows_per_block(features.shape[1] * 4)
            for start in range(0, len(features), step):
                yield start, features[start : start + step]
            return
        for start, block in self._item_features.blocks(name):
            yield start, torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32))

    @torch.no_grad()
    def add_items(self, features: dict, mask) -> None:
        """Append ``m`` items that arrived after training to the catalogue, as items without a training
        interaction: ``features``: modality -> float32 ``[m, dim]`` rows as a feature file holds them (zero
        rows where ``mask`` is False), ``mask``: bool ``[m, n_modalities]``. Their internal ids follow the
        catalogue's (``n_items``, ``n_items + 1``, ...). Each row goes through the training's normalisation
        (``feature_norm``, with the centre of the *training* items for ``center_l2``) and storage dtype, so a
        dataset item passed again this way gets its dataset score; :meth:`extend_item_state` then gives the
        model's item-indexed state rows for them. Raises ``ValueError`` for a model that does not
        :attr:`serve_new_items <serves_new_items>`; the request checks are the caller's
        (:mod:`recbole_mamex.serving`)."""
        if not self.serves_new_items:
            raise ValueError(f"{type(self).__name__} cannot score new items: {self.new_items_refusal}")
        mask = torch.as_tensor(np.asarray(mask, dtype=bool))
        m = len(mask)
        if mask.dim() != 2 or mask.shape[1] != len(self.modality_names):
            raise ValueError(f"add_items: mask of shape [m, {len(self.modality_names)}] expected, found {tuple(mask.shape)}")
        for name in self.modality_names:
            shape = tuple(np.shape(features[name])) if name in features else None
            if shape != (m, self.modality_dims[name]):
                raise ValueError(f"add_items: {name} rows of shape {(m, self.modality_dims[name])} expected, found {shape}")
        # every new tensor first, then all assigned: a failure leaves the model as it was
        device = self.modality_mask.device
        buffers = {}
        for j, name in enumerate(self.modality_names):
            stored = self.modality_features(name)
            rows = torch.from_numpy(np.ascontiguousarray(features[name], dtype=np.float32))
            if self.prepares_features and getattr(self, "feature_norm", None) in ("l2", "center_l2"):
                rows = l2_normalize_rows(rows, self.feature_centers.get(name), mask[:, j])
            buffers[self._buffer_name(name)] = torch.cat([stored, rows.to(stored.dtype).to(device)])
        buffers["modality_mask"] = torch.cat([self.modality_mask, mask.to(device)])
        buffers["item_has_training"] = torch.cat([self.item_has_training, torch.zeros(m, dtype=torch.bool, device=device)])
        before = {name: getattr(self, name) for name in buffers}
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)
        self.n_items += m
        try:
            self.extend_item_state(m)
        except BaseException:
            for name, value in before.items():
                self.register_buffer(name, value, persistent=False)
            self.n_items -= m
            raise
        finally:
            self._eval_cache = None
            self._workspaces = {}

    def extend_item_state(self, m: int) -> None:
        """Give the model's item-indexed state (ID embeddings, biases, graph) rows for ``m`` new items, which
        :meth:`add_items` has already appended to the features; ``n_items`` already counts them. Nothing by
        default (a model whose item vectors come from content alone)."""

    def content_autocast(self):
        """bfloat16 autocast on the features' device when ``mixed_precision: bf16``, else nothing."""
        if getattr(self, "mixed_precision", None) == "bf16":
            return torch.autocast(device_type=self.modality_mask.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def append_zero_rows(embedding: torch.nn.Embedding, m: int) -> None:
    """Give ``embedding`` ``m`` more rows of zeros (the ID part of items that have none: new items)."""
    weight = embedding.weight
    embedding.weight = torch.nn.Parameter(torch.cat([weight.detach(), weight.new_zeros(m, weight.shape[1])]),
                                          requires_grad=weight.requires_grad)
    embedding.num_embeddings += m


def training_mean(blocks, reference: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The mean row of the rows ``reference`` marks (the training items that have the modality), over
    ``(start, rows)`` blocks, summed in float64 (a float32 sum of large rows overflows), in ``dtype`` on the
    blocks' device; zeros when there is none. The one computation of the centre that ``feature_norm:
    center_l2`` subtracts (:meth:`MultimodalRecommender.prepare_features`, block by block) and
    :func:`training_center` (a whole matrix) return."""
    total, count, device = torch.zeros(dim, dtype=torch.float64), 0, None
    for start, block in blocks:
        device = block.device
        chosen = reference[start : start + len(block)].to(device)
        total = total.to(device) + block[chosen].double().sum(0)
        count += int(chosen.sum())
    if not count:
        return torch.zeros(dim, dtype=dtype, device=device)
    return (total / count).to(dtype)


def training_center(features: torch.Tensor, has: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
    """:func:`training_mean` of a whole ``[n_items, dim]`` matrix: the mean row of the items that have the
    modality and a training interaction, in ``features``' dtype; zeros when there is none."""
    return training_mean([(0, features)], has & trained, features.shape[1], features.dtype)


def center_on_training_items(features: torch.Tensor, has: torch.Tensor, trained: torch.Tensor):
    """(``features`` with :func:`training_center` subtracted from every row that has the modality, that
    centre); rows without the modality stay as they are (zero). No such item: nothing is subtracted.
    To normalise the centred rows, pass the centre to :func:`recbole_mamex.model.layers.l2_normalize_rows`
    instead (the difference itself can leave float32's range)."""
    center = training_center(features, has, trained)
    return torch.where(has.unsqueeze(1), features - center, features), center


class DotProductScoring:
    """RecBole's ``predict`` and ``full_sort_predict`` for a model scoring ``score(u, i) = p_u . v_i``, from
    its ``scoring_vectors()`` (every user's vectors ``[n_users, d]``, every item's ``[n_items, d]``). The
    default is ``p = self.user_embedding.weight`` and ``v = self.item_vectors()`` (which the model caches in
    evaluation); a model whose user vectors are computed overrides ``scoring_vectors``. Placed before
    :class:`MultimodalRecommender` in the model's bases."""

    def scoring_vectors(self):
        return self.user_embedding.weight, self.item_vectors()

    def predict(self, interaction):
        user, item = self.scoring_vectors()
        return (user[interaction[self.USER_ID]] * item[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        user, item = self.scoring_vectors()
        return torch.matmul(user[interaction[self.USER_ID]], item.T).view(-1)
