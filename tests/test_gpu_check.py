"""The GPU check's CPU dry run (``bench/gpu_check.py --device cpu --tiny``) passes end to end, so the script
is ready for a GPU machine; without a GPU, ``--device cuda`` is one clear error."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.py"


def test_dry_run_passes_every_step(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
        capture_output=True, text=True, cwd=tmp_path, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (report,) = (tmp_path / "out").glob("gpu_*_tiny.md")
    text = report.read_text(encoding="utf-8")
    for step in ("## 1.", "## 2.", "## 3.", "## 4."):
        assert any(line.startswith(step) and line.split(":")[-1].strip().startswith("ok") for line in text.splitlines()), step
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert {row.split(" | ")[0][2:] for row in rows} == {
        "mamex_batch_fp32", "mamex_batch_bf16", "mamex_catalogue_fp32", "rlmm_fp32", "rlmm_bf16", "lightgcn", "vbpr",
    }
    assert "tests collected" in text  # the CUDA cases were found by their marker
    assert "one-process DDP (gloo): ok" in text
    assert "the same recommendations as served on cpu (" in text and ": yes" in text


def test_cuda_without_a_gpu_is_one_clear_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: nothing to refuse")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda", "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --device cuda, but torch sees no CUDA GPU") and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())
