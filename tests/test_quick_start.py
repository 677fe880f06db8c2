"""End to end: train, save, reload, re-evaluate; the CLI on tiny data and on the bundled Last.fm-2K."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import recbole_mamex.model
from recbole_mamex.cli import main
from recbole_mamex.quick_start import load_data_and_model, run_recbole_mamex
from recbole_mamex.trainer import get_trainer

from helpers import FAST, ContentDot

REPO = Path(__file__).resolve().parents[1]
METRIC_KEYS = {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}


def reevaluate(model_file):
    config, model, _, _, valid_data, test_data = load_data_and_model(model_file)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return (
        trainer.evaluate(valid_data, load_best_model=False, show_progress=False),
        trainer.evaluate(test_data, load_best_model=False, show_progress=False),
    )


def test_bpr_on_bundled_lastfm_prepares_trains_and_reloads(workdir):
    result = run_recbole_mamex(model="BPR", dataset="lastfm-2k", config_dict={**FAST, "epochs": 1}, cmd_args=[])
    prepared = workdir / "dataset" / "lastfm-2k"
    lines = {s: len((prepared / f"lastfm-2k.{s}.inter").read_text().splitlines()) - 1 for s in ("train", "valid", "test")}
    assert lines == {"train": 44327, "valid": 4799, "test": 7219}
    assert sorted(p.name for p in prepared.glob("*.npy")) == ["text.npy", "vggish.npy", "whisper.npy"]
    assert set(result["test_result"]) == METRIC_KEYS
    assert result["best_valid_result"]["recall@20"] > 0
    valid, test = reevaluate(result["model_file"])
    assert valid == result["best_valid_result"]
    assert test == result["test_result"]


def test_lightgcn_checkpoint_reevaluates_to_the_same_numbers(tiny_dataset):
    result = run_recbole_mamex(model="LightGCN", dataset="tiny", config_dict=FAST, cmd_args=[])
    valid, test = reevaluate(result["model_file"])
    assert test == result["test_result"] and valid == result["best_valid_result"]


def test_our_multimodal_model_plugs_in_and_reloads(tiny_dataset, monkeypatch):
    monkeypatch.setattr(recbole_mamex.model, "ContentDot", ContentDot, raising=False)
    result = run_recbole_mamex(model="ContentDot", dataset="tiny", config_dict={**FAST, "epochs": 3}, cmd_args=[])
    assert result["config"]["model"] == "ContentDot"
    valid, test = reevaluate(result["model_file"])
    assert test == result["test_result"]


def test_cli_prints_valid_and_test_metrics(tiny_dataset, capsys):
    code = main(["--model=BPR", "--dataset=tiny", "--epochs=1", "--show_progress=False", "--state=WARNING"])
    out = capsys.readouterr().out
    assert code == 0
    for line_start in ("best valid:", "test:"):  # warm split: no candidate labels
        line = next(l for l in out.splitlines() if l.startswith(line_start))
        for key in METRIC_KEYS:
            assert f"{key}: " in line
    assert "checkpoint: saved/BPR-" in out


def test_cli_errors_are_clear(workdir, capsys):
    assert main(["--model=NoSuchModel"]) == 2
    assert "Unknown model 'NoSuchModel'" in capsys.readouterr().err
    assert main(["--model=BPR", "--dataset=amazon-baby"]) == 2  # amazon-sports ships: prepared on first use
    err = capsys.readouterr().err
    assert "python -m dataset_prep.mmrec /path/to/mmrec/data/baby --name amazon-baby" in err
    assert "--modality image=image_feat.npy --modality text=text_feat.npy" in err
    assert "python -m dataset_prep.amazon --reviews reviews_Baby_5.json.gz" in err
    assert main(["--model=BPR", "--dataset=nowhere"]) == 2
    assert "nowhere.inter" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--key=value"):
        main(["--epochs", "2"])
    assert main(["--list-models"]) == 0
    assert "LightGCN" in capsys.readouterr().out.split()


def test_run_script_end_to_end(tiny_dataset, workdir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_recbole_mamex.py"), "--model=LightGCN", "--dataset=tiny", "--epochs=1",
         "--show_progress=False", "--use_gpu=False"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test:" in proc.stdout and "ndcg@20:" in proc.stdout
    assert list((workdir / "saved").glob("LightGCN-*.pth"))


def test_cli_labels_candidate_results(cold_tiny, capsys):
    assert main(["--model=BPR", "--dataset=tiny-cold", "--epochs=1", "--show_progress=False", "--state=WARNING"]) == 0
    out = capsys.readouterr().out
    assert "best valid [cold candidates]:" in out and out.count("test [cold candidates]:") == 1
    for kind in ("cold", "warm", "all"):
        assert f"test [{kind} candidates]: recall@10" in out


def test_defaults_are_mamex_on_the_bundled_cold_split():
    from recbole_mamex.cli import build_parser

    args = build_parser().parse_args([])
    assert (args.model, args.dataset) == ("MAMEX", "lastfm-2k-cold")


def test_log_lines_print_plain_numbers(tiny_dataset, workdir, caplog):
    """numpy 2 writes a metric's repr as np.float64(0.4005) (and a result's as OrderedDict([...])); the run's
    log reads ``recall@10 : 0.4005    ndcg@10 : ...``: each metric once, each value a plain number, the
    value the run returns."""
    import logging
    import re

    from recbole_mamex.quick_start import run_recbole_mamex

    settings = {**FAST, "epochs": 1, "state": "INFO", "metrics": ["Recall", "NDCG"], "topk": [10, 20]}
    with caplog.at_level(logging.INFO):
        result = run_recbole_mamex("BPR", "tiny", config_dict=settings, cmd_args=[])
    assert "np.float64" not in caplog.text and "OrderedDict" not in caplog.text
    messages = [re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage()) for record in caplog.records]  # colours off
    for label, key in (("best valid", "best_valid_result"), ("test result", "test_result")):
        lines = [m for m in messages if re.match(rf"{label}\s*:", m)]
        assert len(lines) == 1, (label, lines)
        metrics = lines[0].split(":", 1)[1].strip()
        pair = r"[a-z]+@\d+ : -?\d+(\.\d+)?(e-?\d+)?"  # name : plain number
        assert re.fullmatch(rf"{pair}(\s+{pair})*", metrics), metrics
        logged = {name: float(value) for name, value in re.findall(r"(\S+) : (\S+)", metrics)}
        assert logged == {name: float(value) for name, value in result[key].items()}
        assert set(logged) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
