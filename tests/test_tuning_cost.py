"""bench/tuning_cost.py: the time of trials and runs of two comparison folders, the ratio on one measure
(wall x threads, which records made before cpu_s have too), pruned trials counted, runs paired."""

import json
import sys
from pathlib import Path

import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from tuning_cost import main as tuning_cost, read_folder, run_costs, trial_costs  # noqa: E402


def write(out: Path, row: str, trials, runs) -> None:
    (out / "tuning" / row).mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for number, trial in enumerate(trials, start=1):
        (out / "tuning" / row / f"trial-{number:03d}.json").write_text(json.dumps({"trial": number, **trial}))
    for (split, seed), (valid, ndcg, wall, cpu) in runs.items():
        record = {"model": row, "seed": seed, "split_seed": split, "best_valid_score": valid, "wall_s": wall,
                  "torch_threads": 1, "results": {"cold": {"ndcg@20": ndcg, "recall@20": 2 * ndcg}}}
        if cpu is not None:
            record["cpu_s"] = cpu
        (out / "runs" / f"{row}-split{split}-seed{seed}.json").write_text(json.dumps(record))


def test_costs_ratio_and_pairs(tmp_path, capsys):
    before, after = tmp_path / "before", tmp_path / "after"
    write(before, "MAMEX", [{"status": "ok", "score": 0.5, "details": {"wall_s": 3600, "epochs_trained": 100}},
                            {"status": "ok", "score": 0.4, "details": {"wall_s": 3600, "epochs_trained": 100}}],
          {(1, 1): (0.50, 0.40, 3600, None), (1, 2): (0.52, 0.41, 3600, None), (2, 1): (0.49, 0.39, 3600, None)})
    write(after, "MAMEX", [{"status": "ok", "score": 0.5, "details": {"wall_s": 1800, "cpu_s": 1700, "epochs_trained": 50}},
                           {"status": "pruned", "score": 0.3, "details": {"wall_s": 360, "cpu_s": 350, "pruned_at": 9,
                                                                          "epochs_trained": 10}},
                           {"status": "repeat", "repeat_of": 1, "score": 0.5, "details": {"wall_s": 1800}}],
          {(1, 1): (0.52, 0.42, 1800, 1790), (1, 2): (0.53, 0.40, 1800, 1790), (2, 1): (0.50, 0.41, 1800, 1790)})
    rows = read_folder(after)
    cpu, wall_threads, wall, measured = trial_costs(rows["MAMEX"]["trials"])
    assert (cpu, wall_threads, measured) == (2050, 2160, True)  # the repeat trained nothing
    assert run_costs(rows["MAMEX"]["runs"])[0] == pytest.approx(3 * 1790)
    assert tuning_cost([f"before={before}", f"after={after}"]) == 0
    printed = capsys.readouterr().out
    # (2160 + 5400) / (7200 + 10800) wall x threads
    assert "| **total** | 2.00 | 0.60 | 3.00 | 1.50 | 5.00 | 2.10 | **0.42** |" in printed
    assert "| MAMEX | 2 | 1 of 3 | 200 | 60 | 0.5000 | 0.5000 |" in printed
    p = stats.ttest_rel([0.52, 0.53, 0.50], [0.50, 0.52, 0.49]).pvalue
    assert f"| MAMEX | 3 | +0.0133 ± 0.0058 | {p:.2g} |" in printed


def test_not_a_comparison_folder_is_one_error(tmp_path):
    with pytest.raises(SystemExit, match="expected a compare --out folder"):
        tuning_cost([str(tmp_path), str(tmp_path)])
