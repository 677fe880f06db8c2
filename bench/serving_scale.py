"""Serving at Amazon-Sports scale: every user's top-k to a file, new items, a bundle.

Data: the real Amazon Sports 5-core interaction graph with a 20% item cold split and GENERATED features of
the real shapes (4096-d image, 384-d text), as ``bench/sports_scale.py`` writes them (timings only: no
accuracy figure is meaningful here). A MAMEX is trained one epoch at its shipped defaults (the scores'
quality does not change the serving work), then, in this process, each step below is timed:

- loading the checkpoint into a :class:`recbole_mamex.serving.Recommender` (dataset build included);
- ``recommend_all`` (``--all-users --out``) for every user, k = 20, to CSV and to Parquet, candidates
  ``cold`` and ``all``, in the shipped batch size (the evaluation's memory rule);
- ``add_items`` of ``--new-items`` generated items, then ``recommend_all`` with ``all+new``;
- ``export`` of a bundle, its size, and loading from it.

    python bench/serving_scale.py              # CPU, writes the table to stdout
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from sports_scale import DEFAULT_INTERACTIONS, NAME, prepare  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=Path, default=DEFAULT_INTERACTIONS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recbole-mamex-bench"))
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--new-items", type=int, default=1000)
    args = parser.parse_args()

    from recbole_mamex.bundle import export_bundle
    from recbole_mamex.quick_start import run_recbole_mamex
    from recbole_mamex.serving import Recommender

    prepare(args.work, args.interactions, args.seed)
    os.chdir(args.work)
    settings = {"data_path": str(args.work / "dataset"), "checkpoint_dir": str(args.work / "saved"), "seed": args.seed,
                "epochs": 1, "show_progress": False, "state": "WARNING"}
    start = time.perf_counter()
    checkpoint = Path(run_recbole_mamex(model="MAMEX", dataset=NAME, config_dict=settings, cmd_args=[])["model_file"])
    rows = [("train MAMEX 1 epoch (setup)", time.perf_counter() - start, "")]

    def timed(label, task, note=""):
        began = time.perf_counter()
        result = task()
        rows.append((label, time.perf_counter() - began, note(result) if callable(note) else note))
        return result

    server = timed("load checkpoint (Recommender)", lambda: Recommender(checkpoint))
    users = server.dataset.user_num - 1
    out = args.work / "out"
    out.mkdir(exist_ok=True)
    for kind in ("cold", "all"):
        for suffix in (".csv", ".parquet"):
            target = out / f"top-{kind}{suffix}"
            timed(f"recommend_all {users} users, k={args.k}, {kind}, {suffix[1:]}",
                  lambda: server.recommend_all(target, k=args.k, candidates=kind, force=True, progress=False),
                  lambda n, target=target: f"{n} rows, {size_mb(target):.1f} MB")
    rng = np.random.default_rng(args.seed)
    tokens = [f"arrival-{i}" for i in range(args.new_items)]
    features = {name: rng.standard_normal((args.new_items, dim), dtype=np.float32) for name, dim in server.model.modality_dims.items()}
    timed(f"add_items {args.new_items} new items", lambda: server.add_items(tokens, features))
    target = out / "top-all+new.parquet"
    timed(f"recommend_all {users} users, k={args.k}, all+new, parquet",
          lambda: server.recommend_all(target, k=args.k, candidates="all+new", force=True, progress=False),
          lambda n: f"{n} rows")
    bundle = out / "bundle"
    if bundle.exists():
        import shutil

        shutil.rmtree(bundle)
    timed("export bundle", lambda: export_bundle(checkpoint, bundle), lambda _: f"{size_mb(bundle):.0f} MB")
    timed("load bundle (Recommender)", lambda: Recommender(bundle))

    import torch

    print(f"# serving at Sports scale ({users} users, {server.dataset.item_num - 1} items; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)\n")
    print("| step | seconds | note |\n|---|---|---|")
    for label, seconds, note in rows:
        print(f"| {label} | {seconds:.1f} | {note} |")
    print(f"\npeak RSS {peak_rss_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
