"""MAMEX: layer mechanics, missing modalities, scopes, caching, bf16, interpretation, and learning."""

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import data_preparation
from recbole.data.interaction import Interaction

from dataset_prep.coldstart import make_cold_dataset, source_from_mmrec
from recbole_mamex.config import Config
from recbole_mamex.model.layers import SparseMoE, kl_from_uniform, masked_modality_softmax
from recbole_mamex.model.mamex import MAMEX
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.data.loading import create_dataset

from helpers import FAST, write_content_driven


def build(model_config=None, dataset="tiny"):
    config = Config(model="MAMEX", dataset=dataset, config_dict={**FAST, **(model_config or {})}, cmd_args=[])
    data = create_dataset(config)
    train, valid, test = data_preparation(config, data)
    torch.manual_seed(0)
    return config, data, train, MAMEX(config, train._dataset)


def test_defaults_come_from_properties(tiny_dataset):
    config, _, _, model = build()
    assert (config["embedding_size"], config["n_experts"], config["top_k"]) == (128, 4, 2)
    assert config["tower_scope"] == "batch" and config["align_weight"] == 1.0


def test_tower_shapes_and_fusion_weights(tiny_dataset):
    config, data, _, model = build({"embedding_size": 16})
    model.eval()
    tower = model.item_tower()
    n, m = data.item_num, 2
    assert tower["item"].shape == (n, 16) and tower["modality"].shape == (n, m, 16) and tower["fusion"].shape == (n, m)
    fusion, mask = tower["fusion"], tower["mask"]
    real = mask.any(1)
    torch.testing.assert_close(fusion[real].sum(1), torch.ones(int(real.sum())))
    assert (fusion[~mask] == 0).all()
    assert (~mask[1:]).any(), "fixture has items with a missing modality"
    ids = data.field2token_id["item_id"]
    item5, item7 = ids["5"], ids["7"]  # text of item 5 and audio of item 7 are zero rows
    assert fusion[item5, 0] == 0 and fusion[item5, 1] == 1
    assert fusion[item7, 1] == 0 and fusion[item7, 0] == 1
    torch.testing.assert_close(tower["item"][item5], tower["modality"][item5, 1])


def test_item_with_no_modality_gets_a_zero_vector():
    weights = masked_modality_softmax(torch.randn(3, 2), torch.tensor([[True, True], [False, False], [True, False]]))
    assert torch.isfinite(weights).all()
    assert weights[1].tolist() == [0.0, 0.0] and weights[2].tolist() == [1.0, 0.0]


def test_topk_leaves_exactly_k_experts_and_gradients_reach_the_selected_ones():
    torch.manual_seed(0)
    moe = SparseMoE(in_dim=6, out_dim=5, n_experts=4, top_k=2)
    x = torch.randn(64, 6)
    h, gates, router = moe(x)
    assert h.shape == (64, 5)
    assert ((gates != 0).sum(1) == 2).all()
    torch.testing.assert_close(gates.sum(1), torch.ones(64))
    torch.testing.assert_close(router.sum(1), torch.ones(64))
    # one input: only its two selected experts get gradient
    h1, g1, _ = moe(x[:1])
    moe.zero_grad()
    h1.sum().backward()
    grad = moe.projection.weight.grad[: 4 * 5].view(4, 5, 6)
    selected = (g1[0] != 0).nonzero().flatten().tolist()
    for e in range(4):
        assert (grad[e].abs().sum() > 0) == (e in selected), (e, selected)
    assert moe.expert_weight(2).shape == (5, 6)
    assert moe.projection.weight.grad[20:].abs().sum() > 0  # the router learns too
    with pytest.raises(ValueError):
        SparseMoE(4, 4, n_experts=2, top_k=3)


def _reference_moe(moe, x):
    """SparseMoE's forward written with plain autograd ops (nn.Linear on already-gathered rows)."""
    fused = moe.projection(x)
    split = moe.n_experts * moe.out_dim
    logits = fused[:, split:]
    top_logits, top_index = logits.topk(moe.top_k, dim=-1)
    gates = torch.zeros_like(logits).scatter(-1, top_index, torch.softmax(top_logits, dim=-1))
    outputs = fused[:, :split].reshape(-1, moe.n_experts, moe.out_dim).float()
    return (gates.float().unsqueeze(-1) * outputs).sum(1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gathered_projection_matches_plain_autograd(dtype):
    """The buffered gather + padded product gives the outputs and parameter gradients of plain autograd,
    with gathered rows, with all rows, and when two forwards share the workspace before one backward."""
    torch.manual_seed(0)
    moe = SparseMoE(in_dim=40, out_dim=5, n_experts=4, top_k=2)  # 24 columns: padded to 32
    source = torch.randn(50, 40).to(dtype)
    first, second = torch.tensor([7, 3, 49, 0, 3]), torch.tensor([1, 2, 8])
    weights = torch.randn(5, 5), torch.randn(3, 5)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    def grads(loss):
        moe.zero_grad()
        loss.backward()
        return moe.projection.weight.grad.clone(), moe.projection.bias.grad.clone()

    for rows in (first, None):
        with autocast:
            h, _, _ = moe(source, rows)
            expected = _reference_moe(moe, source if rows is None else source[rows])
        assert h.dtype == torch.float32 and torch.equal(h, expected)
        w = torch.randn(h.shape)
        torch.testing.assert_close(grads((h.float() * w).sum()), grads((expected.float() * w).sum()), rtol=0, atol=0)
    # the second forward overwrites the gathered rows of the first: the first's backward must gather again
    with autocast:
        h1, _, _ = moe(source, first)
        h2, _, _ = moe(source, second)
        r1, r2 = _reference_moe(moe, source[first]), _reference_moe(moe, source[second])
    ours = grads((h1.float() * weights[0]).sum() + (h2.float() * weights[1]).sum())
    theirs = grads((r1.float() * weights[0]).sum() + (r2.float() * weights[1]).sum())
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(ours, theirs, **tolerance)
    assert moe.projection.weight.shape == (24, 40) and set(moe.state_dict()) == {"projection.weight", "projection.bias"}


def test_sparse_moe_passes_gradient_to_an_input_that_needs_it():
    torch.manual_seed(0)
    moe = SparseMoE(in_dim=6, out_dim=3, n_experts=2, top_k=1)
    x = torch.randn(4, 6, requires_grad=True)
    moe(x, torch.tensor([0, 2]))[0].sum().backward()
    assert x.grad is not None and x.grad[[0, 2]].abs().sum() > 0 and x.grad[[1, 3]].abs().sum() == 0


def test_balance_losses_zero_only_when_uniform():
    assert kl_from_uniform(torch.full((4,), 0.25)).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_from_uniform(torch.tensor([0.4, 0.2, 0.2, 0.2])).item() > 0
    assert kl_from_uniform(torch.tensor([0.5, 0.5])).item() == pytest.approx(0.0, abs=1e-7)


def test_cold_item_score_depends_on_content_only(tiny_dataset):
    _, data, _, model = build({"embedding_size": 16})
    assert not any(data.item_num in p.shape for p in model.parameters()), "no per-item parameter"
    model.eval()
    a, b = 3, 9
    for name in model.modality_names:
        model.modality_features(name)[b] = model.modality_features(name)[a]
    model.modality_mask[b] = model.modality_mask[a]
    model.train(False)
    model._eval_cache = None
    vectors = model.item_vectors()
    torch.testing.assert_close(vectors[a], vectors[b])
    users = Interaction({"user_id": torch.arange(1, 5)})
    scores = model.full_sort_predict(users).view(4, -1)
    torch.testing.assert_close(scores[:, a], scores[:, b])


def test_batch_scope_equals_catalogue_scope_when_the_batch_covers_the_catalogue(tiny_dataset):
    _, data, _, batch_model = build({"embedding_size": 16, "fusion_dropout": 0.0})
    _, _, _, catalogue_model = build({"embedding_size": 16, "fusion_dropout": 0.0, "tower_scope": "catalogue"})
    catalogue_model.load_state_dict(batch_model.state_dict())
    n = data.item_num - 1
    items = torch.arange(1, data.item_num)
    batch = Interaction({"user_id": torch.randint(1, data.user_num, (n,)), "item_id": items, "neg_item_id": items.flip(0)})
    torch.testing.assert_close(batch_model.calculate_loss(batch), catalogue_model.calculate_loss(batch))
    small = batch[torch.arange(5)]
    assert not torch.allclose(batch_model.calculate_loss(small), catalogue_model.calculate_loss(small))


def test_evaluation_cache_is_reused_and_dropped_when_training(tiny_dataset):
    _, data, _, model = build({"embedding_size": 16})
    model.eval()
    first = model.item_vectors()
    assert model.item_vectors() is first
    model.train()
    assert model._eval_cache is None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    batch = Interaction({"user_id": torch.tensor([1, 2]), "item_id": torch.tensor([1, 2]), "neg_item_id": torch.tensor([3, 4])})
    model.calculate_loss(batch).backward()
    optimizer.step()
    model.eval()
    assert not torch.allclose(model.item_vectors(), first)


def test_evaluation_item_vectors_are_computed_a_block_at_a_time(tiny_dataset, monkeypatch):
    import recbole_mamex.model.mamex as mamex_module

    _, _, _, model = build({"embedding_size": 16})
    model.eval()
    with torch.no_grad():
        whole = model.item_tower()["item"]
    row_bytes = 4 * len(model.modality_names) * model.n_experts * (16 + 1)
    monkeypatch.setattr(mamex_module, "rows_per_block", lambda b: 7 if b == row_bytes else pytest.fail(f"row bytes {b}"))
    calls = []
    tower = model.item_tower
    monkeypatch.setattr(model, "item_tower", lambda items=None: calls.append(items) or tower(items))
    blocked = model.item_vectors()
    assert calls == [slice(start, start + 7) for start in range(0, model.n_items, 7)] and len(calls) > 2
    torch.testing.assert_close(blocked, whole, rtol=1e-6, atol=1e-6)


def test_bf16_tower_stays_close_to_fp32(tiny_dataset):
    _, _, _, fp32 = build({"embedding_size": 16})
    _, _, _, bf16 = build({"embedding_size": 16, "mixed_precision": "bf16"})
    bf16.load_state_dict(fp32.state_dict())
    fp32.eval(), bf16.eval()
    with torch.no_grad():
        ta, tb = fp32.item_tower(), bf16.item_tower()
    a, b = ta["item"], tb["item"]
    assert b.dtype == torch.float32
    # bf16 router logits can swap the top-k choice of an item whose logits nearly tie (a discrete
    # change); where the choice is the same the vectors must agree closely, and it must be the rule.
    same = torch.ones(len(a), dtype=torch.bool)
    for name in fp32.modality_names:
        same &= ((ta["gates"][name] != 0) == (tb["gates"][name] != 0)).all(1)
    assert same.float().mean() > 0.9
    assert (a[same] - b[same]).abs().max() < 0.05 * a.abs().max()


def test_bad_settings_are_clear_errors(tiny_dataset):
    for key, value in (("tower_scope", "all"), ("mixed_precision", "fp16"), ("feature_norm", "l1")):
        with pytest.raises(ValueError, match=key):
            build({key: value})


def test_modality_report(tiny_dataset):
    _, data, _, model = build({"embedding_size": 16})
    report = model.modality_report(data.field2id_token["item_id"])
    assert list(report.columns) == ["item", "weight_text", "weight_audio", "top_expert_text", "top_expert_audio"]
    assert len(report) == data.item_num - 1
    assert report["item"].tolist() == list(data.field2id_token["item_id"][1:])
    np.testing.assert_allclose(report[["weight_text", "weight_audio"]].sum(1), 1.0, rtol=1e-5)
    row5 = report[report["item"] == "5"].iloc[0]
    assert row5["weight_text"] == 0 and row5["top_expert_text"] == -1 and 0 <= row5["top_expert_audio"] < 4


def test_mamex_learns_cold_items_from_content(workdir):
    inter = write_content_driven(workdir / "raw", n_items=500)
    frame, user_col, item_col, modalities, source = source_from_mmrec(inter.parent, [])
    make_cold_dataset(frame, user_col, item_col, modalities, "content", source, seed=1, log=lambda *_: None)
    settings = {**FAST, "epochs": 40, "stopping_step": 40, "topk": [10], "metrics": ["Recall"], "valid_metric": "Recall@10"}
    mamex = run_recbole_mamex("MAMEX", "content", config_dict={**settings, "embedding_size": 32, "learning_rate": 0.01}, cmd_args=[])
    bpr = run_recbole_mamex("BPR", "content", config_dict={**settings, "learning_rate": 0.01}, cmd_args=[])
    n_cold = len(pd.read_json(workdir / "dataset" / "content" / "content.cold_items.json", typ="series")["cold_test"])
    random_recall = 10 / n_cold
    mamex_cold = mamex["test_result_by_candidates"]["cold"]["recall@10"]
    bpr_cold = bpr["test_result_by_candidates"]["cold"]["recall@10"]
    print(f"cold recall@10: MAMEX {mamex_cold:.3f}, BPR {bpr_cold:.3f}, random {random_recall:.3f}")
    assert mamex_cold > 2 * random_recall, (mamex_cold, random_recall)
    assert mamex_cold > bpr_cold + 0.2, (mamex_cold, bpr_cold)


def test_interpret_cli_writes_csv_from_checkpoint(tiny_dataset, workdir, capsys):
    from recbole_mamex.interpret import main

    result = run_recbole_mamex("MAMEX", "tiny", config_dict={**FAST, "embedding_size": 16, "epochs": 1}, cmd_args=[])
    out = workdir / "weights.csv"
    assert main([result["model_file"], "--out", str(out)]) == 0
    report = pd.read_csv(out, dtype={"item": str})
    assert len(report) == 30 and {"weight_text", "weight_audio", "top_expert_text"} <= set(report.columns)
    assert "mean fusion weight per modality" in capsys.readouterr().out
    assert main([result["model_file"], "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    bpr = run_recbole_mamex("BPR", "tiny", config_dict={**FAST, "epochs": 1}, cmd_args=[])
    assert main([bpr["model_file"], "--out", str(workdir / "b.csv")]) == 2
    assert "expected a checkpoint of a model with modality weights" in capsys.readouterr().err
