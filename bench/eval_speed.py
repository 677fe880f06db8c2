"""Full-sort evaluation time per validation against its floor, on Last.fm-2K and on an Amazon-Sports-size catalogue.

Model: MAMEX at its shipped defaults (embedding 128), untrained (timings only; its item tower runs once
per validation, as after each training epoch). Data: the bundled ``lastfm-2k-cold`` (1,858 users, 1,425
items); the real Amazon Sports 5-core graph with generated features of the real shapes and a 20% item
cold split (35,598 users, 18,357 items; ``bench/sports_scale.py``'s data).

Per dataset, in ONE process, the settings below alternate ``--repeats`` times (median reported), so their
ratios are measured under the same machine conditions:

- ``recbole``: what RecBole 1.2.1 does: ``eval_batch_size // n_items`` users per batch (``full_sort_batch_mb: ~``)
  and RecBole's Collector (dense users x items positive matrix, a second top-k);
- ``budget + recbole collector``: our batch sizing only;
- ``shipped``: the shipped defaults (batches of ``full_sort_batch_mb`` MiB of scores, :class:`TopkCollector`);
- ``shipped, cold candidates``: the cold protocol's validation (candidate mask, seeded tie rule);
- ``floor``: the user x item score product and ``torch.topk(max(topk))`` alone, over the same users in the
  shipped batches (no item tower, no masking, no metrics): what any full-sort evaluation must spend.

Every validation covers all users of the valid split (candidates ``None``) unless said. The RecBole setting
evaluates Sports user by user; ``--recbole-repeats`` (default 1) times it fewer times.

    python bench/eval_speed.py                       # both datasets
    python bench/eval_speed.py --datasets lastfm     # one
    python bench/eval_speed.py --datasets sports --profile   # where one shipped validation spends its time
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def build(dataset: str, work: Path, **settings):
    """Config, valid loader and trainer through the assembly users get (:func:`recbole_mamex.quick_start.build_run`)."""
    from recbole_mamex.config import Config
    from recbole_mamex.quick_start import build_run
    from recbole_mamex.trainer import get_trainer

    config = Config(
        model="MAMEX", dataset=dataset,
        config_dict={"data_path": str(work / "dataset"), "checkpoint_dir": str(work / "saved"), "use_gpu": False,
                     "show_progress": False, "state": "WARNING", "seed": 2020, **settings},
        cmd_args=[],
    )
    run = build_run(config)
    trainer = get_trainer(config["MODEL_TYPE"], "MAMEX", config)(config, run.model)
    return config, run.valid_data, run.model, trainer


def timed_validation(trainer, valid, candidates) -> float:
    trainer.model.train()  # drops the item-tower cache, as a training epoch does
    start = time.perf_counter()
    trainer.evaluate(valid, load_best_model=False, candidates=candidates)
    return time.perf_counter() - start


def floor_seconds(model, valid, users_per_batch: int, k: int) -> float:
    """Score product and top-k over the valid split's users, in batches of ``users_per_batch``."""
    import torch

    users = torch.as_tensor(valid.user_df[valid.uid_field]).long()
    with torch.no_grad():
        model.eval()
        items = model.item_vectors().detach().contiguous()  # cached, outside the timing
        user_e = model.user_embedding.weight.detach()
        start = time.perf_counter()
        for first in range(0, len(users), users_per_batch):
            scores = user_e[users[first : first + users_per_batch]] @ items.T
            torch.topk(scores, k, dim=1)
        return time.perf_counter() - start


def profile(dataset: str, work: Path, candidates) -> None:
    """torch.profiler's table of one shipped validation (after one untimed), by operator."""
    import torch

    _, valid, _, trainer = build(dataset, work)
    timed_validation(trainer, valid, candidates)
    trainer.model.train()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        trainer.evaluate(valid, load_best_model=False, candidates=candidates)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def measure(name: str, dataset: str, work: Path, repeats: int, recbole_repeats: int) -> dict:
    from recbole.evaluator import Collector

    from recbole_mamex.data.loaders import full_sort_users_per_batch

    settings = {
        "recbole": {"full_sort_batch_mb": None},
        "budget + recbole collector": {},
        "shipped": {},
    }
    runs = {}
    for label, extra in settings.items():
        config, valid, model, trainer = build(dataset, work, **extra)
        if label != "shipped":  # RecBole's collector: only without candidates (our tie rule needs ours)
            trainer.eval_collector = Collector(config)
        runs[label] = (valid, trainer)
    _, valid, model, shipped_trainer = build(dataset, work)
    runs["shipped, cold candidates"] = (valid, shipped_trainer)
    k = max(config["topk"])
    rows = full_sort_users_per_batch(config, valid._dataset.item_num)
    times = {label: [] for label in [*runs, "floor"]}
    for repeat in range(repeats):
        for label, (data, trainer) in runs.items():
            if label == "recbole" and repeat >= recbole_repeats:
                continue
            candidates = "cold" if label == "shipped, cold candidates" else None
            times[label].append(timed_validation(trainer, data, candidates))
        times["floor"].append(floor_seconds(model, valid, rows, k))
        print(f"  {name} repeat {repeat + 1}/{repeats}: " + ", ".join(f"{l} {t[-1]:.2f} s" for l, t in times.items()), flush=True)
    median = {label: statistics.median(t) for label, t in times.items()}
    return {
        "dataset": name,
        "users": int(len(valid.user_df)),
        "items": int(valid._dataset.item_num),
        "users_per_batch": {"recbole": max(config["eval_batch_size"] // valid._dataset.item_num, 1), "shipped": rows},
        "seconds": median,
        "runs": {label: len(t) for label, t in times.items()},
        "shipped / floor": median["shipped"] / median["floor"],
        "recbole / shipped": median["recbole"] / median["shipped"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=["lastfm", "sports"], default=["lastfm", "sports"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/recbole-mamex-bench"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--recbole-repeats", type=int, default=1, help="repeats of RecBole's setting on Sports")
    parser.add_argument("--profile", action="store_true", help="print an operator profile of one shipped validation instead")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = args.work.resolve()
    if args.one:
        from recbole_mamex import compat

        compat.apply_all()  # this process drives RecBole directly
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)  # the dataset yaml is found under ./properties, as for a user

        dataset = "lastfm-2k-cold"
        if args.one == "sports":
            from sports_scale import DEFAULT_INTERACTIONS, NAME, prepare

            prepare(work, DEFAULT_INTERACTIONS, 2025)
            dataset = NAME
        if args.profile:
            for candidates in (None, "cold"):
                print(f"{args.one}, candidates {candidates}:")
                profile(dataset, work, candidates)
            return 0
        repeats = args.recbole_repeats if args.one == "sports" else args.repeats
        result = measure(args.one, dataset, work, args.repeats, repeats)
        print("RESULT " + json.dumps(result))
        return 0
    for name in args.datasets:  # each dataset in its own process (its own peak memory)
        command = [sys.executable, __file__, "--one", name, "--work", str(work), "--repeats", str(args.repeats),
                   "--recbole-repeats", str(args.recbole_repeats)]
        done = subprocess.run(command + (["--profile"] if args.profile else []), stdout=subprocess.PIPE, text=True)
        print(done.stdout, end="")
        if done.returncode or args.profile:
            return done.returncode
        result = json.loads(done.stdout.strip().splitlines()[-1][len("RESULT "):])
        s = result["seconds"]
        print(f"\n{name}: {result['users']} users x {result['items']} items; users per batch "
              f"{result['users_per_batch']['recbole']} (RecBole) -> {result['users_per_batch']['shipped']} (shipped)")
        print("| setting | seconds per validation (median) | / floor |")
        print("|---|---|---|")
        for label, seconds in s.items():
            print(f"| {label} | {seconds:.3f} | {seconds / s['floor']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
