"""Where a training step's time goes: zero_grad, the loss (forward), backward and the optimizer step, timed apart.

    python bench/step_phases.py --variant vbpr --work /tmp/recbole-mamex-scaling/scale16
    python bench/step_phases.py --variant vbpr_sparse_adam --work /tmp/recbole-mamex-scaling/scale16

``--work`` is one scale's folder of ``bench/scaling.py`` (made there by a run at that scale); the variant is
one of ``bench/sports_scale.py``'s (its shipped defaults plus the variant's settings). Prints the median of
each phase over the timed steps (the first ``--skip`` steps left out: the optimizer's state is made at
the first), plus the data loader's time per batch. Timings only, one process: run nothing else heavy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PHASES = ("load", "zero_grad", "forward", "backward", "step")


def step_phases(model, optimizer, loader, steps: int) -> dict[str, list[float]]:
    """Seconds of each phase of the first ``steps`` training steps over ``loader``."""
    times = {phase: [] for phase in PHASES}
    model.train()
    batches = iter(loader)
    for _ in range(steps):
        stamps = [time.perf_counter()]
        batch = next(batches, None)
        if batch is None:
            break
        stamps.append(time.perf_counter())
        optimizer.zero_grad()
        stamps.append(time.perf_counter())
        loss = model.calculate_loss(batch)
        stamps.append(time.perf_counter())
        loss.backward()
        stamps.append(time.perf_counter())
        optimizer.step()
        stamps.append(time.perf_counter())
        for phase, start, end in zip(PHASES, stamps, stamps[1:]):
            times[phase].append(end - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--work", type=Path, required=True, help="one scale's folder of bench/scaling.py")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip", type=int, default=2, help="first steps left out of the medians")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    from sports_scale import VARIANTS, build, use_plain_gather, variant_spec

    if args.variant not in VARIANTS:
        raise SystemExit(f"error: --variant: expected one of {', '.join(VARIANTS)}, found {args.variant!r}")
    if args.steps <= args.skip:
        raise SystemExit(f"error: --steps must exceed --skip ({args.skip}), found {args.steps}")
    work = args.work.resolve()
    os.chdir(work)
    model_name, spec, buffered = variant_spec(args.variant)
    _, train_data, _, model, trainer = build(model_name, work, "cpu", args.seed, **spec)
    if not buffered:
        use_plain_gather(model)
    times = step_phases(model, trainer.optimizer, train_data, args.steps)
    medians = {phase: 1000 * float(np.median(values[args.skip:])) for phase, values in times.items()}
    print(f"{args.variant} at {work.name}: {type(trainer.optimizer).__name__}, {len(train_data)} batches per epoch; "
          + ", ".join(f"{phase} {ms:.1f} ms" for phase, ms in medians.items())
          + f"; step (all phases) {sum(medians.values()):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
