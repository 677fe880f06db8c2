"""bench/scaling.py: the synthetic catalogue keeps Sports' shape at every scale, the growth exponent is a
log-log slope, and a tiny two-scale run goes end to end."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from scaling import SPORTS, exponent, synthetic_interactions  # noqa: E402


@pytest.mark.parametrize("scale", [0.02, 0.08])
def test_synthetic_catalogue_has_sports_proportions(scale):
    users, items, n_items = synthetic_interactions(scale, seed=3)
    assert n_items == round(SPORTS["items"] * scale)
    pairs = users * n_items + items
    assert len(np.unique(pairs)) == len(pairs)  # one interaction per (user, item)
    per_user = np.bincount(users)
    assert per_user.min() >= 5 and len(per_user) == round(SPORTS["users"] * scale)
    # interactions grow with the scale, at Sports' interactions per user
    assert 0.9 < len(users) / (SPORTS["interactions"] * scale) < 1.1
    again = synthetic_interactions(scale, seed=3)
    assert np.array_equal(again[0], users) and np.array_equal(again[1], items)  # seeded


def test_exponent_is_the_log_log_slope():
    sizes = [1.0, 4.0, 16.0]
    assert exponent(sizes, [3 * s**1.5 for s in sizes]) == pytest.approx(1.5)
    assert exponent(sizes, [7.0, 7.0, 7.0]) == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(exponent([1.0], [2.0]))


def test_tiny_scaling_run_prints_the_exponents(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scaling.py"), "--scales", "0.01", "0.02", "--variants", "vbpr",
         "--work", str(tmp_path / "work"), "--out", str(tmp_path / "scaling.md")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (tmp_path / "scaling.md").read_text()
    assert "| vbpr | 0.01x |" in text and "| vbpr | 0.02x |" in text
    assert "epoch b (target <= 1.1)" in text and "GB vs" in text
