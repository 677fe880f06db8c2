"""Check dataset_prep.amazon on the real Amazon Sports & Outdoors 5-core interactions.

The interactions (``sequential_data.txt``: ``user item item ...`` in time order, and ``id_maps.json``:
reviewer id -> user number, ASIN -> item number) are rewritten as a reviews file in the original
format (gzip json lines with reviewerID, asin, overall, unixReviewTime), then prepared by
:func:`dataset_prep.amazon.prepare_amazon` with its defaults (5-core, seed 2025), without metadata or
images (no item content is available for this graph). Printed: the counts against the published ones
(35,598 users, 18,357 items, 296,337 interactions, from the shipped ``amazon-sports.yaml``), whether
item ids follow sorted-ASIN order, whether every interaction survives under its ids, and timings.

The source has neither ratings nor times: every review gets ``overall`` 5.0, and ``unixReviewTime``
is synthesised, increasing along each user's sequence (a global counter in file order).

    python bench/amazon_sports_prep_check.py recbole_mamex/bundled/amazon-sports [--work /tmp/sports-check]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_prep.common import shipped_dataset_settings  # noqa: E402
from dataset_prep.amazon import ITEM_MAP_FILE, USER_MAP_FILE, prepare_amazon  # noqa: E402

NAME = "amazon-sports"
BASE_TIME = 1_300_000_000


def read_source(data_dir: Path) -> tuple[list[tuple[str, str]], dict]:
    """(reviewerID, ASIN) pairs in file order, and the id maps."""
    maps = json.loads((data_dir / "id_maps.json").read_text(encoding="utf-8"))
    user_of = {number: reviewer for reviewer, number in maps["user2id"].items()}
    item_of = {number: asin for asin, number in maps["item2id"].items()}
    pairs = []
    with open(data_dir / "sequential_data.txt", encoding="utf-8") as f:
        for line in f:
            tokens = line.split()
            if tokens:
                pairs += [(user_of[tokens[0]], item_of[t]) for t in tokens[1:]]
    return pairs, maps


def write_reviews(pairs: list[tuple[str, str]], path: Path) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for n, (reviewer, asin) in enumerate(pairs):
            f.write(json.dumps({"reviewerID": reviewer, "asin": asin, "overall": 5.0, "unixReviewTime": BASE_TIME + n}) + "\n")


def check(data_dir: Path, work: Path) -> bool:
    pairs, maps = read_source(data_dir)
    reviews = work / "reviews_Sports_and_Outdoors_5.json.gz"
    started = time.perf_counter()
    write_reviews(pairs, reviews)
    print(f"rewrote {len(pairs)} interactions of {data_dir} as {reviews} ({reviews.stat().st_size / 1e6:.1f} MB) "
          f"in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    result = prepare_amazon(reviews, NAME, out_root=work / "dataset", properties_dir=work / "properties", force=True)
    elapsed = time.perf_counter() - started
    expected = shipped_dataset_settings(NAME)["expected_statistics"]
    found = {"users": result.n_users, "items": result.n_items, "interactions": result.n_interactions}

    items = pd.read_csv(result.dataset_dir / ITEM_MAP_FILE, sep="\t", dtype=str)
    users = pd.read_csv(result.dataset_dir / USER_MAP_FILE, sep="\t", dtype=str)
    sorted_asins = sorted(maps["item2id"])
    ids_sorted = items["asin"].tolist() == sorted_asins and items["itemID"].tolist() == [str(i) for i in range(len(sorted_asins))]
    users_sorted = users["reviewerID"].tolist() == sorted(maps["user2id"])
    asin_of, reviewer_of = dict(zip(items["itemID"], items["asin"])), dict(zip(users["userID"], users["reviewerID"]))
    written = pd.concat(
        pd.read_csv(result.dataset_dir / f"{NAME}.{s}.inter", sep="\t", dtype=str) for s in ("train", "valid", "test")
    )
    back = set(zip(written["user_id:token"].map(reviewer_of), written["item_id:token"].map(asin_of)))
    same_pairs = back == set(pairs) and len(written) == len(pairs)

    print(f"prepared in {elapsed:.1f} s: {found} (expected {expected}); splits {result.counts}")
    print(f"statistics check: {result.statistics_check}")
    print(f"item ids = sorted-ASIN order: {ids_sorted}; user ids = sorted-reviewer order: {users_sorted}")
    print(f"every interaction kept under its ids: {same_pairs}")
    return found == expected and ids_sorted and users_sorted and same_pairs and result.statistics_check == "match"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="directory with sequential_data.txt and id_maps.json")
    parser.add_argument("--work", type=Path, help="where to write the reviews file and the dataset (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        ok = check(args.data_dir, args.work)
    else:
        with tempfile.TemporaryDirectory() as work:
            ok = check(args.data_dir, Path(work))
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
