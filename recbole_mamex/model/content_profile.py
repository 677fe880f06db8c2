r"""ContentProfile
################################################

A training-free content baseline: each user is the mean of the content vectors of the items they
interacted with in training, and items are ranked by cosine similarity to that profile. Nothing is
learned, so cold items are scored exactly like warm ones. A comparison without such a row overstates
every trained content model: on Last.fm-2K's cold split this profile of the text features alone ranks
cold items better than several trained models (see ``bench/results``).

Item content vector (the rule for several modalities: concatenation of normalised modalities):

1. per modality ``m``, with ``profile_center: True``, the rows are centred by the mean row of the
   training items that have ``m`` (computed from training items only, so a cold item's features change
   nothing but its own vector): features that point the same way for every item (a common offset) then
   stop dominating the cosine;
2. each row is L2-normalised and divided by ``sqrt(M)`` (``M`` modalities), and the modalities are
   concatenated: an item with every modality has a unit vector, and each modality weighs the same;
3. a modality an item lacks is a zero block; an item with no modality at all scores 0.

``score(u, i) = p_u . v_i / |v_i|`` with ``p_u`` the mean of ``v_j`` over the user's training items
(cosine up to the per-user constant ``|p_u|``). A user without training items scores every item 0 (ties
are broken by the evaluation's seeded order).

It runs through RecBole's trainer like Pop: ``type = TRADITIONAL`` (one pass), a zero loss on a dummy
parameter.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
from recbole.utils import InputType, ModelType

from recbole_mamex.model.abstract import MultimodalRecommender, training_center
from recbole_mamex.model.layers import l2_normalize_rows


class ContentProfile(MultimodalRecommender):
    """Cosine between a user's mean training-item content vector and each item's; see the module docstring."""

    input_type = InputType.POINTWISE
    type = ModelType.TRADITIONAL
    is_baseline = True
    serves_new_items = True  # an item's unit content vector against the user's profile

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.center = bool(config["profile_center"])
        self.fake_loss = nn.Parameter(torch.zeros(1))  # RecBole's trainer needs a parameter to step
        items = self.content_vectors()
        norms = items.norm(dim=1, keepdim=True)
        self.register_buffer("item_unit", torch.where(norms > 0, items / norms.clamp_min(1e-12), items), persistent=False)
        self.register_buffer("user_profile", self.profiles(dataset, items), persistent=False)

    def content_vectors(self, rows: slice = slice(None)) -> torch.Tensor:
        """``[n, sum of dims]``: the concatenated, normalised modality blocks of the items ``rows`` (default:
        every item); the centre is that of all training items whatever ``rows``."""
        blocks = []
        scale = 1.0 / math.sqrt(len(self.modality_names))
        for j, name in enumerate(self.modality_names):
            features = self.modality_features(name).float()
            has = self.modality_mask[:, j]
            center = training_center(features, has, self.item_has_training) if self.center else None
            blocks.append(l2_normalize_rows(features[rows], center, has[rows]) * scale)
        return torch.cat(blocks, dim=1)

    def extend_item_state(self, m: int) -> None:
        """The unit content vectors of the new items, appended (the profiles and the training centre are
        those of the training items: unchanged)."""
        items = self.content_vectors(slice(self.n_items - m, None))
        norms = items.norm(dim=1, keepdim=True)
        unit = torch.where(norms > 0, items / norms.clamp_min(1e-12), items)
        self.register_buffer("item_unit", torch.cat([self.item_unit, unit.to(self.item_unit.dtype)]), persistent=False)

    def profiles(self, dataset, items: torch.Tensor) -> torch.Tensor:
        """``[n_users, sum of dims]``: mean content vector of each user's training items (0 without any)."""
        matrix = dataset.inter_matrix(form="csr").astype(np.float32)
        matrix.data[:] = 1.0  # an item counts once per user
        counts = np.asarray(matrix.sum(axis=1)).ravel()
        mean = sp.diags(1.0 / np.maximum(counts, 1)).astype(np.float32) @ matrix
        return torch.from_numpy(np.asarray(mean @ items.numpy(), dtype=np.float32))

    def calculate_loss(self, interaction):
        return self.fake_loss * 0.0

    def predict(self, interaction):
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        return (self.user_profile[users] * self.item_unit[items]).sum(dim=1)

    def full_sort_predict(self, interaction):
        return (self.user_profile[interaction[self.USER_ID]] @ self.item_unit.T).reshape(-1)
