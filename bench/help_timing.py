"""How long the command lines take to print ``--help`` (what importing the package costs before any work).

Each command runs ``--repeats`` times in a fresh process; the median, min and max wall time are reported. Writes ``bench/results/help_timing.md``.

    python bench/help_timing.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMANDS = (
    ["run_recbole_mamex.py", "--help"],
    ["-m", "dataset_prep.mmrec", "--help"],
    ["-m", "dataset_prep.coldstart", "--help"],
    ["-m", "recbole_mamex.compare", "--help"],
    ["-m", "recbole_mamex.serving", "--help"],
)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *command], cwd=HERE.parent, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--note", default="", help="a line about the machine's state, written into the results")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "help_timing.md")
    args = parser.parse_args(argv)
    rows = []
    for command in COMMANDS:
        times = [timed(command) for _ in range(args.repeats)]
        rows.append((" ".join(["python", *command]), statistics.median(times), min(times), max(times)))
        print(f"{rows[-1][0]}: median {rows[-1][1]:.2f} s", flush=True)
    lines = ["# `--help` wall time (fresh process each; median of %d)" % args.repeats, "",
             "Command: `python bench/help_timing.py` (2-core CPU; `--note` below).", "", *( [args.note, ""] if args.note else []),
             "| command | median s | min s | max s |", "|---|---|---|---|"]
    lines += [f"| `{c}` | {m:.2f} | {lo:.2f} | {hi:.2f} |" for c, m, lo, hi in rows]
    from recbole_mamex.files import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
