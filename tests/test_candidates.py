"""Candidate-restricted evaluation inside RecBole's trainer, checked against a numpy brute force."""

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import data_preparation
from recbole.data.interaction import Interaction
from recbole.trainer import Trainer

from dataset_prep.coldstart import make_cold_dataset, source_from_mmrec
from recbole_mamex.config import Config
from recbole_mamex.data.dataset import ColdItemsFileError
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.trainer.resume import LastCheckpointMixin
from recbole_mamex.trainer.candidates import (
    CandidateEvaluationError,
    CandidateEvaluationMixin,
    tie_break_order,
)
from recbole_mamex.trainer.optimizer import FusedOptimizerMixin
from recbole_mamex.data.loading import create_dataset
from recbole_mamex.registry import get_model
from recbole_mamex.trainer import get_trainer

from helpers import FAST, write_mmrec

TOPK = [5, 10]
EXACT = {
    **FAST,
    "metrics": ["Recall", "NDCG", "Hit", "MRR", "Precision"],
    "topk": TOPK,
    "metric_decimal_place": 12,
    "valid_metric": "NDCG@10",
}


@pytest.fixture
def cold_dataset(workdir):
    write_mmrec(workdir / "raw", n_users=40, n_items=60, per_user=14, seed=11)
    frame, user_col, item_col, modalities, source = source_from_mmrec(workdir / "raw", [])
    make_cold_dataset(frame, user_col, item_col, modalities, "tc", source, seed=5, log=lambda *_: None)
    return workdir / "dataset" / "tc"


def setup(model_name="BPR", **overrides):
    config = Config(model=model_name, dataset="tc", config_dict={**EXACT, **overrides}, cmd_args=[])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = get_model(model_name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name, config)(config, model)
    return config, dataset, (train, valid, test), model, trainer


def read_pairs(path, dataset):
    frame = pd.read_csv(path, sep="\t", dtype=str)
    ids = dataset.field2token_id
    return [(ids["user_id"][u], ids["item_id"][i]) for u, i in zip(frame["user_id:token"], frame["item_id:token"])]


def brute_force(scores, dataset_dir, dataset, split, kind, tie_order=None):
    """Recall/NDCG/Hit/MRR/Precision@K from the score matrix, computed from the files on disk."""
    pairs = {s: read_pairs(dataset_dir / f"tc.{s}.inter", dataset) for s in ("train", "valid", "test")}
    cold_tokens = json.loads((dataset_dir / "tc.cold_items.json").read_text())["cold_" + split]
    n_items = scores.shape[1]
    warm = np.zeros(n_items, bool)
    warm[[i for _, i in pairs["train"]]] = True
    cold = np.zeros(n_items, bool)
    cold[[dataset.field2token_id["item_id"][t] for t in cold_tokens]] = True
    candidates = {"warm": warm, "cold": cold, "all": warm | cold, None: np.r_[False, np.ones(n_items - 1, bool)]}[kind]
    seen = ["train"] if split == "valid" else ["train", "valid"]
    history, positives = defaultdict(set), defaultdict(set)
    for s in seen:
        for u, i in pairs[s]:
            history[u].add(i)
    for u, i in pairs[split]:
        positives[u].add(i)
    sums, users = defaultdict(float), 0
    for u in sorted(positives):
        pos = {i for i in positives[u] if candidates[i]}
        if not pos:
            continue
        users += 1
        s = scores[u].astype(np.float64).copy()
        s[~candidates] = -np.inf
        s[list(history[u] - positives[u])] = -np.inf
        s[0] = -np.inf
        if tie_order is None:
            top = np.argsort(-s, kind="stable")[: max(TOPK)]
        else:
            rank_key = np.lexsort((np.argsort(tie_order), -s))  # by score, then by tie order
            top = rank_key[: max(TOPK)]
        hits = np.array([i in pos for i in top], dtype=float)
        for k in TOPK:
            h = hits[:k]
            dcg = (h / np.log2(np.arange(2, k + 2))).sum()
            idcg = (1 / np.log2(np.arange(2, min(len(pos), k) + 2))).sum()
            first = np.flatnonzero(h)
            sums[f"recall@{k}"] += h.sum() / len(pos)
            sums[f"ndcg@{k}"] += dcg / idcg
            sums[f"hit@{k}"] += float(h.any())
            sums[f"mrr@{k}"] += 1 / (first[0] + 1) if len(first) else 0.0
            sums[f"precision@{k}"] += h.sum() / k
    return {key: value / users for key, value in sums.items()}, users


def all_scores(model, n_users):
    with torch.no_grad():
        return model.full_sort_predict(Interaction({"user_id": torch.arange(n_users)})).view(n_users, -1).numpy()


@pytest.mark.parametrize("kind", ["cold", "warm", "all"])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_trainer_matches_brute_force(cold_dataset, kind, split):
    config, dataset, parts, model, trainer = setup()
    eval_data = parts[1] if split == "valid" else parts[2]
    result = trainer.evaluate(eval_data, load_best_model=False, candidates=kind)
    scores = all_scores(model, dataset.user_num)
    expected, users = brute_force(scores, cold_dataset, dataset, split, kind)
    assert users > 0
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-6), key
    n_split_users = len(np.unique(eval_data._dataset.inter_feat["user_id"].numpy()))
    assert trainer.last_eval_users["evaluated"] == users
    assert trainer.last_eval_users["skipped"] == n_split_users - users


def test_default_candidates_come_from_config_and_drive_validation(cold_dataset):
    config, dataset, (train, valid, test), model, trainer = setup()
    assert config["eval_candidates"] == "cold"
    valid_score, valid_result = trainer._valid_epoch(valid, show_progress=False)
    expected, _ = brute_force(all_scores(model, dataset.user_num), cold_dataset, dataset, "valid", "cold")
    assert valid_result["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-6)
    assert valid_score == pytest.approx(expected["ndcg@10"], abs=1e-6)


def test_without_candidates_the_trainer_is_recbole_s(cold_dataset):
    config, dataset, (train, valid, test), model, trainer = setup(eval_candidates=None, test_candidates=None)
    # RecBole's Trainer (with fused Adam and the last checkpoint of recbole_mamex.trainer.resume), no candidate evaluation
    mro = type(trainer).__mro__
    assert [c for c in mro if c.__module__.startswith("recbole.")][0] is Trainer
    assert isinstance(trainer, FusedOptimizerMixin) and isinstance(trainer, LastCheckpointMixin)
    assert not isinstance(trainer, CandidateEvaluationMixin)
    result = trainer.evaluate(test, load_best_model=False)
    expected, _ = brute_force(all_scores(model, dataset.user_num), cold_dataset, dataset, "test", None)
    assert result["recall@10"] == pytest.approx(expected["recall@10"], abs=1e-6)


def test_ties_are_broken_in_seeded_random_order_not_by_item_id(cold_dataset, monkeypatch):
    config, dataset, (train, valid, test), model, trainer = setup()
    monkeypatch.setattr(model, "full_sort_predict", lambda inter: torch.zeros(len(inter) * dataset.item_num))
    result = trainer.evaluate(test, load_best_model=False, candidates="cold")
    order = tie_break_order(dataset.item_num, config["seed"]).numpy()
    zeros = np.zeros((dataset.user_num, dataset.item_num))
    expected, _ = brute_force(zeros, cold_dataset, dataset, "test", "cold", tie_order=order)
    by_id, _ = brute_force(zeros, cold_dataset, dataset, "test", "cold")
    assert result["recall@5"] == pytest.approx(expected["recall@5"], abs=1e-6)
    assert expected != by_id


def test_run_reports_every_test_candidate_set(cold_dataset):
    result = run_recbole_mamex(model="BPR", dataset="tc", config_dict=EXACT, cmd_args=[])
    by_kind = result["test_result_by_candidates"]
    assert list(by_kind) == ["cold", "warm", "all"]
    assert by_kind["cold"] == result["test_result"]
    assert by_kind["warm"] != by_kind["cold"]


def test_bad_candidate_settings(cold_dataset, workdir):
    with pytest.raises(CandidateEvaluationError, match="eval_candidates: expected one of"):
        setup(eval_candidates="new")
    with pytest.raises(CandidateEvaluationError, match="test_candidates"):
        setup(test_candidates=["cold", "hot"])
    with pytest.raises(CandidateEvaluationError, match="mode 'full'"):
        setup(eval_args={"mode": "uni100", "split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user"})
    cold_file = cold_dataset / "tc.cold_items.json"
    payload = json.loads(cold_file.read_text())
    payload["cold_valid"].append(payload["cold_test"][0])
    cold_file.write_text(json.dumps(payload))
    with pytest.raises(ColdItemsFileError, match="disjoint"):
        setup()
    train_item = pd.read_csv(cold_dataset / "tc.train.inter", sep="\t", dtype=str)["item_id:token"][0]
    payload = {"cold_valid": [train_item], "cold_test": []}
    cold_file.write_text(json.dumps(payload))
    with pytest.raises(ColdItemsFileError, match="no training interaction"):
        setup()
    cold_file.unlink()
    with pytest.raises(ColdItemsFileError, match="no such file"):
        setup()


def test_bundled_lastfm_cold_split_is_prepared_and_evaluated(workdir):
    result = run_recbole_mamex(model="BPR", dataset="lastfm-2k-cold", config_dict={**FAST, "epochs": 1}, cmd_args=[])
    cold = json.loads((workdir / "dataset" / "lastfm-2k-cold" / "lastfm-2k-cold.cold_items.json").read_text())
    assert (len(cold["cold_valid"]), len(cold["cold_test"])) == (142, 143)
    assert set(result["test_result_by_candidates"]) == {"cold", "warm", "all"}
