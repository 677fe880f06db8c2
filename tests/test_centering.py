"""Centring on training items (``feature_norm: center_l2``, ContentProfile's ``profile_center``): one
computation of the centre, block by block or on a whole matrix, with the same numbers."""

import pytest
import torch
from recbole.utils import init_seed

from recbole_mamex.config import Config
from recbole_mamex.data.loading import create_dataset, data_preparation
from recbole_mamex.model import VBPR
from recbole_mamex.model.abstract import center_on_training_items, training_center, training_mean

from helpers import FAST


def blocks_of(features: torch.Tensor, size: int):
    return [(start, features[start : start + size]) for start in range(0, len(features), size)]


def masks(n: int, generator: torch.Generator):
    has = torch.rand(n, generator=generator) < 0.8
    trained = torch.rand(n, generator=generator) < 0.7
    return has, trained


@pytest.mark.parametrize("size", [1, 3, 7, 50])
def test_the_centre_of_blocks_is_the_centre_of_the_whole_matrix(size):
    generator = torch.Generator().manual_seed(5)
    features = torch.randn(50, 6, generator=generator)
    has, trained = masks(50, generator)
    center = training_center(features, has, trained)
    assert torch.equal(training_mean(blocks_of(features, size), has & trained, 6), center)
    expected = features[has & trained].double().mean(0).float()  # the plain definition
    assert torch.equal(center, expected)
    centred, returned = center_on_training_items(features, has, trained)
    assert torch.equal(returned, center)
    assert torch.equal(centred[has], features[has] - center)
    assert torch.equal(centred[~has], features[~has])  # rows without the modality stay as they are


def test_the_centre_sums_in_float64_keeps_its_dtype_and_is_zero_without_training_items():
    big = torch.full((4, 3), 3e38)  # a float32 sum of these rows overflows
    everything = torch.ones(4, dtype=torch.bool)
    for center in (training_center(big, everything, everything), training_mean(blocks_of(big, 1), everything, 3)):
        assert torch.equal(center, torch.full((3,), 3e38))
    for dtype in (torch.bfloat16, torch.float64):
        assert training_center(big.to(dtype), everything, everything).dtype == dtype
    nothing = torch.zeros(4, dtype=torch.bool)
    assert torch.equal(training_center(big, everything, nothing), torch.zeros(3))
    assert torch.equal(training_mean(blocks_of(big, 2), nothing, 3), torch.zeros(3))
    centred, center = center_on_training_items(big, everything, nothing)
    assert torch.equal(centred, big) and torch.equal(center, torch.zeros(3))  # nothing subtracted


def test_a_model_prepared_block_by_block_keeps_the_centre_of_the_whole_matrix(cold_tiny, workdir, monkeypatch):
    """``feature_norm: center_l2`` reads the features in blocks; its centres are, to the bit, those of the
    whole matrix."""
    import recbole_mamex.data.features as features_module

    monkeypatch.setattr(features_module, "BLOCK_BYTES", 4096)  # many blocks on tiny data
    config = Config(model="VBPR", dataset="tiny-cold", config_dict={**FAST, "feature_norm": "center_l2"}, cmd_args=[])
    train, _, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], True)
    model = VBPR(config, train._dataset)
    store = train._dataset.item_features
    for j, name in enumerate(model.modality_names):
        whole = torch.from_numpy(store.matrices[name].copy())
        _, center = center_on_training_items(whole, model.modality_mask[:, j], model.item_has_training)
        assert bool(center.abs().sum() > 0)
        assert torch.equal(model.feature_centers[name], center), name
