"""Content options: centring on training items, warm-only training negatives, MAMEX's loss reduction and
initialisation, RLMultimodalRec's content scale and position."""

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recbole.data.interaction import Interaction
from recbole.model.general_recommender import LightGCN
from recbole.utils import init_seed

from recbole_mamex.config import Config, ConfigError
from recbole_mamex.model import ALDI, CLCRec, DropoutNet, FREEDOM, MAMEX, MILK, VBPR
from recbole_mamex.model.rlmultimodalrec import RLMultimodalRec
from recbole_mamex.quick_start import CheckpointMismatchError, load_data_and_model, run_recbole_mamex
from recbole_mamex.data.loading import create_dataset, data_preparation

from helpers import FAST


def build(model_class, dataset="tiny-cold", **overrides):
    config = Config(model=model_class.__name__, dataset=dataset, config_dict={**FAST, **overrides}, cmd_args=[])
    data = create_dataset(config)
    train, valid, test = data_preparation(config, data)
    init_seed(config["seed"], True)
    return config, data, train, model_class(config, train._dataset)


def cold_ids(data, dataset_dir, name="tiny-cold"):
    cold = json.loads((dataset_dir / f"{name}.cold_items.json").read_text())
    return data.token2id(data.iid_field, cold["cold_valid"] + cold["cold_test"])


# ----------------------------------------------------------------------------- feature_norm: center_l2
def test_centres_come_from_training_items_only(cold_tiny, workdir):
    _, data, train, model = build(VBPR, feature_norm="center_l2")
    trained = np.zeros(data.item_num, dtype=bool)
    trained[train._dataset.inter_feat[data.iid_field].numpy()] = True
    raw = np.load(cold_tiny / "text.npy")  # row i = item token i
    tokens = data.id2token(data.iid_field, np.arange(1, data.item_num))
    rows = raw[[int(t) for t in tokens]]
    has = np.abs(rows).sum(1) > 0
    reference = trained[1:] & has
    center = rows[reference].mean(0)
    np.testing.assert_allclose(model.feature_centers["text"].numpy(), center, rtol=1e-5, atol=1e-6)
    expected = rows - center
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    got = model.modality_features("text")[1:].numpy()
    np.testing.assert_allclose(got[has], expected[has], rtol=1e-4, atol=1e-5)
    assert (got[~has] == 0).all()  # a missing modality stays a zero row

    # a cold item's features change nothing but its own normalised row
    before = {name: model.modality_features(name).clone() for name in model.modality_names}
    cold = int(cold_ids(data, cold_tiny)[0])
    token = int(data.id2token(data.iid_field, cold))
    for name in ("text", "audio"):
        matrix = np.load(cold_tiny / f"{name}.npy")
        matrix[token] = matrix[token] * -3 + 1
        np.save(cold_tiny / f"{name}.npy", matrix)
    _, _, _, changed = build(VBPR, feature_norm="center_l2")
    for name in model.modality_names:
        other = torch.ones(data.item_num, dtype=torch.bool)
        other[cold] = False
        torch.testing.assert_close(changed.modality_features(name)[other], before[name][other], rtol=0, atol=0)
        assert not torch.equal(changed.modality_features(name)[cold], before[name][cold])


def test_centres_are_saved_and_checked_with_the_checkpoint(cold_tiny, workdir):
    result = run_recbole_mamex("VBPR", "tiny-cold", config_dict={**FAST, "epochs": 1, "feature_norm": "center_l2"}, cmd_args=[])
    saved = torch.load(result["model_file"], map_location="cpu", weights_only=True)["other_parameter"]["feature_centers"]
    assert set(saved) == {"text", "audio"}
    load_data_and_model(result["model_file"])  # same training items: accepted
    # other training interactions (same shapes): other centres, refused
    train_file = cold_tiny / "tiny-cold.train.inter"
    lines = train_file.read_text().splitlines()
    train_file.write_text("\n".join(lines[:1] + lines[1:][::2]) + "\n")
    checkpoint = torch.load(result["model_file"], map_location="cpu", weights_only=True)
    with pytest.raises(CheckpointMismatchError, match="feature centres.*other centres for"):
        from recbole_mamex.quick_start import check_feature_centers

        _, _, train, model = build(VBPR, feature_norm="center_l2")
        check_feature_centers(result["model_file"], checkpoint["other_parameter"]["feature_centers"], model)


def test_unknown_feature_norm_is_refused(cold_tiny, workdir):
    with pytest.raises(ValueError, match="feature_norm: expected one of l2, center_l2, none, found 'l1'"):
        build(VBPR, feature_norm="l1")


# ----------------------------------------------------------------------------- train_neg_items: warm
def negatives_of_one_epoch(train):
    seen = []
    for batch in train:
        seen.append(batch[train._dataset.config["NEG_PREFIX"] + train._dataset.iid_field].numpy())
    return np.concatenate(seen)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(split_seed=st.integers(0, 10_000), seed=st.integers(0, 10_000))
def test_warm_negatives_never_sample_a_cold_item(tiny_dataset, workdir, split_seed, seed):
    from dataset_prep.coldstart import main

    name = f"tiny-c{split_seed}"
    if not (workdir / "dataset" / name).exists():
        assert main(["--dataset", "tiny", "--seed", str(split_seed), "--name", name, "--fraction", "0.3"]) == 0
    for choice in ("warm", "all"):
        config = Config(model="BPR", dataset=name, config_dict={**FAST, "seed": seed, "train_neg_items": choice}, cmd_args=[])
        data = create_dataset(config)
        train, _, _ = data_preparation(config, data)
        init_seed(seed, True)
        negatives = negatives_of_one_epoch(train)
        warm = np.unique(train._dataset.inter_feat[data.iid_field].numpy())
        cold = np.setdiff1d(np.arange(1, data.item_num), warm)
        assert len(cold) > 0
        if choice == "warm":
            assert np.isin(negatives, warm).all()
        else:  # RecBole's sampler: cold items among the negatives (so the check above can fail)
            assert np.isin(negatives, cold).any()


def test_default_negatives_follow_the_protocol(tiny_dataset, cold_tiny, workdir):
    """train_neg_items: ~ (the default) is warm on a dataset with cold items, RecBole's sampler elsewhere."""
    from recbole_mamex.data.negatives import WarmItemSampler

    for name, strict in (("tiny-cold", True), ("tiny", False)):
        config = Config(model="BPR", dataset=name, config_dict=dict(FAST), cmd_args=[])
        assert config["train_neg_items"] is None  # overall.yaml's default
        train, _, _ = data_preparation(config, create_dataset(config))
        assert isinstance(train._sampler, WarmItemSampler) is strict, name
        if strict:
            init_seed(config["seed"], True)
            warm = np.unique(train._dataset.inter_feat[train._dataset.iid_field].numpy())
            assert np.isin(negatives_of_one_epoch(train), warm).all()


def test_warm_negatives_config_values(cold_tiny, workdir):
    with pytest.raises(ConfigError, match="train_neg_items.*all or warm"):
        Config(model="BPR", dataset="tiny-cold", config_dict={**FAST, "train_neg_items": "cold"}, cmd_args=[])


# ----------------------------------------------------------------------------- MAMEX options
def test_mamex_reductions_on_a_hand_computed_case(tiny_dataset):
    _, _, _, model = build(MAMEX, dataset="tiny", embedding_size=4, fusion_dropout=0.0)
    assert model.modality_names == ["text", "audio"]
    items = torch.arange(1, 9)
    tower = model.item_tower(items)
    e, h, mask = tower["item"].detach().numpy(), tower["modality"].detach().numpy(), tower["mask"].numpy()
    # the authors' objective for two modalities: the sum over modalities of each loss
    align = sum(((e[mask[:, m]] - h[mask[:, m], m]) ** 2).mean(1).mean() for m in range(2))
    uniform = np.full(model.n_experts, 1 / model.n_experts)
    moe = 0.0
    for m, name in enumerate(model.modality_names):
        p = tower["router"][name].detach().numpy()[mask[:, m]].mean(0)
        moe += float((uniform * np.log(uniform / p)).sum())
    got = model.auxiliary_losses(tower)
    assert float(got["align"]) == pytest.approx(align, rel=1e-5)
    assert float(got["moe"]) == pytest.approx(moe, rel=1e-5)
    model.aux_loss_reduction = "mean"
    halved = model.auxiliary_losses(tower)
    assert float(halved["align"]) == pytest.approx(align / 2, rel=1e-5)
    assert float(halved["moe"]) == pytest.approx(moe / 2, rel=1e-5)
    assert float(halved["fuse"]) == pytest.approx(float(got["fuse"]))  # one KL over the fusion weights either way


def test_mamex_authors_initialisation(tiny_dataset):
    _, _, _, authors = build(MAMEX, dataset="tiny", weight_init="authors", embedding_size=32)
    _, _, _, ours = build(MAMEX, dataset="tiny", embedding_size=32)
    assert float(authors.user_embedding.weight.std()) == pytest.approx(0.1, rel=0.15)
    n_users = ours.user_embedding.weight.shape[0]
    assert float(ours.user_embedding.weight.std()) == pytest.approx((2 / (n_users + 32)) ** 0.5, rel=0.15)  # xavier normal
    bias = authors.modality_moe["text"].projection.bias
    assert float(bias.abs().max()) > 0  # torch's default gives linear layers a non-zero bias; xavier zeroes it
    assert float(ours.modality_moe["text"].projection.bias.abs().max()) == 0
    with pytest.raises(ValueError, match="aux_loss_reduction: expected one of"):
        build(MAMEX, dataset="tiny", aux_loss_reduction="max")


# ----------------------------------------------------------------------------- RLMultimodalRec options
def score_all(model, n_users):
    model.eval()
    with torch.no_grad():
        return model.full_sort_predict(Interaction({"user_id": torch.arange(n_users)})).view(n_users, -1)


@pytest.mark.parametrize("position", ["before", "after"])
def test_rlmm_with_content_scale_zero_scores_like_its_id_part(tiny_dataset, position):
    config, data, _, model = build(RLMultimodalRec, dataset="tiny", content_scale=0.0, content_position=position)
    assert isinstance(model.content_scale, torch.nn.Parameter) and float(model.content_scale) == 0.0
    # its ID part: LightGCN over its own ID embeddings
    with torch.no_grad():
        users, items = model.propagate(model.user_embedding.weight, model.item_embedding.weight)
    torch.testing.assert_close(score_all(model, data.user_num), users @ items.T, rtol=0, atol=0)
    _, _, _, unscaled = build(RLMultimodalRec, dataset="tiny", content_position=position)
    assert not torch.allclose(score_all(unscaled, data.user_num), users @ items.T)  # the same weights with content
    # and the scale learns: one loss has a gradient on it
    model.train()
    batch = Interaction({"user_id": torch.tensor([1, 2]), "item_id": torch.tensor([1, 2]), "neg_item_id": torch.tensor([3, 4])})
    model.calculate_loss(batch).backward()
    assert model.content_scale.grad is not None and float(model.content_scale.grad) != 0


def test_rlmm_content_after_propagation_and_projection_regularisation(tiny_dataset):
    _, data, _, before = build(RLMultimodalRec, dataset="tiny")
    _, _, _, after = build(RLMultimodalRec, dataset="tiny", content_position="after")
    content = after.content()[0]
    users, items = after.propagate(after.user_embedding.weight, after.item_embedding.weight)
    got_users, got_items = after.forward()
    torch.testing.assert_close(got_items, items + content)
    torch.testing.assert_close(got_users, users)
    assert not torch.allclose(before.forward()[1], got_items)
    batch = Interaction({"user_id": torch.tensor([1, 2]), "item_id": torch.tensor([1, 2]), "neg_item_id": torch.tensor([3, 4])})
    _, _, _, regularised = build(RLMultimodalRec, dataset="tiny", projection_reg_weight=0.5)
    penalty = 0.5 * sum(p.weight.pow(2).sum() for p in regularised.projections.values())
    torch.testing.assert_close((regularised.calculate_loss(batch) - before.calculate_loss(batch)).reshape(()), penalty)


@pytest.mark.parametrize("feature_norm", ["l2", "center_l2", "none"])
def test_features_are_prepared_block_by_block_without_a_whole_copy(cold_tiny, workdir, monkeypatch, feature_norm):
    """A model that prepares its features reads them from the dataset's files in blocks: the dataset never
    makes its own whole copy, and the buffers equal the transform of the whole matrix at once."""
    import torch.nn.functional as F

    import recbole_mamex.data.features as features_module
    from recbole_mamex.model.abstract import center_on_training_items

    monkeypatch.setattr(features_module, "BLOCK_BYTES", 4096)  # many blocks on tiny data
    _, _, train, model = build(VBPR, feature_norm=feature_norm)
    store = train._dataset.item_features
    assert not any(store.matrices.is_made(name) for name in store.names)
    for j, name in enumerate(model.modality_names):
        whole = torch.from_numpy(store.matrices[name].copy())
        if feature_norm == "center_l2":
            whole, center = center_on_training_items(whole, model.modality_mask[:, j], model.item_has_training)
            assert torch.allclose(model.feature_centers[name], center, atol=1e-6)
            whole = F.normalize(whole, dim=1)
            assert torch.allclose(model.modality_features(name), whole, atol=1e-6)
        else:
            whole = F.normalize(whole, dim=1) if feature_norm == "l2" else whole
            assert torch.equal(model.modality_features(name), whole)  # row-wise: the same bits


# ----------------------------------------------------------------------------- feature_storage
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("rows", [None, "gathered"])
def test_narrow_stored_features_give_the_float32_product_of_their_values(monkeypatch, dtype, rows):
    """Features stored in bf16/fp16, no autocast: forward and backward equal float32 autograd on the same
    (rounded) values, widened a few rows at a time (WIDEN_ROWS set small: many blocks), buffered or not."""
    import recbole_mamex.model.layers as layers

    monkeypatch.setattr(layers, "WIDEN_ROWS", 7)
    generator = torch.Generator().manual_seed(3)
    source = torch.randn(50, 12, generator=generator).to(dtype)
    index = None if rows is None else torch.randint(0, 50, (23,), generator=generator)
    weight = torch.randn(5, 12, generator=generator, requires_grad=True)
    bias = torch.randn(5, generator=generator, requires_grad=True)
    wide = source.float() if index is None else source.float()[index]
    expected = torch.nn.functional.linear(wide, weight, bias)
    upstream = torch.randn(expected.shape, generator=generator)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), [weight, bias])
    for workspace in (layers.new_workspace(), None):
        out = layers.gathered_linear(source, index, weight, bias, workspace)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        for got, want in zip(torch.autograd.grad((out * upstream).sum(), [weight, bias]), expected_grads):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # evaluation: the whole catalogue, no autograd
        torch.testing.assert_close(layers.gathered_linear(source, index, weight, bias, None), expected.detach(),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_class", [VBPR, MILK, CLCRec, MAMEX, RLMultimodalRec, FREEDOM, ALDI, DropoutNet])
@pytest.mark.parametrize("storage", ["bf16", "fp16"])
def test_feature_storage_keeps_features_narrow_and_scores_close(cold_tiny, workdir, model_class, storage):
    """``feature_storage``: buffers in that dtype, the rounded float32 rows; with the same weights the
    scores stay within rounding of float32 storage, and a training step runs."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[storage]
    _, _, train, wide = build(model_class)
    _, _, _, narrow = build(model_class, feature_storage=storage)
    narrow.load_state_dict(wide.state_dict())
    for name in wide.modality_names:
        assert wide.modality_features(name).dtype == torch.float32
        assert narrow.modality_features(name).dtype == dtype
        assert torch.equal(narrow.modality_features(name), wide.modality_features(name).to(dtype))
    batch = next(iter(train))
    wide.eval(), narrow.eval()
    with torch.no_grad():
        a, b = wide.full_sort_predict(batch).float(), narrow.full_sort_predict(batch).float()
    if model_class is FREEDOM:  # scores by a kNN graph of the raw features: the stored rows enter its loss only
        assert torch.equal(a, b)
    else:
        assert not torch.equal(a, b)  # the rounding is there...
        torch.testing.assert_close(b, a, rtol=0.05, atol=0.02 * float(a.abs().max()))  # ...and only rounding
    narrow.train()
    loss = narrow.calculate_loss(batch)
    loss = sum(loss) if isinstance(loss, tuple) else loss
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in narrow.parameters())


def test_feature_storage_follows_mixed_precision_and_is_checked(cold_tiny, workdir):
    _, _, _, model = build(MAMEX, mixed_precision="bf16")
    assert all(model.modality_features(n).dtype == torch.bfloat16 for n in model.modality_names)
    _, _, _, model = build(MAMEX, mixed_precision="bf16", feature_storage="fp32")
    assert all(model.modality_features(n).dtype == torch.float32 for n in model.modality_names)
    with pytest.raises(ConfigError, match="feature_storage: expected fp32, bf16, fp16 or ~, found 'int8'"):
        build(VBPR, feature_storage="int8")
