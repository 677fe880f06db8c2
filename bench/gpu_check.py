"""The GPU check: everything device-sensitive, in one command, with its figures written to one Markdown file.

On a GPU machine (``bench/gpu_check.sh`` installs what such a machine lacks first):

    python bench/gpu_check.py --device cuda --out bench/results

Steps, each reported even when an earlier one failed:

1. ``pytest -m cuda`` (``tests/test_cuda.py``): training steps of our models and RecBole's, evaluation of
   the same checkpoint on the GPU and on a CPU-only process, SparseMoE's gather buffers, bf16 with and
   without RecBole's ``enable_amp``, resume and same-seed determinism under deterministic algorithms;
2. ``bench/sports_scale.py`` at Amazon-Sports scale (the real interaction graph in recbole_mamex/bundled/amazon-sports, generated
   features of the real shapes), ``--epochs 2``: MAMEX batch scope fp32 and bf16, catalogue scope,
   RLMultimodalRec fp32 and bf16, LightGCN and VBPR; epoch time (the second epoch), evaluation of all
   users, peak GPU memory;
3. one-process DDP through RecBole's path (``--nproc=1 --world_size=1``: NCCL on a GPU, gloo on a CPU);
4. MAMEX trained on the device, then its checkpoint served by a process that sees no GPU.

``--device cpu --tiny`` is the dry run: the same steps on this CPU, with a generated small interaction
graph instead of Sports' and pytest only collecting the CUDA cases; the test suite runs it.

The report goes to ``<out>/gpu_<device name>.md``; the exit status is 1 when any step failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
DATASET = "sports-bench"  # bench/sports_scale.py's dataset name
SPORTS_VARIANTS = [
    "mamex_batch_fp32", "mamex_batch_bf16", "mamex_catalogue_fp32", "rlmm_fp32", "rlmm_bf16", "lightgcn", "vbpr",
]
TARGETS = {  # the targets on one H200: recorded against the figures, never asserted
    "MAMEX batch-scope bf16 Sports epoch": "<= 1.5 s, and <= 2x LightGCN's epoch",
    "full-sort evaluation of all Sports users": "<= 1 s",
}


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine() or "cpu"


def file_name(name: str) -> str:
    return "gpu_" + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower() + ".md"


class Step:
    """One step's outcome: ok, the lines it adds to the report, seconds."""

    def __init__(self, title: str):
        self.title, self.ok, self.lines, self.seconds = title, True, [], 0.0

    def __enter__(self):
        print(f"== {self.title}", flush=True)
        self.start = time.perf_counter()
        return self

    def __exit__(self, kind, error, _traceback):
        self.seconds = time.perf_counter() - self.start
        if error is not None:
            self.ok = False
            self.lines.append(f"failed: {type(error).__name__}: {str(error)[-2000:]}")
        print(f"   {'ok' if self.ok else 'FAILED'} in {self.seconds:.0f} s", flush=True)
        return error is None or isinstance(error, Exception)


def run(command: list[str], cwd: Path, env: dict | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    print("   $ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def step_tests(step: Step, device: str, tiny: bool) -> None:
    env = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py", "-m", "cuda"]
    if tiny or device != "cuda":
        command.append("--collect-only")  # the dry run: the CUDA cases are found and selected
    proc = run(command, REPO, env)
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-300:]
    step.lines.append(f"`{' '.join(command[2:])}`: {tail}")
    if proc.returncode != 0:
        step.ok = False
        step.lines += ["```", (proc.stdout + proc.stderr)[-4000:], "```"]


def write_tiny_interactions(path: Path, n_users: int = 300, n_items: int = 200, per_user: int = 12, seed: int = 0) -> Path:
    """A small graph in the Sports file's layout (one line per user: user then items) for the dry run."""
    import numpy as np

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [" ".join([str(u + 1)] + [str(i + 1) for i in rng.choice(n_items, per_user, replace=False)]) for u in range(n_users)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def step_sports(step: Step, device: str, work: Path, interactions: Path, seed: int) -> dict:
    sys.path.insert(0, str(BENCH))
    from sports_scale import prepare

    prepare(work, interactions, seed)
    results = {}
    for variant in SPORTS_VARIANTS:
        proc = run(
            [sys.executable, str(BENCH / "sports_scale.py"), "--variant", variant, "--work", str(work),
             "--device", device, "--epochs", "2", "--catalogue-batches", "0", "--seed", str(seed)],
            REPO,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            step.ok = False
            step.lines += [f"{variant} failed:", "```", proc.stderr[-3000:], "```"]
            continue
        results[variant] = json.loads(lines[-1][len("RESULT "):])
        print("   " + json.dumps(results[variant]), flush=True)
    step.lines += [
        "| variant | epoch 1 s | epoch 2 s | evaluation of all users s | peak GPU GB | peak RSS GB |",
        "|---|---|---|---|---|---|",
    ]
    for variant, r in results.items():
        times = r.get("epoch_times_s") or [r["epoch_s"]]
        gpu = f"{r['peak_gpu_gb']:.2f}" if "peak_gpu_gb" in r else "-"
        step.lines.append(
            f"| {variant} | {times[0]:.3f} | {times[-1]:.3f} | {r['eval_s']:.3f} | {gpu} | {r['peak_rss_gb']:.2f} |"
        )
    ratios = []
    if {"mamex_batch_bf16", "lightgcn"} <= set(results):
        ratios.append(f"MAMEX batch bf16 / LightGCN epoch: {results['mamex_batch_bf16']['epoch_s'] / results['lightgcn']['epoch_s']:.2f}x")
    if {"mamex_catalogue_fp32", "mamex_batch_fp32"} <= set(results):
        ratios.append(f"MAMEX catalogue / batch scope epoch (fp32): {results['mamex_catalogue_fp32']['epoch_s'] / results['mamex_batch_fp32']['epoch_s']:.2f}x")
    if {"mamex_batch_fp32", "mamex_batch_bf16"} <= set(results):
        ratios.append(f"MAMEX fp32 / bf16 epoch: {results['mamex_batch_fp32']['epoch_s'] / results['mamex_batch_bf16']['epoch_s']:.2f}x")
    step.lines += [""] + [f"- {line}" for line in ratios]
    return results


def cli(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return run([sys.executable, str(REPO / "run_recbole_mamex.py"), *args], cwd, env, timeout)


def common_args(device: str, work: Path) -> list[str]:
    return [f"--dataset={DATASET}", f"--data_path={work / 'dataset'}", f"--use_gpu={device == 'cuda'}",
            "--show_progress=False", "--epochs=2", "--state=WARNING"]


def step_ddp(step: Step, device: str, work: Path) -> None:
    from recbole_mamex.distributed import free_port

    proc = cli(["--model=MAMEX", *common_args(device, work), "--nproc=1", "--world_size=1", f"--port={free_port()}",
                f"--checkpoint_dir={work / 'saved-ddp'}"], work)
    backend = "NCCL" if device == "cuda" else "gloo"
    if proc.returncode != 0:
        step.ok = False
        step.lines += [f"MAMEX, one-process DDP ({backend}) failed:", "```", proc.stderr[-3000:], "```"]
        return
    tests = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("test")]
    step.lines.append(f"MAMEX, 2 epochs, one-process DDP ({backend}): ok; " + (tests[0] if tests else "no test line printed"))


def step_serve_on_cpu(step: Step, device: str, work: Path) -> None:
    saved = work / "saved-serve"
    proc = cli(["--model=MAMEX", *common_args(device, work), f"--checkpoint_dir={saved}"], work)
    if proc.returncode != 0:
        step.ok = False
        step.lines += ["training MAMEX failed:", "```", proc.stderr[-3000:], "```"]
        return
    (checkpoint,) = [p for p in saved.glob("MAMEX-*.pth") if not p.name.endswith("-last.pth")]
    users = ["1", "2", "3"]

    def serve(env):
        command = [sys.executable, "-m", "recbole_mamex.serving", str(checkpoint), "--users", *users, "--k", "5", "--candidates", "all"]
        start = time.perf_counter()
        done = run(command, work, {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **env})
        return done, time.perf_counter() - start

    on_cpu, cpu_s = serve({"CUDA_VISIBLE_DEVICES": ""})
    if on_cpu.returncode != 0:
        step.ok = False
        step.lines += ["serving on a CPU-only process failed:", "```", on_cpu.stderr[-3000:], "```"]
        return
    here, here_s = serve({})
    same = here.returncode == 0 and here.stdout == on_cpu.stdout
    step.lines.append(
        f"MAMEX trained on {device}, served by a process that sees no GPU: ok ({cpu_s:.1f} s, {len(on_cpu.stdout.splitlines())} lines); "
        f"the same recommendations as served on {device} ({here_s:.1f} s): {'yes' if same else 'NO'}"
    )
    if not same:
        step.ok = False
        step.lines += ["```", "cpu:", on_cpu.stdout[-1500:], f"{device}:", (here.stdout + here.stderr)[-1500:], "```"]


def environment(device: str) -> list[str]:
    import torch

    lines = [f"- Python {platform.python_version()}, torch {torch.__version__}, {platform.platform()}"]
    try:
        import recbole

        lines.append(f"- RecBole {recbole.__version__}")
    except ImportError:
        lines.append("- RecBole: not importable")
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        lines.append(f"- GPU: {props.name}, {props.total_memory / 1024**3:.0f} GiB, {props.multi_processor_count} SMs, CUDA {torch.version.cuda}")
    lines.append(f"- CPU cores: {os.cpu_count()}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the dry run: a small generated graph, CUDA tests only collected")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="folder for gpu_<device name>.md")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a fresh one under /tmp)")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--skip", nargs="*", default=[], choices=["tests", "sports", "ddp", "serve"])
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA GPU (torch " + torch.__version__ + "); "
              "use --device cpu --tiny for the dry run", file=sys.stderr)
        return 2
    work = (args.work or Path(f"/tmp/recbole-mamex-gpu-check-{'tiny' if args.tiny else 'sports'}")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    interactions = (
        write_tiny_interactions(work / "tiny" / "sequential_data.txt") if args.tiny
        else REPO / "recbole_mamex" / "bundled" / "amazon-sports" / "sequential_data.txt"
    )
    started = time.perf_counter()
    steps = []
    if "tests" not in args.skip:
        with Step("1. device-sensitive tests (pytest -m cuda)") as step:
            step_tests(step, args.device, args.tiny)
        steps.append(step)
    if "sports" not in args.skip:
        title = "2. Amazon-Sports scale, 2 epochs" if not args.tiny else "2. a generated small graph, 2 epochs (dry run)"
        with Step(title) as step:
            step_sports(step, args.device, work, interactions, args.seed)
        steps.append(step)
    if "ddp" not in args.skip:
        with Step("3. one-process DDP") as step:
            step_ddp(step, args.device, work)
        steps.append(step)
    if "serve" not in args.skip:
        with Step("4. trained on the device, served on a CPU") as step:
            step_serve_on_cpu(step, args.device, work)
        steps.append(step)

    name = device_name(args.device)
    report = [
        f"# GPU check on {name}" + (" (dry run, --tiny)" if args.tiny else ""),
        "",
        f"Command: `python bench/gpu_check.py --device {args.device}{' --tiny' if args.tiny else ''}` "
        f"({time.strftime('%Y-%m-%d')}, {time.perf_counter() - started:.0f} s in all)",
        "",
        *environment(args.device),
        "",
    ]
    if not args.tiny:
        report += ["Targets (recorded, not asserted): " + "; ".join(f"{k} {v}" for k, v in TARGETS.items()), ""]
    for step in steps:
        report += [f"## {step.title}: {'ok' if step.ok else 'FAILED'} ({step.seconds:.0f} s)", "", *step.lines, ""]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / file_name(name + ("-tiny" if args.tiny else ""))
    path.write_text("\n".join(report), encoding="utf-8")
    print(f"report: {path}")
    return 0 if all(step.ok for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
