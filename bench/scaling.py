"""How cost grows past Amazon Sports: epoch time, full-sort evaluation time and peak RSS at 1x, 4x, 16x.

    python bench/scaling.py                                   # 1x 4x 16x, MAMEX RLMultimodalRec VBPR LightGCN
    python bench/scaling.py --scales 1 4 --variants vbpr lightgcn

Data: a seeded synthetic catalogue per scale s, sized as Amazon Sports times s: 35,598 s users, 18,357 s
items, about 296,337 s interactions (users, items and interactions grow together, so interactions per
user and per item stay as in Sports), with generated 4096-d "image" and 384-d "text" features (seeded
standard normal; 16x holds 4.8 GB of fp32 image features) and a 20% item cold split
(``dataset_prep.coldstart``). Each user's history length is drawn from a shifted geometric law with
Sports' mean, at least 5 items; items are drawn with a Zipf-like popularity (weight ~ (rank + 10)^-0.8).
Timings only: accuracy on random content means nothing.

Each (variant, scale) runs in its own process (``bench/sports_scale.py --variant``, so peak RSS is that
run's) at the shipped defaults of the variant's model: one training epoch, then one full-sort evaluation
of the test users over all items. By default only the first 30 training batches and 300 evaluation batches
run and each figure is extrapolated to the whole epoch / evaluation (``--max-train-batches``,
``--max-eval-batches``; 0 runs them whole): the batches of an epoch cost alike, and a whole LightGCN or
RLMultimodalRec epoch at 16x would take hours on this 2-core VM, since both propagate the whole graph at
every step. The evaluation's one-time work (a graph model's propagation before its first batch, the
candidate masks) and the first training step's (the optimizer's state) are counted once, the other
batches at the median of the timed ones. Printed: the figures per scale, and per variant the fitted growth
exponent b of ``figure ~ size^b`` (least squares on logs; size = interactions for the epoch time, users x
items for the evaluation time, feature bytes for peak RSS), against the targets: epoch b <= 1.1,
evaluation b <= 1, peak RSS <= feature bytes + 2 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SPORTS = {"users": 35_598, "items": 18_357, "interactions": 296_337}
DIMS = {"image": 4096, "text": 384}
NAME = "sports-bench"  # the dataset name bench/sports_scale.py --variant trains on
DEFAULT_VARIANTS = ["mamex_batch_fp32", "rlmm_fp32", "vbpr", "lightgcn"]


def synthetic_interactions(scale: float, seed: int):
    """(users, items) token arrays of the synthetic catalogue at ``scale`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_users = max(10, round(SPORTS["users"] * scale))
    n_items = max(10, round(SPORTS["items"] * scale))
    mean = SPORTS["interactions"] / SPORTS["users"]
    counts = 5 + rng.geometric(1.0 / (mean - 4.0), size=n_users) - 1  # >= 5, mean as Sports'
    counts = np.minimum(counts, n_items)
    weights = (np.arange(n_items) + 10.0) ** -0.8
    weights /= weights.sum()
    popularity = rng.permutation(n_items)  # which item has which popularity rank
    # draw twice each history's length (popular items repeat), keep each user's first `count` distinct items
    drawn_users = np.repeat(np.arange(n_users, dtype=np.int64), 2 * counts + 5)
    drawn = drawn_users * n_items + popularity[rng.choice(n_items, size=len(drawn_users), p=weights)]
    _, first = np.unique(drawn, return_index=True)
    pairs = drawn[np.sort(first)]  # distinct (user, item), in draw order, grouped by user
    users = pairs // n_items
    starts = np.searchsorted(users, np.arange(n_users))
    rank = np.arange(len(pairs)) - starts[users]
    pairs = pairs[rank < counts[users]]
    short = np.flatnonzero(np.bincount(pairs // n_items, minlength=n_users) < counts)
    extra = []
    for user in short:  # rare: a user whose draws repeated too often; top up with distinct uniform items
        have = set((pairs[np.searchsorted(pairs, user * n_items) : np.searchsorted(pairs, (user + 1) * n_items)] % n_items).tolist())
        fresh = [i for i in rng.permutation(n_items)[: counts[user] + len(have)] if i not in have]
        extra += [user * n_items + i for i in fresh[: counts[user] - len(have)]]
    pairs = np.sort(np.concatenate([pairs, np.asarray(extra, dtype=np.int64)]))
    return pairs // n_items, pairs % n_items, n_items


def write_features(path: Path, rows: int, dim: int, seed: int) -> None:
    """A seeded standard-normal float32 ``[rows, dim]`` .npy, written in blocks (no full copy in memory)."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
    step = max(1, (64 * 2**20) // (dim * 4))
    for start in range(0, rows, step):
        out[start : start + step] = rng.standard_normal((min(step, rows - start), dim), dtype=np.float32)
    out.flush()
    del out


def prepare(work: Path, scale: float, seed: int, log=print) -> dict:
    """The scale's cold-split dataset under ``work`` (made once); returns its sizes."""
    import pandas as pd

    from dataset_prep.coldstart import make_cold_dataset

    sizes_file = work / "sizes.json"
    if sizes_file.is_file() and (work / "dataset" / NAME / f"{NAME}.train.inter").is_file():
        return json.loads(sizes_file.read_text())
    start = time.perf_counter()
    users, items, n_items = synthetic_interactions(scale, seed)
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    paths = {}
    for j, (name, dim) in enumerate(DIMS.items()):
        paths[name] = raw / f"{name}_feat.npy"
        write_features(paths[name], n_items, dim, seed + 1 + j)
    frame = pd.DataFrame({"user_id:token": users.astype(str), "item_id:token": items.astype(str)})
    make_cold_dataset(frame, "user_id:token", "item_id:token", paths, NAME,
                      f"synthetic catalogue at {scale}x Amazon Sports (bench/scaling.py, seed {seed})",
                      out_root=work / "dataset", properties_dir=work / "properties", seed=seed, link=True,
                      log=lambda *_: None)
    sizes = {"scale": scale, "users": int(len(np.unique(users))), "items": int(len(np.unique(items))),
             "interactions": int(len(users)), "feature_gb": n_items * sum(DIMS.values()) * 4 / 1024**3}
    sizes_file.write_text(json.dumps(sizes))
    log(f"{scale}x: {sizes['users']:,} users, {sizes['items']:,} items, {sizes['interactions']:,} interactions, "
        f"{sizes['feature_gb']:.2f} GB of features (made in {time.perf_counter() - start:.0f} s)")
    return sizes


def result_of(command: list, what: str) -> dict:
    """The ``RESULT {json}`` line a subprocess prints; its stderr and an exit when it fails."""
    proc = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{what} failed")
    return json.loads(lines[-1][len("RESULT "):])


def run_variant(variant: str, work: Path, seed: int, max_train_batches: int = 0, max_eval_batches: int = 0,
                full_sort_batch_mb: float | None = None) -> dict:
    """One (variant, scale) in its own process: bench/sports_scale.py's figures."""
    extra = ["--full-sort-batch-mb", str(full_sort_batch_mb)] if full_sort_batch_mb is not None else []
    return result_of([sys.executable, str(HERE / "sports_scale.py"), "--variant", variant, "--work", str(work),
                      "--seed", str(seed), "--catalogue-batches", "0", "--max-train-batches", str(max_train_batches),
                      "--max-eval-batches", str(max_eval_batches), *extra], f"{variant} at {work}")


def measure_build(variant: str, work: Path, seed: int) -> dict:
    """Build only (dataset, loaders, model, trainer) of one variant, in this process: its peak RSS."""
    import os

    sys.path.insert(0, str(HERE.parent))
    from recbole_mamex.compare import peak_rss_gb, reset_peak_rss
    from sports_scale import build, variant_spec

    os.chdir(work)
    model_name, spec, _ = variant_spec(variant)
    reset_peak_rss()
    start = time.perf_counter()
    build(model_name, work, "cpu", seed, **spec)
    return {"variant": variant, "build_s": time.perf_counter() - start, "peak_rss_gb": peak_rss_gb()}


def build_in_subprocess(variant: str, work: Path, seed: int) -> dict:
    return result_of([sys.executable, __file__, "--measure-build", variant, "--work", str(work), "--seed", str(seed)],
                     f"building {variant} at {work}")


def exponent(sizes, values) -> float:
    """b of ``value ~ size^b`` by least squares on logs (nan with fewer than two points)."""
    if len(sizes) < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(sizes, dtype=float)), np.log(np.asarray(values, dtype=float)), 1)[0])


def table(results: dict, sizes: dict) -> list[str]:
    """Markdown lines: figures per (variant, scale), then the exponents per variant against the targets."""
    lines = ["| variant | scale | users | items | interactions | epoch s | batches timed | eval s | eval batches timed "
             "| peak RSS GB | features GB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for variant, by_scale in results.items():
        for scale, r in by_scale.items():
            s = sizes[scale]
            lines.append(f"| {variant} | {scale:g}x | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | "
                         f"{r['epoch_s']:.1f} | {r['timed_batches']} of {r['batches_per_epoch']} | {r['eval_s']:.1f} | "
                         f"{r.get('eval_timed_batches', '?')} of {r.get('eval_batches', '?')} | {r['peak_rss_gb']:.2f} | "
                         f"{s['feature_gb']:.2f} |")
    lines += ["", "| variant | epoch b (target <= 1.1) | eval b (target <= 1) | peak RSS at the largest scale "
              "(target <= features + 2 GB) |", "|---|---|---|---|"]
    for variant, by_scale in results.items():
        scales = list(by_scale)
        epoch_b = exponent([sizes[s]["interactions"] for s in scales], [by_scale[s]["epoch_s"] for s in scales])
        eval_b = exponent([sizes[s]["users"] * sizes[s]["items"] for s in scales], [by_scale[s]["eval_s"] for s in scales])
        top = scales[-1]
        rss, limit = by_scale[top]["peak_rss_gb"], sizes[top]["feature_gb"] + 2
        lines.append(f"| {variant} | {epoch_b:.2f}{'' if epoch_b <= 1.1 else ' (over)'} | {eval_b:.2f}"
                     f"{'' if eval_b <= 1 else ' (over)'} | {rss:.2f} GB vs {limit:.2f} GB{'' if rss <= limit else ' (over)'} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", type=float, default=[1, 4, 16])
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recbole-mamex-scaling"))
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    parser.add_argument("--max-train-batches", type=int, default=30,
                        help="training batches timed per (variant, scale), the epoch extrapolated from them (0: whole epochs; "
                             "a graph model's epoch at 16x takes hours here)")
    parser.add_argument("--max-eval-batches", type=int, default=300,
                        help="test evaluation batches timed, the evaluation extrapolated from them (0: all)")
    parser.add_argument("--full-sort-batch-mb", type=float, help=argparse.SUPPRESS)  # the tests' many-batch evaluation
    parser.add_argument("--build-only", action="store_true",
                        help="only build each variant (dataset, loaders, model, trainer) and report that peak RSS")
    parser.add_argument("--measure-build", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure_build:
        print("RESULT " + json.dumps(measure_build(args.measure_build, args.work, args.seed)))
        return 0
    sys.path.insert(0, str(HERE.parent))
    from sports_scale import VARIANTS  # noqa: E402 (bench/ is this script's folder)

    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: --variants: expected some of {', '.join(VARIANTS)}, found {unknown}")
    sizes, results = {}, {v: {} for v in args.variants}
    if args.build_only:
        lines = ["| variant | scale | users | items | interactions | features GB | build s | peak RSS GB (build) |",
                 "|---|---|---|---|---|---|---|---|"]
        for scale in args.scales:
            work = (args.work / f"scale{scale:g}").resolve()
            sizes[scale] = s = prepare(work, scale, args.seed)
            for variant in args.variants:
                r = build_in_subprocess(variant, work, args.seed)
                lines.append(f"| {variant} | {scale:g}x | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | "
                             f"{s['feature_gb']:.2f} | {r['build_s']:.0f} | {r['peak_rss_gb']:.2f} |")
                print(lines[-1], flush=True)
        if args.out:
            command = "python bench/scaling.py " + " ".join(sys.argv[1:] if argv is None else argv)
            args.out.write_text(f"# Build memory ({command})\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
        return 0
    for scale in args.scales:
        work = (args.work / f"scale{scale:g}").resolve()
        sizes[scale] = prepare(work, scale, args.seed)
        for variant in args.variants:
            print(f"{variant} at {scale:g}x ...", flush=True)
            results[variant][scale] = run_variant(variant, work, args.seed, args.max_train_batches, args.max_eval_batches,
                                                  args.full_sort_batch_mb)
            r = results[variant][scale]
            print(f"  epoch {r['epoch_s']:.1f} s, eval {r['eval_s']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB", flush=True)
    lines = table(results, sizes)
    print("\n" + "\n".join(lines))
    if args.out:
        command = "python bench/scaling.py " + " ".join(sys.argv[1:] if argv is None else argv)
        args.out.write_text(f"# Scaling ({command})\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
