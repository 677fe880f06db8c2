"""Full-sort evaluation batches sized by a score budget, and top-k metrics collected without dense matrices:
neither may change a metric."""

import hashlib
import json

import numpy as np
import pytest
import torch
from recbole.data import data_preparation as recbole_data_preparation
from recbole.evaluator import Collector
from recbole.model.general_recommender.random import Random as RecBoleRandom
from recbole.utils import init_seed

from dataset_prep.coldstart import make_cold_dataset, source_from_mmrec
from recbole_mamex.config import Config
from recbole_mamex.trainer.candidates import TopkCollector, top_with_tie_order
from recbole_mamex.data.loaders import FullSortLoader, PerUserRows, full_sort_users_per_batch
from recbole_mamex.data.loading import create_dataset, data_preparation
from recbole_mamex.registry import get_model
from recbole_mamex.trainer import get_trainer

from helpers import FAST, write_mmrec

N_USERS, N_ITEMS = 37, 61
METRICS = ["Recall", "NDCG", "Hit", "MRR", "Precision", "MAP"]
EXACT = {**FAST, "metrics": METRICS, "topk": [3, 10], "metric_decimal_place": 12, "valid_metric": "NDCG@10"}


@pytest.fixture
def cold_dataset(workdir):
    write_mmrec(workdir / "raw", n_users=N_USERS, n_items=N_ITEMS, per_user=13, seed=3)
    frame, user_col, item_col, modalities, source = source_from_mmrec(workdir / "raw", [])
    make_cold_dataset(frame, user_col, item_col, modalities, "eb", source, seed=2, log=lambda *_: None)
    return workdir / "dataset" / "eb"


def evaluations(model_name, settings, score_fn=None):
    """Validation and test metrics for every candidate set, after one training epoch (seeded)."""
    config = Config(model=model_name, dataset="eb", config_dict={**EXACT, "epochs": 1, **settings}, cmd_args=[])
    init_seed(config["seed"], True)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = get_model(model_name)(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name, config)(config, model)
    if score_fn is not None:
        model.full_sort_predict = lambda interaction: score_fn(interaction, dataset.item_num)
    else:
        trainer.fit(train, saved=False)
    results = {"users per batch": valid.step}
    for name, data in (("valid", valid), ("test", test)):
        for kind in (None, "cold", "warm", "all"):
            results[(name, kind)] = dict(trainer.evaluate(data, load_best_model=False, candidates=kind))
    return results


def few_distinct_scores(interaction, n_items):
    """Scores with many ties: (user + item) mod 3."""
    users = interaction["user_id"].unsqueeze(1)
    return ((users + torch.arange(n_items)) % 3).float().flatten()


@pytest.mark.parametrize(
    "model_name, score_fn", [("BPR", None), ("Pop", None), ("BPR", few_distinct_scores)], ids=["BPR", "Pop", "ties"]
)
def test_batch_size_does_not_change_any_metric(cold_dataset, model_name, score_fn):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        row_bytes = 4 * (N_ITEMS + 1)  # RecBole adds the padding item 0
        budgets = {
            "one user": 1e-9,
            "three users": 3 * row_bytes / 2**20,
            "every user": 64,
            "RecBole's rule": None,  # eval_batch_size 4096 // 62 items = 66 users
        }
        runs = {name: evaluations(model_name, {"full_sort_batch_mb": mb}, score_fn) for name, mb in budgets.items()}
    finally:
        torch.set_num_threads(threads)
    assert [run.pop("users per batch") for run in runs.values()] == [1, 3, 270_600, 66]
    reference = runs.pop("one user")
    for name, run in runs.items():
        assert run == reference, name


def test_users_per_batch_follow_the_budget():
    assert full_sort_users_per_batch({"full_sort_batch_mb": 64, "eval_batch_size": 4096}, 18_357) == 913
    assert full_sort_users_per_batch({"full_sort_batch_mb": 64, "eval_batch_size": 4096}, 1_426) == 11_765
    assert full_sort_users_per_batch({"full_sort_batch_mb": 1e-6, "eval_batch_size": 4096}, 1_426) == 1
    assert full_sort_users_per_batch({"full_sort_batch_mb": None, "eval_batch_size": 4096}, 18_357) == 1
    assert full_sort_users_per_batch({"full_sort_batch_mb": None, "eval_batch_size": 4096}, 1_426) == 2


def test_our_loader_sizes_batches_and_recboles_does_not(cold_dataset, workdir):
    config = Config(model="BPR", dataset="eb", config_dict=FAST, cmd_args=[])
    _, valid, test = data_preparation(config, create_dataset(config))
    assert type(valid) is type(test) is FullSortLoader
    assert [valid.step, test.step] == [67650, 67650]  # 16 MiB of scores: every user in one batch
    _, valid, test = recbole_data_preparation(config, create_dataset(config))
    assert [valid.step, test.step] == [66, 66]  # RecBole's own loader: 4096 // 62


def collect(collector_class, scores, positive_u, positive_i, metrics):
    config = {"metrics": metrics, "topk": [2, 5], "eval_args": {"mode": "full"}, "device": torch.device("cpu")}
    collector = collector_class(config)
    for rows in (slice(0, 4), slice(4, None)):
        keep = (positive_u >= rows.start) & (positive_u < (rows.stop or 10**9))
        collector.eval_batch_collect(scores[rows], None, positive_u[keep] - rows.start, positive_i[keep])
    return {key: collector.data_struct[key] for key in ("rec.topk", "rec.items") if key in collector.data_struct}


def test_topk_collector_gives_recboles_tensors():
    generator = torch.Generator().manual_seed(4)
    scores = torch.rand(9, 23, generator=generator)
    positive_u = torch.tensor([0, 0, 1, 2, 2, 2, 4, 5, 5, 7, 8, 8, 8])
    positive_i = torch.tensor([3, 3, 7, 1, 2, 22, 0, 9, 10, 4, 5, 6, 5])  # repeated pairs count once, as in RecBole
    for metrics in (["Recall", "NDCG", "MRR"], ["ItemCoverage"], ["Hit", "GiniIndex", "GAUC"]):
        ours = collect(TopkCollector, scores, positive_u, positive_i, metrics)
        theirs = collect(Collector, scores, positive_u, positive_i, metrics)
        assert ours.keys() == theirs.keys() and ours
        for key in ours:
            assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), (metrics, key)


def test_collected_batches_are_concatenated_once_and_reset_per_evaluation():
    generator = torch.Generator().manual_seed(5)
    scores = torch.rand(12, 17, generator=generator)
    positive_u = torch.arange(12).repeat_interleave(2)
    positive_i = torch.randint(0, 17, (24,), generator=generator)
    config = {"metrics": ["Recall", "GAUC"], "topk": [3], "eval_args": {"mode": "full"}, "device": torch.device("cpu")}
    ours, theirs = TopkCollector(config), Collector(config)
    for evaluation in range(2):  # a second evaluation starts from nothing, as RecBole's does
        for start in range(0, 12, 3):
            keep = (positive_u >= start) & (positive_u < start + 3)
            for collector in (ours, theirs):
                collector.eval_batch_collect(scores[start:start + 3], None, positive_u[keep] - start, positive_i[keep])
        # the batches wait in a list (no copy of what came before at every batch) until the struct is read
        assert len(ours.data_struct._parts["rec.topk"]) == 4
        got, expected = ours.get_data_struct(), theirs.get_data_struct()
        for key in ("rec.topk", "rec.meanrank"):
            assert torch.equal(got[key], expected[key]), (evaluation, key)
            assert key not in ours.data_struct
        assert got["rec.topk"].shape[0] == 12


def test_topk_collector_refuses_a_top_k_of_other_scores():
    collector = TopkCollector({"metrics": ["Recall"], "topk": [2], "eval_args": {"mode": "full"}, "device": torch.device("cpu")})
    collector.give_topk(torch.zeros(2, 3), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(RuntimeError, match="other scores"):
        collector.eval_batch_collect(torch.zeros(2, 3), None, torch.tensor([0]), torch.tensor([1]))


def brute_force_top(scores, order, k):
    position = np.empty(len(order), dtype=int)
    position[order] = np.arange(len(order))
    return np.stack([np.lexsort((position, -row))[:k] for row in scores])


@pytest.mark.parametrize("k", [1, 4, 11, 30])
def test_top_with_tie_order_matches_a_brute_force(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, size=(50, 12)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[:10] = rng.random((10, 12))  # rows without ties take the one-top-k path
    order = rng.permutation(12)
    top = top_with_tie_order(torch.from_numpy(scores), torch.from_numpy(order), k)
    assert np.array_equal(top.numpy(), brute_force_top(scores, order, k))


@pytest.mark.parametrize("k", [1, 10, 20])
def test_top_with_tie_order_on_a_wide_catalogue_of_shared_vectors(k):
    """Many items with one score (items with the same attributes share one vector): the tie at the k-th
    score spans hundreds of items and is broken by position in ``order`` without sorting the row."""
    rng = np.random.default_rng(100 + k)
    scores = rng.integers(0, 3, size=(40, 400)).astype(np.float32)
    scores[:, :5] = 3.0 + rng.integers(0, 2, size=(40, 5))  # a few clear winners, some tied among themselves
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    order = rng.permutation(400)
    top = top_with_tie_order(torch.from_numpy(scores), torch.from_numpy(order), k)
    assert np.array_equal(top.numpy(), brute_force_top(scores, order, k))


def test_random_model_ranks_each_user_on_its_own(cold_dataset, workdir):
    config = Config(model="Random", dataset="eb", config_dict=FAST, cmd_args=[])
    train, valid, _ = data_preparation(config, create_dataset(config))
    users = next(iter(valid))[0]
    assert len(users) > 10
    rows = {}
    for name, model_class in (("ours", get_model("Random")), ("RecBole's", RecBoleRandom)):
        scores = model_class(config, train._dataset).full_sort_predict(users).view(len(users), -1)
        rows[name] = int((scores == scores[0]).all(dim=1).sum())
    assert get_model("Random") is not RecBoleRandom and issubclass(get_model("Random"), RecBoleRandom)
    assert rows["RecBole's"] == len(users)  # RecBole: every user of the batch gets row 0's scores
    assert rows["ours"] == 1  # ours: only row 0 itself


def loader_content(prepare, settings) -> list:
    """What the valid and test loaders of ``prepare`` (ours or RecBole's data_preparation) give: the class of
    their history lists, the number of history pairs, the number of parts and a digest of them all."""
    from recbole.utils.case_study import full_sort_scores

    config = Config(model="BPR", dataset="eb", config_dict={**FAST, **settings}, cmd_args=[])
    train, valid, test = prepare(config, create_dataset(config))
    seen, histories = [], 0
    for loader in (valid, test):
        for users, (history_u, history_i), positive_u, positive_i in loader:
            assert history_u.dtype == history_i.dtype == positive_u.dtype == positive_i.dtype == torch.int64
            histories += len(history_i)
            seen.append([users["user_id"].tolist(), sorted(zip(history_u.tolist(), history_i.tolist())),
                         sorted(zip(positive_u.tolist(), positive_i.tolist()))])
        seen.append([int(n) for n in loader.uid2items_num])
        seen.append(sorted(loader.uid2history_item[int(loader.uid_list[0])].tolist()))
    model = type("M", (), {"eval": lambda s: None, "full_sort_predict": lambda s, i: torch.zeros(len(i) * test.dataset.item_num)})()
    masked = full_sort_scores([1, 2, 3], model, test)
    seen.append(torch.isinf(masked).nonzero().tolist())
    return [type(valid.uid2history_item).__name__, histories, len(seen), hashlib.sha256(json.dumps(seen).encode()).hexdigest()]


def test_compact_loaders_give_recboles_batches(cold_dataset, workdir):
    """With the user lists in compressed rows, every batch holds the same users, history pairs and positive
    pairs as RecBole's own loader (as sets), in the valid and the test loader, and RecBole's case_study
    masks the same history."""
    five_users = 5 * 62  # 5 users per batch: several batches (RecBole adds the padding item 0)
    ours = loader_content(data_preparation, {"full_sort_batch_mb": 4 * five_users / 2**20})
    recboles = loader_content(recbole_data_preparation, {"eval_batch_size": five_users})
    assert ours[0] == PerUserRows.__name__ and recboles[0] == "ndarray"
    assert ours[1] > 100 and ours[2] > 4  # histories to mask, several batches
    assert ours[1:] == recboles[1:]
