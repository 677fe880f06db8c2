"""Batch comparison: aggregation against hand-computed numbers, resumption, output files."""

import json
import math

import pandas as pd
import pytest

from helpers import fake_plan
from recbole_mamex.compare import aggregate, main, run_all, run_file, to_latex



def record(model, seed, recall, ndcg, kind="cold"):
    return {"model": model, "seed": seed, "dataset": "d", "protocol": "cold", "wall_s": 1.0,
            "results": {kind: {"recall@10": recall, "ndcg@10": ndcg}}}


def test_aggregation_matches_hand_computed_numbers():
    runs = [
        record("Ours", 1, 0.5, 0.30), record("Ours", 2, 0.6, 0.20), record("Ours", 3, 0.7, 0.25),
        record("Base", 1, 0.4, 0.10), record("Base", 2, 0.45, 0.35), record("Base", 3, 0.65, 0.24),
        record("Weak", 1, 0.1, 0.05), record("Weak", 2, 0.1, 0.05), record("Weak", 3, 0.1, 0.05),
    ]
    c = aggregate(runs, "cold", ["recall@10", "ndcg@10"], our_models={"Ours"})
    assert c.table.loc["Ours", ("recall@10", "mean")] == pytest.approx(0.6)
    assert c.table.loc["Ours", ("recall@10", "sd")] == pytest.approx(0.1)  # sample sd of 0.5, 0.6, 0.7
    assert c.table.loc["Base", ("recall@10", "mean")] == pytest.approx(0.5)
    assert c.best == {"recall@10": "Ours", "ndcg@10": "Ours"}
    assert (c.ours["recall@10"], c.baseline["recall@10"]) == ("Ours", "Base")
    assert c.improvement["recall@10"] == pytest.approx(0.2)  # (0.6 - 0.5) / 0.5
    # paired differences 0.10, 0.15, 0.05: mean 0.1, sd 0.05, t = 2*sqrt(3), df 2;
    # Student t cdf with 2 df: F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    t = 0.1 / (0.05 / math.sqrt(3))
    assert c.p_value["recall@10"] == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(2 + t * t))), rel=1e-6)
    assert c.improvement["ndcg@10"] == pytest.approx((0.25 - 0.23) / 0.23)
    assert r"\textbf{0.6000 $\pm$ 0.1000}" in to_latex(c, ["recall@10", "ndcg@10"])


def test_runs_are_saved_as_they_finish_and_skipped_when_rerun(tmp_path):
    calls, crashed = [], set()

    def runner(spec, on_epoch):
        model, seed = spec.model, spec.settings["seed"]
        calls.append((model, seed))
        if model == "Crash" and seed not in crashed:
            crashed.add(seed)
            raise KeyboardInterrupt  # the user stops the comparison in the middle of this run
        on_epoch(0, 0.5)
        return record(model, seed, 0.1 * seed, 0.2)

    with pytest.raises(KeyboardInterrupt):
        run_all(fake_plan(["A", "Crash"], [1, 2], configure=None), tmp_path, runner=runner, log=lambda *_: None)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["A-seed1.json", "A-seed2.json"]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):  # interrupted again, in the next run
        run_all(fake_plan(["A", "Crash"], [1, 2], configure=None), tmp_path, runner=runner, log=lambda *_: None)
    assert calls == [("Crash", 1), ("Crash", 2)]
    calls.clear()
    records = run_all(fake_plan(["A", "Crash"], [1, 2], configure=None), tmp_path, runner=runner, log=lambda *_: None)
    assert calls == [("Crash", 2)]  # only the run that never finished
    assert len(records) == 4 and [r["model"] for r in records] == ["A", "A", "Crash", "Crash"]
    with pytest.raises(ValueError, match="use another --out"):
        run_all(fake_plan(["A"], [1], dataset="other", configure=None), tmp_path, runner=runner, log=lambda *_: None)


def test_end_to_end_outputs_parse(cold_tiny, workdir, capsys):
    (workdir / "fast.yaml").write_text("epochs: 2\ntrain_batch_size: 256\nuse_gpu: False\n")
    out = workdir / "res"
    args = ["--dataset", "tiny-cold", "--models", "BPR", "Pop", "--seeds", "1", "2", "--config_files", "fast.yaml", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[1/4] BPR seed 1: training" in printed and "epoch 0, valid score" in printed
    for kind in ("cold", "warm", "all"):
        table = pd.read_csv(out / f"table_{kind}.csv")
        assert list(table["model"]) == ["BPR", "Pop"] and (table["n_runs"] == 2).all()
        assert "| BPR |" in (out / f"table_{kind}.md").read_text()
        assert r"\begin{tabular}" in (out / f"table_{kind}.tex").read_text()
    assert (out / "main_metric.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads(run_file(out, "BPR", 1).read_text())
    assert saved["config"]["epochs"] == 2 and saved["versions"]["recbole"] == "1.2.1"
    assert set(saved["results"]) == {"cold", "warm", "all"}
    assert saved["peak_rss_gb"] > 0.05 and "peak RSS GB, max" in (out / "summary.md").read_text()
    # the record holds the run as it was described (the RunSpec every entry point passes), and it trains again
    assert saved["run"]["model"] == "BPR" and saved["run"]["dataset"] == "tiny-cold"
    assert saved["run"]["config_files"] == ["fast.yaml"] and saved["run"]["settings"]["seed"] == 1
    assert saved["run"]["settings"]["eval_candidates"] == "cold" and saved["cpu_s"] > 0
    from recbole_mamex.quick_start import run_spec
    from recbole_mamex.runspec import RunSpec

    again = run_spec(RunSpec(**{**saved["run"], "saved": False}))
    assert {k: round(float(v), 4) for k, v in again["test_result_by_candidates"]["cold"].items()} == saved["results"]["cold"]
    assert main(args) == 0
    assert "done before, skipped" in capsys.readouterr().out


def test_config_overrides_are_written_as_on_every_command_line(cold_tiny, workdir, capsys):
    out = workdir / "res"
    base = ["--dataset", "tiny-cold", "--models", "Pop", "--seeds", "1", "--out", str(out)]
    assert main([*base, "--epochs=1", "--train_batch_size=256", "--use_modalities=[text]"]) == 0
    saved = json.loads(run_file(out, "Pop", 1).read_text())
    assert saved["config"]["epochs"] == 1 and saved["config"]["use_modalities"] == ["text"]
    capsys.readouterr()
    # the former spelling still works, with a deprecation line; both at once for one key is refused
    assert main([*base, "--set", "epochs=1", "train_batch_size=256", "use_modalities=[text]"]) == 0
    assert "--set key=value is deprecated; write --key=value" in capsys.readouterr().err
    assert main([*base, "--set", "epochs=1", "--epochs=2"]) == 2
    assert "found ['epochs'] both in --set and as --key=value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "epochs=1"])  # not --key=value: a usage error, not silently dropped


def test_peak_memory_is_each_runs_own():
    """A run's peak_rss_gb is measured from a reset: an earlier, larger allocation does not show in it."""
    import numpy as np

    from recbole_mamex.compare import peak_rss_gb, reset_peak_rss

    if not reset_peak_rss():
        pytest.skip("this platform cannot reset the peak resident memory")
    big = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    before = peak_rss_gb()
    del big
    assert reset_peak_rss()
    small = np.ones(50 * 2**20 // 8)
    after = peak_rss_gb()
    del small
    assert before - after > 0.3  # the 400 MiB peak is gone after the reset
