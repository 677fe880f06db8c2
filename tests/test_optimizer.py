"""Fused Adam/AdamW (``fused_optimizer``): used by default, same updates as RecBole's optimizer."""

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
