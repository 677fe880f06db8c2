"""Files and values a user is handed never run code, and what a checkpoint is checked against on load.

Each payload below would create a marker folder when run (``os.mkdir`` through a pickle's ``__reduce__``,
or a Python expression where a value is expected); every test asserts the marker is not there."""

import errno
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from recbole_mamex.cli import main as run_main
from recbole_mamex.config import Config, config_from_text, config_to_text
from recbole_mamex.errors import ConfigError, InputFileError
from recbole_mamex.quick_start import load_data_and_model, run_recbole_mamex
from recbole_mamex.trainer import checkpoint as checkpoint_module
from recbole_mamex.trainer.checkpoint import CheckpointFileError, CheckpointMismatchError

from helpers import FAST

ONE_EPOCH = {**FAST, "epochs": 1}
ARGS = ["--dataset=tiny", "--epochs=1", "--train_batch_size=256", "--show_progress=False", "--state=WARNING",
        "--use_gpu=False", "--seed=7"]


class Payload:
    """Unpickling this calls os.mkdir(marker)."""

    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def plant_pickle(path, marker, torch_format=True):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"config": Payload(marker), "state_dict": {}, "epoch": 0}
    if torch_format:
        torch.save(body, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(body, f)


# ----------------------------------------------------------------------------- checkpoints
def test_a_crafted_checkpoint_runs_nothing_in_serving_interpret_resume_or_recbole_evaluate(tiny_dataset, workdir, capsys):
    from recbole_mamex import interpret, serving

    marker = workdir / "ran"
    plant_pickle("evil.pth", marker)
    with pytest.raises(CheckpointFileError, match="unpickling can run code"):
        load_data_and_model("evil.pth")
    assert serving.main(["evil.pth", "--users", "1"]) == 2
    assert interpret.main(["evil.pth", "--out", "x.csv"]) == 2
    assert run_main(["--model=BPR", *ARGS, "--resume", "evil.pth"]) == 2
    err = capsys.readouterr().err
    assert err.count("evil.pth: expected a checkpoint saved by a training run") == 3
    assert "Traceback" not in err
    # evaluate(load_best_model=True, model_file=...) reads through the same reader
    result = run_recbole_mamex("BPR", "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    config, model, _, _, _, test_data = load_data_and_model(result["model_file"])
    from recbole_mamex.trainer import get_trainer

    trainer = get_trainer(config["MODEL_TYPE"], config["model"], config)(config, model)
    with pytest.raises(CheckpointFileError, match="holds Python objects"):
        trainer.evaluate(test_data, load_best_model=True, model_file="evil.pth")
    assert not marker.exists()


def test_a_checkpoint_holds_plain_values_only_and_its_config_reads_back(tiny_dataset, workdir):
    result = run_recbole_mamex("MAMEX", "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    raw = torch.load(result["model_file"], map_location="cpu", weights_only=True)  # torch's safe reader
    assert raw["format"] == checkpoint_module.FORMAT and isinstance(raw["config"], str)
    config = config_from_text(raw["config"])
    original = result["config"]
    assert config.final_config_dict == original.final_config_dict
    assert list(config.final_config_dict) == list(original.final_config_dict)  # order too
    assert list(config["modalities"]) == list(original["modalities"])  # the features' order is the model's
    assert config["MODEL_TYPE"] is original["MODEL_TYPE"] and config.model_class is original.model_class
    assert config_to_text(config) == raw["config"]
    assert set(raw["token_maps"]) == {"user_id", "item_id"}


def test_a_recbole_or_older_checkpoint_is_refused_not_unpickled(tiny_dataset, workdir):
    result = run_recbole_mamex("BPR", "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    checkpoint = checkpoint_module.read_checkpoint(result["model_file"])
    torch.save(checkpoint, "recbole-style.pth")  # the Config object pickled, as RecBole writes it
    with pytest.raises(CheckpointFileError, match="holds Python objects"):
        load_data_and_model("recbole-style.pth")
    torch.save({"weights": torch.zeros(2)}, "other.pth")
    with pytest.raises(CheckpointFileError, match="format 'recbole_mamex checkpoint'"):
        load_data_and_model("other.pth")


# ----------------------------------------------------------------------------- saved datasets and dataloaders
def test_saved_dataset_and_dataloader_files_are_never_read(tiny_dataset, workdir):
    marker = workdir / "ran"
    plant_pickle("saved/tiny-MultimodalDataset.pth", marker, torch_format=False)
    plant_pickle("saved/tiny-for-BPR-dataloader.pth", marker, torch_format=False)
    plant_pickle("saved/tiny-SequentialDataset.pth", marker, torch_format=False)
    run_recbole_mamex("BPR", "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    assert not marker.exists()
    for key in ("save_dataset", "save_dataloaders"):
        with pytest.raises(ConfigError, match=f"{key}: expected False .*pickle"):
            Config(model="BPR", dataset="tiny", config_dict={**ONE_EPOCH, key: True}, cmd_args=[])


# ----------------------------------------------------------------------------- values and yaml
EXPRESSION = "__import__('os').mkdir('ran')"


def test_string_values_are_literals_never_evaluated(tiny_dataset, workdir):
    config = Config(model="BPR", dataset="tiny", cmd_args=[f"--note={EXPRESSION}", "--lr_list=[1, 2e-3]", "--flag=true"],
                    config_dict={"unchecked_keys": ["note", "other", "lr_list", "flag"], "other": EXPRESSION})
    assert config["note"] == EXPRESSION and config["other"] == EXPRESSION  # kept as the strings they are
    assert config["lr_list"] == [1, 0.002] and config["flag"] is True  # literals are still read as RecBole reads them
    assert not (workdir / "ran").exists()


def test_command_line_and_variant_values_run_nothing(tiny_dataset, workdir, capsys):
    assert run_main(["--model=BPR", *ARGS, "--unchecked_keys=[note]", f"--note={EXPRESSION}"]) == 0
    assert run_main(["--model=BPR", *ARGS, f"--learning_rate={EXPRESSION}"]) == 2
    assert "learning_rate: expected a number > 0, found \"__import__" in capsys.readouterr().err
    from recbole_mamex.compare import parse_variants

    (_, settings), = parse_variants([f"BPR-x=unchecked_keys:[note];note:{EXPRESSION}"]).values()
    assert Config(model="BPR", dataset="tiny", config_dict=settings, cmd_args=[])["note"] == EXPRESSION
    assert not (workdir / "ran").exists()


def test_hyper_files_are_read_without_eval(tmp_path, workdir):
    from recbole_mamex.tuning import HyperFileError, hyperopt_space, read_params_file

    evil = tmp_path / "evil.hyper"
    evil.write_text(f"learning_rate choice [{EXPRESSION}]\n")
    with pytest.raises(HyperFileError, match="line 1: choice expects a list of numbers"):
        read_params_file(evil)
    bad = tmp_path / "bad.hyper"
    bad.write_text("learning_rate uniform 0.1,x\n")
    with pytest.raises(HyperFileError, match="uniform expects 2 comma-separated numbers"):
        read_params_file(bad)
    # a string choice is data: hyperopt proposes it, and the Config keeps it a string
    strings = tmp_path / "strings.hyper"
    strings.write_text(f'note choice ["{EXPRESSION}"]\n')
    space = hyperopt_space(read_params_file(strings))
    from hyperopt.pyll.stochastic import sample

    value = sample(space)["note"]
    config = Config(model="BPR", dataset="tiny", config_dict={"unchecked_keys": ["note"], "note": value}, cmd_args=[])
    assert config["note"] == EXPRESSION and not (workdir / "ran").exists()


def test_the_hyper_search_hands_recbole_a_space_not_the_file(tiny_dataset, workdir, monkeypatch):
    pytest.importorskip("hyperopt")
    from recbole.trainer import hyper_tuning

    from recbole_mamex import tuning

    seen = {}

    def refuse_file(file):
        seen["file"] = file
        raise AssertionError("RecBole's .hyper reader (it eval()s choice lists) was used")

    monkeypatch.setattr(hyper_tuning.HyperTuning, "_build_space_from_file", staticmethod(refuse_file))
    space = workdir / "lr.hyper"
    space.write_text("learning_rate choice [0.01]\n")
    from recbole_mamex.runspec import RunSpec

    found = tuning.tune(RunSpec("BPR", "tiny", settings=ONE_EPOCH), space, max_evals=1)
    assert found["best_params"] == {"learning_rate": 0.01} and "file" not in seen


@pytest.mark.parametrize("text, found", [
    ("a: &x [1, 1]\nb: [*x, *x]\n", "an alias (*x): aliases are not accepted"),
    ("a: !!python/object/apply:os.mkdir ['ran']\n", "could not determine a constructor"),
    ("epochs: [1,\n", "text yaml cannot read"),
    ("- just\n- a list\n", "a yaml list"),
])
def test_yaml_files_are_plain_data_with_one_line_errors(tiny_dataset, workdir, capsys, text, found):
    Path("bad.yaml").write_text(text)
    assert run_main(["--model=BPR", *ARGS, "--config_files=bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad.yaml: expected a yaml mapping") and found in err and err.count("\n") == 1
    # the same text as the working directory's dataset yaml
    own = workdir / "properties" / "dataset" / "tiny.yaml"
    own.write_text(own.read_text() + text if text.startswith("a:") else text)
    assert run_main(["--model=BPR", *ARGS]) == 2
    err = capsys.readouterr().err
    assert f"{own}: expected a yaml mapping" in err and found in err and err.count("\n") == 1
    assert not (workdir / "ran").exists()


def test_an_alias_bomb_in_a_value_is_refused(tiny_dataset, workdir, capsys):
    bomb = "[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]]"
    assert run_main(["--model=MAMEX", *ARGS, f"--use_modalities={bomb}"]) == 2  # a value read as yaml
    assert "use_modalities: expected a list of modality names" in capsys.readouterr().err
    from recbole_mamex.compare import parse_set, parse_variants
    from recbole_mamex.errors import CompareError

    with pytest.raises(CompareError, match="aliases are not accepted"):
        parse_set([f"x={bomb}"])
    with pytest.raises(CompareError, match="aliases are not accepted"):
        parse_variants([f"BPR-x=x:{bomb}"])


# ----------------------------------------------------------------------------- token maps
def reorder_lines(path: Path) -> None:
    header, *lines = path.read_text().splitlines()
    path.write_text("\n".join([header, *reversed(lines)]) + "\n")


@pytest.mark.parametrize("model", ["BPR", "MAMEX"])
def test_a_checkpoint_of_other_token_ids_is_refused_naming_the_cause(tiny_dataset, workdir, model, capsys):
    from recbole_mamex import serving

    result = run_recbole_mamex(model, "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    for inter in sorted((workdir / "dataset" / "tiny").glob("tiny.*inter")):
        reorder_lines(inter)
    with pytest.raises(CheckpointMismatchError, match="numbered in another order.*lines re-ordered") as info:
        load_data_and_model(result["model_file"])
    assert "text" not in str(info.value).split("found")[1]  # not blamed on a feature file that did not change
    assert serving.main([result["model_file"], "--users", "1"]) == 2
    assert "numbered in another order" in capsys.readouterr().err
    assert run_main([f"--model={model}", *ARGS, "--resume", result["model_file"]]) == 2
    assert "numbered in another order" in capsys.readouterr().err


# ----------------------------------------------------------------------------- writing checkpoints
def test_an_unwritable_checkpoint_dir_is_refused_before_training(tiny_dataset, workdir, capsys):
    Path("a-file").write_text("not a folder")
    assert run_main(["--model=BPR", *ARGS, "--checkpoint_dir=a-file/saved"]) == 2
    err = capsys.readouterr().err
    assert err == "error: cannot write a-file/saved: a-file is not a directory\n"
    assert not Path("log").exists()  # refused before the run's log was started


def test_a_full_disk_leaves_no_partial_checkpoint_and_is_one_line(tiny_dataset, workdir, capsys, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"PK\x03\x04 truncated")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    assert run_main(["--model=BPR", *ARGS, "--checkpoint_dir=ckpt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write ckpt/BPR-") and err.endswith(".pth: no space left on device\n")
    assert os.listdir("ckpt") == []  # neither the best file nor its temporary file


def test_a_diverging_training_is_one_line(tiny_dataset, workdir, capsys, monkeypatch):
    from recbole_mamex.trainer.resume import TrainingDivergedError

    def nan_loss(self, interaction):
        return torch.tensor(float("nan"), requires_grad=True)

    from recbole.model.general_recommender import BPR

    monkeypatch.setattr(BPR, "calculate_loss", nan_loss)
    assert run_main(["--model=BPR", *ARGS, "--learning_rate=1e30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: training diverged: the loss became nan in epoch 0 (learning_rate 1e+30)")
    assert err.count("\n") == 1 and issubclass(TrainingDivergedError, ValueError)


def test_input_file_error_is_one_class_for_every_layer():
    from recbole_mamex.data.features import InputFileError as from_features

    assert from_features is InputFileError


# ----------------------------------------------------------------------------- crafted checkpoints (review)
def crafted(path, base_file, **changes):
    """``base_file``'s raw entries with ``changes`` (``config_final``: entries of the config's settings)."""
    import json

    raw = torch.load(base_file, map_location="cpu", weights_only=True)
    final = changes.pop("config_final", None)
    if final:
        state = json.loads(raw["config"])
        state["final_config_dict"].update(final)
        raw["config"] = json.dumps(state)
    raw.update(changes)
    torch.save(raw, path)
    return path


def test_a_teacher_name_is_never_evaluated(tiny_dataset, workdir):
    payload = "__import__('os').mkdir('ran') or CrossNet"
    with pytest.raises(ConfigError, match="teacher: expected CrossNet or CIN"):
        Config(model="BPR", dataset="tiny", config_dict={"teacher": payload}, cmd_args=[])
    result = run_recbole_mamex("BPR", "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    crafted("teacher.pth", result["model_file"], config_final={"teacher": payload})
    with pytest.raises(CheckpointFileError, match="teacher: expected CrossNet or CIN"):
        load_data_and_model("teacher.pth")
    assert not (workdir / "ran").exists()


@pytest.mark.parametrize("change, found", [
    ({"state_dict": [1, 2]}, "a state_dict that is not a mapping of parameter names to tensors"),
    ({"token_maps": None}, "token_maps that are not"),
    ({"token_maps": {"user_id": "x"}}, "token_maps that are not"),
    ({"other_parameter": [1]}, "an other_parameter entry that is not a mapping"),
    ({"epoch": "one"}, "epoch and cur_step that are not integers"),
    ({"config": "[" * 100000}, "a config entry that is not one"),
    ({"config_final": {"device": {"__device__": "bogus"}}}, "a config entry that is not one"),
    ({"config_final": {"model": "Pop"}}, "a config entry that is not one"),
    ({"config_final": {"topk": "ten"}}, "topk: expected a positive integer"),
])
def test_crafted_checkpoint_entries_are_one_error(tiny_dataset, workdir, change, found):
    result = run_recbole_mamex("BPR", "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    crafted("bad.pth", result["model_file"], **change)
    with pytest.raises(CheckpointFileError, match=re.escape(found)):
        load_data_and_model("bad.pth")


def test_resume_writes_only_beside_its_last_checkpoint(tiny_dataset, workdir, capsys):
    args = [arg for arg in ARGS if not arg.startswith("--epochs=")] + ["--epochs=3", "--eval_step=1"]
    assert run_main(["--model=BPR", *args, "--keep_last_checkpoint=True"]) == 0
    (last,) = [os.path.join("saved", p) for p in os.listdir("saved") if p.endswith("-last.pth")]
    victim = workdir / "notes.txt"
    victim.write_text("mine")
    crafted(last, last, best_model_file=str(victim), best_valid_score=-1.0)
    assert run_main(["--model=BPR", *args, "--resume", last]) == 0
    assert victim.read_text() == "mine"  # the best checkpoint stays the one beside the last one
    assert last.replace("-last", "") in capsys.readouterr().out


def test_token_maps_cover_every_token_field():
    from types import SimpleNamespace

    from recbole_mamex.trainer.checkpoint import check_token_maps, token_maps

    def dataset(genres):
        return SimpleNamespace(field2id_token={"user_id": ["[PAD]", "u1"], "item_id": ["[PAD]", "i1"], "genre": genres})

    then = token_maps(dataset(["[PAD]", "rock", "jazz"]))
    now = token_maps(dataset(["[PAD]", "jazz", "rock"]))
    assert set(then) == {"user_id", "item_id", "genre"}
    with pytest.raises(CheckpointMismatchError, match="genre tokens .2., numbered in another order"):
        check_token_maps("m.pth", then, now, {"dataset": "d", "data_path": "dataset/d"})
    with pytest.raises(CheckpointMismatchError, match="token fields the model was trained with"):
        check_token_maps("m.pth", {k: v for k, v in then.items() if k != "genre"}, now, {"dataset": "d", "data_path": "dataset/d"})


def test_a_pretraining_checkpoint_is_written_in_the_package_format(tiny_dataset, workdir):
    result = run_recbole_mamex("RaCT", "tiny", cmd_args=[], saved=True, config_dict={
        **ONE_EPOCH, "train_stage": "actor_pretrain", "pretrain_epochs": 1, "save_step": 1})
    assert result["model_file"].endswith("RaCT-tiny-1.pth")  # RecBole's name of a pre-training checkpoint
    assert checkpoint_module.read_checkpoint(result["model_file"])["epoch"] == 0


def test_a_checkpoint_with_compressed_entries_is_refused_unread(tiny_dataset, workdir):
    import zipfile

    result = run_recbole_mamex("BPR", "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    with zipfile.ZipFile(result["model_file"]) as stored, zipfile.ZipFile("packed.pth", "w", zipfile.ZIP_DEFLATED) as packed:
        for info in stored.infolist():
            packed.writestr(info.filename, stored.read(info.filename))
    reads = []
    original = torch.load
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "load", lambda *a, **k: reads.append(1) or original(*a, **k))
        with pytest.raises(CheckpointFileError, match="compressed entries"):
            load_data_and_model("packed.pth")
    assert not reads  # refused before torch expands anything


def test_weights_of_another_dtype_are_refused(tiny_dataset, workdir):
    result = run_recbole_mamex("BPR", "tiny", config_dict=ONE_EPOCH, cmd_args=[])
    raw = torch.load(result["model_file"], map_location="cpu", weights_only=True)
    crafted("ints.pth", result["model_file"], state_dict={k: v.to(torch.int64) for k, v in raw["state_dict"].items()})
    with pytest.raises(CheckpointMismatchError, match="other dtypes .checkpoint vs model.: user_embedding.weight torch.int64 vs torch.float32"):
        load_data_and_model("ints.pth")
