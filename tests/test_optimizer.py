"""Fused Adam/AdamW (``fused_optimizer``): used by default, same updates as RecBole's optimizer."""

import copy

import pytest
import torch
from recbole.data import data_preparation

from recbole_mamex.config import Config
from recbole_mamex.data.loading import create_dataset
from recbole_mamex.registry import get_model
from recbole_mamex.trainer import get_trainer

from helpers import FAST


def build(model_name, **overrides):
    config = Config(model=model_name, dataset="tiny", config_dict={**FAST, **overrides}, cmd_args=[])
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = get_model(model_name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name, config)(config, model)
    return model, trainer, train


def steps(model, optimizer, batches):
    torch.manual_seed(1)  # the same dropout masks in both runs
    model.train()
    for batch in batches:
        optimizer.zero_grad()
        model.calculate_loss(batch).backward()
        optimizer.step()


@pytest.mark.parametrize("learner", ["adam", "adamw"])
def test_fused_by_default_and_same_updates_as_recbole_s_optimizer(tiny_dataset, learner):
    fused_model, fused, train = build("MAMEX", learner=learner, weight_decay=1e-4)
    plain_model, plain, _ = build("MAMEX", learner=learner, weight_decay=1e-4, fused_optimizer=False)
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[learner]
    assert type(fused.optimizer) is kind and type(plain.optimizer) is kind
    assert fused.optimizer.param_groups[0]["fused"] is True
    assert not plain.optimizer.param_groups[0]["fused"]
    assert fused.optimizer.param_groups[0]["lr"] == plain.optimizer.param_groups[0]["lr"] == FAST.get("learning_rate", 1e-3)
    assert fused.optimizer.param_groups[0]["weight_decay"] == 1e-4
    # same start, same batches: the same parameters after several steps (float rounding aside) ...
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.equal(a, b)
    batches = [batch for _, batch in zip(range(4), train)]
    steps(fused_model, fused.optimizer, batches)
    steps(plain_model, plain.optimizer, batches)
    moved = 0.0
    for (name, a), b in zip(fused_model.named_parameters(), plain_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        moved = max(moved, (a - b).abs().max().item())
    # ... and the fused kernel did run (bitwise equality would mean the same code path)
    assert moved > 0 or all(not p.requires_grad for p in fused_model.parameters())


def test_other_learners_keep_recbole_s_optimizer(tiny_dataset):
    _, trainer, _ = build("BPR", learner="sgd")
    assert type(trainer.optimizer) is torch.optim.SGD


# --- learner: sparse_adam (lazy Adam on the embedding tables) ---------------------------------------------

from recbole_mamex.errors import ConfigError  # noqa: E402
from recbole_mamex.trainer.optimizer import LazyEmbeddingAdam, embedding_tables  # noqa: E402


def two_disjoint_batches(train):
    """Two training batches and the users the first looks up that the second does not."""
    batches = [batch for _, batch in zip(range(2), train)]
    first, second = (set(b["user_id"].tolist()) for b in batches)
    return batches, sorted(first - second)


@pytest.mark.parametrize("model_name", ["VBPR", "MAMEX", "MILK", "CLCRec", "BPR"])
def test_sparse_adam_moves_only_the_rows_a_step_looks_up(tiny_dataset, model_name):
    lazy_model, lazy, train = build(model_name, learner="sparse_adam", train_batch_size=8)
    dense_model, dense, _ = build(model_name, learner="adam", train_batch_size=8)
    assert isinstance(lazy.optimizer, LazyEmbeddingAdam)
    tables = embedding_tables(lazy_model)
    assert tables and all(m.sparse for m in tables.values())
    user_table = next(name for name in tables if name.startswith("user"))
    batches, only_first = two_disjoint_batches(train)
    assert only_first, "the two batches should not share every user"
    users = tables[user_table].weight
    before = users.detach().clone()
    steps(lazy_model, lazy.optimizer, batches[:1])
    steps(dense_model, dense.optimizer, batches[:1])
    # one step: the batch's user rows moved, no other row did
    looked_up = torch.zeros(len(users), dtype=torch.bool)
    looked_up[batches[0]["user_id"]] = True
    moved = (users != before).any(dim=1)
    assert torch.equal(moved, looked_up)
    # the other parameters are plain Adam's: the same as dense Adam's
    table_names = {f"{name}.weight" for name in tables}
    for (name, a), b in zip(lazy_model.named_parameters(), dense_model.parameters()):
        if name not in table_names:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: name + m)
    lazy_rows = tables[user_table].weight[only_first].detach().clone()
    dense_rows = dict(dense_model.named_modules())[user_table].weight[only_first].detach().clone()
    steps(lazy_model, lazy.optimizer, batches[1:])
    steps(dense_model, dense.optimizer, batches[1:])
    # users of the first batch only: dense Adam moves them again (momentum), lazy Adam leaves them
    assert torch.equal(tables[user_table].weight[only_first], lazy_rows)
    assert not torch.equal(dict(dense_model.named_modules())[user_table].weight[only_first], dense_rows)


def test_sparse_adam_refuses_a_graph_model_weight_decay_and_an_unknown_learner(tiny_dataset):
    model, trainer, train = build("LightGCN", learner="sparse_adam")
    batch = next(iter(train))
    with pytest.raises(ConfigError, match=r"LightGCN's user_embedding.weight got a dense gradient.*learner: adam"):
        steps(model, trainer.optimizer, [batch])
    with pytest.raises(ConfigError, match=r"sparse_adam takes no weight_decay.*found weight_decay: 0.001"):
        build("VBPR", learner="sparse_adam", weight_decay=1e-3)
    with pytest.raises(ConfigError, match=r"learner: expected one of adam, .*sparse_adam, found 'adma'"):
        build("VBPR", learner="adma")
    with pytest.raises(ConfigError, match=r"sparse_adam cannot take clip_grad_norm"):
        build("VBPR", learner="sparse_adam", clip_grad_norm={"max_norm": 5})
    # several processes: RecBole's DDP path adds a term over every parameter, so the tables' gradients are dense
    config = Config(model="VBPR", dataset="tiny", config_dict={**FAST, "learner": "sparse_adam"}, cmd_args=[])
    model = get_model("VBPR")(config, data_preparation(config, create_dataset(config))[0]._dataset)
    config["single_spec"] = False
    with pytest.raises(ConfigError, match="does not run with several processes"):
        get_trainer(config["MODEL_TYPE"], "VBPR", config)(config, model)


def test_sparse_adam_state_round_trips_and_refuses_a_dense_adam_state(tiny_dataset):
    model, trainer, train = build("VBPR", learner="sparse_adam", train_batch_size=8)
    steps(model, trainer.optimizer, [next(iter(train))])
    state = copy.deepcopy(trainer.optimizer.state_dict())  # as a checkpoint holds it
    twin_model, twin, _ = build("VBPR", learner="sparse_adam", train_batch_size=8)
    twin_model.load_state_dict(model.state_dict())
    twin.optimizer.load_state_dict(state)
    batch = [b for _, b in zip(range(2), train)][1]
    steps(model, trainer.optimizer, [batch])
    steps(twin_model, twin.optimizer, [batch])
    for (name, a), b in zip(model.named_parameters(), twin_model.parameters()):
        assert torch.equal(a, b), name
    _, dense, _ = build("VBPR", learner="adam")
    with pytest.raises(ConfigError, match="another learner's"):
        twin.optimizer.load_state_dict(dense.optimizer.state_dict())
