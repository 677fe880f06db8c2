"""Models on bundled Last.fm-2K, cold split (cold / warm / all candidates, next to what a random ranker
gets) or warm split (``--dataset lastfm-2k``: full ranking).

For each model and seed: train with early stopping on cold-valid NDCG@20, report test Recall/NDCG@10/20
on cold, warm and all candidates. Then the random references for the cold-test candidates:

- K / C, the expected Recall@K of a ranker that shuffles the C candidates independently per user;
- the spread of Recall@K over random *global* rankings (one shuffle shared by all users), which is what an
  ID model with untrained cold items amounts to: its cold scores are noise, but the same noise for
  every user, so the metric varies much more than the per-user figure suggests.

    python bench/lastfm_cold_protocol.py --models MAMEX BPR LightGCN Random Pop --seeds 2020 2021 2022
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import yaml

import recbole_mamex  # noqa: F401
from recbole.data import data_preparation

from recbole_mamex.config import Config
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.utils import create_dataset

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def random_global_recall(dataset_name: str, k: int, draws: int, seed: int = 0):
    config = Config(model="Random", dataset=dataset_name, config_dict={"state": "ERROR"}, cmd_args=[])
    data = create_dataset(config)
    _, _, test = data_preparation(config, data)
    candidates = test._dataset.candidate_items["cold"]
    cold = np.flatnonzero(candidates)
    users = test._dataset.inter_feat["user_id"].numpy()
    items = test._dataset.inter_feat["item_id"].numpy()
    keep = candidates[items]
    _, user_index = np.unique(users[keep], return_inverse=True)
    n_pos = np.bincount(user_index)
    rng = np.random.default_rng(seed)
    rank = np.zeros(data.item_num, dtype=np.int64)
    values = np.empty(draws)
    for d in range(draws):
        rank[cold] = rng.permutation(len(cold))
        hits = rank[items[keep]] < k
        values[d] = (np.bincount(user_index, weights=hits) / n_pos).mean()
    return len(cold), values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="lastfm-2k-cold")
    parser.add_argument("--models", nargs="+", default=["MAMEX", "BPR", "LightGCN", "Random", "Pop"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config entries, e.g. mixed_precision=bf16")
    args = parser.parse_args()
    extra = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}

    rows = []
    for model in args.models:
        per_seed = []
        for seed in args.seeds:
            start = time.time()
            result = run_recbole_mamex(
                model=model, dataset=args.dataset,
                config_dict={"seed": seed, "show_progress": False, "state": "WARNING", **extra}, saved=True, cmd_args=[],
            )
            per_seed.append(result["test_result_by_candidates"] or {"full": result["test_result"]})
            first = next(iter(per_seed[-1]))
            print(f"{model} seed {seed}: {time.time() - start:.0f} s, {first} recall@20 "
                  f"{per_seed[-1][first]['recall@20']:.4f}", flush=True)
        rows.append((model, per_seed))

    print(f"\n{args.dataset}, test split, mean +- sd over seeds {args.seeds}" + (f", with {extra}" if extra else ""))
    header = "| model | candidates | " + " | ".join(METRICS) + " |"
    print(header)
    print("|" + "---|" * (len(METRICS) + 2))
    for model, per_seed in rows:
        for kind in per_seed[0]:
            cells = []
            for metric in METRICS:
                values = np.array([r[kind][metric] for r in per_seed])
                cells.append(f"{values.mean():.4f} +- {values.std(ddof=1) if len(values) > 1 else 0:.4f}")
            print(f"| {model} | {kind} | " + " | ".join(cells) + " |")

    if "cold" not in rows[0][1][0]:
        return
    n_cold, values = random_global_recall(args.dataset, 20, args.draws)
    print(f"\nrandom references, cold-test candidates: C = {n_cold} items")
    print(f"  per-user random ranking: expected Recall@20 = 20 / C = {20 / n_cold:.4f}")
    print(f"  random global ranking ({args.draws} draws): Recall@20 mean {values.mean():.4f}, sd {values.std():.4f}, "
          f"95% interval [{np.quantile(values, 0.025):.4f}, {np.quantile(values, 0.975):.4f}]")


if __name__ == "__main__":
    main()
