"""Model bundles: safetensors + JSON + the dataset's files, loaded without unpickling, with the checkpoint's scores."""

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction
from safetensors.torch import load_file, save_file

from recbole_mamex.bundle import BundleFileError, export_bundle, is_bundle, load_bundle
from recbole_mamex.files import OutputError
from recbole_mamex.quick_start import CheckpointMismatchError, load_data_and_model, run_recbole_mamex
from recbole_mamex.trainer.checkpoint import read_checkpoint

from helpers import FAST


def train(model, **overrides):
    config = {**FAST, "epochs": 2, **overrides}
    return run_recbole_mamex(model=model, dataset="tiny-cold", config_dict=config, cmd_args=[])["model_file"]


def full_scores(loaded):
    """The model's full-sort scores of every item for every user ([users, items])."""
    config, model, dataset = loaded[:3]
    model.eval()
    users = torch.arange(1, dataset.user_num)
    interaction = dataset.join(Interaction({dataset.uid_field: users})).to(config["device"])
    with torch.no_grad():
        return model.full_sort_predict(interaction).view(len(users), -1).cpu()


class Payload:
    """Unpickled, it creates the file ``marker`` (through ``open``): proof that a file was unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("model, overrides", [("MAMEX", {}), ("BPR", {}), ("MAMEX", {"feature_norm": "center_l2"})],
                         ids=["MAMEX", "BPR", "MAMEX-center_l2"])
def test_a_bundle_scores_as_its_checkpoint(cold_tiny, workdir, model, overrides):
    checkpoint = train(model, **overrides)
    out = export_bundle(checkpoint, workdir / "bundle")
    assert out == workdir / "bundle" and is_bundle(out) and not is_bundle(checkpoint)
    assert sorted(os.listdir(out)) == ["bundle.json", "data", "model.safetensors"]
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []  # no temporary folder left

    expected = full_scores(load_data_and_model(checkpoint))
    loaded = load_bundle(out)
    assert torch.equal(full_scores(loaded), expected)
    assert loaded[0]["model"] == model and loaded[0]["data_path"] == os.fspath(out / "data" / "tiny-cold")

    description = json.loads((out / "bundle.json").read_text())
    assert description["format"] == "recbole_mamex bundle" and description["format_version"] == 1
    assert description["model"] == model and description["config"]["model"] == model
    saved = read_checkpoint(checkpoint)
    assert description["token_maps"] == saved["token_maps"]
    dataset = loaded[2]
    assert description["tokens"]["item"]["tokens"] == list(map(str, dataset.field2id_token["item_id"]))
    assert {"recbole_mamex", "recbole", "torch", "safetensors"} <= set(description["versions"])
    files = description["data"]["files"]
    assert {"tiny-cold.train.inter", "tiny-cold.valid.inter", "tiny-cold.test.inter", "tiny-cold.cold_items.json"} <= set(files)
    for name, entry in files.items():
        assert (out / "data" / "tiny-cold" / name).read_bytes() == (cold_tiny / name).read_bytes()
    weights = load_file(out / "model.safetensors")
    other = {key: value for key, value in weights.items() if key.startswith("other_parameter/")}
    assert {key: value for key, value in weights.items() if key not in other}.keys() == saved["state_dict"].keys()
    if model == "MAMEX":
        assert {"text.npy", "audio.npy"} <= set(files)
        assert description["other_parameter"]["feature_fingerprints"] == saved["other_parameter"]["feature_fingerprints"]
    centers = saved["other_parameter"].get("feature_centers") or {}
    assert bool(centers) == ("feature_norm" in overrides)
    assert set(other) == {f"other_parameter/feature_centers/{name}" for name in centers}
    for name, center in centers.items():  # the centres round-trip, and are checked on load
        assert torch.equal(other[f"other_parameter/feature_centers/{name}"], center)
    if centers:
        weights["other_parameter/feature_centers/text"] += 1.0
        save_file(weights, out / "model.safetensors")
        with pytest.raises(CheckpointMismatchError, match=r"other centres for \['text'\]"):
            load_bundle(out)
        assert torch.equal(full_scores(load_bundle(out, allow_changed_features=True)), expected)


def test_a_bundle_loads_without_the_dataset_folder(cold_tiny, workdir, monkeypatch):
    elsewhere = workdir / "features"  # a modality file outside the dataset's folder, by absolute path
    elsewhere.mkdir()
    shutil.copy(cold_tiny / "text.npy", elsewhere / "text.npy")
    checkpoint = train("MAMEX", modalities={"text": os.fspath(elsewhere / "text.npy"), "audio": "audio.npy"})
    expected = full_scores(load_data_and_model(checkpoint))
    out = export_bundle(checkpoint, workdir / "shared" / "mamex-bundle")
    assert (out / "data" / "tiny-cold" / "outside" / "text.npy").is_file()

    away = workdir / "away"
    away.mkdir()
    for name in ("dataset", "properties", "features", "saved"):
        (workdir / name).rename(away / name)
    monkeypatch.chdir(away)
    loaded = load_bundle(workdir / "shared" / "mamex-bundle")
    assert torch.equal(full_scores(loaded), expected)
    assert loaded[1].feature_sources["text"] == os.fspath(out / "data" / "tiny-cold" / "outside" / "text.npy")


def test_no_file_of_a_bundle_is_unpickled(cold_tiny, workdir):
    checkpoint = train("BPR")
    out = export_bundle(checkpoint, workdir / "bundle")
    marker = workdir / "marker"
    torch.save({"state": Payload(marker)}, workdir / "payload.pth")
    with zipfile.ZipFile(workdir / "payload.pth") as archive:  # the payload works: unpickling makes the marker
        pickle.loads(archive.read("payload/data.pkl"))
    assert marker.exists()
    marker.unlink()

    shutil.copy(workdir / "payload.pth", out / "model.pth")  # a pickle beside the bundle's files: never read
    # where RecBole's own create_dataset / data_preparation unpickle a saved dataset or dataloaders
    saved = workdir / json.loads((out / "bundle.json").read_text())["config"]["final_config_dict"]["checkpoint_dir"]
    saved.mkdir(exist_ok=True)
    for name in ("tiny-cold-MultimodalDataset.pth", "tiny-cold-Dataset.pth", "tiny-cold-for-BPR-dataloader.pth"):
        shutil.copy(workdir / "payload.pth", saved / name)
    load_bundle(out)
    assert not marker.exists()

    shutil.copy(workdir / "payload.pth", out / "model.safetensors")  # a pickle in place of the weights
    with pytest.raises(BundleFileError) as info:
        load_bundle(out)
    message = str(info.value)
    assert message.startswith(f"{out / 'model.safetensors'}: expected the model's weights in the safetensors format")
    assert "a file safetensors cannot read" in message and "\n" not in message
    assert not marker.exists()
    (out / "model.safetensors").unlink()
    with pytest.raises(BundleFileError, match=r"model\.safetensors: expected the model's weights .*found no such file"):
        load_bundle(out)


def test_bundle_json_and_data_files_are_checked(cold_tiny, workdir):
    checkpoint = train("MAMEX", epochs=1)
    out = export_bundle(checkpoint, workdir / "bundle")
    description = out / "bundle.json"
    text = description.read_text()

    description.write_text(text[:200])
    with pytest.raises(BundleFileError, match=r"bundle\.json: expected JSON, found a parse error"):
        load_bundle(out)
    description.write_text(json.dumps({**json.loads(text), "format_version": 2}))
    with pytest.raises(BundleFileError, match=r"bundle\.json: expected bundle format version 1, found version 2"):
        load_bundle(out)
    description.write_text(json.dumps({**json.loads(text), "format": "something else"}))
    with pytest.raises(BundleFileError, match=r"expected a bundle description \(format 'recbole_mamex bundle'\), found format 'something else'"):
        load_bundle(out)
    description.unlink()
    assert not is_bundle(out)
    with pytest.raises(BundleFileError, match="a folder without bundle.json"):
        load_bundle(out)
    description.write_text(text)

    inter = out / "data" / "tiny-cold" / "tiny-cold.train.inter"
    original = inter.read_bytes()
    lines = original.decode().splitlines(keepends=True)
    inter.write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))  # two lines swapped: other ids
    with pytest.raises(BundleFileError) as info:
        load_bundle(out)
    message = str(info.value)
    assert message.startswith(f"{inter}: expected the dataset file exported with the bundle (md5 ")
    assert "found other bytes" in message and "changed since the export" in message
    inter.unlink()
    with pytest.raises(BundleFileError, match=rf"{inter}: expected the copy of the dataset file that bundle.json lists, found no such file"):
        load_bundle(out)
    inter.write_bytes(original)
    np.save(out / "data" / "tiny-cold" / "text.npy", np.zeros((30, 8), dtype=np.float32))
    with pytest.raises(BundleFileError, match=r"text\.npy: expected the dataset file exported with the bundle"):
        load_bundle(out)
    with pytest.raises(BundleFileError, match="no such folder"):
        load_bundle(workdir / "absent")
    np.save(out / "data" / "tiny-cold" / "text.npy", np.load(cold_tiny / "text.npy"))
    load_bundle(out)  # restored

    # the run reads only the bundle's copies: an atomic file added to data/ that the config loads, a config
    # naming a file elsewhere
    (out / "data" / "tiny-cold" / "tiny-cold.item").write_text("item_id:token\tx:float\n1\t0.5\n")
    load_bundle(out)  # load_col has no item: RecBole never opens it
    edited = json.loads(text)
    edited["config"]["final_config_dict"]["load_col"]["item"] = ["item_id", "x"]
    description.write_text(json.dumps(edited))
    with pytest.raises(BundleFileError, match=r"bundle\.json: expected the run to read only the data files the bundle lists, found 1 more: .*tiny-cold\.item"):
        load_bundle(out)
    (out / "data" / "tiny-cold" / "tiny-cold.item").unlink()
    edited = json.loads(text)
    edited["config"]["final_config_dict"]["modalities"]["text"] = os.fspath(cold_tiny / "text.npy")
    description.write_text(json.dumps(edited))
    with pytest.raises(BundleFileError, match=rf"found 1 more: {cold_tiny / 'text.npy'}"):
        load_bundle(out)

    # the users and items rebuilt are those listed, in id order
    edited = json.loads(text)
    items = edited["tokens"]["item"]["tokens"]
    items[1], items[2] = items[2], items[1]
    description.write_text(json.dumps(edited))
    with pytest.raises(CheckpointMismatchError, match=r"bundle\.json: expected the item tokens bundle\.json lists \(item_id, id order\), found 30 items"):
        load_bundle(out)


def test_a_bundle_holds_only_the_files_the_run_reads(cold_tiny, workdir):
    train_inter = (cold_tiny / "tiny-cold.train.inter").read_text()
    strays = {  # beside the dataset's files, none of them read by the run
        "tiny-cold.train.inter.bak": "".join(train_inter.splitlines(keepends=True)[:-5]),  # a user's backup
        "tiny-cold.inter.orig": train_inter,
        "tiny-cold.inter": train_inter,  # the run reads the benchmark files (benchmark_filename) instead
        "tiny-cold.item": "item_id:token\tx:float\n1\t0.5\n",  # load_col loads no item columns
    }
    for name, content in strays.items():
        (cold_tiny / name).write_text(content)
    checkpoint = train("MAMEX", epochs=1)
    out = export_bundle(checkpoint, workdir / "bundle")

    copied = sorted(os.listdir(out / "data" / "tiny-cold"))
    assert copied == sorted(json.loads((out / "bundle.json").read_text())["data"]["files"]) == [
        "audio.npy", "text.npy", "tiny-cold.cold_items.json", "tiny-cold.test.inter", "tiny-cold.train.inter",
        "tiny-cold.valid.inter",
    ]
    expected = full_scores(load_data_and_model(checkpoint))
    assert torch.equal(full_scores(load_bundle(out)), expected)

    # a stray file put into the bundle's data folder is not read either: the bundle loads, with the same scores
    shutil.copy(cold_tiny / "tiny-cold.train.inter.bak", out / "data" / "tiny-cold" / "tiny-cold.train.inter.bak")
    assert torch.equal(full_scores(load_bundle(out)), expected)


def test_export_refuses_a_folder_that_is_not_empty(cold_tiny, workdir, monkeypatch):
    checkpoint = train("BPR", epochs=1)
    out = workdir / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError) as info:
        export_bundle(checkpoint, out)
    assert str(info.value).startswith(f"cannot write {out}: expected a new or empty folder for the bundle, found 1 entries in it (notes.txt)")
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    (workdir / "file").write_text("x")
    with pytest.raises(OutputError, match="found a file of that name"):
        export_bundle(checkpoint, workdir / "file")
    assert (workdir / "file").read_text() == "x"

    import safetensors.torch

    def failing(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(safetensors.torch, "save_file", failing)
        with pytest.raises(OutputError, match=r"cannot write .*new: no space left on device"):
            export_bundle(checkpoint, workdir / "new")
    assert not (workdir / "new").exists()
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".")] == []  # the temporary folder removed

    empty = workdir / "empty"
    empty.mkdir()
    assert export_bundle(checkpoint, empty) == empty and is_bundle(empty)


def test_a_bundle_holds_no_path_of_the_exporting_machine(cold_tiny, workdir):
    features = workdir / "features"
    features.mkdir()
    shutil.copy(cold_tiny / "text.npy", features / "text.npy")
    checkpoint = train("MAMEX", epochs=1, modalities={"text": str(features / "text.npy")},
                       checkpoint_dir=str(workdir / "saved-here"))
    out = export_bundle(checkpoint, workdir / "bundle")

    def strings(value):
        if isinstance(value, dict):
            for key, item in value.items():
                yield str(key)
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    found = [text for text in strings(json.loads((out / "bundle.json").read_text()))
             if str(workdir) in text or str(Path.home()) in text or text.startswith("/")]
    assert found == []
    shutil.rmtree(features)
    assert load_bundle(out)[1].feature_fingerprints.keys() == {"text"}
