"""ALDI and DropoutNet: the BPR-MF teacher they share (it learns, from the training split only), ALDI's
three alignment terms and trust weights, DropoutNet's input dropout, missing modalities, cold items scored
from content alone, and learning cold items from content."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from recbole_mamex.config import Config
from recbole_mamex.errors import ConfigError
from recbole_mamex.model import ALDI, DropoutNet
from recbole_mamex.model.aldi import (
    identification_alignment, identification_gap, ranking_alignment, rating_alignment, trust_weights,
)
from recbole_mamex.model.dropoutnet import dropped_rows, standardize_rows
from recbole_mamex.model.teacher import bpr_loss, sample_negatives, train_bpr_teacher, training_pairs
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.registry import get_model, our_models, proposed_models

from helpers import (
    FAST, batch, build_model, check_step_and_scores_with_missing_modalities, cold_and_warm_items,
    cold_recall_on_content_data, full_scores,
)

REPO = Path(__file__).resolve().parents[1]
MODELS = {"ALDI": ALDI, "DropoutNet": DropoutNet}


def build(model, dataset="tiny-cold", **overrides):
    return build_model(MODELS[model], dataset, **overrides)


def split_pairs(data, folder, split):
    """Internal (user, item) ids of the interactions of one split file of 'tiny-cold'."""
    frame = pd.read_csv(folder / f"tiny-cold.{split}.inter", sep="\t", dtype=str)
    users = data.token2id(data.uid_field, frame.iloc[:, 0].tolist())
    items = data.token2id(data.iid_field, frame.iloc[:, 1].tolist())
    return set(zip(users.tolist(), items.tolist()))


# ----------------------------------------------------------------------------- the teacher
def test_teacher_learns_from_the_training_split_only(cold_tiny):
    _, data, train, model = build("ALDI")
    users, items = training_pairs(train._dataset)
    assert set(zip(users.tolist(), items.tolist())) == split_pairs(data, cold_tiny, "train")
    held_out = split_pairs(data, cold_tiny, "valid") | split_pairs(data, cold_tiny, "test")
    assert held_out and not held_out & set(zip(users.tolist(), items.tolist()))

    # its BPR loss falls, and it ranks each training positive above the user's other items
    losses = model.teacher_losses
    assert len(losses) == 200 and losses[-1] < 0.6 * losses[0] and np.mean(losses[-10:]) < np.mean(losses[-60:-50])
    scores = model.teacher_user @ model.teacher_item.T
    trained = model.item_has_training
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[torch.as_tensor(users), torch.as_tensor(items)] = True
    wins = [(scores[u, i] > scores[u, trained & ~positives[u]]).float().mean() for u, i in zip(users, items)]
    assert torch.stack(wins).mean() > 0.95
    # a cold item (in valid / test only) gets no teacher vector
    assert (~trained[1:]).any() and (model.teacher_item[~trained] == 0).all()
    assert model.teacher_item[trained].abs().sum(1).gt(0).all()

    # other valid and test interactions (each user's moved to the next user's row): the same teacher
    valid_before = split_pairs(data, cold_tiny, "valid")
    for split in ("valid", "test"):
        path = cold_tiny / f"tiny-cold.{split}.inter"
        frame = pd.read_csv(path, sep="\t", dtype=str)
        frame.iloc[:, 0] = np.roll(frame.iloc[:, 0].to_numpy(), 1)
        frame.to_csv(path, sep="\t", index=False)
    _, changed, _, again = build("ALDI")
    assert split_pairs(changed, cold_tiny, "valid") != valid_before
    assert torch.equal(again.teacher_user, model.teacher_user) and torch.equal(again.teacher_item, model.teacher_item)
    # ... and another seed, another teacher
    _, _, _, reseeded = build("ALDI", seed=8)
    assert not torch.equal(reseeded.teacher_user, model.teacher_user)


def test_teacher_loss_and_settings_are_checked(cold_tiny):
    u, i, j = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert bpr_loss(u, i, j, 0.0).item() == pytest.approx(math.log1p(math.exp(-2.0)))
    assert bpr_loss(u, i, j, 0.5).item() == pytest.approx(math.log1p(math.exp(-2.0)) + 0.5 * (1 + 4 + 1) / 2)
    teacher = train_bpr_teacher(np.array([1, 1, 2]), np.array([1, 2, 2]), 3, 4, embedding_size=4, epochs=3,
                                learning_rate=0.01, reg_weight=0.0, batch_size=2, seed=1, log=lambda *_: None)
    assert teacher.user.shape == (3, 4) and teacher.item.shape == (4, 4) and len(teacher.losses) == 3
    assert (teacher.item[[0, 3]] == 0).all() and not teacher.user.requires_grad
    for key, value, message in (
        ("teacher_epochs", 0, "teacher_epochs: expected an integer >= 1, found 0"),
        ("teacher_embedding_size", 2.5, "teacher_embedding_size: expected an integer >= 1, found 2.5"),
        ("teacher_learning_rate", -1.0, "teacher_learning_rate: expected a number > 0, found -1.0"),
        ("teacher_reg_weight", -0.1, "teacher_reg_weight: expected a number >= 0, found -0.1"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            build("DropoutNet", **{key: value})
    with pytest.raises(ConfigError, match=re.escape("hidden_sizes: expected a list of integers >= 1 (like [200]), found 200")):
        build("ALDI", hidden_sizes=200)
    with pytest.raises(ConfigError, match=re.escape("dropout_rate: expected a number in [0, 1], found 1.5")):
        build("DropoutNet", dropout_rate=1.5)


def test_teacher_negatives_avoid_the_users_training_items():
    # user 1 has items 1-3 of the candidates 1-4: every draw for user 1 must end on item 4
    users = torch.tensor([1] * 200 + [2] * 200)
    known = torch.unique(torch.tensor([1 * 5 + 1, 1 * 5 + 2, 1 * 5 + 3, 2 * 5 + 1]))
    draws = sample_negatives(users, torch.tensor([1, 2, 3, 4]), known, 5, torch.Generator().manual_seed(0), rounds=50)
    assert (draws[:200] == 4).all()
    assert set(draws[200:].tolist()) == {2, 3, 4}
    # a user with every candidate among their items keeps a draw after the last round (no endless loop)
    full = torch.unique(torch.tensor([1 * 5 + i for i in (1, 2, 3, 4)]))
    assert sample_negatives(torch.tensor([1]), torch.tensor([1, 2, 3, 4]), full, 5, torch.Generator()).shape == (1,)


def test_teacher_logs_its_progress():
    lines = []
    train_bpr_teacher(np.array([1, 2]), np.array([1, 2]), 3, 3, embedding_size=2, epochs=20, learning_rate=0.01,
                      reg_weight=0.0, batch_size=4, seed=1, log=lines.append)
    assert len(lines) == 10 and lines[-1].startswith("teacher (BPR-MF, d=2): epoch 20/20, loss ")


# ----------------------------------------------------------------------------- ALDI's terms
def test_aldi_alignment_terms_on_a_hand_made_case():
    t_pos, t_neg = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    s_pos, s_neg = torch.tensor([0.5, 2.0]), torch.tensor([0.0, -1.0])
    # rating distribution: (|1 - 0.5| + |0 - 0|  +  |2 - 2| + |1 - (-1)|) / 2
    assert rating_alignment(t_pos, t_neg, s_pos, s_neg).item() == pytest.approx((0.5 + 2.0) / 2)

    def bce(logit, target):
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # ranking: the student's gaps 0.5 and 3 against sigmoid of the teacher's gaps 1 and 1, weighted 1 and 0.5
    expected = (1.0 * bce(0.5, sig(1.0)) + 0.5 * bce(3.0, sig(1.0))) / 2
    assert ranking_alignment(t_pos, t_neg, s_pos, s_neg, torch.tensor([1.0, 0.5])).item() == pytest.approx(expected)
    assert ranking_alignment(t_pos, t_neg, s_pos, s_neg).item() == pytest.approx((bce(0.5, sig(1.0)) + bce(3.0, sig(1.0))) / 2)
    # identification: e_i . e_i minus the mean similarity to every negative of the batch
    student_pos, student_neg = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    assert identification_gap(student_pos, student_neg).tolist() == pytest.approx([1 - (1 + 0) / 2, 4 - (2 + 2) / 2])
    teacher_pos, teacher_neg = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    teacher_gap = [4 - (0 + 2) / 2, 1 - (1 + 0) / 2]  # 3, 0.5
    expected = (0.2 * bce(0.5, sig(teacher_gap[0])) + 1.0 * bce(2.0, sig(teacher_gap[1]))) / 2
    got = identification_alignment(teacher_pos, teacher_neg, student_pos, student_neg, torch.tensor([0.2, 1.0]))
    assert got.item() == pytest.approx(expected)


def test_aldi_trust_weights_by_hand():
    # users 1 (items 1, 2) and 2 (item 1): x_1 = 1/2 + 1, x_2 = 1/2; 2 users and 3 items: E[x] = 2/3
    w = trust_weights(np.array([1, 1, 2]), np.array([1, 2, 1]), n_users=3, n_items=4, cap=4.0)
    a = 4.0 / (2 / 3)
    assert w.tolist() == pytest.approx([0.0, min(math.tanh(a * 1.5), math.tanh(4.0)), math.tanh(a * 0.5), 0.0], rel=1e-6)
    assert w[1] == pytest.approx(math.tanh(4.0))  # capped
    low = trust_weights(np.array([1, 1, 2]), np.array([1, 2, 1]), n_users=3, n_items=4, cap=0.5)
    assert low[2] < low[1] == pytest.approx(math.tanh(0.5))


def test_aldi_loss_is_the_weighted_sum_and_trust_weighting_changes_it(cold_tiny):
    _, _, _, model = build("ALDI", reg_weight=0.01)
    b = batch([1, 2, 3, 4], [1, 2, 3, 4], [5, 6, 7, 8])
    model.train()
    torch.manual_seed(0)  # a cold negative of the batch is replaced by a random warm item
    terms = model.losses(b)
    assert all(t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    total = (terms["supervised"] + 0.1 * terms["rating"] + 0.9 * terms["ranking"] + 0.05 * terms["identification"]
             + 0.01 * terms["reg"])
    torch.manual_seed(0)
    torch.testing.assert_close(model.calculate_loss(b), total)
    squares = sum(p.pow(2).sum() for n, p in model.named_parameters() if ".norm." not in n) / 2
    torch.testing.assert_close(terms["reg"], squares)
    _, _, _, plain = build("ALDI", reg_weight=0.01, trust_weighting=False)
    plain.load_state_dict(model.state_dict())
    plain.train()
    torch.manual_seed(0)
    other = plain.losses(b)
    torch.testing.assert_close(other["rating"], terms["rating"])
    assert other["ranking"] > terms["ranking"]  # weights < 1 make the weighted terms smaller
    # the teacher is frozen: gradients reach the towers only
    model.calculate_loss(b).backward()
    assert model.teacher_user.grad is None and not any("teacher" in n for n, _ in model.named_parameters())
    assert model.item_tower[0].linear.weight.grad.abs().sum() > 0 and model.user_tower[0].linear.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- DropoutNet's dropout
def test_dropoutnet_drops_the_configured_fraction_of_item_preference_inputs(cold_tiny):
    torch.manual_seed(0)
    assert int(dropped_rows(1000, 0.3).sum()) == 300
    assert int(dropped_rows(7, 0.5).sum()) == 3 and not dropped_rows(9, 0.0).any() and dropped_rows(9, 1.0).all()
    torch.manual_seed(0)
    first = dropped_rows(10, 0.3)
    torch.manual_seed(0)
    assert torch.equal(dropped_rows(10, 0.3), first)  # fixed seed: the same rows
    torch.manual_seed(0)
    frequency = torch.stack([dropped_rows(10, 0.3) for _ in range(2000)]).float().mean(0)
    assert ((frequency - 0.3).abs() < 0.04).all()  # every row is dropped at the rate

    _, _, _, model = build("DropoutNet", dropout_rate=0.25)
    seen = []
    original = model.item_vectors

    def recording(items=None, drop=None):
        seen.append(drop)
        return original(items, drop)

    model.item_vectors = recording
    model.train()
    torch.manual_seed(3)
    loss = model.calculate_loss(batch([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]))
    assert torch.isfinite(loss) and len(seen) == 1 and int(seen[0].sum()) == math.floor(0.25 * 12)
    # a dropped item's preference input is zero: its vector is that of the item with a zero preference row
    model.eval()
    items = torch.tensor([1, 2, 3])
    drop = torch.tensor([True, False, True])
    with torch.no_grad():
        dropped = original(items, drop)
        kept = original(items)
        model.item_preference[torch.tensor([1, 3])] = 0.0
        zeroed = original(items)
    torch.testing.assert_close(dropped, zeroed)
    assert not torch.allclose(dropped[0], kept[0])
    torch.testing.assert_close(dropped[1], kept[1])


def test_dropoutnet_standardises_the_preference_vectors():
    vectors = torch.tensor([[7.0, 7.0], [1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])  # row 0: an untrained (cold) row
    present = torch.tensor([False, True, True, True])
    out = standardize_rows(vectors, present)
    assert (out[0] == 0).all()  # a row without a trained vector is a zero input, whatever it holds
    assert (out[1:, 1] == 0).all()  # a constant column is only centred
    std = math.sqrt(8 / 3)
    assert out[1:, 0].tolist() == pytest.approx([-2 / std, 0.0, 2 / std])
    assert standardize_rows(torch.tensor([[0.0], [100.0]] + [[0.0]] * 98), torch.ones(100, dtype=torch.bool)).max() == 5.0


# ----------------------------------------------------------------------------- both
def test_registered_as_baselines():
    for name, cls in MODELS.items():
        assert get_model(name) is cls and name in our_models() and cls.is_baseline and cls.serves_new_items
        assert name not in proposed_models()


@pytest.mark.parametrize("model", list(MODELS))
def test_shapes_loss_and_finite_gradients_with_missing_modalities(tiny_dataset, model):
    _, data, _, m = build(model, dataset="tiny")
    item5, item7 = check_step_and_scores_with_missing_modalities(m, data)  # no text, no audio
    assert m.item_has_training[item5] and m.item_has_training[item7]
    grads = {name: p.grad for name, p in m.named_parameters()}  # of the training step's loss
    assert all(grads[n] is not None for n in grads if n.startswith("item_tower.0"))
    # a one-row training batch (the last batch of an epoch can be one pair) still steps
    m.train()
    assert torch.isfinite(m.calculate_loss(batch([1], [item5], [3])))


def _change_features(model, item):
    for name in model.modality_names:
        rows = model.modality_features(name)
        rows[item] = -rows[item] + 0.5


@pytest.mark.parametrize("model_name", list(MODELS))
def test_cold_items_are_scored_from_content_only(cold_tiny, model_name):
    _, _, _, model = build(model_name)
    cold, warm = cold_and_warm_items(model)
    assert len(cold) >= 2 and len(warm)
    before = full_scores(model)
    # a cold item's (untrained) teacher row does not count
    with torch.no_grad():
        model.teacher_item[cold] = 5.0
    torch.testing.assert_close(full_scores(model), before)
    # its features do: changing one cold item's features changes its score, and only its own
    _change_features(model, int(cold[0]))
    after = full_scores(model)
    assert not torch.allclose(after[:, cold[0]], before[:, cold[0]])
    others = torch.ones(after.shape[1], dtype=torch.bool)
    others[cold[0]] = False
    torch.testing.assert_close(after[:, others], before[:, others])


def test_aldi_scores_warm_items_by_the_teacher_and_cold_items_by_the_student(cold_tiny):
    _, _, _, model = build("ALDI")
    scores = full_scores(model)
    trained = model.item_has_training
    with torch.no_grad():
        teacher = model.teacher_user[1:4] @ model.teacher_item.T
        student = model.student_users(torch.tensor([1, 2, 3])) @ model.student_items().T
    torch.testing.assert_close(scores[:, trained], teacher[:, trained])
    torch.testing.assert_close(scores[:, ~trained], student[:, ~trained])


def test_dropoutnet_scores_warm_items_with_their_preference_input(cold_tiny):
    _, _, _, model = build("DropoutNet")
    trained = model.item_has_training
    warm = int(torch.nonzero(trained).flatten()[0])
    before = full_scores(model)
    with torch.no_grad():
        model.item_preference[warm] = model.item_preference[warm] + 1.0
    assert not torch.allclose(full_scores(model)[:, warm], before[:, warm])
    assert model.item_preference[~trained].abs().sum() == 0


@pytest.mark.parametrize("model", list(MODELS))
def test_trains_end_to_end_on_the_tiny_cold_data(cold_tiny, model):
    result = run_recbole_mamex(model, "tiny-cold", config_dict={**FAST, "epochs": 3}, saved=False, cmd_args=[])
    for candidates in ("cold", "warm", "all"):
        assert all(np.isfinite(v) for v in result["test_result_by_candidates"][candidates].values())


@pytest.mark.parametrize("model,settings", [("ALDI", {"learning_rate": 0.01}), ("DropoutNet", {"learning_rate": 0.01})])
def test_learns_cold_items_from_content(workdir, model, settings):
    cold, chance = cold_recall_on_content_data(workdir, model, 10, **settings)
    assert cold > 2 * chance, (cold, chance)


@pytest.mark.parametrize("model", list(MODELS))
def test_every_default_is_documented(model):
    path = REPO / "properties" / "model" / f"{model}.yaml"
    values = yaml.safe_load(path.read_text())
    documented = {line.split(":")[0] for line in path.read_text().splitlines()
                  if re.match(r"^[a-z_]+:.*# \((int|float|str|bool|list)\) \S", line)}
    assert set(values) == documented
    config = Config(model=model, dataset="ml-100k", config_dict={"state": "WARNING"}, cmd_args=[])
    assert {key: config[key] for key in values} == values


@pytest.fixture(autouse=True)
def _no_kept_teachers():
    """Each test trains its teachers: none kept from another test."""
    from recbole_mamex.model import teacher

    teacher._TRAINED.clear()
    yield
    teacher._TRAINED.clear()


def test_a_process_reuses_a_teacher_it_trained_with_the_same_data_and_settings(cold_tiny, monkeypatch):
    from recbole_mamex.model import teacher

    first = build("ALDI", teacher_epochs=3)[-1]
    calls = []
    real = teacher.train_bpr_teacher
    monkeypatch.setattr(teacher, "train_bpr_teacher", lambda *a, **k: calls.append(k) or real(*a, **k))
    again = build("DropoutNet", teacher_epochs=3)[-1]  # the same pairs, settings and seed: reused
    assert calls == [] and torch.equal(again.teacher_user, first.teacher_user)
    assert torch.equal(again.teacher_item, first.teacher_item)
    other = build("ALDI", teacher_epochs=4)[-1]  # another setting: trained
    assert len(calls) == 1 and not torch.equal(other.teacher_user, first.teacher_user)
    again.teacher_user.add_(1.0)  # a model's teacher is its own copy
    assert not torch.equal(build("ALDI", teacher_epochs=3)[-1].teacher_user, again.teacher_user)


@pytest.mark.parametrize("model_name", ["ALDI", "DropoutNet"])
def test_a_saved_model_loads_its_teacher_without_training_one(cold_tiny, monkeypatch, model_name):
    import contextlib

    from recbole_mamex import quick_start
    from recbole_mamex.model import teacher
    from recbole_mamex.serving import Recommender

    checkpoint = run_recbole_mamex(model=model_name, dataset="tiny-cold", config_dict={**FAST, "epochs": 1, "teacher_epochs": 3},
                                   cmd_args=[])["model_file"]
    with monkeypatch.context() as patch:  # built with a trained teacher, then the checkpoint loaded over it
        patch.setattr(quick_start, "restoring_saved_weights", contextlib.nullcontext)
        before = Recommender(checkpoint)
    teacher._TRAINED.clear()

    def no_training(*args, **kwargs):
        raise AssertionError("a teacher was trained while a saved model was loaded")

    monkeypatch.setattr(teacher, "train_bpr_teacher", no_training)
    after = Recommender(checkpoint)
    assert torch.count_nonzero(after.model.teacher_user) > 0  # the saved teacher, not zeros
    users = after.user_ids(["0", "1", "2"])
    assert torch.equal(after.scores(users), before.scores(users))
    with pytest.raises(AssertionError, match="a teacher was trained"):
        run_recbole_mamex(model=model_name, dataset="tiny-cold", config_dict={**FAST, "epochs": 1}, cmd_args=[])
