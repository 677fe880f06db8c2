"""Serving: top-k from a saved checkpoint equals the trainer's ranking (candidates, history masking, ties)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recbole_mamex.quick_start import CheckpointMismatchError, load_data_and_model, run_recbole_mamex
from recbole_mamex.serving import Recommender, ServingError, main, recommend
from recbole_mamex.trainer import get_trainer

from helpers import FAST

REPO = Path(__file__).resolve().parents[1]


def train(model, **overrides):
    config = {**FAST, "epochs": 2, **overrides}
    return run_recbole_mamex(model=model, dataset="tiny-cold", config_dict=config, cmd_args=[])["model_file"]


def trainer_rankings(checkpoint, kind, k):
    """user token -> the trainer's top-k item tokens when it evaluates test on ``kind`` (past the candidates
    the user has, the trainer's top-k holds masked items, in tie order)."""
    config, model, dataset, _, _, test_data = load_data_and_model(checkpoint)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model)
    batch_eval = trainer._full_sort_batch_eval
    give_topk = trainer.eval_collector.give_topk
    captured, given = {}, {}

    def keep(scores, indices):
        given["top"] = indices
        give_topk(scores, indices)

    def capture(batched_data):
        interaction, scores, positive_u, positive_i = batch_eval(batched_data)
        top = given.pop("top")[:, :k]  # the top-k the collector reads (ties in the seeded order)
        for uid, items in zip(interaction[dataset.uid_field].tolist(), top.tolist()):
            captured[dataset.field2id_token[dataset.uid_field][uid]] = [dataset.field2id_token[dataset.iid_field][i] for i in items]
        return interaction, scores, positive_u, positive_i

    trainer._full_sort_batch_eval = capture
    trainer.eval_collector.give_topk = keep
    trainer.evaluate(test_data, load_best_model=False, candidates=kind)
    return captured


# Pop: scores full of ties (every cold item scores 0); NeuMF: no full_sort_predict (scored pair by pair)
@pytest.mark.parametrize("model", ["MAMEX", "Pop", "NeuMF"])
@pytest.mark.parametrize("kind, k", [("cold", 20), ("warm", 5), ("all", 5)])
def test_matches_the_trainers_ranking(cold_tiny, model, kind, k):
    checkpoint = train(model)
    expected = trainer_rankings(checkpoint, kind, k)
    assert len(expected) >= 5
    got = recommend(checkpoint, list(expected), k=k, candidates=kind)
    assert list(got) == list(expected)
    # cold-test items have no history: every user gets all 3; warm users keep more than k unseen items
    n_cold_test = len(json.loads((cold_tiny / "tiny-cold.cold_items.json").read_text())["cold_test"])
    length = min(k, n_cold_test) if kind == "cold" else k
    for user, items in expected.items():
        assert [r.item for r in got[user]] == items[:length], user
        scores = [r.score for r in got[user]]
        assert scores == sorted(scores, reverse=True)


def test_candidates_history_and_errors(cold_tiny, capsys):
    checkpoint = train("BPR")
    server = Recommender(checkpoint)
    dataset = server.dataset
    users = list(dataset.field2id_token["user_id"][1:])
    train_items = {}
    for uid, iid in zip(*server.splits["train"].inter_matrix(form="coo").nonzero()):
        train_items.setdefault(dataset.field2id_token["user_id"][uid], set()).add(dataset.field2id_token["item_id"][iid])

    cold = server.recommend(users, k=50, candidates="cold")
    cold_test = set(server.dataset.cold_item_tokens["test"])
    for user in users:  # every cold-test item, and nothing else, for every user (cold items have no history)
        assert {r.item for r in cold[user]} == cold_test
    valid_cold = server.recommend(users[:3], k=50, candidates="cold", split="valid")
    assert {r.item for r in valid_cold[users[0]]} == set(server.dataset.cold_item_tokens["valid"])

    warm = server.recommend(users, k=50, candidates="warm")
    kept = server.recommend(users, k=50, candidates="warm", exclude_history=False)
    in_fives = server.recommend(users, k=50, candidates="warm", batch_size=5)  # 24 users: 5 batches
    assert {u: [r.item for r in recs] for u, recs in in_fives.items()} == {u: [r.item for r in recs] for u, recs in warm.items()}
    for user in users:
        assert not {r.item for r in warm[user]} & train_items.get(user, set())
        assert train_items[user] <= {r.item for r in kept[user]}

    chosen = [r.item for r in kept[users[0]][:4]]
    listed = server.recommend([users[0]], k=10, candidates=chosen, exclude_history=False)[users[0]]
    assert sorted(r.item for r in listed) == sorted(chosen)

    with pytest.raises(ServingError, match=r"expected user tokens of dataset 'tiny-cold' \(e.g. \['\d+', .*found 1 unknown: \['nobody'\]"):
        server.recommend(["nobody", users[0]])
    with pytest.raises(ServingError, match=r"expected item tokens.*found 1 unknown: \['B0X'\]"):
        server.recommend([users[0]], candidates=["B0X"])
    with pytest.raises(ServingError, match="no such file"):
        recommend(cold_tiny / "absent.pth", users[:1])

    assert main([str(checkpoint), "--users", users[0], users[1], "--k", "3", "--candidates", "warm"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "user\trank\titem\tscore"
    assert [line.split("\t")[2] for line in lines[1:4]] == [r.item for r in warm[users[0]][:3]]
    assert main([str(checkpoint), "--users", users[0], "--k", "2", "--items", *chosen, "--keep-history", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {users[0]: [{"item": r.item, "score": pytest.approx(r.score)} for r in listed[:2]]}
    assert main([str(checkpoint), "--users", "nobody"]) == 2
    assert "unknown: ['nobody']" in capsys.readouterr().err


def test_checkpoint_against_changed_features_is_a_clear_error(cold_tiny):
    checkpoint = train("MAMEX", epochs=1)
    np.save(cold_tiny / "text.npy", np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32))
    with pytest.raises(CheckpointMismatchError) as info:
        load_data_and_model(checkpoint)
    message = str(info.value)
    assert str(checkpoint) in message and "expected the dataset files the model was trained on" in message
    assert "8) vs" in message and "5)" in message  # the text projection: trained on 8-d, now 5-d


def test_checkpoint_after_an_optional_modality_file_vanished_names_it(cold_tiny):
    optional = {"text": "text.npy", "audio": {"path": "audio.npy", "optional": True}}
    checkpoint = train("MAMEX", epochs=1, modalities=optional)
    (cold_tiny / "audio.npy").rename(cold_tiny / "audio.npy.away")
    with pytest.raises(CheckpointMismatchError) as info:
        load_data_and_model(checkpoint)
    message = str(info.value)
    assert str(checkpoint) in message and "the modalities the model was trained on (audio, text)" in message
    assert "no audio now" in message
    (cold_tiny / "audio.npy.away").rename(cold_tiny / "audio.npy")
    assert load_data_and_model(checkpoint)[1].feature_fingerprints.keys() == {"text", "audio"}



def test_the_serving_command_prints_the_recommendations_not_the_config(cold_tiny, workdir):
    for name in ("text.npy", "audio.npy"):  # an item with no modality at all: a warning each time the data loads
        features = np.load(cold_tiny / name)
        features[0] = 0
        np.save(cold_tiny / name, features)
    # a run that logs at INFO (RecBole's default state): training prints its config and dataset summary
    checkpoint = train("MAMEX", epochs=1, state="INFO")
    users = [str(t) for t in load_data_and_model(checkpoint)[2].field2id_token["user_id"][1:3]]
    command = [sys.executable, "-m", "recbole_mamex.serving", str(checkpoint), "--users", *users, "--k", "3", "--candidates", "warm"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}  # this checkout's package
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "user\trank\titem\tscore" and len(lines) == 1 + 3 * len(users)
    assert [line.split("\t")[0] for line in lines[1:]] == [u for u in users for _ in range(3)]
    # RecBole's config dump, the dataset summary and the dataloader lines (INFO) are not printed while loading
    for logged in ("General Hyper Parameters", "learning_rate", "The number of users", "Item features", " INFO "):
        assert logged not in proc.stderr, proc.stderr[-3000:]
    # warnings still are
    assert "1 item(s) have no modality at all" in proc.stderr and " WARNING " in proc.stderr

    # export loads the checkpoint quietly too
    export = [sys.executable, "-m", "recbole_mamex.serving", "export", str(checkpoint), "--out", str(workdir / "bundle")]
    proc = subprocess.run(export, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == f"wrote bundle {workdir / 'bundle'}\n"
    assert "General Hyper Parameters" not in proc.stderr and " INFO " not in proc.stderr
    assert "1 item(s) have no modality at all" in proc.stderr
