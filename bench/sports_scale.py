"""MAMEX at Amazon-Sports scale: epoch time, evaluation time, peak memory, and the matmul floor.

Data: the real Amazon Sports 5-core interaction graph (recbole_mamex/bundled/amazon-sports, 35,598 users, 18,357
items, 296,337 interactions) with a 20% item cold split, and GENERATED features of the real shapes
(4096-d image, 384-d text; seeded standard normal): timings only, no accuracy figure is meaningful here.

Variants, each in its own process (so peak RSS is per variant), in one run:

- MAMEX, ``tower_scope: batch``, fp32 and bf16: one full training epoch;
- MAMEX, ``tower_scope: catalogue`` (the authors' objective): ``--catalogue-batches`` batches timed, the
  epoch extrapolated from them (a full epoch takes minutes on a 2-core CPU);
- RLMultimodalRec (embedding 64, 2 layers), fp32 and bf16: one full epoch; its content projection of
  every item each step is the tower whose floor is reported;
- RecBole's LightGCN (embedding 64, 2 layers): adjacency build and one full epoch; and the build of
  the same adjacency by ``recbole_mamex.model.graph`` (tensor operations, no Python loop);
- our VBPR, MILK and CLCRec at their defaults: one full epoch each; and each again with a plain gather
  (not a config key: :func:`use_plain_gather` replaces the benchmarked model's ``feature_product``, here
  only), a fresh tensor of the batch's feature rows per step instead of the reusable buffers every shipped
  model uses, so the table shows what the buffers gain; and each with ``feature_storage: bf16`` (features
  in half the memory, float32 products).

``--epochs N`` trains each variant N epochs and reports the last (the GPU check uses 2: a GPU's first
epoch holds its warm-up).

Each MAMEX and RLMultimodalRec variant also reports its item tower's multiply-adds over the epoch (forward, plus the weight
gradient: the features need no gradient), divided by this machine's measured matmul rate for the same
shapes: the floor the epoch cannot beat. For MAMEX the rate is measured two ways: the best of 5 products
after the epoch (the machine at its fastest moment), and one product after every training step, summed
(the machine's speed at the moment of each step: this VM's speed drifts by tens of percent within
minutes, and the epoch is a sum of single timings too).

    python bench/sports_scale.py                      # CPU
    python bench/sports_scale.py --device cuda --epochs 2 --catalogue-batches 0   # GPU (bench/gpu_check.py)
    python bench/sports_scale.py --variants mamex_batch_fp32 --paired   # + fp32/bf16 interleaved in one process
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_INTERACTIONS = HERE.parent / "recbole_mamex" / "bundled" / "amazon-sports" / "sequential_data.txt"
NAME = "sports-bench"
VARIANTS = {
    "mamex_batch_fp32": {"model": "MAMEX", "tower_scope": "batch", "mixed_precision": "none"},
    "mamex_batch_bf16": {"model": "MAMEX", "tower_scope": "batch", "mixed_precision": "bf16"},
    "mamex_catalogue_fp32": {"model": "MAMEX", "tower_scope": "catalogue", "mixed_precision": "none"},
    "rlmm_fp32": {"model": "RLMultimodalRec", "mixed_precision": "none"},
    "rlmm_bf16": {"model": "RLMultimodalRec", "mixed_precision": "bf16"},
    "lightgcn": {"model": "LightGCN"},
    "vbpr": {"model": "VBPR"},
    "milk": {"model": "MILK"},
    "clcrec": {"model": "CLCRec"},
    # the same three with a fresh gather per step instead of the reusable buffers (what the buffers gain)
    "vbpr_plain_gather": {"model": "VBPR", "plain_gather": True},
    "milk_plain_gather": {"model": "MILK", "plain_gather": True},
    "clcrec_plain_gather": {"model": "CLCRec", "plain_gather": True},
    # learner: sparse_adam (lazy Adam on the embedding tables: a step updates the batch's rows only, so its
    # cost does not grow with the catalogue; see recbole_mamex/trainer/optimizer.py)
    "mamex_batch_sparse_adam": {"model": "MAMEX", "tower_scope": "batch", "mixed_precision": "none", "learner": "sparse_adam"},
    "vbpr_sparse_adam": {"model": "VBPR", "learner": "sparse_adam"},
    # both settings a user at 16x Sports would set: lazy Adam and features in half the memory
    "mamex_batch_sparse_adam_bf16_storage": {"model": "MAMEX", "tower_scope": "batch", "mixed_precision": "none",
                                             "learner": "sparse_adam", "feature_storage": "bf16"},
    "vbpr_sparse_adam_bf16_storage": {"model": "VBPR", "learner": "sparse_adam", "feature_storage": "bf16"},
    # features kept in bfloat16 (half their memory), products still in float32
    "vbpr_bf16_storage": {"model": "VBPR", "feature_storage": "bf16"},
    "milk_bf16_storage": {"model": "MILK", "feature_storage": "bf16"},
    "clcrec_bf16_storage": {"model": "CLCRec", "feature_storage": "bf16"},
}


def prepare(work: Path, interactions: Path, seed: int) -> None:
    """Write the cold-split benchmark dataset and its generated features under ``work`` (once)."""
    import pandas as pd

    from dataset_prep.coldstart import make_cold_dataset

    if (work / "dataset" / NAME / f"{NAME}.train.inter").is_file():
        return
    users, items = [], []
    with open(interactions, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            users += [fields[0]] * (len(fields) - 1)
            items += fields[1:]
    frame = pd.DataFrame({"user_id:token": users, "item_id:token": items})
    rows = max(int(i) for i in items) + 1
    rng = np.random.default_rng(seed)
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    np.save(raw / "image_feat.npy", rng.standard_normal((rows, 4096), dtype=np.float32))
    np.save(raw / "text_feat.npy", rng.standard_normal((rows, 384), dtype=np.float32))
    make_cold_dataset(
        frame, "user_id:token", "item_id:token", {"image": raw / "image_feat.npy", "text": raw / "text_feat.npy"},
        NAME, f"Amazon Sports interactions ({interactions.name}) with generated features",
        out_root=work / "dataset", properties_dir=work / "properties", seed=seed, link=True,
    )


def matmul_rate(n: int, k: int, m: int, dtype, device, repeats: int = 5) -> tuple[float, float]:
    """Multiply-adds per second of an (n x k) @ (k x m) product: the best and the median of ``repeats`` runs."""
    import torch

    a = torch.randn(n, k, device=device).to(dtype)
    b = torch.randn(k, m, device=device).to(dtype)
    for _ in range(2):
        a @ b
    seconds = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return n * k * m / min(seconds), n * k * m / float(np.median(seconds))


def tower_macs_per_item(model) -> int:
    """MAMEX's item-tower multiply-adds per item, forward: every modality's fused projection (experts + router)."""
    return sum(model.modality_dims.values()) * (model.n_experts * model.embedding_size + model.n_experts)


def floor_now(macs: float, rows: int, operand, sync) -> float:
    """Seconds ``macs`` multiply-adds take at the rate of one (rows x k) @ ``operand`` product timed now (a
    fresh left operand, one untimed warm-up): a step's floor at the machine's speed of that moment."""
    import torch

    a = torch.randn(rows, operand.shape[0], device=operand.device).to(operand.dtype)
    a @ operand
    sync()
    start = time.perf_counter()
    a @ operand
    sync()
    return (time.perf_counter() - start) * macs / (rows * operand.shape[0] * operand.shape[1])


def variant_spec(variant: str) -> tuple[str, dict, bool]:
    """(model name, config settings, whether the reusable gather buffers are on) of a :data:`VARIANTS` entry."""
    spec = dict(VARIANTS[variant])
    model_name = spec.pop("model")
    buffered = not spec.pop("plain_gather", False)
    return model_name, spec, buffered


def use_plain_gather(model) -> None:
    """Give this ``model`` (a ``MultimodalRecommender``) a ``feature_product`` that gathers the batch's feature
    rows into a fresh tensor per step, without the reusable buffers of the shipped one (same numbers: the
    ``*_plain_gather`` variants, what the buffers gain). Only this instance changes."""
    from recbole_mamex.model.layers import gathered_linear

    def plain_feature_product(weight, bias, items=None, modalities=None):
        out, start = None, 0
        for name in (model.modality_names if modalities is None else modalities):
            features = model.modality_features(name)
            block = weight[:, start : start + features.shape[1]]
            start += features.shape[1]
            part = gathered_linear(features, items, block, bias if out is None else None, None)  # no workspace
            out = part if out is None else out + part
        return out

    model.feature_product = plain_feature_product


def build(model_name: str, work: Path, device: str, seed: int, **spec):
    """Config, train/test data, model and trainer for one benchmark variant."""
    from recbole_mamex.config import Config
    from recbole_mamex.quick_start import build_run
    from recbole_mamex.trainer import get_trainer

    settings = {
        "data_path": str(work / "dataset"), "checkpoint_dir": str(work / "saved"), "seed": seed,
        "show_progress": False, "state": "WARNING", "use_gpu": device == "cuda",
        "test_candidates": None, **spec,
    }
    if model_name in ("LightGCN", "RLMultimodalRec"):
        settings["embedding_size"] = 64
    config = Config(model=model_name, dataset=NAME, config_dict=settings, cmd_args=[])
    run = build_run(config)
    trainer = get_trainer(config["MODEL_TYPE"], model_name, config)(config, run.model)
    return config, run.train_data, run.test_data, run.model, trainer


def first_batches(loader, limit: int, stamps: list | None = None):
    """``loader`` yielding only its first ``limit`` batches (0: all of them), appending to ``stamps`` (when
    given) the time each batch is handed out: a copy whose class derives from the loader's own, so RecBole's
    type checks of it still hold. Without a cap to apply or stamps to take, the loader itself."""
    if stamps is None and (not limit or limit >= len(loader)):
        return loader
    cls = type(loader)

    def batches(self):
        for batch in itertools.islice(cls.__iter__(self), limit or None):
            if stamps is not None:
                stamps.append(time.perf_counter())
            yield batch

    capped = copy.copy(loader)
    capped.__class__ = type(f"First{cls.__name__}", (cls,), {"__iter__": batches})
    return capped


def extrapolated(start: float, end: float, stamps: list, total: int) -> float:
    """A loop's seconds over all ``total`` batches from a run of its first ``len(stamps)`` (``stamps``: one
    time per batch, taken at the same point of each): the run's own time, the first batch's one-time work
    counted once (a graph model's propagation before its first evaluation batch, the optimizer's state at
    the first step), plus the missing batches at the median of the intervals between the stamps."""
    timed = len(stamps)
    if timed == 0:
        raise ValueError("extrapolated: no batch was timed (was the loop given a loader from first_batches with stamps?)")
    if timed >= total:
        return end - start
    per_batch = float(np.median(np.diff(stamps))) if timed >= 2 else (end - start) / timed
    return (end - start) + (total - timed) * per_batch


def run_paired(work: Path, device: str, seed: int) -> dict:
    """MAMEX batch scope in fp32 and in bf16, trained for one epoch each in the SAME process with their steps
    alternating on the same batches, and the reference matmul of each precision timed after every step pair.

    On a VM whose speed drifts by tens of percent within minutes, separate processes give ratios that move
    from run to run; here both precisions and both floors see the same drift, so fp32 / bf16 and
    epoch / floor are ratios measured under the same conditions.
    """
    import torch

    os.chdir(work)
    runs = {}
    for precision in ("none", "bf16"):
        config, train_data, _, model, trainer = build(
            "MAMEX", work, device, seed, tower_scope="batch", mixed_precision=precision
        )
        runs[precision] = (model, trainer.optimizer)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    spent = {p: 0.0 for p in runs}
    floor = {p: 0.0 for p in runs}
    per_item_macs = tower_macs_per_item(model)
    width = model.n_experts * model.embedding_size
    operands = {}
    for precision in runs:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        operands[precision] = torch.randn(4096, width, device=device).to(dtype)
    tower_macs = 0.0
    for model, _ in runs.values():
        model.train()
    for batch in train_data:
        batch = batch.to(config["device"])
        rows = int(torch.unique(torch.cat([batch["item_id"], batch["neg_item_id"]])).numel())
        tower_macs += 2 * per_item_macs * rows
        for precision, (model, optimizer) in runs.items():
            sync()
            start = time.perf_counter()
            optimizer.zero_grad()
            model.calculate_loss(batch).backward()
            optimizer.step()
            sync()
            spent[precision] += time.perf_counter() - start
            # the same product shape as the tower's: (rows x 4096) @ (4096 x E*d), at this moment's speed
            floor[precision] += floor_now(2 * per_item_macs * rows, rows, operands[precision], sync)
    return {
        "fp32_epoch_s": spent["none"], "bf16_epoch_s": spent["bf16"],
        "fp32_floor_s": floor["none"], "bf16_floor_s": floor["bf16"],
        "tower_gmacs_per_epoch": tower_macs / 1e9, "batches_per_epoch": len(train_data),
    }


def mamex_epoch(model, optimizer, train_data, config, limit, per_item_macs, operand, sync):
    """One MAMEX training epoch (its first ``limit`` batches when given), timed step by step with the data
    loader's work included; returns (tower rows, batches, seconds, the steps' matmul floor in seconds, each
    step's seconds)."""
    import torch

    tower_items, n_batches, elapsed, floor_interleaved, steps = 0, 0, 0.0, 0.0, []
    batches = iter(train_data)
    while not (limit and n_batches >= limit):
        sync()
        start = time.perf_counter()  # the data loader's work is part of the epoch
        batch = next(batches, None)
        if batch is None:
            break
        batch = batch.to(config["device"])
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        sync()
        steps.append(time.perf_counter() - start)
        elapsed += steps[-1]
        n_batches += 1
        items = torch.cat([batch["item_id"], batch["neg_item_id"]])
        rows = model.n_items - 1 if config["tower_scope"] == "catalogue" else int(torch.unique(items).numel())
        tower_items += rows
        # this step's floor at this moment's matmul speed (the VM's speed drifts within minutes)
        floor_interleaved += floor_now(2 * per_item_macs * rows, rows, operand, sync)
    return tower_items, n_batches, elapsed, floor_interleaved, steps


def train_epochs(figures: dict, trainer, train_data, epochs: int, sync, max_batches: int = 0) -> None:
    """``epochs`` epochs of RecBole's trainer loop; the last one is the reported ``epoch_s``. With
    ``max_batches``, each epoch runs its first ``max_batches`` batches and is extrapolated to all of them
    (:func:`extrapolated`: the first step's one-time work once, the others at their median)."""
    times = []
    timed = min(len(train_data), max_batches or len(train_data))
    for epoch in range(epochs):
        stamps = []
        loader = first_batches(train_data, max_batches, stamps)
        sync()
        start = time.perf_counter()
        trainer._train_epoch(loader, epoch, show_progress=False)
        sync()
        times.append(extrapolated(start, time.perf_counter(), stamps, len(train_data)))
    figures.update(epoch_s=times[-1], epoch_times_s=times, timed_batches=timed, extrapolated=timed < len(train_data))


def run_variant(variant: str, work: Path, device: str, catalogue_batches: int, seed: int, epochs: int = 1,
                max_train_batches: int = 0, max_eval_batches: int = 0, full_sort_batch_mb: float | None = None) -> dict:
    """One variant's figures; with ``epochs`` > 1, ``epoch_s`` is the last epoch (on a GPU the first holds
    the warm-up: kernel selection, allocator growth) and ``epoch_times_s`` lists all of them. With
    ``max_train_batches`` / ``max_eval_batches``, the epoch / the test evaluation runs that many batches and
    is extrapolated to all of them (``timed_batches``, ``eval_timed_batches`` say how many ran)."""
    import torch

    os.chdir(work)
    model_name, spec, buffered = variant_spec(variant)
    if full_sort_batch_mb is not None:
        spec["full_sort_batch_mb"] = full_sort_batch_mb
    t0 = time.perf_counter()
    config, train_data, test_data, model, trainer = build(model_name, work, device, seed, **spec)
    if not buffered:
        use_plain_gather(model)
    load_s = time.perf_counter() - t0  # data, model and trainer
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    figures = {"variant": variant, "load_s": load_s, "batches_per_epoch": len(train_data)}
    after_peak = []

    if model_name == "MAMEX":
        per_item_macs = tower_macs_per_item(model)
        model.train()
        optimizer = trainer.optimizer
        caps = [cap for cap in (catalogue_batches if config["tower_scope"] == "catalogue" else 0, max_train_batches) if cap]
        limit = min(caps) if caps else None
        dtype = torch.bfloat16 if config["mixed_precision"] == "bf16" else torch.float32
        width = model.n_experts * model.embedding_size
        operand = torch.randn(4096, width, device=device).to(dtype)
        epoch_times = []
        for _ in range(epochs):
            tower_items, n_batches, elapsed, floor_interleaved, steps = mamex_epoch(
                model, optimizer, train_data, config, limit, per_item_macs, operand, sync
            )
            # the steps' end times on a clock of training time only (the floors timed between them left out)
            epoch_times.append(extrapolated(0.0, elapsed, list(np.cumsum(steps)), len(train_data)))
        figures["epoch_times_s"] = epoch_times
        scale = len(train_data) / n_batches
        figures.update(
            timed_batches=n_batches,
            epoch_s=epoch_times[-1],
            extrapolated=n_batches < len(train_data),
            tower_gmacs_per_epoch=2 * per_item_macs * tower_items * scale / 1e9,
            floor_interleaved_s=floor_interleaved * scale,
        )
        rows = max(1, tower_items // n_batches)
        # best of 5 (the floor), and the spread of the same product over 20 runs (how noisy the machine is)
        rate, _ = matmul_rate(rows, 4096, width, dtype, device)
        best_of_20, median_of_20 = matmul_rate(rows, 4096, width, dtype, device, repeats=20)
        figures.update(
            matmul_gmacs_per_s=rate / 1e9, floor_s=figures["tower_gmacs_per_epoch"] * 1e9 / rate,
            matmul_gmacs_per_s_best_of_20=best_of_20 / 1e9, matmul_gmacs_per_s_median_of_20=median_of_20 / 1e9,
        )
    elif model_name == "RLMultimodalRec":
        train_epochs(figures, trainer, train_data, epochs, sync, max_train_batches)
        d, m = model.latent_dim, len(model.modality_names)
        gate_out = model.gate.out_features
        per_step = (model.n_items * (sum(model.modality_dims.values()) * d + m * d * gate_out))
        figures["tower_gmacs_per_epoch"] = 2 * per_step * len(train_data) / 1e9
        dtype = torch.bfloat16 if config["mixed_precision"] == "bf16" else torch.float32

        def rlmm_floor():
            rate, _ = matmul_rate(model.n_items, 4096, d, dtype, device)
            figures.update(matmul_gmacs_per_s=rate / 1e9, floor_s=figures["tower_gmacs_per_epoch"] * 1e9 / rate)

        # after peak RSS is read: its operand is a catalogue-sized [n_items, 4096] matrix (4.8 GB at 16x)
        after_peak.append(rlmm_floor)
    else:
        if model_name == "LightGCN":
            from recbole_mamex.model.graph import dataset_adjacency

            t0 = time.perf_counter()
            model.get_norm_adj_mat()
            figures["adjacency_build_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dataset_adjacency(train_data._dataset)
            figures["our_adjacency_build_s"] = time.perf_counter() - t0
        train_epochs(figures, trainer, train_data, epochs, sync, max_train_batches)

    model.eval()
    stamps = []
    loader = first_batches(test_data, max_eval_batches, stamps)
    sync()
    start = time.perf_counter()
    result = trainer.evaluate(loader, load_best_model=False, candidates="all")
    sync()
    figures["eval_s"] = extrapolated(start, time.perf_counter(), stamps, len(test_data))
    figures.update(eval_timed_batches=len(stamps), eval_batches=len(test_data))
    # on the timed users only when the evaluation was capped
    figures["eval_recall@20_all" if len(stamps) >= len(test_data) else "eval_recall@20_timed_users"] = float(result["recall@20"])
    figures["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    if device == "cuda":
        figures["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 1024**3
        figures["gpu"] = torch.cuda.get_device_name()
    for measure in after_peak:  # the benchmark's own reference products, kept out of the model's peaks
        measure()
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interactions", type=Path, default=DEFAULT_INTERACTIONS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/recbole-mamex-bench"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--catalogue-batches", type=int, default=4, help="catalogue-scope batches timed (0: the whole epoch)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per variant; the last one is reported")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--max-train-batches", type=int, default=0,
                        help="training batches timed per epoch, the epoch extrapolated from them (0: the whole epoch)")
    parser.add_argument("--max-eval-batches", type=int, default=0,
                        help="test evaluation batches timed, the evaluation extrapolated from them (0: all)")
    parser.add_argument("--full-sort-batch-mb", type=float,
                        help="full_sort_batch_mb of the evaluation (default: the shipped one; the tests set a tiny one "
                             "to get many evaluation batches from a tiny catalogue)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--paired", action="store_true",
                        help="also run MAMEX fp32 and bf16 interleaved in one process (ratios under the same drift)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work = args.work.resolve()

    if args.variant == "paired":
        print("RESULT " + json.dumps(run_paired(args.work, args.device, args.seed)))
        return
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args.work, args.device, args.catalogue_batches, args.seed, args.epochs,
                                                 args.max_train_batches, args.max_eval_batches, args.full_sort_batch_mb)))
        return

    t0 = time.perf_counter()
    prepare(args.work, args.interactions.resolve(), args.seed)
    print(f"data ready in {time.perf_counter() - t0:.1f} s ({args.work})", flush=True)
    results = {}
    def in_subprocess(variant):
        print(f"running {variant} ...", flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--work", str(args.work), "--device", args.device,
             "--catalogue-batches", str(args.catalogue_batches), "--seed", str(args.seed), "--epochs", str(args.epochs),
             "--max-train-batches", str(args.max_train_batches), "--max-eval-batches", str(args.max_eval_batches)]
            + (["--full-sort-batch-mb", str(args.full_sort_batch_mb)] if args.full_sort_batch_mb is not None else []),
            capture_output=True, text=True,
        )
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            print(proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"{variant} failed")
        result = json.loads(lines[-1][len("RESULT "):])
        print("  " + json.dumps(result), flush=True)
        return result

    for variant in args.variants:
        results[variant] = in_subprocess(variant)
    paired = in_subprocess("paired") if args.paired else None

    print("\n| variant | epoch s | eval s | peak RSS GB | tower GMAC/epoch | floor s (best of 5) | epoch / floor "
          "| floor s (per step) | epoch / floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant, r in results.items():
        floor, per_step = r.get("floor_s"), r.get("floor_interleaved_s")
        epoch = f"{r['epoch_s']:.1f}" + (f" (from {r['timed_batches']} of {r['batches_per_epoch']} batches)" if r["extrapolated"] else "")
        row = f"| {variant} | {epoch} | {r['eval_s']:.1f} | {r['peak_rss_gb']:.2f} | "
        row += f"{r['tower_gmacs_per_epoch']:.0f} | {floor:.1f} | {r['epoch_s'] / floor:.2f} | " if floor else "- | - | - | "
        row += f"{per_step:.1f} | {r['epoch_s'] / per_step:.2f} |" if per_step else "- | - |"
        print(row)
    for variant, r in results.items():
        if "matmul_gmacs_per_s_median_of_20" in r:
            print(f"{variant}: the tower's product alone, 20 runs: best {r['matmul_gmacs_per_s_best_of_20']:.0f}, "
                  f"median {r['matmul_gmacs_per_s_median_of_20']:.0f} GMAC/s")
    fp32, bf16 = results.get("mamex_batch_fp32"), results.get("mamex_batch_bf16")
    cat, lgcn = results.get("mamex_catalogue_fp32"), results.get("lightgcn")
    print()
    if fp32 and cat:
        print(f"catalogue / batch epoch time: {cat['epoch_s'] / fp32['epoch_s']:.2f}x")
    if fp32 and bf16:
        print(f"fp32 / bf16 epoch time: {fp32['epoch_s'] / bf16['epoch_s']:.2f}x")
    rl32, rl16 = results.get("rlmm_fp32"), results.get("rlmm_bf16")
    if rl32 and lgcn:
        print(f"RLMultimodalRec fp32 / LightGCN epoch time: {rl32['epoch_s'] / lgcn['epoch_s']:.2f}x, "
              f"peak RSS {rl32['peak_rss_gb']:.2f} vs {lgcn['peak_rss_gb']:.2f} GB")
    if rl32 and rl16:
        print(f"RLMultimodalRec fp32 / bf16 epoch time: {rl32['epoch_s'] / rl16['epoch_s']:.2f}x")
    if fp32 and lgcn:
        print(f"MAMEX batch fp32 / LightGCN epoch time: {fp32['epoch_s'] / lgcn['epoch_s']:.2f}x")
    if lgcn:
        print(f"adjacency build: RecBole LightGCN {lgcn['adjacency_build_s']:.2f} s, "
              f"recbole_mamex.model.graph {lgcn['our_adjacency_build_s']:.3f} s "
              f"({lgcn['adjacency_build_s'] / lgcn['our_adjacency_build_s']:.1f}x faster)")
    if paired:
        print(
            f"\npaired (MAMEX batch scope, fp32 and bf16 steps alternating in one process, floors timed between steps): "
            f"fp32 epoch {paired['fp32_epoch_s']:.1f} s, floor {paired['fp32_floor_s']:.1f} s, "
            f"epoch / floor {paired['fp32_epoch_s'] / paired['fp32_floor_s']:.2f}; "
            f"bf16 epoch {paired['bf16_epoch_s']:.1f} s, floor {paired['bf16_floor_s']:.1f} s, "
            f"epoch / floor {paired['bf16_epoch_s'] / paired['bf16_floor_s']:.2f}; "
            f"fp32 / bf16 epoch time {paired['fp32_epoch_s'] / paired['bf16_epoch_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
