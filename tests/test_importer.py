"""MMRec-layout importer: output files, atomicity, refusal to overwrite, clear errors."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataset_prep.common import DataImportError, DatasetExistsError
from dataset_prep.common import dataset_yaml_text
from dataset_prep.mmrec import import_mmrec, main, mmrec_source
from recbole_mamex.data.features import FeatureFileError
from dataset_prep.bundled import BUNDLED
from recbole_mamex.paths import properties_dir

from helpers import write_mmrec

QUIET = {"log": lambda *_: None}


def run_import(root: Path, name="tiny", **kwargs):
    raw = root / "raw"
    return import_mmrec(
        raw / "tiny.inter",
        {"text": raw / "text_feat.npy", "audio": raw / "audio_feat.npy"},
        name,
        out_root=root / "dataset",
        properties_dir=root / "properties",
        **QUIET,
        **kwargs,
    )


def read_atomic(path):
    return pd.read_csv(path, sep="\t", dtype=str)


def test_import_writes_benchmark_files_features_and_yaml(tmp_path):
    write_mmrec(tmp_path / "raw")
    result = run_import(tmp_path)
    out = tmp_path / "dataset" / "tiny"
    source = pd.read_csv(tmp_path / "raw" / "tiny.inter", sep="\t", dtype=str)
    parts = {split: read_atomic(out / f"tiny.{split}.inter") for split in ("train", "valid", "test")}
    for frame in parts.values():
        assert list(frame.columns) == ["user_id:token", "item_id:token", "rating:float"]
    # every interaction lands in exactly one file, in the split its x_label says
    for label, split in enumerate(("train", "valid", "test")):
        expected = source[source["x_label"] == str(label)][["userID", "itemID"]].to_numpy()
        np.testing.assert_array_equal(parts[split][["user_id:token", "item_id:token"]].to_numpy(), expected)
    assert sum(len(f) for f in parts.values()) == len(source)
    assert result.counts == {"train": 24 * 6, "valid": 24, "test": 24}
    for modality, raw_name in (("text", "text_feat.npy"), ("audio", "audio_feat.npy")):
        assert (out / f"{modality}.npy").read_bytes() == (tmp_path / "raw" / raw_name).read_bytes()
    yaml_text = (tmp_path / "properties" / "dataset" / "tiny.yaml").read_text()
    assert "benchmark_filename: [train, valid, test]" in yaml_text
    assert "  text: text.npy\n  audio: audio.npy\n" in yaml_text
    assert not [p for p in (tmp_path / "dataset").iterdir() if p.name.startswith(".")]


def test_import_is_deterministic(tmp_path):
    write_mmrec(tmp_path / "raw")
    run_import(tmp_path, name="a")
    run_import(tmp_path, name="b")
    for split in ("train", "valid", "test"):
        a = (tmp_path / "dataset" / "a" / f"a.{split}.inter").read_bytes()
        b = (tmp_path / "dataset" / "b" / f"b.{split}.inter").read_bytes()
        assert a == b


def test_existing_dataset_is_not_overwritten_without_force(tmp_path):
    write_mmrec(tmp_path / "raw")
    run_import(tmp_path)
    train = tmp_path / "dataset" / "tiny" / "tiny.train.inter"
    train.write_text("user edited\n")
    with pytest.raises(DatasetExistsError, match="--force"):
        run_import(tmp_path)
    assert train.read_text() == "user edited\n"
    # the yaml alone existing also blocks
    (tmp_path / "dataset" / "tiny").rename(tmp_path / "moved")
    with pytest.raises(DatasetExistsError, match="tiny.yaml"):
        run_import(tmp_path)
    run_import(tmp_path, force=True)
    assert train.read_text().startswith("user_id:token")


def test_force_replaces_an_existing_dataset(tmp_path):
    write_mmrec(tmp_path / "raw")
    run_import(tmp_path)
    (tmp_path / "dataset" / "tiny" / "tiny.train.inter").write_text("old")  # a file the importer wrote
    run_import(tmp_path, force=True)
    assert (tmp_path / "dataset" / "tiny" / "tiny.train.inter").read_text().startswith("user_id:token")
    assert sorted(p.name for p in (tmp_path / "dataset").iterdir()) == ["tiny"]


def test_force_never_deletes_a_file_the_importer_did_not_write(tmp_path):
    write_mmrec(tmp_path / "raw")
    run_import(tmp_path)
    (tmp_path / "dataset" / "tiny" / "stale.txt").write_text("old")
    with pytest.raises(DataImportError, match=r"1 other file\(s\), e.g. \['stale.txt'\]"):
        run_import(tmp_path, force=True)
    assert (tmp_path / "dataset" / "tiny" / "stale.txt").read_text() == "old"
    (tmp_path / "dataset" / "tiny" / "stale.txt").unlink()
    run_import(tmp_path, force=True)
    assert sorted(p.name for p in (tmp_path / "dataset").iterdir()) == ["tiny"]


def test_failed_import_leaves_nothing_behind(tmp_path):
    write_mmrec(tmp_path / "raw")
    bad = np.ones((30, 4), dtype=np.float32)
    bad[3, 1] = np.nan
    np.save(tmp_path / "raw" / "audio_feat.npy", bad)
    with pytest.raises(FeatureFileError, match="NaN or Inf"):
        run_import(tmp_path)
    assert not (tmp_path / "dataset" / "tiny").exists()
    assert not (tmp_path / "properties" / "dataset" / "tiny.yaml").exists()
    assert not any((tmp_path / "dataset").iterdir()) if (tmp_path / "dataset").exists() else True


def test_feature_rows_must_cover_item_ids(tmp_path):
    write_mmrec(tmp_path / "raw")
    np.save(tmp_path / "raw" / "text_feat.npy", np.ones((10, 8), dtype=np.float32))
    with pytest.raises(FeatureFileError, match=r"at least 30 rows .* found 10 rows"):
        run_import(tmp_path)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("userID\titemID\trating\n0\t1\t1\n", "columns ['userID', 'itemID', 'x_label']"),
        ("userID\titemID\tx_label\n0\t1\t0\n0\t2\t5\n0\t3\t1\n0\t4\t2\n", "'5' on line 3"),
        ("userID\titemID\tx_label\n0\t1\t0\n0\t3\t1\n", "none with x_label 2 (test)"),
        ("userID\titemID\tx_label\n", "a header only"),
        ("userID\titemID\tx_label\n0\tB0A\t0\n0\t3\t1\n0\t4\t2\n", "integer itemIDs"),
    ],
)
def test_bad_inter_files(tmp_path, content, fragment):
    write_mmrec(tmp_path / "raw")
    (tmp_path / "raw" / "tiny.inter").write_text(content)
    with pytest.raises(DataImportError) as info:
        run_import(tmp_path)
    assert fragment in str(info.value)
    assert str(tmp_path / "raw" / "tiny.inter") in str(info.value)
    assert not (tmp_path / "dataset" / "tiny").exists()


def test_cli_discovers_files_and_reports_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_mmrec(tmp_path / "raw")
    assert main(["raw", "--name", "cli"]) == 0
    assert (tmp_path / "dataset" / "cli" / "text.npy").is_file()
    assert (tmp_path / "dataset" / "cli" / "audio.npy").is_file()
    assert "modalities:\n  audio: audio.npy\n  text: text.npy\n" in (tmp_path / "properties" / "dataset" / "cli.yaml").read_text()
    assert main(["raw", "--name", "cli"]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["raw", "--name", "lnk", "--link", "--modality", "t=text_feat.npy"]) == 0
    assert os.path.islink(tmp_path / "dataset" / "lnk" / "t.npy")
    assert main(["raw", "--name", "bad/name"]) == 2


def test_shipped_lastfm_yaml_is_what_the_importer_generates():
    spec = BUNDLED["lastfm-2k"]
    generated = dataset_yaml_text(spec.name, {m: f"{m}.npy" for m in spec.modalities}, mmrec_source(spec.source_label))
    assert (properties_dir() / "dataset" / "lastfm-2k.yaml").read_text() == generated
