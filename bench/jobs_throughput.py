"""Throughput of ``compare --jobs N`` against ``--jobs 1``: the same comparison, timed end to end.

    python bench/jobs_throughput.py                       # lastfm-2k-cold, BPR VBPR MAMEX x 2 seeds, 10 epochs
    python bench/jobs_throughput.py --jobs 1 2 --epochs 10 --models BPR VBPR MAMEX --seeds 2020 2021

Each setting runs ``python -m recbole_mamex.compare`` in a fresh process into its own results folder (the
shipped defaults, except a fixed ``--epochs`` with early stopping off, ``stopping_step`` = epochs, so both
settings train exactly the same epochs and the timings compare work, not stopping luck). ``--jobs 1``:
one run at a time with torch's threads over all CPUs; ``--jobs N``: N runs at once, CPUs // N threads
each. Printed: wall time per setting, runs per minute and the ratio to ``--jobs 1``; whether the records
agree (a thread count changes floating-point sums, so metrics may differ in the last digits).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm-2k-cold")
    parser.add_argument("--models", nargs="+", default=["BPR", "VBPR", "MAMEX"])
    parser.add_argument("--seeds", nargs="+", default=["2020", "2021"])
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--work", type=Path, default=ROOT / "bench_work" / "jobs_throughput")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    print(f"{args.dataset}: {' '.join(args.models)} x seeds {' '.join(args.seeds)}, {args.epochs} epochs each; "
          f"{os.cpu_count()} CPUs")
    results = {}
    for jobs in args.jobs:
        out = args.work / f"jobs{jobs}"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "recbole_mamex.compare", "--dataset", args.dataset, "--models", *args.models,
                   "--seeds", *args.seeds, "--out", str(out), "--jobs", str(jobs), f"--epochs={args.epochs}",
                   f"--stopping_step={args.epochs}"]
        start = time.perf_counter()
        subprocess.run(command, cwd=args.work, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        records = {p.name: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}
        results[jobs] = (wall, records)
        print(f"--jobs {jobs}: {wall:.0f} s for {len(records)} runs", flush=True)
    base_wall, base_records = results[args.jobs[0]]
    print(f"\n| --jobs | wall s | runs / min | throughput vs --jobs {args.jobs[0]} | torch threads per run | "
          "records equal to the first setting's |")
    print("|---|---|---|---|---|---|")
    for jobs, (wall, records) in results.items():
        threads = sorted({r.get("torch_threads") for r in records.values()})
        same = sum(records[name]["results"] == base_records.get(name, {}).get("results") for name in records)
        print(f"| {jobs} | {wall:.0f} | {60 * len(records) / wall:.2f} | {base_wall / wall:.2f}x | {threads} | "
              f"{same}/{len(records)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
