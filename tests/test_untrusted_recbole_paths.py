"""Files and values that reach RecBole code (or the package's own readers) run no code and fail as one clear
error: LDiffRec's item_emb.npy, RecBole's torch.load under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, model names
that are not models, yaml Python cannot build, and over-long or deeply nested lines of the files we parse."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from recbole_mamex import compat

from helpers import FAST

ROOT = Path(__file__).resolve().parents[1]
TINY = Path("dataset") / "tiny"
QUICK = ["--epochs=1", "--use_gpu=False", "--state=ERROR", "--show_progress=False"]


class Payload:
    """Unpickled, it creates the file ``marker`` (``open(marker, "w")``): proof that the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def run_cli(args, cwd, disabled=(), env=None):
    """run_recbole_mamex.py in a fresh process (the shims applied at import, less ``disabled``)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_FORCE_")}  # this process's shim set one
    full_env = {**inherited, **(env or {}), compat.DISABLE_ENV: ",".join(disabled)}
    return subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_mamex.py"), *args, *QUICK],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300,
    )


# ----------------------------------------------------------------------------------------------------
# RecBole's LDiffRec: np.load(item_emb.npy, allow_pickle=True)


def test_ldiffrec_item_emb_pickle_runs_without_the_shim_and_is_one_error_line_with_it(tiny_dataset, workdir):
    marker = workdir / "ran"
    np.save(TINY / "item_emb.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    args = ["--model=LDiffRec", "--dataset=tiny", "--n_cate=2"]

    off = run_cli(args, workdir, disabled=["numpy_load_no_pickles"])
    assert off.returncode != 0 and marker.exists(), off.stderr  # unsafe: the payload ran
    marker.unlink()

    on = run_cli(args, workdir)
    assert not marker.exists()
    assert on.returncode == 2, on.stderr
    lines = on.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), on.stderr
    assert str(TINY / "item_emb.npy") in lines[0] and "unpickling" in lines[0], on.stderr


def test_ldiffrec_np_load_reads_plain_arrays_and_refuses_pickles(tmp_path):
    """(LDiffRec itself needs kmeans_pytorch past its np.load when n_cate > 1, which is not installed.)"""
    from recbole.model.general_recommender import ldiffrec

    from recbole_mamex.errors import InputFileError

    emb = np.random.default_rng(0).normal(size=(29, 64)).astype(np.float32)
    np.save(tmp_path / "item_emb.npy", emb)
    np.testing.assert_array_equal(ldiffrec.np.load(tmp_path / "item_emb.npy", allow_pickle=True), emb)
    np.save(tmp_path / "objects.npy", np.array([Payload(tmp_path / "ran")], dtype=object), allow_pickle=True)
    with pytest.raises(InputFileError, match="unpickling"):
        ldiffrec.np.load(tmp_path / "objects.npy", allow_pickle=True)
    with pytest.raises(InputFileError, match="No such file"):
        ldiffrec.np.load(tmp_path / "absent.npy", allow_pickle=True)
    assert not (tmp_path / "ran").exists() and ldiffrec.np.float32 is np.float32


# ----------------------------------------------------------------------------------------------------
# RecBole's torch.load without weights_only, and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD


def test_torch_force_no_weights_only_cannot_make_neumf_unpickle_its_pretrain_file(tiny_dataset, workdir):
    import torch

    marker = workdir / "ran"
    torch.save({"state_dict": Payload(marker)}, workdir / "evil.pth")
    args = ["--model=NeuMF", "--dataset=tiny", "--use_pretrain=True", "--mf_pretrain_path=evil.pth",
            "--mlp_pretrain_path=evil.pth"]
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}

    off = run_cli(args, workdir, disabled=["torch_load_weights_only"], env=env)
    assert off.returncode != 0 and marker.exists(), off.stderr  # unsafe: the payload ran
    marker.unlink()

    on = run_cli(args, workdir, env=env)
    assert on.returncode == 2 and not marker.exists(), on.stderr
    lines = on.stderr.strip().splitlines()
    assert len(lines) == 1, on.stderr  # torch's weights-only unpickler refused it, as one line
    assert re.fullmatch(r"error: evil\.pth: expected a checkpoint of plain tensors and values \(read weights-only\), found "
                        r"a pickle that refers to \S*open, which weights-only reading refuses \(unpickling it could run code\)",
                        lines[0]), lines[0]


def neumf_pretrain_files(model, folder):
    """What NeuMF's load_pretrain reads, from a NeuMF ``model``'s weights: an MF file and an MLP file (each with
    its half of the predict layer), plain tensors."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    half = model.mf_embedding_size
    mf = {**{k: v for k, v in state.items() if "mf_embedding" in k},
          "predict_layer.weight": state["predict_layer.weight"][:, :half], "predict_layer.bias": state["predict_layer.bias"]}
    mlp = {**{k: v for k, v in state.items() if "mlp_" in k},
           "predict_layer.weight": state["predict_layer.weight"][:, half:], "predict_layer.bias": state["predict_layer.bias"]}
    import torch

    torch.save({"state_dict": mf}, folder / "mf.pth")
    torch.save(mlp, folder / "mlp.pth")  # NeuMF reads either form
    return state


def test_a_neumf_pretrain_file_of_tensors_still_loads(tiny_dataset, workdir):
    import torch
    from recbole.model.general_recommender import NeuMF, neumf

    from recbole_mamex.config import Config
    from recbole_mamex.data.loading import create_dataset

    assert isinstance(neumf.torch, compat._WeightsOnlyTorch)  # the loads below go through the shim
    dataset = create_dataset(Config(model="NeuMF", dataset="tiny", config_dict=FAST, cmd_args=[]))
    trained = NeuMF(Config(model="NeuMF", dataset="tiny", config_dict=FAST, cmd_args=[]), dataset)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.normal_()
    state = neumf_pretrain_files(trained, workdir)
    pretrained = NeuMF(Config(model="NeuMF", dataset="tiny", cmd_args=[], config_dict={
        **FAST, "use_pretrain": True, "mf_pretrain_path": str(workdir / "mf.pth"), "mlp_pretrain_path": str(workdir / "mlp.pth")}),
        dataset)
    loaded = pretrained.state_dict()
    for key in [k for k in state if "embedding" in k or k.startswith("mlp_layers.")]:
        assert torch.equal(loaded[key], state[key]), key
    assert torch.equal(loaded["predict_layer.weight"], state["predict_layer.weight"])  # RecBole's halves, put together
    assert torch.equal(loaded["predict_layer.bias"], state["predict_layer.bias"])  # 0.5 * (mf + mlp)


@pytest.mark.parametrize("module_name", compat._TORCH_LOADING_MODULES)
def test_the_pretrain_loading_modules_read_tensors_and_refuse_pickles_as_one_line(module_name, tmp_path):
    import importlib

    import torch

    from recbole_mamex.errors import InputFileError

    module = importlib.import_module(module_name)
    assert isinstance(module.torch, compat._WeightsOnlyTorch) and module.torch.nn is torch.nn
    torch.save({"state_dict": {"w": torch.arange(3.0)}}, tmp_path / "good.pth")
    assert torch.equal(module.torch.load(tmp_path / "good.pth", map_location="cpu")["state_dict"]["w"], torch.arange(3.0))
    marker = tmp_path / "ran"
    torch.save({"state_dict": Payload(marker)}, tmp_path / "evil.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("hello")
    for name, found in [("evil.pth", r"a pickle that refers to \S*open, which weights-only reading refuses"),
                        ("empty.pth", "an empty or truncated file"), ("text.pth", "a file torch.save did not write"),
                        ("absent.pth", "no such file or directory")]:
        with pytest.raises(InputFileError, match=re.escape(str(tmp_path / name)) + ": expected a checkpoint of plain tensors "
                           rf"and values \(read weights-only\), found {found}") as info:
            module.torch.load(tmp_path / name)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_any_file_torch_save_did_not_write_is_one_error_line(tmp_path):
    """Every first byte, with a few tails (a RecBole atomic file, JSON, binary): one InputFileError, never a
    traceback of torch's reader."""
    from recbole_mamex.errors import InputFileError

    module = __import__("recbole.model.general_recommender.neumf", fromlist=["torch"])
    assert isinstance(module.torch, compat._WeightsOnlyTorch)
    path = tmp_path / "not-a-checkpoint.pth"
    for first in range(256):
        for tail in (b"", b"ser_id:token\titem_id:token\n1\t2\n", b'{"a": [1, 2]}', bytes(range(64))):
            path.write_bytes(bytes([first]) + tail)
            with pytest.raises(InputFileError, match=re.escape(str(path)) + ": expected a checkpoint") as info:
                module.torch.load(path)
            assert "\n" not in str(info.value), (first, tail)


def test_own_weights_only_loads_work_with_the_forced_setting(tmp_path):
    import torch

    compat.torch_load_weights_only()
    assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1" and "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    state = {"w": torch.arange(3.0), "config": "{}", "epoch": 2}
    torch.save(state, tmp_path / "c.pth")
    loaded = torch.load(tmp_path / "c.pth", map_location="cpu", weights_only=True)
    assert torch.equal(loaded["w"], state["w"]) and loaded["epoch"] == 2


# ----------------------------------------------------------------------------------------------------
# registry.get_model: a recommender class or the unknown-model error


@pytest.mark.parametrize("name", ["random", "__init__", "GeneralRecommender"])
def test_get_model_refuses_what_is_not_a_recommender_class(name):
    from recbole_mamex.registry import UnknownModelError, get_model

    with pytest.raises(UnknownModelError, match=f"Unknown model '{name}'"):
        get_model(name)


def test_get_model_still_finds_recbole_and_our_models():
    from recbole.model.general_recommender import BPR, Pop, Random

    from recbole_mamex.registry import get_model, our_models

    assert get_model("Pop") is Pop and get_model("BPR") is BPR
    assert get_model("MAMEX") is our_models()["MAMEX"]
    # ours first: Random is the package's per-user ranking, a subclass of RecBole's
    assert get_model("Random") is our_models()["Random"] and issubclass(get_model("Random"), Random)


# ----------------------------------------------------------------------------------------------------
# yaml that parses but that Python cannot build

YAML_PYTHON_CANNOT_BUILD = {
    "nested 5000 deep": ("[" * 5000, "nested too deeply"),
    "5000-digit integer": ("9" * 5000, "a value Python cannot hold"),
    "timestamp offset -99:00": ("2020-01-01 00:00:00-99:00", "a value Python cannot hold"),
    "date out of range": ("2020-13-45", "a value Python cannot hold"),
}
CASES = [pytest.param(text, found, id=name) for name, (text, found) in YAML_PYTHON_CANNOT_BUILD.items()]


@pytest.mark.parametrize("text, found", CASES)
def test_load_yaml_raises_a_yaml_error(text, found):
    from recbole_mamex.files import load_yaml, yaml_problem

    with pytest.raises(yaml.YAMLError) as info:
        load_yaml(text)
    assert found in yaml_problem(info.value)


@pytest.mark.parametrize("text, found", CASES)
def test_override_value_is_a_config_error(text, found):
    from recbole_mamex.errors import ConfigError
    from recbole_mamex.overrides import override_value

    with pytest.raises(ConfigError, match=f"--epochs: expected a yaml value.*{found}"):
        override_value("epochs", text)


@pytest.mark.parametrize("text, found", CASES)
def test_yaml_files_are_one_input_file_error(tmp_path, text, found):
    from recbole_mamex.errors import InputFileError
    from recbole_mamex.files import read_yaml_mapping

    path = tmp_path / "bad.yaml"
    path.write_text(f"epochs: {text}\n")
    with pytest.raises(InputFileError, match=found) as info:
        read_yaml_mapping(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text, found", CASES)
def test_config_files_are_one_error_line(tiny_dataset, workdir, text, found):
    path = workdir / "bad.yaml"
    path.write_text(f"epochs: {text}\n")
    result = run_cli(["--model=BPR", "--dataset=tiny", f"--config_files={path}"], workdir)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and found in lines[0], result.stderr


# ----------------------------------------------------------------------------------------------------
# Over-long and deeply nested lines of .hyper, Amazon, attributes and cold-items files


def test_hyper_file_line_over_64_kb_is_refused(tmp_path):
    from recbole_mamex.tuning import HyperFileError, read_params_file

    path = tmp_path / "big.hyper"
    choices = "[" + ",".join(["1"] * 40_000) + "]"  # 80 KB, a valid choice list
    path.write_text(f"learning_rate choice [0.01,0.001]\nembedding_size choice {choices}\n")
    with pytest.raises(HyperFileError, match=r"line 2: expected a line of at most 65,536 characters") as info:
        read_params_file(path)
    assert str(path) in str(info.value)


def _gz(path: Path, lines) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    return path


GOOD_META = json.dumps({"asin": "B001", "title": "ok"})


def test_amazon_metadata_line_over_1_mb_is_malformed(tmp_path):
    from dataset_prep.amazon import ReadStats, iter_metadata
    from dataset_prep.common import DataImportError

    path = _gz(tmp_path / "meta.json.gz", ["{'asin': 'B000', 'x': [" + "1," * 600_000 + "]}", GOOD_META])
    with pytest.raises(DataImportError, match=r"line 1: a line of over 1,048,576 characters") as info:
        list(iter_metadata(path))
    assert str(path) in str(info.value)
    stats = ReadStats()
    assert [r["asin"] for r in iter_metadata(path, skip_malformed=True, stats=stats)] == ["B001"]


def test_amazon_deeply_nested_lines_are_malformed(tmp_path):
    from dataset_prep.amazon import iter_metadata, iter_reviews
    from dataset_prep.common import DataImportError

    deep = "[" * 100_000 + "]" * 100_000
    meta = _gz(tmp_path / "meta.json.gz", [GOOD_META, deep])
    with pytest.raises(DataImportError, match=r"line 2: .*nested too deeply") as info:
        list(iter_metadata(meta))
    assert str(meta) in str(info.value)
    reviews = _gz(tmp_path / "reviews.json.gz", [deep])
    with pytest.raises(DataImportError, match=r"line 1: json nested too deeply") as info:
        list(iter_reviews(reviews))
    assert str(reviews) in str(info.value)


def test_attributes_json_nested_too_deeply_is_refused(tmp_path):
    from dataset_prep.attributes import read_json_attributes
    from dataset_prep.common import DataImportError

    path = tmp_path / "attributes.json"
    path.write_text('{"1": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DataImportError, match="nested too deeply") as info:
        read_json_attributes(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content, found",
    [(b'{"cold_valid": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
     (b'{"cold_valid": ["\xff"]}', "bytes that are not UTF-8")],
    ids=["nested", "not utf-8"],
)
def test_cold_items_file_unreadable_is_one_error(tiny_dataset, content, found):
    from dataset_prep.prepare import ensure_dataset_files

    from recbole_mamex.config import Config
    from recbole_mamex.data.dataset import ColdItemsFileError
    from recbole_mamex.data.loading import create_dataset

    (TINY / "cold.json").write_bytes(content)
    config = Config(model="BPR", dataset="tiny", config_dict={**FAST, "cold_items_file": "cold.json"}, cmd_args=[])
    ensure_dataset_files(config)
    with pytest.raises(ColdItemsFileError, match=found) as info:
        create_dataset(config)
    assert str(TINY / "cold.json") in str(info.value)
