"""Cold-start splitter and LATTICE/MILK importer: invariants, determinism, clear errors."""

import json

import numpy as np
import pandas as pd
import pytest

from dataset_prep.coldstart import (
    COLD_EXTRA_CONFIG,
    cold_source,
    cold_start_split,
    main as coldstart_main,
    make_cold_dataset,
    source_from_mmrec,
    warm_split_sizes,
)
from dataset_prep.common import DataImportError, DatasetExistsError, dataset_yaml_text
from dataset_prep.lattice import import_lattice
from dataset_prep.bundled import BUNDLED_COLD
from recbole_mamex.paths import properties_dir

from helpers import write_mmrec

QUIET = {"log": lambda *_: None}


def random_interactions(seed=0, n_users=40, n_items=50, n=600):
    rng = np.random.default_rng(seed)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, n_users, n), rng.integers(0, n_items, n))}
    rows = sorted(pairs, key=lambda p: rng.random())
    return pd.DataFrame({"user_id:token": [str(u) for u, _ in rows], "item_id:token": [str(i) for _, i in rows]})


def test_warm_split_sizes_follow_recbole_rounding():
    train, valid, test = warm_split_sizes(np.array([1, 2, 3, 10, 25]))
    assert train.tolist() == [1, 1, 1, 8, 21]
    assert valid.tolist() == [0, 0, 1, 1, 2]
    assert test.tolist() == [0, 1, 1, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_invariants(seed):
    frame = random_interactions(seed)
    split = cold_start_split(frame, "user_id:token", "item_id:token", fraction=0.2, seed=seed)
    items = frame["item_id:token"].unique()
    cold_valid, cold_test = set(split.cold_valid), set(split.cold_test)
    assert len(cold_valid) + len(cold_test) == round(0.2 * len(items))
    assert not cold_valid & cold_test
    assert abs(len(cold_valid) - len(cold_test)) <= 1
    assert not set(split.train["item_id:token"]) & (cold_valid | cold_test)
    # every interaction in exactly one part
    parts = pd.concat([split.train, split.valid, split.test])
    assert len(parts) == len(frame)
    assert sorted(map(tuple, parts.to_numpy())) == sorted(map(tuple, frame.to_numpy()))
    # all interactions of a cold-valid item are in valid, of a cold-test item in test
    assert set(frame[frame["item_id:token"].isin(cold_valid)].index) <= set(split.valid.index)
    assert set(frame[frame["item_id:token"].isin(cold_test)].index) <= set(split.test.index)
    # warm interactions per user follow 80/10/10
    warm = frame[~frame["item_id:token"].isin(cold_valid | cold_test)]
    sizes = warm.groupby("user_id:token").size()
    train, valid, test = warm_split_sizes(sizes.to_numpy())
    for part, expected in ((split.train, train), (split.valid, valid), (split.test, test)):
        warm_part = part[~part["item_id:token"].isin(cold_valid | cold_test)]
        got = warm_part.groupby("user_id:token").size().reindex(sizes.index, fill_value=0)
        assert got.tolist() == expected.tolist()
    # rows keep file order inside each part
    for part in (split.train, split.valid, split.test):
        assert part.index.is_monotonic_increasing


def test_split_is_a_pure_function_of_data_seed_fraction():
    frame = random_interactions(5)
    a = cold_start_split(frame, "user_id:token", "item_id:token", 0.2, 7)
    b = cold_start_split(frame.copy(), "user_id:token", "item_id:token", 0.2, 7)
    c = cold_start_split(frame, "user_id:token", "item_id:token", 0.2, 8)
    assert a.cold_test == b.cold_test and a.train.equals(b.train) and a.test.equals(b.test)
    assert a.cold_test != c.cold_test or not a.train.equals(c.train)


def test_split_rejects_bad_fractions():
    frame = random_interactions(0)
    for fraction in (0, 1, 1.5, 0.01):
        with pytest.raises(ValueError, match="fraction"):
            cold_start_split(frame, "user_id:token", "item_id:token", fraction, 0)


def write_cold(tmp_path, name, seed=3, **kwargs):
    write_mmrec(tmp_path / "raw")
    frame, user_col, item_col, modalities, source = source_from_mmrec(tmp_path / "raw", [])
    return make_cold_dataset(
        frame, user_col, item_col, modalities, name, source,
        out_root=tmp_path / "dataset", properties_dir=tmp_path / "properties", seed=seed, **QUIET, **kwargs,
    )


def test_same_seed_gives_byte_identical_files(tmp_path):
    write_cold(tmp_path, "a")
    write_cold(tmp_path, "b")
    write_cold(tmp_path, "c", seed=4)
    for suffix in ("train.inter", "valid.inter", "test.inter"):
        a = (tmp_path / "dataset" / "a" / f"a.{suffix}").read_bytes()
        assert a == (tmp_path / "dataset" / "b" / f"b.{suffix}").read_bytes()
    ja = json.loads((tmp_path / "dataset" / "a" / "a.cold_items.json").read_text())
    jb = json.loads((tmp_path / "dataset" / "b" / "b.cold_items.json").read_text())
    jc = json.loads((tmp_path / "dataset" / "c" / "c.cold_items.json").read_text())
    assert ja["cold_test"] == jb["cold_test"] and ja["cold_valid"] == jb["cold_valid"]
    assert (ja["cold_valid"], ja["cold_test"]) != (jc["cold_valid"], jc["cold_test"])
    yaml_text = (tmp_path / "properties" / "dataset" / "a.yaml").read_text()
    assert "cold_items_file: a.cold_items.json\neval_candidates: cold\n" in yaml_text
    assert "  text: text.npy\n" in yaml_text
    with pytest.raises(DatasetExistsError):
        write_cold(tmp_path, "a")


def test_cli_splits_a_prepared_dataset(tiny_dataset, workdir, capsys):
    assert coldstart_main(["--dataset", "tiny", "--seed", "1"]) == 0
    out = workdir / "dataset" / "tiny-cold"
    assert sorted(p.name for p in out.iterdir()) == [
        ".dataset_prep.json", "audio.npy", "text.npy", "tiny-cold.cold_items.json", "tiny-cold.test.inter", "tiny-cold.train.inter", "tiny-cold.valid.inter",
    ]
    source_rows = sum(len((workdir / "dataset" / "tiny" / f"tiny.{s}.inter").read_text().splitlines()) - 1 for s in ("train", "valid", "test"))
    cold_rows = sum(len((out / f"tiny-cold.{s}.inter").read_text().splitlines()) - 1 for s in ("train", "valid", "test"))
    assert cold_rows == source_rows
    assert coldstart_main(["--dataset", "tiny", "--seed", "1"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_shipped_lastfm_cold_yaml_is_what_the_splitter_generates():
    spec = BUNDLED_COLD["lastfm-2k-cold"]
    generated = dataset_yaml_text(
        spec.name,
        {m: f"{m}.npy" for m in ("text", "vggish", "whisper")},
        cold_source(f"dataset '{spec.base}'", spec.fraction, spec.seed),
        extra_lines=(f"cold_items_file: {spec.name}.cold_items.json",) + COLD_EXTRA_CONFIG,
    )
    assert (properties_dir() / "dataset" / "lastfm-2k-cold.yaml").read_text() == generated


def write_lattice(root, train_lines, val_lines, test_lines, cold):
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.txt").write_text("\n".join(train_lines) + "\n")
    (root / "val.txt").write_text("\n".join(val_lines) + "\n")
    (root / "test.txt").write_text("\n".join(test_lines) + "\n")
    np.save(root / "cold_item_index.npy", np.array(cold, dtype=np.int64))
    np.save(root / "image_feat.npy", np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32))
    np.save(root / "text_feat.npy", np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32))


def test_lattice_import(tmp_path):
    src = tmp_path / "milk"
    write_lattice(src, ["0 1 2 3", "1 2 4", "2"], ["0 5 4", "1 6"], ["0 7", "1 8 9 3", "2 1"], cold=[5, 6, 7, 8, 9])
    counts = import_lattice(src, "milk", out_root=tmp_path / "dataset", properties_dir=tmp_path / "properties", **QUIET)
    assert counts == {"train": 5, "valid": 3, "test": 5}
    out = tmp_path / "dataset" / "milk"
    test = pd.read_csv(out / "milk.test.inter", sep="\t", dtype=str)
    assert test.to_numpy().tolist() == [["0", "7"], ["1", "8"], ["1", "9"], ["1", "3"], ["2", "1"]]
    cold = json.loads((out / "milk.cold_items.json").read_text())
    assert cold["cold_valid"] == ["5", "6"] and cold["cold_test"] == ["7", "8", "9"]
    yaml_text = (tmp_path / "properties" / "dataset" / "milk.yaml").read_text()
    assert "  image: image.npy\n  text: text.npy\n" in yaml_text and "eval_candidates: cold" in yaml_text


def test_lattice_import_errors(tmp_path):
    src = tmp_path / "bad"
    write_lattice(src, ["0 1 5"], ["0 5"], ["0 6"], cold=[5, 6])
    with pytest.raises(DataImportError, match=r"train.txt: expected no interaction with a cold item"):
        import_lattice(src, "bad", out_root=tmp_path / "dataset", properties_dir=tmp_path / "properties", **QUIET)
    write_lattice(src, ["0 1 x"], ["0 5"], ["0 6"], cold=[5, 6])
    with pytest.raises(DataImportError, match=r"'x' on line 1"):
        import_lattice(src, "bad", out_root=tmp_path / "dataset", properties_dir=tmp_path / "properties", **QUIET)
    write_lattice(src, ["0 1 12"], ["0 5"], ["0 6"], cold=[5, 6])
    with pytest.raises(Exception, match=r"at least 13 rows"):
        import_lattice(src, "bad", out_root=tmp_path / "dataset", properties_dir=tmp_path / "properties", **QUIET)
    assert not (tmp_path / "dataset" / "bad").exists()
