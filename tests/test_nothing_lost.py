"""Nothing lost: an import never deletes its inputs or files it did not write, and cleans up after a killed
import (issue: data loss found by a hostile user test). Each test failed before the fix."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_prep.coldstart import main as coldstart_main
from dataset_prep.lattice import import_lattice
from dataset_prep.mmrec import main as mmrec_main

from helpers import write_mmrec

MANIFEST = ".dataset_prep.json"  # dataset_prep.common.MANIFEST
IMPORTING_MARKER = ".dataset_prep-importing"  # dataset_prep.common.IMPORTING_MARKER


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (symlinks as their target's path) by relative name."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(directory))] = os.readlink(path).encode()
        elif path.is_file():
            out[str(path.relative_to(directory))] = path.read_bytes()
    return out


def mmrec_folder_inside_dataset(workdir: Path, name: str, sub: str = "") -> Path:
    """An MMRec folder placed where RecBole expects dataset ``name`` (optionally in a subfolder)."""
    write_mmrec(workdir / "raw")
    folder = workdir / "dataset" / name / sub
    folder.mkdir(parents=True)
    shutil.copy(workdir / "raw" / "tiny.inter", folder / f"{name}.inter")
    shutil.copy(workdir / "raw" / "text_feat.npy", folder / "text_feat.npy")
    return folder


@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_mmrec_refuses_a_source_inside_the_dataset_it_would_replace(workdir, capsys, link):
    folder = mmrec_folder_inside_dataset(workdir, "mine")
    before = snapshot(workdir / "dataset")
    argv = [str(folder), "--name", "mine", "--force"] + (["--link"] if link else [])
    assert mmrec_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "mine.inter" in err and "inside it" in err and "nothing was written" in err
    assert snapshot(workdir / "dataset") == before
    assert not (workdir / "properties" / "dataset" / "mine.yaml").exists()


def test_raw_files_in_a_subfolder_and_files_beside_them_survive(workdir, capsys):
    folder = mmrec_folder_inside_dataset(workdir, "mine3", sub="raw")
    (workdir / "dataset" / "mine3" / "NOTES.txt").write_text("my notes")
    before = snapshot(workdir / "dataset")
    assert mmrec_main([str(folder), "--name", "mine3", "--force"]) == 2
    assert "inside it" in capsys.readouterr().err
    assert snapshot(workdir / "dataset") == before


def test_coldstart_onto_its_own_source_refuses(tiny_dataset, workdir, capsys):
    before = snapshot(workdir / "dataset" / "tiny")
    assert coldstart_main(["--dataset", "tiny", "--name", "tiny", "--force", "--link"]) == 2
    err = capsys.readouterr().err
    assert "inside it" in err and "tiny" in err
    assert snapshot(workdir / "dataset" / "tiny") == before
    assert not (workdir / "dataset" / "tiny" / "text.npy").is_symlink()


def test_lattice_source_inside_the_destination_refuses(workdir):
    src = workdir / "dataset" / "lat"
    src.mkdir(parents=True)
    for split in ("train", "val", "test"):
        (src / f"{split}.txt").write_text("0 1 2\n")
    before = snapshot(src)
    with pytest.raises(Exception, match="inside it"):
        import_lattice(src, "lat", out_root=workdir / "dataset", properties_dir=workdir / "properties", force=True, log=lambda *_: None)
    assert snapshot(src) == before


def test_force_refuses_a_directory_the_importer_did_not_write(workdir, capsys):
    write_mmrec(workdir / "raw")
    mine = workdir / "dataset" / "tiny"
    mine.mkdir(parents=True)
    (mine / "results.csv").write_text("keep me")
    assert mmrec_main([str(workdir / "raw"), "--name", "tiny", "--force"]) == 2
    assert MANIFEST in capsys.readouterr().err
    assert (mine / "results.csv").read_text() == "keep me"


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_killed_imports_temporary_directory_is_removed_by_the_next_import(workdir, capsys):
    write_mmrec(workdir / "raw")
    out = workdir / "dataset"
    out.mkdir()
    stale = out / ".tiny.importing-dead"
    stale.mkdir()
    (stale / "tiny.train.inter").write_text("partial copy")
    (stale / IMPORTING_MARKER).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
    running = out / ".other.importing-live"
    running.mkdir()
    (running / IMPORTING_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    unknown = out / ".old.importing-nomarker"
    unknown.mkdir()
    assert mmrec_main([str(workdir / "raw"), "--name", "tiny"]) == 0
    printed = capsys.readouterr().out
    assert not stale.exists() and f"removed dataset/{stale.name}, left by an import" in printed
    assert running.exists()  # its process still runs
    assert unknown.exists() and f"dataset/{unknown.name} looks like an unfinished import" in printed


def test_a_sigkilled_import_leaves_a_directory_the_next_one_removes(workdir):
    write_mmrec(workdir / "raw")
    code = (
        "import os, signal, sys, shutil\n"
        "sys.argv = ['mmrec', 'raw', '--name', 'killed']\n"
        "real_copy = shutil.copyfile\n"
        "def copy_then_die(*args, **kwargs):\n"
        "    real_copy(*args, **kwargs)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "shutil.copyfile = copy_then_die\n"
        "from dataset_prep.mmrec import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9
    left = list((workdir / "dataset").glob(".killed.importing-*"))
    assert len(left) == 1 and (left[0] / IMPORTING_MARKER).is_file()
    assert mmrec_main([str(workdir / "raw"), "--name", "tiny"]) == 0
    assert not left[0].exists()


def test_imported_files_follow_the_users_umask(workdir):
    write_mmrec(workdir / "raw")
    old = os.umask(0o022)
    try:
        assert mmrec_main([str(workdir / "raw"), "--name", "tiny"]) == 0
    finally:
        os.umask(old)
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(workdir / "dataset" / "tiny") == 0o755
    assert mode(workdir / "dataset" / "tiny" / "tiny.train.inter") == 0o644
    assert mode(workdir / "properties" / "dataset" / "tiny.yaml") == 0o644


# ---------------------------------------------------------------------------------------------------- compare


def compare(workdir, *args):
    from recbole_mamex.compare import main

    return main(["--dataset", "tiny-cold", "--seeds", "1", "--out", str(workdir / "res"), *args])


def test_compare_refuses_finished_runs_made_with_other_settings(cold_tiny, workdir, capsys):
    (workdir / "fast.yaml").write_text("train_batch_size: 256\n")
    base = ["--models", "BPR", "--config_files", "fast.yaml"]
    assert compare(workdir, *base, "--epochs=1") == 0
    record = workdir / "res" / "runs" / "BPR-seed1.json"
    first = record.read_text()
    summary = (workdir / "res" / "summary.md").read_text()
    assert "## Settings shared by every run" in summary and "- `epochs`: `1`" in summary
    capsys.readouterr()
    assert compare(workdir, *base, "--epochs=2", "--learning_rate=0.05") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "epochs: 1 -> 2" in err and "learning_rate: 0.001 -> 0.05" in err and "--rerun" in err
    assert record.read_text() == first and (workdir / "res" / "summary.md").read_text() == summary
    # a changed config file counts too; a setting that changes nothing (show_progress) does not
    (workdir / "fast.yaml").write_text("train_batch_size: 128\n")
    assert compare(workdir, *base, "--epochs=1") == 2
    assert "train_batch_size: 256 -> 128" in capsys.readouterr().err
    (workdir / "fast.yaml").write_text("train_batch_size: 256\nshow_progress: True\n")
    assert compare(workdir, *base, "--epochs=1") == 0
    assert "done before, skipped" in capsys.readouterr().out
    assert compare(workdir, *base, "--epochs=2", "--rerun") == 0
    assert json.loads(record.read_text())["config"]["epochs"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--models", "BPR", "--seeds", "2020", "2020"], "--seeds: expected each once, found [2020] repeated"),
        (["--models", "BPR", "BPR"], "--models: expected each once"),
        (["--models", "BPR", "--set", "epochs", "2"], "--set: expected key=value entries, found ['epochs', '2']"),
        (["--models", "MAMX"], "Unknown model 'MAMX'. Did you mean MAMEX"),
        (["--models", "BPR", "GRU4Rec"], "expected general recommenders"),
        (["--models", "BPR", "--metrics", "Recall@50"], "--metrics: expected metrics the runs compute"),
        (["--models", "BPR", "--config_files", "bad.yaml"], "bad.yaml"),
        (["--models", "BPR", "--config_files", "missing.yaml"], "missing.yaml"),
    ],
    ids=["seeds twice", "model twice", "set without =", "unknown model", "sequential model", "metric not computed",
         "bad yaml", "missing config file"],
)
def test_compare_errors_are_one_line_before_any_training(cold_tiny, workdir, capsys, args, message):
    (workdir / "bad.yaml").write_text("epochs: [1\n")
    argv = ["--dataset", "tiny-cold", "--out", str(workdir / "res")] + (["--seeds", "1"] if "--seeds" not in args else []) + args
    from recbole_mamex.compare import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not (workdir / "res" / "runs").exists()


def test_compare_on_a_dataset_that_is_not_there(workdir, capsys):
    from recbole_mamex.compare import main

    assert main(["--dataset", "tiny-cld", "--models", "BPR", "--seeds", "1", "--out", str(workdir / "res")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'tiny-cld'") and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------------- checkpoints


def test_two_trainings_started_in_the_same_second_write_different_checkpoints(cold_tiny, workdir, monkeypatch):
    import recbole.trainer.trainer as recbole_trainer
    import torch

    from recbole_mamex.quick_start import run_recbole_mamex

    from helpers import FAST

    monkeypatch.setattr(recbole_trainer, "get_local_time", lambda: "Dec-02-2026_05-00-00")  # the same second
    files = [run_recbole_mamex(model="BPR", dataset="tiny-cold", config_dict={**FAST, "epochs": 1, "seed": seed},
                               cmd_args=[])["model_file"] for seed in (1, 2)]
    assert files[0] != files[1] and all("BPR-Dec-02-2026_05-00-00-" in f for f in files)
    from recbole_mamex.trainer.checkpoint import read_checkpoint

    seeds = [read_checkpoint(f)["config"]["seed"] for f in files]
    assert seeds == [1, 2]  # each checkpoint holds its own run


# ---------------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learning_rat=0.01"], "learning_rat (in the command line): expected a config key"),
        (["--config_files=typo.yaml"], "learning_rat (in --config_files typo.yaml)"),
        (["--epochs=abc"], "epochs: expected a positive integer, found 'abc'"),
        (["--epochs=0"], "epochs: expected a positive integer, found 0"),
        (["--train_batch_size=0"], "train_batch_size: expected a positive integer, found 0"),
        (["--learning_rate=-0.1"], "learning_rate: expected a number > 0, found -0.1"),
        (["--align_weight=-1"], "align_weight: expected a number >= 0, found -1"),
        (["--config_files=bad.yaml"], "bad.yaml: expected a yaml mapping of config keys, found text yaml cannot read at line 3"),
    ],
    ids=["misspelt flag", "misspelt yaml key", "epochs abc", "epochs 0", "batch 0", "negative lr", "negative weight", "bad yaml"],
)
def test_cli_config_errors_are_one_line_before_training(cold_tiny, workdir, capsys, argv, message):
    from recbole_mamex.cli import main

    (workdir / "typo.yaml").write_text("learning_rat: 0.01\n")
    (workdir / "bad.yaml").write_text("epochs: 2\nmetrics: [Recall\n")
    assert main(["--model=MAMEX", "--dataset=tiny-cold", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and message in captured.err and captured.err.count("\n") == 1, captured.err
    assert "Did you mean learning_rate" in captured.err if "learning_rat " in message else True
    assert not (workdir / "saved").exists()


def test_compare_set_with_a_misspelt_key(cold_tiny, workdir, capsys):
    assert compare(workdir, "--models", "BPR", "--set", "learning_rat=0.01") == 2
    assert "Did you mean learning_rate" in capsys.readouterr().err


def test_own_keys_pass_when_listed(cold_tiny, workdir):
    from recbole_mamex.config import Config

    config = Config(model="BPR", dataset="tiny-cold", config_dict={"my_note": "run A", "unchecked_keys": ["my_note"]}, cmd_args=[])
    assert config["my_note"] == "run A"


def test_every_key_the_package_reads_is_a_known_key():
    import re

    from recbole_mamex.config import known_config_keys

    root = Path(__file__).resolve().parent.parent
    read = set()
    for path in [*root.joinpath("recbole_mamex").rglob("*.py"), *root.joinpath("dataset_prep").rglob("*.py")]:
        read.update(re.findall(r'config\["([A-Za-z_]+)"\]', path.read_text(encoding="utf-8")))
    assert read and not read - known_config_keys()


# ---------------------------------------------------------------------------------------------------- resume, checkpoints


RUN = ["--model=BPR", "--dataset=tiny", "--epochs=3", "--train_batch_size=256", "--show_progress=False",
       "--state=WARNING", "--seed=7"]


def interrupted_run(capsys) -> str:
    from recbole_mamex.cli import main

    assert main([*RUN, "--keep_last_checkpoint=True"]) == 0
    capsys.readouterr()
    (last,) = [os.path.join("saved", p) for p in os.listdir("saved") if p.endswith("-last.pth")]
    return last


def test_resume_refuses_changed_training_settings(tiny_dataset, workdir, capsys):
    from recbole_mamex.cli import main

    last = interrupted_run(capsys)
    assert main([*RUN, "--learning_rate=0.01", "--resume", last]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: resume: ") and "learning_rate: 0.001 -> 0.01" in err and err.count("\n") == 1
    assert main([*RUN, "--resume", last]) == 0  # the interrupted run's own arguments


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a checkpoint at all"], ids=["empty", "truncated zip", "text"])
def test_unreadable_checkpoints_are_one_error_line(tiny_dataset, workdir, capsys, content):
    from recbole_mamex.cli import main as cli_main
    from recbole_mamex.interpret import main as interpret_main
    from recbole_mamex.serving import main as serving_main

    bad = workdir / "bad.pth"
    bad.write_bytes(content)
    for command in (
        lambda: serving_main([str(bad), "--users", "1"]),
        lambda: interpret_main([str(bad), "--out", str(workdir / "w.csv")]),
        lambda: cli_main([*RUN, "--resume", str(bad)]),
    ):
        assert command() == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {bad}: expected a checkpoint saved by a training run, found a file torch cannot read"), err
        assert err.count("\n") == 1


def test_a_checkpoint_refuses_features_that_changed_with_the_same_shape(cold_tiny, workdir, capsys):
    import numpy as np

    from recbole_mamex.quick_start import run_recbole_mamex
    from recbole_mamex.serving import main as serving_main

    from helpers import FAST

    checkpoint = run_recbole_mamex(model="VBPR", dataset="tiny-cold", config_dict={**FAST, "epochs": 1}, cmd_args=[])["model_file"]
    users = ["1", "2"]
    assert serving_main([checkpoint, "--users", *users, "--candidates", "all"]) == 0
    capsys.readouterr()
    text = cold_tiny / "text.npy"
    if text.is_symlink():
        text.unlink()
    changed = np.load(workdir / "raw" / "text_feat.npy")[::-1].copy()  # same shape and dtype, other rows
    np.save(text, changed)
    assert serving_main([checkpoint, "--users", *users, "--candidates", "all"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {checkpoint}: expected the item features the model was trained on") and "text.npy" in err
    assert err.count("\n") == 1
    assert serving_main([checkpoint, "--users", *users, "--candidates", "all", "--allow-changed-features"]) == 0


# ---------------------------------------------------------------------------------------------------- input files


def test_a_bom_in_ids_files_and_inter_files_is_dropped(workdir):
    import numpy as np

    from recbole_mamex.data.features import ModalitySpec, rows_for_items

    features = workdir / "f.npy"
    np.save(features, np.eye(3, dtype=np.float32))
    ids = workdir / "ids.txt"
    ids.write_bytes("\ufeffB00X1\nB00X2\nB00X3\n".encode("utf-8"))
    rows = rows_for_items(ModalitySpec("image", features, ids), 3, ["[PAD]", "B00X1", "B00X3"])
    assert rows.tolist() == [-1, 0, 2]  # the first item keeps its row


def test_mmrec_inter_with_a_bom_imports(workdir):
    raw = write_mmrec(workdir / "raw")
    raw["inter"].write_bytes(b"\xef\xbb\xbf" + raw["inter"].read_bytes())
    assert mmrec_main([str(workdir / "raw"), "--name", "tiny"]) == 0
    from recbole_mamex.config import Config
    from recbole_mamex.data.loading import create_dataset

    from helpers import FAST

    dataset = create_dataset(Config(model="BPR", dataset="tiny", config_dict=FAST, cmd_args=[]))
    assert dataset.inter_num > 0


def test_recbole_atomic_file_with_a_bom_loads(tiny_dataset, workdir):
    from recbole_mamex.config import Config
    from recbole_mamex.data.loading import create_dataset

    from helpers import FAST

    train = workdir / "dataset" / "tiny" / "tiny.train.inter"
    plain = create_dataset(Config(model="BPR", dataset="tiny", config_dict=FAST, cmd_args=[])).inter_num
    train.write_bytes(b"\xef\xbb\xbf" + train.read_bytes())
    assert create_dataset(Config(model="BPR", dataset="tiny", config_dict=FAST, cmd_args=[])).inter_num == plain


def test_integer_layouts_refuse_tokens_that_are_not_canonical_integers(workdir, capsys):
    raw = write_mmrec(workdir / "raw")
    lines = raw["inter"].read_text().splitlines()
    user, item = lines[1].split("\t")[:2]
    lines[1] = lines[1].replace(f"{user}\t{item}\t", f"{user}\t0{item}\t", 1)  # '07' beside '7'
    raw["inter"].write_text("\n".join(lines) + "\n")
    assert mmrec_main([str(workdir / "raw"), "--name", "tiny"]) == 2
    assert f"itemID '0{item}'" in capsys.readouterr().err


def test_float64_values_beyond_float32_are_named_with_their_rows(workdir):
    import numpy as np

    from recbole_mamex.data.features import FeatureFileError, read_feature_matrix

    matrix = np.ones((5, 3))
    matrix[3, 1] = 1e39
    np.save(workdir / "big.npy", matrix)
    with pytest.raises(FeatureFileError, match=r"big.npy: expected values within float32's range .* 1 row\(s\): 3"):
        read_feature_matrix(workdir / "big.npy")


def test_serving_cold_candidates_on_a_dataset_without_cold_items(tiny_dataset, workdir, capsys):
    from recbole_mamex.quick_start import run_recbole_mamex
    from recbole_mamex.serving import main as serving_main

    from helpers import FAST

    checkpoint = run_recbole_mamex(model="BPR", dataset="tiny", config_dict={**FAST, "epochs": 1}, cmd_args=[])["model_file"]
    assert serving_main([checkpoint, "--users", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "use --candidates warm or all" in err


def test_modality_naming_hints(workdir, capsys):
    write_mmrec(workdir / "raw")
    (workdir / "raw" / "text_feat.npy").rename(workdir / "raw" / "all-MiniLM-L6-v2.npy")
    assert mmrec_main([str(workdir / "raw"), "--name", "tiny"]) == 2
    assert "--modality text=all-MiniLM-L6-v2.npy" in capsys.readouterr().err
    argv = [str(workdir / "raw"), "--name", "tiny", "--modality", "text=all-MiniLM-L6-v2.npy", "--modality", "text=audio_feat.npy"]
    assert mmrec_main(argv) == 2
    assert "'text' given twice" in capsys.readouterr().err


def test_an_ids_mapping_table_is_named_as_such(workdir):
    import numpy as np

    from recbole_mamex.data.features import FeatureFileError, ModalitySpec, rows_for_items

    np.save(workdir / "f.npy", np.eye(2, dtype=np.float32))
    (workdir / "i_id_mapping.csv").write_text("asin\titemID\nB001\t0\nB002\t1\n")
    with pytest.raises(FeatureFileError, match="one item token per line and no header.*i_id_mapping"):
        rows_for_items(ModalitySpec("image", workdir / "f.npy", workdir / "i_id_mapping.csv"), 2, ["[PAD]", "B001"])


def test_a_missing_dataset_is_reported_before_the_config_is_printed(workdir):
    script = Path(__file__).resolve().parent.parent / "run_recbole_mamex.py"
    done = subprocess.run([sys.executable, str(script), "--model=BPR", "--dataset=nosuch"], cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith("error: dataset 'nosuch'") and "Hyper Parameters" not in done.stdout + done.stderr
