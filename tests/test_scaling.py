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
from sports_scale import extrapolated, first_batches  # noqa: E402


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


def test_first_batches_caps_a_loader_and_keeps_its_type():
    import torch

    class Loader(torch.utils.data.DataLoader):
        pass

    loader = Loader(list(range(10)), batch_size=3)  # 4 batches
    capped = first_batches(loader, 2)
    assert isinstance(capped, Loader) and len(capped) == 4  # RecBole's type checks and lengths hold
    assert [b.tolist() for b in capped] == [[0, 1, 2], [3, 4, 5]]
    assert [b.tolist() for b in capped] == [[0, 1, 2], [3, 4, 5]]  # again, every time it is iterated
    assert len(list(loader)) == 4  # the loader itself is untouched
    assert first_batches(loader, 0) is loader and first_batches(loader, 4) is loader


def test_extrapolation_counts_the_first_batch_once_and_the_rest_at_the_median():
    # start 0; the first batch ends at 5 (one-time work), then batches of 1 s (one slow outlier)
    stamps = [5.0, 6.0, 7.0, 10.0, 11.0]
    assert extrapolated(0.0, 11.5, stamps, total=5) == pytest.approx(11.5)  # all ran: measured
    assert extrapolated(0.0, 11.5, stamps, total=105) == pytest.approx(11.5 + 100 * 1.0)
    assert extrapolated(0.0, 3.0, [2.0, 3.0], total=4) == pytest.approx(3.0 + 2 * 1.0)  # two: their one interval
    with pytest.raises(ValueError, match="no batch was timed"):
        extrapolated(0.0, 1.0, [], total=4)


def test_a_capped_loader_stamps_each_batch_it_hands_out():
    import torch

    stamps = []
    loader = torch.utils.data.DataLoader(list(range(10)), batch_size=3)
    assert len(list(first_batches(loader, 0, stamps))) == 4 and len(stamps) == 4  # uncapped but stamped
    stamps.clear()
    assert len(list(first_batches(loader, 3, stamps))) == 3 and len(stamps) == 3 and stamps == sorted(stamps)


def test_tiny_scaling_run_prints_the_exponents(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scaling.py"), "--scales", "0.01", "0.02", "--variants", "vbpr",
         "--work", str(tmp_path / "work"), "--out", str(tmp_path / "scaling.md"), "--max-train-batches", "1",
         "--max-eval-batches", "2", "--full-sort-batch-mb", "0.001"],  # about one user per evaluation batch
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (tmp_path / "scaling.md").read_text()
    assert "| vbpr | 0.01x |" in text and "| vbpr | 0.02x |" in text
    assert " | 1 of 2 | " in text  # the epoch's first batch timed, the epoch extrapolated
    evaluated = [row.split(" | ")[8] for row in text.splitlines() if row.startswith("| vbpr | 0.0")]
    assert len(evaluated) == 2 and all(e.startswith("2 of ") and int(e.split()[-1]) > 2 for e in evaluated), evaluated
    assert "epoch b (target <= 1.1)" in text and "GB vs" in text
    # the step's phases timed apart on one of those scales, with lazy Adam (bench/step_phases.py)
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "step_phases.py"), "--variant", "vbpr_sparse_adam", "--work",
         str(tmp_path / "work" / "scale0.02"), "--steps", "2", "--skip", "1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("vbpr_sparse_adam at scale0.02: LazyEmbeddingAdam, 2 batches per epoch; load ")
    assert all(f"{phase} " in line for phase in ("zero_grad", "forward", "backward", "step"))
