"""The seeded tie rule on real content: scores of items that share one vector (Amazon Sports items with the
same brand and categories), ranked by ``top_with_tie_order`` against the full sort of every tied row that
it replaced. Both in one process, alternating, same inputs; results are checked equal.

    python bench/tie_order_speed.py [--batches 20]

Items: the 18,357 Sports items' multi-hot attributes (``recbole_mamex/bundled/amazon-sports``), projected
to 64-d by a seeded random matrix (an untrained item tower: items with equal attributes get equal vectors);
users: seeded random 64-d vectors, 228 per batch (the shipped ``full_sort_batch_mb: 16`` for 18,358 items).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from recbole_mamex.trainer.candidates import tie_break_order, top_with_tie_order  # noqa: E402


def full_sort_of_tied_rows(scores, order, k):
    """The rule as it was: one top-k, then every row with a tie sorted in full under the tie order."""
    top = torch.topk(scores, k + 1, dim=1)
    indices = top.indices[:, :k]
    tied = (top.values[:, 1:] == top.values[:, :-1]).any(dim=1)
    rows = torch.nonzero(tied).squeeze(1)
    ranking = torch.sort(scores[rows][:, order], dim=1, descending=True, stable=True).indices[:, :k]
    indices[rows] = order[ranking]
    return indices, float(tied.float().mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args()
    attrs = json.loads((REPO / "recbole_mamex" / "bundled" / "amazon-sports" / "item2attributes.json").read_text())
    n_items, n_attrs = 18358, 2277
    multi_hot = torch.zeros(n_items, n_attrs)
    for item, ids in attrs.items():
        multi_hot[int(item), torch.tensor(ids) - 1] = 1.0
    g = torch.Generator().manual_seed(0)
    items = multi_hot @ torch.randn(n_attrs, 64, generator=g)
    order = tie_break_order(n_items, 2020)
    distinct = len(torch.unique(items[1:], dim=0))
    times = {"full sort of tied rows": 0.0, "shipped": 0.0}
    tied_share = []
    for _ in range(args.batches):
        scores = torch.randn(228, 64, generator=g) @ items.T
        start = time.perf_counter()
        old, share = full_sort_of_tied_rows(scores.clone(), order, args.k)
        times["full sort of tied rows"] += time.perf_counter() - start
        start = time.perf_counter()
        new = top_with_tie_order(scores.clone(), order, args.k)
        times["shipped"] += time.perf_counter() - start
        assert torch.equal(old, new)
        tied_share.append(share)
    print(f"{n_items - 1} items, {distinct} distinct item vectors; rows with a tie in their top {args.k + 1}: {np.mean(tied_share):.0%}")
    print(f"{args.batches} batches of 228 users (results equal):")
    for name, seconds in times.items():
        print(f"  {name}: {seconds:.2f} s ({seconds / args.batches * 1000:.0f} ms per batch)")
    print(f"  ratio: {times['full sort of tied rows'] / times['shipped']:.1f}x")


if __name__ == "__main__":
    main()
