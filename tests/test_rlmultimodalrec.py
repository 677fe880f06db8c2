"""RLMultimodalRec: gate, reduction to LightGCN, cold-item switch, interpretation, bf16."""

import copy

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.data.interaction import Interaction
from recbole.model.general_recommender import LightGCN
from recbole.utils import init_seed

from recbole_mamex.config import Config
from recbole_mamex.model.rlmultimodalrec import RLMultimodalRec
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.data.loading import create_dataset

from helpers import FAST


def build(model="RLMultimodalRec", dataset="tiny", **overrides):
    config = Config(model=model, dataset=dataset, config_dict={**FAST, **overrides}, cmd_args=[])
    data = create_dataset(config)
    train, valid, test = data_preparation(config, data)
    init_seed(config["seed"], True)
    cls = RLMultimodalRec if model == "RLMultimodalRec" else LightGCN
    return config, data, train, cls(config, train._dataset)


def test_shapes_and_dimension_gate(tiny_dataset):
    _, data, _, model = build(embedding_size=16)
    content, weights = model.content()
    assert content.shape == (data.item_num, 16) and weights.shape == (data.item_num, 2, 16)
    assert ((weights >= 0) & (weights <= 1)).all()
    mask = model.modality_mask
    real = mask.any(1)
    torch.testing.assert_close(weights[real].sum(1), torch.ones(int(real.sum()), 16))
    assert (weights[~mask] == 0).all()
    users, items = model.forward()
    assert users.shape == (data.user_num, 16) and items.shape == (data.item_num, 16)


def test_item_gate_form(tiny_dataset):
    _, data, _, model = build(embedding_size=16, gate_form="item")
    _, weights = model.content()
    assert weights.shape == (data.item_num, 2, 1)
    with pytest.raises(ValueError, match="gate_form"):
        build(gate_form="channel")


def test_gradients_are_finite_with_items_that_lack_every_modality(tiny_dataset):
    _, data, _, model = build(embedding_size=16)
    assert not model.modality_mask[0].any()  # the padding row has no modality
    batch = Interaction({"user_id": torch.tensor([1, 2, 3]), "item_id": torch.tensor([1, 2, 3]), "neg_item_id": torch.tensor([4, 5, 6])})
    model.calculate_loss(batch).backward()
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name


def test_without_content_it_is_recbole_lightgcn(tiny_dataset):
    _, data, _, ours = build(embedding_size=16, use_content=False)
    ours = copy.deepcopy(ours)  # the graph's buffers deep-copy (RecBole's get_flops copies a model)
    assert ours.norm_adj_matrix.layout == torch.sparse_csr
    _, _, _, theirs = build(model="LightGCN", embedding_size=16)
    torch.testing.assert_close(ours.user_embedding.weight, theirs.user_embedding.weight)
    torch.testing.assert_close(ours.item_embedding.weight, theirs.item_embedding.weight)
    ours.eval(), theirs.eval()
    users = Interaction({"user_id": torch.arange(1, data.user_num)})
    torch.testing.assert_close(ours.full_sort_predict(users), theirs.full_sort_predict(users))
    # and after training with the same seed, RecBole's trainer gives the same metrics
    settings = {**FAST, "embedding_size": 16, "epochs": 2}
    a = run_recbole_mamex("RLMultimodalRec", "tiny", config_dict={**settings, "use_content": False}, saved=False, cmd_args=[])
    b = run_recbole_mamex("LightGCN", "tiny", config_dict=settings, saved=False, cmd_args=[])
    for key, value in b["test_result"].items():
        assert a["test_result"][key] == pytest.approx(value, abs=1e-4), key


def test_cold_item_id_switch_drops_untrained_id_part(cold_tiny):
    _, data, train, with_id = build(dataset="tiny-cold", embedding_size=16)
    _, _, _, without_id = build(dataset="tiny-cold", embedding_size=16, cold_item_id=False)
    without_id.load_state_dict(with_id.state_dict())
    trained = np.zeros(data.item_num, dtype=bool)
    trained[train._dataset.inter_feat["item_id"].numpy()] = True
    cold = np.flatnonzero(~trained)[1:]
    assert len(cold) > 0
    with torch.no_grad():
        content = without_id.content()[0]
        ego_without, ego_with = without_id.item_ego_embeddings(), with_id.item_ego_embeddings()
    torch.testing.assert_close(ego_without[cold], content[cold])
    torch.testing.assert_close(ego_without[trained], ego_with[trained])
    assert not torch.allclose(ego_with[cold], content[cold])


def test_modality_report_and_bf16(tiny_dataset):
    _, data, _, fp32 = build(embedding_size=16)
    report = fp32.modality_report(data.field2id_token["item_id"])
    assert list(report.columns) == ["item", "weight_text", "weight_audio"] and len(report) == data.item_num - 1
    np.testing.assert_allclose(report[["weight_text", "weight_audio"]].sum(1), 1.0, rtol=1e-5)
    assert report.loc[report["item"] == "5", "weight_text"].item() == 0
    _, _, _, bf16 = build(embedding_size=16, mixed_precision="bf16")
    bf16.load_state_dict(fp32.state_dict())
    fp32.eval(), bf16.eval()
    a, b = fp32.forward()[1], bf16.forward()[1]
    assert b.dtype == torch.float32 and (a - b).abs().max() < 0.05 * a.abs().max()
