"""bench/paired_tests.py: rows of two folders pair over (split, seed); the same row in two labelled folders
(before/after a change) pairs too, and an unlabelled clash is refused."""

import json
import sys
from pathlib import Path

import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from paired_tests import load, main as paired_tests, paired  # noqa: E402


def write_runs(out: Path, model: str, recalls: dict[tuple[int, int], float]) -> None:
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for (split, seed), value in recalls.items():
        record = {"model": model, "seed": seed, "split_seed": split,
                  "results": {"cold": {"recall@20": value, "ndcg@20": value / 2}}}
        (out / "runs" / f"{model}-split{split}-seed{seed}.json").write_text(json.dumps(record))


def test_same_row_of_two_labelled_folders_pairs_by_split_and_seed(tmp_path, capsys):
    before, after = tmp_path / "before", tmp_path / "after"
    write_runs(before, "MAMEX", {(1, 1): 0.50, (1, 2): 0.52, (2, 1): 0.47})
    # after has one pair more, which has nothing to pair with
    write_runs(after, "MAMEX", {(1, 1): 0.55, (1, 2): 0.53, (2, 1): 0.51, (3, 1): 0.90})

    with pytest.raises(SystemExit, match="in both"):
        load(before, after)

    rows = load(f"before={before}", f"after={after}")
    assert sorted(rows) == ["after/MAMEX", "before/MAMEX"]
    mean, sd, p, n = paired(rows, "after/MAMEX", "before/MAMEX", "cold", "recall@20")
    assert n == 3
    assert mean == pytest.approx((0.05 + 0.01 + 0.04) / 3)
    assert p == pytest.approx(stats.ttest_rel([0.55, 0.53, 0.51], [0.50, 0.52, 0.47]).pvalue)

    assert paired_tests([f"before={before}", f"after={after}", "--pairs", "after/MAMEX:before/MAMEX"]) == 0
    assert "| after/MAMEX vs before/MAMEX | 3 | +0.0333" in capsys.readouterr().out
