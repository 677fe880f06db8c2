"""Random-ranker references for the cold-test candidates of a cold split (default: bundled Last.fm-2K).

Model results come from the batch comparison (``python -m recbole_mamex.compare --dataset lastfm-2k-cold
--protocol cold --models MAMEX BPR LightGCN Random Pop --seeds 2020 2021 2022``); this script adds what a
random ranker gets on the same candidates, to read those numbers against:

- K / C, the expected Recall@K of a ranker that shuffles the C candidates independently per user;
- the spread of Recall@K over random *global* rankings (one shuffle shared by all users), which is what an
  ID model with untrained cold items amounts to: its cold scores are noise, but the same noise for
  every user, so the metric varies much more than the per-user figure suggests.

    python bench/lastfm_cold_protocol.py [--dataset lastfm-2k-cold] [--k 20] [--draws 2000]
"""

from __future__ import annotations

import argparse

import numpy as np

from recbole_mamex import compat as _shims

_shims.apply_all()  # this script drives RecBole directly
from recbole_mamex.config import Config
from recbole_mamex.quick_start import build_run


def random_global_recall(dataset_name: str, k: int, draws: int, seed: int = 0):
    config = Config(model="Random", dataset=dataset_name, config_dict={"state": "ERROR"}, cmd_args=[])
    run = build_run(config)
    data, test = run.dataset, run.test_data
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
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    n_cold, values = random_global_recall(args.dataset, args.k, args.draws)
    print(f"{args.dataset}, random references, cold-test candidates: C = {n_cold} items")
    print(f"  per-user random ranking: expected Recall@{args.k} = {args.k} / C = {args.k / n_cold:.4f}")
    print(f"  random global ranking ({args.draws} draws): Recall@{args.k} mean {values.mean():.4f}, sd {values.std():.4f}, "
          f"95% interval [{np.quantile(values, 0.025):.4f}, {np.quantile(values, 0.975):.4f}]")


if __name__ == "__main__":
    main()
