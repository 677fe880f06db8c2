"""Content-aware baselines VBPR, MILK and CLCRec: shapes, each one's distinguishing mechanism, missing
modalities, their place as baselines in comparisons, and learning cold items from content."""

import json

import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_mamex.compare import main as compare_main
from recbole_mamex.compare import Plan, planned_config, run_file
from recbole_mamex.records import versions
from recbole_mamex.config import Config
from recbole_mamex.model.clcrec import CLCRec, contrast_logits, info_nce, negative_groups
from recbole_mamex.model.milk import MILK, environment_weights, mix_modalities, pairwise_alignment, variance_penalty
from recbole_mamex.model.vbpr import VBPR
from recbole_mamex.registry import get_model, our_models, proposed_models

from helpers import (
    FAST, batch, build_model, check_step_and_scores_with_missing_modalities, cold_and_warm_items,
    cold_recall_on_content_data, full_scores, item_id,
)

BASELINES = {"VBPR": VBPR, "MILK": MILK, "CLCRec": CLCRec}


def build(model, dataset="tiny", **overrides):
    return build_model(BASELINES[model], dataset, **{"embedding_size": 8, **overrides})


# ----------------------------------------------------------------------------- all three
def test_defaults_come_from_properties(tiny_dataset):
    expected = {
        "VBPR": {"embedding_size": 64, "reg_weight": 1e-5, "use_bias": True},
        "MILK": {"embedding_size": 64, "penalty_weight": 50.0, "align_weight": 0.05, "reg_weight": 1e-4,
                 "dirichlet_alpha": 0.1, "n_environments": 3},
        "CLCRec": {"embedding_size": 64, "temperature": 2.0, "num_negatives": 128, "contrast_weight": 0.5,
                   "content_ratio": 0.5, "reg_weight": 0.1},
    }
    for model, values in expected.items():
        config = Config(model=model, dataset="tiny", config_dict=FAST, cmd_args=[])
        assert {key: config[key] for key in values} == values, model


@pytest.mark.parametrize("model", list(BASELINES))
def test_shapes_loss_and_finite_gradients_with_missing_modalities(tiny_dataset, model):
    _, data, _, m = build(model)
    check_step_and_scores_with_missing_modalities(m, data)


def test_baselines_are_ours_but_not_proposed():
    for name, cls in BASELINES.items():
        assert get_model(name) is cls and name in our_models() and cls.is_baseline
    assert set(proposed_models()) == {"MAMEX", "RLMultimodalRec"}


def test_comparison_counts_them_as_baselines(workdir, capsys):
    """The "best ours vs best baseline" row of a comparison picks MILK as the baseline when it is the best
    non-proposed model, and never a baseline of ours as "ours"."""
    out = workdir / "res"
    recalls = {"MAMEX": [0.40, 0.43], "MILK": [0.45, 0.47], "VBPR": [0.50, 0.52], "BPR": [0.10, 0.12]}
    for model, values in recalls.items():
        for seed, value in zip((1, 2), values):
            path = run_file(out, model, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            results = {"cold": {"recall@10": value, "ndcg@10": value / 2}}
            made_with = {"config": planned_config(Plan("tiny-cold", "cold", [model], [seed]).spec(model, seed)), "versions": versions()}
            path.write_text(json.dumps({"model": model, "seed": seed, "dataset": "tiny-cold", "protocol": "cold",
                                        "results": results, "wall_s": 1.0, **made_with}))
    args = ["--dataset", "tiny-cold", "--models", *recalls, "--seeds", "1", "2", "--metrics", "recall@10", "ndcg@10",
            "--out", str(out)]
    assert compare_main(args) == 0  # every run is found on disk: nothing is trained
    assert "MAMEX vs VBPR: -18.6%" in (out / "table_cold.md").read_text()  # 0.415 vs 0.51
    assert "done before, skipped" in capsys.readouterr().out


# ----------------------------------------------------------------------------- VBPR
def test_vbpr_scores_cold_items_by_content_only(cold_tiny):
    _, data, train, m = build("VBPR", dataset="tiny-cold")
    cold, warm = cold_and_warm_items(m)
    assert len(cold) and len(warm)
    assert set(train._dataset.inter_feat["item_id"].tolist()) == set(warm.tolist())
    before = full_scores(m)
    with torch.no_grad():
        m.item_id_embedding.weight.add_(1.0)
        m.item_bias.weight.add_(1.0)
    after = full_scores(m)
    torch.testing.assert_close(after[:, cold], before[:, cold])
    assert not torch.allclose(after[:, warm], before[:, warm])
    # the cold score is the content part: theta_u . E f_i + beta' . f_i
    with torch.no_grad():
        f = m.concatenated_features(cold)
        theta = m.user_content_embedding.weight[1:4]
        expected = theta @ m.content_projection(f).T + m.content_bias(f).T
    torch.testing.assert_close(after[:, cold], expected)


def test_vbpr_without_bias_is_a_plain_dot_product(tiny_dataset):
    _, _, _, m = build("VBPR", use_bias=False)
    assert not hasattr(m, "item_bias") and not hasattr(m, "content_bias")
    m.eval()
    users = Interaction({"user_id": torch.arange(1, 4)})
    with torch.no_grad():
        vectors, biases = m.item_vectors()
        expected = m.user_vectors(torch.arange(1, 4)) @ vectors.T
    assert (biases == 0).all()
    torch.testing.assert_close(m.full_sort_predict(users).view(3, -1), expected)


def test_vbpr_missing_modality_is_a_zero_block(tiny_dataset):
    _, data, _, m = build("VBPR")
    item5 = item_id(data, "5")
    f = m.concatenated_features(torch.tensor([item5]))
    text_dim = m.modality_dims["text"]
    assert m.modality_names[0] == "text" and (f[0, :text_dim] == 0).all() and (f[0, text_dim:] != 0).any()


# ----------------------------------------------------------------------------- MILK
def test_milk_environments_mix_modalities_with_weights_summing_to_one():
    torch.manual_seed(0)
    for m_count, n_env in ((2, 3), (3, 3), (3, 5), (2, 1)):
        weights = environment_weights(m_count, n_env, alpha=0.1)
        assert weights.shape == (n_env, m_count)
        torch.testing.assert_close(weights.sum(1), torch.ones(n_env))
        assert (weights >= 0).all()
        torch.testing.assert_close(weights[0], torch.full((m_count,), 1.0 / m_count))
        for k in range(2, n_env):  # cyclic shifts of one draw
            torch.testing.assert_close(weights[k], torch.roll(weights[1], k - 1))
    # alpha sets how extreme the mixes are: 0.1 puts nearly all weight on one modality, 100 mixes evenly
    peaked = torch.stack([environment_weights(2, 2, 0.1)[1].max() for _ in range(200)])
    even = torch.stack([environment_weights(2, 2, 100.0)[1].max() for _ in range(200)])
    assert peaked.mean() > 0.85 and even.mean() < 0.6
    assert not torch.allclose(environment_weights(2, 2, 0.1), environment_weights(2, 2, 0.1))  # one draw per call


def test_milk_variance_penalty_is_zero_only_for_equal_losses():
    assert variance_penalty(torch.tensor([0.7, 0.7, 0.7])).item() == 0.0
    assert variance_penalty(torch.tensor([0.5])).item() == 0.0
    assert variance_penalty(torch.tensor([0.5, 0.7, 0.9])).item() == pytest.approx(0.04)


def test_milk_mix_handles_missing_modalities():
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]] * 4)  # 4 items, 2 modalities, d = 2
    mask = torch.tensor([[True, True], [False, True], [True, False], [False, False]])
    mixed = mix_modalities(h, torch.tensor([0.25, 0.75]), mask)
    torch.testing.assert_close(mixed, torch.tensor([[0.25, 0.75], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]))
    # an environment that puts all weight on the modality an item lacks: the item keeps what it has
    torch.testing.assert_close(mix_modalities(h, torch.tensor([1.0, 0.0]), mask)[1], torch.tensor([0.0, 1.0]))


def test_milk_alignment_uses_items_with_both_modalities():
    h = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [2.0, 2.0]], [[9.0, 9.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, True], [True, False]])
    assert pairwise_alignment(h, mask).item() == pytest.approx(2.0)  # (0 + 4) / 2 items; item 2 lacks one
    assert pairwise_alignment(h[:1], mask[:1]).item() == 0.0


def test_milk_penalty_vanishes_when_modalities_agree_and_scoring_uses_the_average(tiny_dataset):
    _, data, _, m = build("MILK")
    b = batch([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    terms = m.losses(b)
    assert terms["env"].shape == (3,) and terms["penalty"].item() > 0
    # identical projections of every modality: every environment sees the same items, equal losses
    with torch.no_grad():
        for layer in m.projections.values():
            layer.weight.zero_()
            layer.bias.copy_(torch.arange(8.0) / 8)
    terms = m.losses(b)
    assert terms["penalty"].item() == pytest.approx(0.0, abs=1e-12)
    assert terms["align"].item() == 0.0
    torch.testing.assert_close(terms["env"], terms["env"][:1].expand(3))
    # scoring: the plain average of an item's modality vectors
    _, _, _, m = build("MILK")
    m.eval()
    both = torch.nonzero(m.modality_mask.all(1)).flatten()
    with torch.no_grad():
        average = m.modality_vectors(both).mean(1)
    torch.testing.assert_close(m.item_vectors()[both], average)
    assert not any(data.item_num in p.shape for p in m.parameters()), "no per-item parameter"


def test_milk_bad_settings_are_clear_errors(tiny_dataset):
    with pytest.raises(ValueError, match="n_environments"):
        build("MILK", n_environments=0)
    with pytest.raises(ValueError, match="dirichlet_alpha"):
        build("MILK", dirichlet_alpha=-1.0)


# ----------------------------------------------------------------------------- CLCRec
def test_clcrec_negatives_and_info_nce():
    assert negative_groups(5, 2).tolist() == [[0, 1], [2, 3], [4, 0]]  # the last group wraps around
    assert negative_groups(4, 9).tolist() == [[0, 1, 2, 3]]  # capped at the batch size
    torch.manual_seed(0)
    anchor, positive, negatives = torch.randn(7, 3), torch.randn(7, 3), torch.randn(7, 3)
    groups = negative_groups(7, 3)
    logits = contrast_logits(anchor, positive, negatives, groups)
    own = [[0, 1, 2]] * 3 + [[3, 4, 5]] * 3 + [[6, 0, 1]]  # each row: the negatives of its group
    expected = torch.stack([
        torch.stack([anchor[r] @ positive[r]] + [anchor[r] @ negatives[j] for j in own[r]]) for r in range(7)
    ])
    torch.testing.assert_close(logits, expected)
    row = torch.tensor([[1.0, 0.0, -1.0]])
    assert info_nce(row, 2.0).item() == pytest.approx(-torch.log_softmax(row[0] / 2.0, 0)[0].item())


def test_clcrec_contrasts_train_what_they_should(tiny_dataset):
    b = batch([1, 2, 3, 4], [1, 2, 3, 4], [5, 6, 7, 8])
    # R-E alone (lambda 1): the encoder learns, users do not
    _, _, _, m = build("CLCRec", contrast_weight=1.0, reg_weight=0.0)
    m.calculate_loss(b).backward()
    assert m.encoder[0].weight.grad.abs().sum() > 0 and m.user_embedding.weight.grad.abs().sum() == 0
    # U-I alone with ID candidates only: the encoder gets no gradient
    _, _, _, m = build("CLCRec", contrast_weight=0.0, content_ratio=0.0, reg_weight=0.0)
    m.calculate_loss(b).backward()
    assert m.encoder[0].weight.grad is None or m.encoder[0].weight.grad.abs().sum() == 0
    assert m.user_embedding.weight.grad.abs().sum() > 0
    # U-I with content candidates only: item ID embeddings get no gradient
    _, _, _, m = build("CLCRec", contrast_weight=0.0, content_ratio=1.0, reg_weight=0.0)
    m.calculate_loss(b).backward()
    assert m.item_embedding.weight.grad is None or m.item_embedding.weight.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="content_ratio"):
        build("CLCRec", content_ratio=1.5)


def test_clcrec_scores_warm_items_by_id_and_cold_items_by_content(cold_tiny):
    _, _, _, m = build("CLCRec", dataset="tiny-cold")
    m.eval()
    trained = m.item_has_training
    vectors = m.item_vectors()
    with torch.no_grad():
        content = m.content_vectors()
    torch.testing.assert_close(vectors[trained], m.item_embedding.weight[trained])
    torch.testing.assert_close(vectors[~trained], content[~trained])
    assert (~trained[1:]).any()


# ----------------------------------------------------------------------------- learning
@pytest.mark.parametrize("model,settings", [
    ("VBPR", {"learning_rate": 0.01}),
    ("MILK", {"learning_rate": 0.01}),
    ("CLCRec", {"learning_rate": 0.01, "num_negatives": 32}),
])
def test_learns_cold_items_from_content(workdir, model, settings):
    cold, chance = cold_recall_on_content_data(workdir, model, 30, **{"embedding_size": 32, **settings})
    assert cold > 2 * chance, (cold, chance)


@pytest.mark.parametrize("model_name", list(BASELINES))
def test_buffered_feature_gather_gives_the_plain_numbers_and_reuses_its_buffers(tiny_dataset, model_name):
    """VBPR, MILK and CLCRec read the features through MultimodalRecommender.feature_product: the loss and
    every gradient equal those of a fresh gather and product per step, and the buffers are reused."""
    _, _, _, model = build(model_name)
    first = batch([1, 2, 3, 4], [1, 2, 3, 4], [5, 6, 7, 8])
    second = batch([2, 3, 5, 6], [5, 1, 9, 2], [3, 4, 1, 7])

    def plain_feature_product(weight, bias, items=None, modalities=None):
        """The same product, on this instance only: each modality's rows gathered into a fresh tensor, then
        multiplied (no workspace)."""
        out, start = None, 0
        for name in (model.modality_names if modalities is None else modalities):
            features = model.modality_features(name)
            rows = features if items is None else torch.index_select(features, 0, items)
            part = torch.nn.functional.linear(rows, weight[:, start : start + features.shape[1]], bias if out is None else None)
            start += features.shape[1]
            out = part if out is None else out + part
        return out

    def step(buffered, interaction):
        if buffered:
            model.__dict__.pop("feature_product", None)  # the class's feature_product, with its buffers
        else:
            model.feature_product = plain_feature_product
        model.zero_grad()
        torch.manual_seed(0)  # CLCRec and MILK draw inside the loss
        loss = model.calculate_loss(interaction)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    for interaction in (first, second):
        plain_loss, plain_grads = step(False, interaction)
        loss, grads = step(True, interaction)
        assert torch.allclose(loss, plain_loss, atol=1e-6)
        assert plain_grads.keys() == grads.keys() and any("projection" in n or "encoder.0" in n for n in grads)
        for name in grads:
            assert torch.allclose(grads[name], plain_grads[name], atol=1e-6), name
    buffers = {key: ws.rows.data_ptr() for key, ws in model._workspaces.items()}
    assert buffers  # the gathers went through workspaces ...
    step(True, first)
    assert {key: ws.rows.data_ptr() for key, ws in model._workspaces.items()} == buffers  # ... that are reused
    # evaluation reads the catalogue without workspaces and matches the concatenated features' product
    model.eval()
    weight = torch.randn(3, sum(model.modality_dims.values()))
    expected = model.concatenated_features() @ weight.T
    with torch.no_grad():
        assert torch.allclose(model.feature_product(weight, None), expected, atol=1e-5)
