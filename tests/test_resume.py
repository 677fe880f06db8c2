"""An interrupted training resumes from its last checkpoint to the metrics of an uninterrupted run."""

import os
import random

import numpy as np
import pytest
import torch

from recbole_mamex.cli import main
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.trainer.resume import last_checkpoint_path, rng_state

from helpers import FAST

# eval every epoch, no early stop within 4 epochs; MAMEX's dropout and RecBole's negative sampling and
# shuffling all draw random numbers, so an exact continuation needs their states back.
CONFIG = {**FAST, "epochs": 4, "eval_step": 1, "stopping_step": 10, "metric_decimal_place": 12}


class Interrupted(Exception):
    pass


def interrupt_after(epoch):
    def callback(epoch_idx, valid_score):
        if epoch_idx == epoch:
            raise Interrupted(f"stopped after epoch {epoch_idx}")

    return callback


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # multi-threaded CPU float sums are not bit-reproducible
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model_name, options", [("MAMEX", {}), ("RLMultimodalRec", {}),
                                                 ("VBPR", {"learner": "sparse_adam"})])  # lazy Adam's two states
def test_interrupted_run_resumes_to_the_same_metrics(tiny_dataset, workdir, one_thread, model_name, options):
    full = run_recbole_mamex(model_name, "tiny", config_dict={**CONFIG, **options, "checkpoint_dir": "full"}, cmd_args=[])
    config = {**CONFIG, **options, "checkpoint_dir": "cut"}
    with pytest.raises(Interrupted):
        run_recbole_mamex(model_name, "tiny", config_dict=config, cmd_args=[], callback_fn=interrupt_after(2))
    (best_file,) = [p for p in os.listdir("cut") if not p.endswith("-last.pth")]
    last = os.path.join("cut", last_checkpoint_path(best_file))
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 1  # written when epoch 2 started: the state after epoch 1
    assert checkpoint["best_model_file"] == os.path.join("cut", best_file)

    resumed = run_recbole_mamex(model_name, "tiny", config_dict=config, cmd_args=[], resume_from=last)
    assert resumed["model_file"] == os.path.join("cut", best_file)  # keeps the interrupted run's best file
    assert resumed["best_valid_result"] == full["best_valid_result"]
    assert resumed["test_result"] == full["test_result"]
    # the weights themselves: the best checkpoints of both runs are identical
    weights = [torch.load(r["model_file"], map_location="cpu", weights_only=True)["state_dict"] for r in (full, resumed)]
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_interrupted_inside_an_epoch(tiny_dataset, workdir, one_thread, monkeypatch):
    """A run killed in the middle of epoch 2 (one batch per epoch here: the third loss computation) goes on
    from the state after epoch 1."""
    from recbole_mamex.model.mamex import MAMEX

    full = run_recbole_mamex("MAMEX", "tiny", config_dict={**CONFIG, "checkpoint_dir": "full"}, cmd_args=[])
    calls = []
    original = MAMEX.calculate_loss

    def dies_on_third_batch(self, interaction):
        calls.append(1)
        if len(calls) == 3:
            raise Interrupted("killed during epoch 2")
        return original(self, interaction)

    monkeypatch.setattr(MAMEX, "calculate_loss", dies_on_third_batch)
    config = {**CONFIG, "checkpoint_dir": "cut"}
    with pytest.raises(Interrupted):
        run_recbole_mamex("MAMEX", "tiny", config_dict=config, cmd_args=[])
    monkeypatch.setattr(MAMEX, "calculate_loss", original)
    (last,) = [os.path.join("cut", p) for p in os.listdir("cut") if p.endswith("-last.pth")]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    resumed = run_recbole_mamex("MAMEX", "tiny", config_dict=config, cmd_args=[], resume_from=last)
    assert resumed["test_result"] == full["test_result"]
    assert resumed["best_valid_result"] == full["best_valid_result"]


def test_resuming_without_the_random_states_would_differ(tiny_dataset, workdir, one_thread):
    """The random states are what makes the continuation exact: drop them and the result changes."""
    full = run_recbole_mamex("MAMEX", "tiny", config_dict={**CONFIG, "checkpoint_dir": "full"}, cmd_args=[])
    config = {**CONFIG, "checkpoint_dir": "cut"}
    with pytest.raises(Interrupted):
        run_recbole_mamex("MAMEX", "tiny", config_dict=config, cmd_args=[], callback_fn=interrupt_after(1))
    (last,) = [os.path.join("cut", p) for p in os.listdir("cut") if p.endswith("-last.pth")]
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    checkpoint["rng_state"] = rng_state()  # other random states, in the checkpoint's plain form
    torch.save(checkpoint, last)
    resumed = run_recbole_mamex("MAMEX", "tiny", config_dict=config, cmd_args=[], resume_from=last)
    assert resumed["best_valid_result"] != full["best_valid_result"]


def test_resume_from_the_command_line(tiny_dataset, workdir, one_thread, capsys):
    args = ["--model=BPR", "--dataset=tiny", "--epochs=3", "--eval_step=1", "--train_batch_size=256",
            "--show_progress=False", "--state=WARNING", "--seed=7", "--metric_decimal_place=12"]
    assert main([*args, "--keep_last_checkpoint=True"]) == 0
    first = capsys.readouterr().out.splitlines()
    (last,) = [os.path.join("saved", p) for p in os.listdir("saved") if p.endswith("-last.pth")]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    assert main([*args, "--resume", last]) == 0
    assert capsys.readouterr().out.splitlines() == first  # same metrics, same best checkpoint
    # clear errors: no such file; a checkpoint of another model
    assert main([*args, "--resume", "saved/none-last.pth"]) == 2
    assert "resume: checkpoint saved/none-last.pth not found" in capsys.readouterr().err
    assert main([*args[1:], "--model=LightGCN", "--resume", last]) == 2
    assert f"resume: {last} was written for model 'BPR', this run has 'LightGCN'" in capsys.readouterr().err


def test_a_finished_training_removes_its_last_checkpoint_unless_asked_to_keep_it(tiny_dataset, workdir):
    config = {**CONFIG, "epochs": 3}
    run_recbole_mamex("BPR", "tiny", config_dict={**config, "checkpoint_dir": "finished"}, cmd_args=[])
    (best,) = os.listdir("finished")
    assert not best.endswith("-last.pth")
    run_recbole_mamex("BPR", "tiny", config_dict={**config, "checkpoint_dir": "kept", "keep_last_checkpoint": True}, cmd_args=[])
    last = [p for p in os.listdir("kept") if p.endswith("-last.pth")]
    assert len(last) == 1 and len(os.listdir("kept")) == 2
