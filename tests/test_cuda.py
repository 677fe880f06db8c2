"""The device-sensitive paths, on every device this host has: CPU always, CUDA where it is visible.

``pytest -m cuda`` selects the CUDA cases (``bench/gpu_check.py`` runs them on a GPU machine); without a
visible GPU they are skipped, and the CPU cases run in the ordinary suite. Covered: training steps of our
models and RecBole's, evaluation (the same checkpoint evaluated on the GPU and, in a process that sees no
GPU, on the CPU), SparseMoE's reusable gather buffers, bf16 with and without RecBole's ``enable_amp``,
resume, same-seed determinism under ``torch.use_deterministic_algorithms``, and serving a GPU-trained
checkpoint on a CPU.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recbole_mamex.model.layers import SparseMoE
from recbole_mamex.quick_start import run_recbole_mamex

from helpers import FAST

HAS_CUDA = torch.cuda.is_available()
CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="needs a visible CUDA GPU")])
DEVICES = [pytest.param("cpu"), CUDA]
REPO = Path(__file__).resolve().parents[1]

# eval every epoch, no early stop within the run, metrics unrounded
CONFIG = {**FAST, "epochs": 3, "eval_step": 1, "stopping_step": 10, "metric_decimal_place": 12}

TRAINED = [
    ("MAMEX", {}),
    ("MAMEX", {"tower_scope": "catalogue"}),
    ("MAMEX", {"mixed_precision": "bf16"}),
    ("MAMEX", {"mixed_precision": "bf16", "enable_amp": True}),
    ("RLMultimodalRec", {}),
    ("RLMultimodalRec", {"mixed_precision": "bf16"}),
    ("VBPR", {}),
    ("VBPR", {"learner": "sparse_adam"}),  # lazy Adam: SparseAdam's sparse updates on the device
    ("MAMEX", {"learner": "sparse_adam"}),
    ("MILK", {}),
    ("CLCRec", {}),
    ("FREEDOM", {}),
    ("ALDI", {"teacher_epochs": 2}),
    ("DropoutNet", {"teacher_epochs": 2}),
    ("LightGCN", {}),
    ("BPR", {}),
]


def settings(device: str, **extra) -> dict:
    return {**CONFIG, "use_gpu": device == "cuda", "gpu_id": "0", **extra}


@pytest.fixture
def deterministic():
    """``torch.use_deterministic_algorithms`` for the test; on CUDA cuBLAS needs a fixed workspace, set by
    ``bench/gpu_check.py`` before the process starts (a test cannot set it after cuBLAS is loaded)."""
    if HAS_CUDA and os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
        pytest.skip("CUBLAS_WORKSPACE_CONFIG=:4096:8 must be set before the process starts (bench/gpu_check.py does)")
    before = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # multi-threaded CPU float sums are not bit-reproducible
    yield
    torch.use_deterministic_algorithms(before)
    torch.set_num_threads(threads)


def weights_of(result) -> dict:
    return torch.load(result["model_file"], map_location="cpu", weights_only=True)["state_dict"]


def on_a_cpu_only_host(model_file: str, users: list[str]) -> dict:
    """Evaluate ``model_file`` on test (every candidate set) and serve ``users`` in a process that sees no GPU."""
    code = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from recbole_mamex import compat; compat.apply_all()
import torch
assert not torch.cuda.is_available()
from recbole_mamex.quick_start import load_data_and_model
from recbole_mamex.serving import recommend
from recbole_mamex.trainer import get_trainer
config, model, _, _, _, test_data = load_data_and_model({model_file!r})
assert config["device"].type == "cpu" and all(p.device.type == "cpu" for p in model.parameters())
trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model)
metrics = {{kind: dict(trainer.evaluate(test_data, load_best_model=False, show_progress=False, candidates=kind))
            for kind in ("cold", "warm", "all")}}
recs = recommend({model_file!r}, {users!r}, k=5, candidates="all")
print("RESULT " + json.dumps({{"metrics": metrics, "recs": {{u: [r.item for r in v] for u, v in recs.items()}}}}))
"""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gather_buffers_on_device(device, dtype):
    """SparseMoE's reused gather and gradient buffers give plain autograd's outputs and gradients on the
    device, over steps whose row counts grow and shrink (the buffers are resized, then reused)."""
    torch.manual_seed(0)
    moe = SparseMoE(in_dim=48, out_dim=6, n_experts=4, top_k=2).to(device)
    source = torch.randn(300, 48, device=device).to(dtype)
    plain = SparseMoE(in_dim=48, out_dim=6, n_experts=4, top_k=2).to(device)
    plain.load_state_dict(moe.state_dict())
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    tolerance = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for n in (40, 120, 7, 120, 260):
        rows = torch.randperm(300, device=device)[:n]
        weight = torch.randn(n, 6, device=device)
        moe.zero_grad()
        plain.zero_grad()
        with autocast:
            h, _, _ = moe(source, rows)
        # the plain path: an input that needs a gradient takes nn.Linear on the gathered rows
        x = source[rows].detach().requires_grad_(True)
        with autocast:
            expected, _, _ = plain(x)
        (h * weight).sum().backward()
        (expected * weight).sum().backward()
        assert h.device.type == device
        torch.testing.assert_close(h, expected, **tolerance)
        torch.testing.assert_close(moe.projection.weight.grad, plain.projection.weight.grad, **tolerance)
        torch.testing.assert_close(moe.projection.bias.grad, plain.projection.bias.grad, **tolerance)


CASES = [pytest.param("cpu", "MAMEX", {}, id="cpu-MAMEX")] + [
    pytest.param(*CUDA.values, model, extra, marks=CUDA.marks, id=f"cuda-{model}-" + ("-".join(f"{k}={v}" for k, v in extra.items()) or "default"))
    for model, extra in TRAINED
]


@pytest.mark.parametrize("device, model_name, extra", CASES)
def test_training_and_evaluation_on_device(cold_tiny, workdir, device, model_name, extra):
    """Training steps run on the device (weights there, finite metrics); the saved checkpoint evaluated on
    a CPU-only host gives the device's test metrics, and serves there."""
    result = run_recbole_mamex(model_name, "tiny-cold", config_dict=settings(device, **extra), cmd_args=[])
    config = result["config"]
    assert config["device"].type == device
    assert all(math.isfinite(v) for v in result["best_valid_result"].values())
    state = torch.load(result["model_file"], map_location="cpu", weights_only=True)["state_dict"]
    assert state and all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    on_cpu = on_a_cpu_only_host(result["model_file"], ["1", "2", "3"])
    for kind, metrics in result["test_result_by_candidates"].items():
        for name, value in metrics.items():
            assert on_cpu["metrics"][kind][name] == pytest.approx(float(value), abs=2e-3), (kind, name)
    assert all(len(items) == 5 for items in on_cpu["recs"].values())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model_name", ["MAMEX", "RLMultimodalRec"])
def test_same_seed_same_weights(cold_tiny, workdir, deterministic, device, model_name):
    """With deterministic algorithms on, two runs with one seed end with identical weights and metrics."""
    first = run_recbole_mamex(model_name, "tiny-cold", config_dict=settings(device, checkpoint_dir="a"), cmd_args=[])
    second = run_recbole_mamex(model_name, "tiny-cold", config_dict=settings(device, checkpoint_dir="b"), cmd_args=[])
    assert second["best_valid_result"] == first["best_valid_result"]
    assert second["test_result"] == first["test_result"]
    a, b = weights_of(first), weights_of(second)
    assert all(torch.equal(a[name], b[name]) for name in a)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("device", DEVICES)
def test_resume_on_device(cold_tiny, workdir, deterministic, device):
    """An interrupted run resumed from its last checkpoint ends with the uninterrupted run's weights."""
    from recbole_mamex.trainer.resume import last_checkpoint_path

    full = run_recbole_mamex("MAMEX", "tiny-cold", config_dict=settings(device, checkpoint_dir="full"), cmd_args=[])

    def stop(epoch, _score):
        if epoch == 1:
            raise Interrupted

    config = settings(device, checkpoint_dir="cut")
    with pytest.raises(Interrupted):
        run_recbole_mamex("MAMEX", "tiny-cold", config_dict=config, cmd_args=[], callback_fn=stop)
    (best,) = [p for p in os.listdir("cut") if not p.endswith("-last.pth")]
    resumed = run_recbole_mamex(
        "MAMEX", "tiny-cold", config_dict=config, cmd_args=[], resume_from=os.path.join("cut", last_checkpoint_path(best))
    )
    assert resumed["test_result"] == full["test_result"]
    a, b = weights_of(full), weights_of(resumed)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_random_states_from_a_host_with_more_gpus_resume_here(monkeypatch):
    """A last checkpoint written where 4 GPUs were visible resumes on a host with 1: that GPU's state is
    put back and the missing ones are left alone (torch.cuda.set_rng_state_all would raise)."""
    from recbole_mamex.trainer import resume

    state = resume.rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    restored = {}

    def set_one(new_state, device=0):
        if device >= 1:
            raise RuntimeError(f"invalid device ordinal {device}")
        restored[device] = new_state

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_one)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: [set_one(s, i) for i, s in enumerate(states)])
    resume.set_rng_state(state)
    assert list(restored) == [0] and torch.equal(restored[0], state["cuda"][0])
