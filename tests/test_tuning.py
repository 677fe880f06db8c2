"""Hyper-parameter search through RecBole's HyperTuning with our run function, selecting on validation."""

import math
import os

import pytest
import torch

from recbole_mamex.trainer.checkpoint import read_checkpoint
from recbole_mamex.cli import main
from recbole_mamex.paths import properties_dir
from recbole_mamex.runspec import RunSpec
from recbole_mamex.tuning import HyperFileError, read_params_file, resolve_params_file, tune, tune_with_ray

from helpers import FAST

FIXED = {**FAST, "epochs": 1}


def test_tuning_selects_the_best_validation_trial(tiny_dataset, workdir):
    space = workdir / "space.hyper"
    space.write_text("learning_rate choice [0.0001,0.05]\nn_experts choice [2]\n")
    found = tune(RunSpec("MAMEX", "tiny", settings=FIXED), space, algo="exhaustive")
    trials = found["trials"]
    assert len(trials) == 2  # every combination once
    for params, trial in trials.items():
        # each trial trained with its own parameters over the fixed ones (read back from its checkpoint)
        config = read_checkpoint(trial["model_file"])["config"]
        assert params == f"learning_rate:{config['learning_rate']}, n_experts:2"
        assert config["n_experts"] == 2 and config["epochs"] == 1
        assert trial["best_valid_score"] == trial["best_valid_result"]["ndcg@20"]
    scores = {params: trial["best_valid_score"] for params, trial in trials.items()}
    best = max(scores, key=scores.get)
    assert found["best_valid_score"] == scores[best]
    assert f"learning_rate:{found['best_params']['learning_rate']}" in best
    assert found["best"] is trials[best]


def test_command_line_search_and_its_errors(tiny_dataset, workdir, capsys):
    space = workdir / "space.hyper"
    space.write_text("embedding_size choice [8,16]\n")
    fixed = ["--epochs=1", "--train_batch_size=256", "--show_progress=False", "--state=WARNING", "--seed=7"]
    out_file = workdir / "trials.txt"
    code = main(["--model=BPR", "--dataset=tiny", "--hyper", str(space), "--hyper_output", str(out_file), *fixed])
    assert code == 0
    out = capsys.readouterr().out
    assert "trials: 2" in out and "best parameters: {'embedding_size':" in out
    assert out_file.read_text().count("Valid result:") == 2
    # a tuned parameter also fixed on the command line would silently override the search
    assert main(["--model=BPR", "--dataset=tiny", "--hyper", str(space), "--embedding_size=4", *fixed]) == 2
    assert "tunes ['embedding_size'], which the command line also sets" in capsys.readouterr().err
    bad = workdir / "bad.hyper"
    bad.write_text("learning_rate loguniform -8\n")
    assert main(["--model=BPR", "--dataset=tiny", "--hyper", str(bad), *fixed]) == 2
    assert f"{bad}, line 1: loguniform expects 2 comma-separated numbers, found '-8'" in capsys.readouterr().err


def test_search_space_files():
    shipped = resolve_params_file("MAMEX.hyper")
    assert shipped == properties_dir() / "hyper" / "MAMEX.hyper"
    assert {"learning_rate", "n_experts"} <= set(read_params_file(shipped))
    with pytest.raises(HyperFileError, match="no such search-space file .*MAMEX.hyper"):
        resolve_params_file("missing.hyper")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "expected at least one"),
        ("lr between 1,2\n", "line 1: expected '<parameter> <choice|uniform|quniform|loguniform> <values>'"),
        ("lr choice 0.1\n", "choice expects a list"),
        ("lr quniform 1,2\n", "quniform expects 3"),
    ],
)
def test_bad_search_space_files(tmp_path, text, message):
    path = tmp_path / "x.hyper"
    path.write_text(text)
    with pytest.raises(HyperFileError, match=message):
        read_params_file(path)


def test_ray_tune_local_mode(tiny_dataset, workdir):
    pytest.importorskip("ray", reason="the ray extra (not in the test extra on Python 3.12+)")
    space = workdir / "space.hyper"
    space.write_text("learning_rate choice [0.0001,0.05]\nreg_weight loguniform -14,-6\n")
    found = tune_with_ray(RunSpec("MAMEX", "tiny", settings=FIXED), space, num_samples=2, local_mode=True)
    assert os.getcwd() == str(workdir)  # Ray's trial directories do not leak into the caller
    trials = found["trials"]
    assert len(trials) == 2
    for trial in trials:
        assert trial["learning_rate"] in (0.0001, 0.05)
        assert math.exp(-14) <= trial["reg_weight"] <= math.exp(-6)  # natural-log bounds, as with hyperopt
        config = read_checkpoint(trial["model_file"])["config"]
        assert config["learning_rate"] == trial["learning_rate"] and config["reg_weight"] == trial["reg_weight"]
        assert trial["best_valid_score"] == trial["valid_ndcg@20"]
    assert found["best_valid_score"] == max(trial["best_valid_score"] for trial in trials)
    assert found["best_params"]["learning_rate"] == max(trials, key=lambda t: t["best_valid_score"])["learning_rate"]
