"""Validation curves on Last.fm-2K's cold split, to choose ``stopping_step`` / ``eval_step`` defaults.

Each model trains ``--epochs`` epochs at its shipped defaults with early stopping switched off
(``stopping_step`` = epochs, ``eval_step: 1``), seed ``--seed``; the cold-valid ``valid_metric``
(NDCG@20) after every epoch is saved to ``<out>/curves/<Model>-seed<seed>.json`` as soon as the model
finishes (a model already there is not trained again). Then, for each rule (patience p validations,
every e epochs, RecBole's rule: stop after p validations without a new best), the curve is replayed: the
epoch the rule stops at, the best epoch it keeps, and how far its score is below the curve's best over
all ``--epochs``.

    python bench/early_stopping.py                               # the default models, seed 2020
    python bench/early_stopping.py --models MAMEX BPR --epochs 60

Writes ``<out>/early_stopping.md`` and ``<out>/early_stopping_curves.png`` (default out: bench/results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

DEFAULT_MODELS = ("MAMEX", "RLMultimodalRec", "VBPR", "CLCRec", "MILK", "BPR", "LightGCN")
RULES = ((5, 1), (10, 1), (20, 1), (30, 1), (50, 1), (5, 5), (10, 5))  # (patience in validations, eval_step)


def train_curve(model: str, dataset: str, seed: int, epochs: int, work: Path) -> dict:
    from recbole_mamex.quick_start import run_recbole_mamex

    curve, start = [], time.time()

    def on_epoch(epoch, score):
        curve.append({"epoch": int(epoch), "valid": float(score), "elapsed_s": time.time() - start})
        print(f"  {model}: epoch {epoch} valid {score:.4f} ({time.time() - start:.0f} s)", flush=True)

    run_recbole_mamex(
        model=model, dataset=dataset, saved=False, cmd_args=[], callback_fn=on_epoch,
        config_dict={"seed": seed, "epochs": epochs, "stopping_step": epochs, "eval_step": 1, "show_progress": False,
                     "state": "WARNING", "data_path": str(work / "dataset"), "checkpoint_dir": str(work / "saved")},
    )
    return {"model": model, "dataset": dataset, "seed": seed, "epochs": epochs, "curve": curve,
            "wall_s": time.time() - start}


def replay(curve: list[dict], patience: int, eval_step: int) -> dict:
    """What RecBole's early stopping (``early_stopping`` with ``stopping_step`` = patience) would do on
    ``curve`` when validating every ``eval_step`` epochs: stop epoch, kept best epoch and its score."""
    best, best_epoch, waited, stop = None, None, 0, None
    for point in curve:
        if (point["epoch"] + 1) % eval_step:
            continue
        if best is None or point["valid"] >= best:  # RecBole: a tie is a new best
            best, best_epoch, waited = point["valid"], point["epoch"], 0
        else:
            waited += 1
            if waited > patience:  # RecBole: stop when cur_step > max_step
                stop = point["epoch"]
                break
    return {"stop_epoch": stop, "best_epoch": best_epoch, "best": best}


def report(curves: list[dict], out: Path) -> str:
    lines = [
        "# Validation curves and early-stopping rules (lastfm-2k-cold, cold-valid NDCG@20)",
        "",
        f"Command: `python bench/early_stopping.py --epochs {curves[0]['epochs']} --seed {curves[0]['seed']}` "
        "(shipped defaults per model, early stopping off, one validation per epoch).",
        "",
        "| model | best epoch (of all) | best valid | s per epoch | "
        + " | ".join(f"p={p}, every {e}" for p, e in RULES) + " |",
        "|---|---|---|---|" + "---|" * len(RULES),
    ]
    for record in curves:
        curve = record["curve"]
        top = max(curve, key=lambda c: c["valid"])
        per_epoch = record["wall_s"] / max(len(curve), 1)
        cells = []
        for patience, step in RULES:
            r = replay(curve, patience, step)
            if r["best"] is None:
                cells.append("no validation")
                continue
            stop = "ran out" if r["stop_epoch"] is None else f"stop {r['stop_epoch']}"
            cells.append(f"{stop}, best {r['best_epoch']}, {100 * (r['best'] - top['valid']) / top['valid']:+.1f}%")
        lines.append(f"| {record['model']} | {top['epoch']} | {top['valid']:.4f} | {per_epoch:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Each rule cell: the epoch it stops at, the best epoch it keeps, and the kept score relative to the "
              "best of the whole curve (0.0%: it found the curve's best).", ""]
    return "\n".join(lines)


def plot(curves: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for record in curves:
        ax.plot([c["epoch"] for c in record["curve"]], [c["valid"] for c in record["curve"]], label=record["model"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("cold-valid NDCG@20")
    ax.set_title(f"lastfm-2k-cold, seed {curves[0]['seed']}, shipped defaults")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--dataset", default="lastfm-2k-cold")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, default=Path("bench_work"), help="datasets and checkpoints of the runs")
    args = parser.parse_args(argv)
    from recbole_mamex.files import atomic_write_text

    store = args.out / "curves"
    store.mkdir(parents=True, exist_ok=True)
    curves = []
    for model in args.models:
        path = store / f"{model}-seed{args.seed}.json"
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is None or record["epochs"] != args.epochs or record["dataset"] != args.dataset:
            print(f"{model}: training {args.epochs} epochs", flush=True)
            record = train_curve(model, args.dataset, args.seed, args.epochs, args.work)
            atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        curves.append(record)
    atomic_write_text(args.out / "early_stopping.md", report(curves, args.out))
    plot(curves, args.out / "early_stopping_curves.png")
    print(report(curves, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
