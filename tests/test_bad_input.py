"""Bad input, table-driven: every importer and the feature store / dataset loader against each broken
file the project has to expect.

Each error case asserts the error type, that the message names the file, what was expected and what was
found, and (importers) that nothing was written: no dataset directory, no yaml, no temporary directory.
Cases that are accepted on purpose ("documented") check the documented result instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from dataset_prep.coldstart import make_cold_dataset, source_from_mmrec, source_from_prepared
from dataset_prep.common import DataImportError
from dataset_prep.lattice import import_lattice
from dataset_prep.mmrec import import_mmrec
from recbole_mamex.config import Config
from recbole_mamex.data.dataset import ColdItemsFileError, InterFileError
from recbole_mamex.data.features import FeatureFileError
from dataset_prep.prepare import DatasetNotPreparedError
from recbole_mamex.data.loading import create_dataset

from helpers import FAST, write_milk_split, write_mmrec

QUIET = {"log": lambda *_: None}
N_ITEMS = 30  # write_mmrec's item ids are 0..29: feature files need 30 rows

# ----------------------------------------------------------------------------------------------------
# Importers: mmrec, coldstart --mmrec, coldstart --dataset, lattice
# ----------------------------------------------------------------------------------------------------


@dataclass
class Source:
    """A valid input of one importer, the files a case may break, and how to run the import."""

    kind: str
    run: Callable[..., object]  # run(properties=<dir for dataset/<name>.yaml>)
    inters: list[Path]  # interaction files; cases break the first (header-only breaks all)
    feature: Path  # one modality file
    dim: int  # its width

    def check_nothing_written(self, root: Path, keep: set[str]) -> None:
        out = root / "dataset"
        left = {p.name for p in out.iterdir()} - keep if out.exists() else set()
        assert not left, f"a failed import left {left} in {out}"
        assert not (root / "properties" / "dataset" / "out.yaml").exists()


def _mmrec_source(root: Path) -> Source:
    raw = write_mmrec(root / "raw")
    run = lambda properties=root / "properties": import_mmrec(  # noqa: E731
        raw["inter"], {"text": root / "raw" / "text_feat.npy", "audio": root / "raw" / "audio_feat.npy"}, "out",
        out_root=root / "dataset", properties_dir=properties, **QUIET,
    )
    return Source("mmrec", run, [raw["inter"]], root / "raw" / "text_feat.npy", 8)


def _coldstart_mmrec_source(root: Path) -> Source:
    raw = write_mmrec(root / "raw")

    def run(properties=root / "properties"):
        frame, user_col, item_col, modalities, source = source_from_mmrec(
            root / "raw", ["text=text_feat.npy", "audio=audio_feat.npy"]  # as --modality NAME=FILE
        )
        make_cold_dataset(frame, user_col, item_col, modalities, "out", source,
                          out_root=root / "dataset", properties_dir=properties, **QUIET)

    return Source("coldstart-mmrec", run, [raw["inter"]], root / "raw" / "text_feat.npy", 8)


def _coldstart_dataset_source(root: Path) -> Source:
    raw = write_mmrec(root / "raw")
    import_mmrec(
        raw["inter"], {"text": root / "raw" / "text_feat.npy", "audio": root / "raw" / "audio_feat.npy"}, "tiny",
        out_root=root / "dataset", properties_dir=root / "properties", **QUIET,
    )
    data = root / "dataset" / "tiny"

    def run(properties=root / "properties"):
        frame, user_col, item_col, modalities, source = source_from_prepared("tiny", root / "dataset")
        make_cold_dataset(frame, user_col, item_col, modalities, "out", source,
                          out_root=root / "dataset", properties_dir=properties, **QUIET)

    inters = [data / f"tiny.{split}.inter" for split in ("train", "valid", "test")]
    return Source("coldstart-dataset", run, inters, data / "text.npy", 8)


def _lattice_source(root: Path) -> Source:
    src = write_milk_split(root / "milk", text=True)
    run = lambda properties=root / "properties": import_lattice(  # noqa: E731
        src, "out", out_root=root / "dataset", properties_dir=properties, **QUIET
    )
    return Source("lattice", run, [src / "train.txt"], src / "image_feat.npy", 6)


SOURCES = {
    "mmrec": _mmrec_source,
    "coldstart-mmrec": _coldstart_mmrec_source,
    "coldstart-dataset": _coldstart_dataset_source,
    "lattice": _lattice_source,
}
ALL = tuple(SOURCES)
TABULAR = ("mmrec", "coldstart-mmrec", "coldstart-dataset")  # files with a header and columns
N_ROWS = {"mmrec": N_ITEMS, "coldstart-mmrec": N_ITEMS, "coldstart-dataset": N_ITEMS, "lattice": 10}


def _save(path: Path, array) -> None:
    with open(path, "wb") as f:  # np.save on a path would append .npy to names without it
        np.save(f, array)


def _features(src: Source, n_rows: int | None = None) -> np.ndarray:
    n_rows = N_ROWS[src.kind] if n_rows is None else n_rows
    return np.random.default_rng(1).normal(size=(n_rows, src.dim)).astype(np.float32)


def _with_value(src: Source, row: int, value: float) -> None:
    matrix = _features(src)
    matrix[row, 1] = value
    _save(src.feature, matrix)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


def _drop_item_column(src: Source) -> None:
    def edit(lines):
        header = lines[0].split("\t")
        keep = [k for k, name in enumerate(header) if name.split(":")[0] not in ("itemID", "item_id")]
        return ["\t".join(line.split("\t")[k] for k in keep) for line in lines]

    for path in src.inters:
        _edit_lines(path, edit)


def _non_numeric_item(src: Source) -> None:
    if src.kind == "lattice":
        _edit_lines(src.inters[0], lambda lines: [lines[0] + " B0X"] + lines[1:])
        return

    def edit(lines):
        fields = lines[1].split("\t")
        fields[1] = "B0X"
        return [lines[0], "\t".join(fields)] + lines[2:]

    _edit_lines(src.inters[0], edit)


def _duplicate_interaction(src: Source) -> None:
    if src.kind == "lattice":
        _edit_lines(src.inters[0], lambda lines: lines + [lines[0].split()[0] + " " + lines[0].split()[1]])
        return
    _edit_lines(src.inters[0], lambda lines: lines + [lines[1]])


def _header_only(src: Source) -> None:
    for path in src.inters:
        _edit_lines(path, lambda lines: lines[:1])


@dataclass
class Case:
    """One bad input: how to break a source, which importers it applies to, the error and the message
    fragments (``{file}`` = the broken file's path)."""

    name: str
    kinds: tuple[str, ...]
    corrupt: Callable[[Source], None]
    target: str  # "feature" or "inter": the file the message must name
    error: type
    fragments: tuple[str, ...]


IMPORTER_CASES = [
    # feature files
    # (lattice has no --modality: its modalities are the .npy files found, so none can be missing)
    Case("feature file missing", TABULAR, lambda s: s.feature.unlink(), "feature", FeatureFileError,
         ("expected a .npy feature file", "found no such file")),
    Case("feature file empty (0 bytes)", ALL, lambda s: s.feature.write_bytes(b""), "feature", FeatureFileError,
         ("expected a .npy file", "found an empty file")),
    Case("feature file truncated", ALL, lambda s: _truncate(s.feature), "feature", FeatureFileError,
         ("expected a numeric .npy array", "found a file numpy cannot read")),
    Case("feature file not .npy", ALL, lambda s: s.feature.write_text("id,f0\n1,0.5\n"), "feature", FeatureFileError,
         ("expected a .npy file (written by numpy.save)", "found a file that is not .npy (it starts with b'id,f0")),
    Case("feature matrix with no row", ALL, lambda s: _save(s.feature, _features(s, 0)), "feature", FeatureFileError,
         ("expected at least one row and one column", "found shape (0,")),
    Case("feature matrix 1-D (wrong dimensions)", ALL, lambda s: _save(s.feature, _features(s)[:, 0]), "feature",
         FeatureFileError, ("expected a 2-D array", "found 1-D array")),
    Case("feature matrix 3-D (wrong dimensions)", ALL, lambda s: _save(s.feature, _features(s)[:, :, None]), "feature",
         FeatureFileError, ("expected a 2-D array", "found 3-D array")),
    Case("integer features", ALL, lambda s: _save(s.feature, np.ones((N_ROWS[s.kind], 3), dtype=np.int64)), "feature",
         FeatureFileError, ("expected floating-point features", "found dtype int64")),
    Case("missing item ids (too few rows)", ALL, lambda s: _save(s.feature, _features(s, 4)), "feature",
         FeatureFileError, ("expected at least", "rows (the largest item id", "found 4 rows")),
    Case("NaN row", ALL, lambda s: _with_value(s, 3, np.nan), "feature", FeatureFileError,
         ("expected finite values", "found NaN or Inf in 1 row(s): 3")),
    Case("Inf row", ALL, lambda s: _with_value(s, 2, -np.inf), "feature", FeatureFileError,
         ("expected finite values", "found NaN or Inf in 1 row(s): 2")),
    Case("modality missing for all items (all-zero)", ALL, lambda s: _save(s.feature, 0 * _features(s)), "feature",
         FeatureFileError, ("expected features (a non-zero row) for at least one item", "found all-zero rows")),
    # interaction files
    Case("interactions file empty (0 bytes)", ALL, lambda s: s.inters[0].write_text(""), "inter", DataImportError,
         ("expected ", "found ")),
    Case("interactions header only", TABULAR, _header_only, "inter", DataImportError,
         ("expected at least one", "found ")),
    Case("interactions without an item column", TABULAR, _drop_item_column, "inter", DataImportError,
         ("expected ", "item", "found columns [")),
    Case("non-numeric item id (features need row i = item i)", ALL, _non_numeric_item, "inter+feature",
         DataImportError, ("expected ", "integer", "found ", "B0X")),
    Case("duplicated interaction", ALL, _duplicate_interaction, "inter", DataImportError,
         ("expected each (user, item) interaction once", "found 1 repeated pair(s)")),
]

_PARAMS = [pytest.param(case, kind, id=f"{kind}: {case.name}") for case in IMPORTER_CASES for kind in case.kinds]


@pytest.mark.parametrize("case, kind", _PARAMS)
def test_importer_refuses_bad_input_and_writes_nothing(case, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # coldstart --dataset reads the source's yaml from ./properties
    src = SOURCES[kind](tmp_path)
    before = {p.name for p in (tmp_path / "dataset").iterdir()} if (tmp_path / "dataset").exists() else set()
    case.corrupt(src)
    with pytest.raises(case.error) as info:
        src.run()
    message = str(info.value)
    if case.target == "feature":
        named = [src.feature]
    elif case.target == "inter":
        named = [src.inters[0], src.inters[0].parent]  # files of a benchmark dataset: its directory
    else:
        named = [src.inters[0], src.inters[0].parent, src.feature]
    assert any(str(path) in message for path in named), message
    for fragment in case.fragments:
        assert fragment in message, message
    src.check_nothing_written(tmp_path, keep=before)


@pytest.mark.parametrize("kind", ALL)
def test_importer_whose_yaml_cannot_be_written_leaves_no_dataset(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = SOURCES[kind](tmp_path)
    before = {p.name for p in (tmp_path / "dataset").iterdir()} if (tmp_path / "dataset").exists() else set()
    (tmp_path / "blocked").write_text("a file where the properties directory should be")
    with pytest.raises(OSError):
        src.run(properties=tmp_path / "blocked")
    src.check_nothing_written(tmp_path, keep=before)
    src.run()  # and the same import then goes through
    assert (tmp_path / "dataset" / "out").is_dir() and (tmp_path / "properties" / "dataset" / "out.yaml").is_file()


# Lattice's own files: the cold item list and the split files


def _lattice_case(name, corrupt, error_fragments, target="cold_item_index.npy"):
    return pytest.param(corrupt, target, error_fragments, id=name)


@pytest.mark.parametrize(
    "corrupt, target, fragments",
    [
        _lattice_case("cold ids missing", lambda d: (d / "cold_item_index.npy").unlink(), ("no such file",)),
        _lattice_case("cold ids empty file", lambda d: (d / "cold_item_index.npy").write_bytes(b""),
                      ("expected a readable .npy array", "found EOFError")),
        _lattice_case("cold ids truncated", lambda d: _truncate(d / "cold_item_index.npy"),
                      ("expected a numeric .npy array", "found a file numpy cannot read")),
        _lattice_case("cold ids empty array", lambda d: _save(d / "cold_item_index.npy", np.array([], dtype=np.int64)),
                      ("expected at least one cold item id", "found an empty array")),
        _lattice_case("cold ids 2-D", lambda d: _save(d / "cold_item_index.npy", np.array([[5, 6]])),
                      ("expected a 1-D integer array", "found 2-D")),
        _lattice_case("cold ids float", lambda d: _save(d / "cold_item_index.npy", np.array([5.0, 6.0])),
                      ("expected a 1-D integer array", "dtype float64")),
        _lattice_case("cold item in train.txt", lambda d: (d / "train.txt").write_text("2 1 5\n"),
                      ("expected no interaction with a cold item", "found 1 cold items"), target="train.txt"),
        _lattice_case("val.txt without items", lambda d: (d / "val.txt").write_text("0\n1\n"),
                      ("expected at least one 'uid item ...' line", "found none"), target="val.txt"),
        _lattice_case("test.txt missing", lambda d: (d / "test.txt").unlink(), ("no such file",), target="test.txt"),
    ],
)
def test_lattice_specific_bad_input(corrupt, target, fragments, tmp_path):
    src = _lattice_source(tmp_path)
    corrupt(tmp_path / "milk")
    with pytest.raises(DataImportError) as info:
        src.run()
    assert str(tmp_path / "milk" / target) in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)
    src.check_nothing_written(tmp_path, keep=set())


# Accepted on purpose (docs/user-guide/checks.md, "Bad input")


@pytest.mark.parametrize("kind", ALL)
def test_extra_feature_rows_are_imported_and_ignored(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = SOURCES[kind](tmp_path)
    wide = _features(src, N_ROWS[src.kind] + 25)
    _save(src.feature, wide)
    src.run()
    copied = next(p for p in (tmp_path / "dataset" / "out").glob("*.npy") if np.load(p).shape[1] == src.dim)
    np.testing.assert_array_equal(np.load(copied), wide)  # copied as it is: rows are item ids


def test_non_numeric_user_ids_are_tokens(tmp_path):
    src = _mmrec_source(tmp_path)
    _edit_lines(src.inters[0], lambda lines: [lines[0]] + [f"user-{line}" for line in lines[1:]])
    result = src.run()
    train = pd.read_csv(tmp_path / "dataset" / "out" / "out.train.inter", sep="\t", dtype=str)
    assert train["user_id:token"].str.startswith("user-").all()
    assert result.n_users == 24


# ----------------------------------------------------------------------------------------------------
# Feature store and dataset loading: a dataset yaml and the files it names
# ----------------------------------------------------------------------------------------------------


def build(**overrides):
    """The dataset as a run builds it: files checked first (a missing one explained), then RecBole's load."""
    from dataset_prep.prepare import ensure_dataset_files

    config = Config(model="BPR", dataset="tiny", config_dict={**FAST, **overrides}, cmd_args=[])
    ensure_dataset_files(config)
    return create_dataset(config)


TINY = Path("dataset") / "tiny"


def _write_ids(tokens, name="text_ids.txt"):
    (TINY / name).write_text("".join(f"{t}\n" for t in tokens))
    return {"text": {"path": "text.npy", "ids": name}, "audio": "audio.npy"}


def _first_token_non_numeric():
    frame = pd.read_csv(TINY / "tiny.train.inter", sep="\t", dtype=str)
    frame.loc[0, "item_id:token"] = "B0X"
    frame.to_csv(TINY / "tiny.train.inter", sep="\t", index=False)


def _write(name, text, **overrides):
    (TINY / name).write_text(text)
    return overrides


def _unlink(name):
    (TINY / name).unlink()
    return {}


def _save_npy(name, array):
    np.save(TINY / name, array)
    return {}


def _truncated(name):
    _truncate(TINY / name)
    return {}


def _cold_items(payload):
    (TINY / "cold.json").write_text(json.dumps(payload))
    return {"cold_items_file": "cold.json"}


# (id, break the dataset -> config overrides, error, file it must name, expected/found fragments)
LOAD_CASES = [
    ("benchmark .inter file missing", lambda: _unlink("tiny.valid.inter"), DatasetNotPreparedError,
     TINY / "tiny.valid.inter", ("expected RecBole atomic file(s)", "found none")),
    (".inter empty (0 bytes)", lambda: _write("tiny.test.inter", ""), InterFileError,
     TINY / "tiny.test.inter", ("expected a header line", "found an empty file")),
    (".inter header only", lambda: _write("tiny.test.inter", "user_id:token\titem_id:token\n"),
     InterFileError, TINY / "tiny.test.inter", ("expected at least one interaction", "found a header line only")),
    (".inter header without types", lambda: _write("tiny.test.inter", "user_id\titem_id\n1\t2\n"),
     InterFileError, TINY / "tiny.test.inter", ("expected header columns field:type", "found ['user_id', 'item_id']")),
    (".inter without the item column", lambda: _write("tiny.train.inter", "user_id:token\trating:float\n1\t1\n"),
     InterFileError, TINY / "tiny.train.inter", ("expected columns for the fields ['user_id', 'item_id']", "found columns")),
    (".inter with a non-numeric item id (MMRec rows)", lambda: _first_token_non_numeric() or {}, FeatureFileError,
     TINY / "text.npy", ("expected integer item ids", "found item token 'B0X'")),
    ("modality file missing", lambda: _unlink("audio.npy"), FeatureFileError,
     TINY / "audio.npy", ("expected a .npy feature file", "found no such file")),
    ("ids file missing", lambda: {"modalities": {"text": {"path": "text.npy", "ids": "absent.txt"}}}, FeatureFileError,
     TINY / "absent.txt", ("expected an ids file", "found no such file")),
    ("ids file shorter than the matrix (wrong dimensions)", lambda: {"modalities": _write_ids(range(12))},
     FeatureFileError, TINY / "text_ids.txt", ("expected 30 item tokens", "found 12")),
    ("ids file with a duplicated item id", lambda: {"modalities": _write_ids([0, 1, 2, 1] + list(range(4, 30)))},
     FeatureFileError, TINY / "text_ids.txt", ("expected each item token once", "found '1' on rows 1 and 3")),
    ("ids file naming no item of the dataset", lambda: {"modalities": _write_ids([f"x{i}" for i in range(30)])},
     FeatureFileError, TINY / "text.npy", ("expected features (a non-zero row) for at least one item", "found no row")),
    ("modality all zeros", lambda: _save_npy("audio.npy", np.zeros((30, 4))), FeatureFileError,
     TINY / "audio.npy", ("expected features (a non-zero row)", "found all-zero rows for all 30")),
    ("modality NaN row", lambda: _save_npy("audio.npy", np.full((30, 4), np.nan)), FeatureFileError,
     TINY / "audio.npy", ("expected finite values", "found NaN or Inf in 30 row(s)")),
    ("modality truncated", lambda: _truncated("audio.npy"), FeatureFileError,
     TINY / "audio.npy", ("expected a numeric .npy array", "found a file numpy cannot read")),
    ("modality too few rows", lambda: _save_npy("audio.npy", np.ones((5, 4))), FeatureFileError,
     TINY / "audio.npy", ("expected at least 30 rows", "found 5 rows")),
    ("cold_items_file missing", lambda: {"cold_items_file": "absent.json"}, ColdItemsFileError,
     TINY / "absent.json", ("expected the cold items json", "found no such file")),
    ("cold_items_file not json", lambda: _write("cold.json", "cold: [1]", cold_items_file="cold.json"),
     ColdItemsFileError, TINY / "cold.json", ("expected json", "found a parse error")),
    ("cold_items_file without the lists", lambda: _cold_items({"cold": ["1"]}), ColdItemsFileError,
     TINY / "cold.json", ("expected an object with lists 'cold_valid' and 'cold_test'", "found keys ['cold']")),
    ("cold_items_file listing an item twice", lambda: _cold_items({"cold_valid": ["1"], "cold_test": ["1"]}),
     ColdItemsFileError, TINY / "cold.json", ("expected disjoint cold_valid and cold_test", "found 1 in both")),
]


@pytest.mark.parametrize("corrupt, error, named, fragments", [pytest.param(*c[1:], id=c[0]) for c in LOAD_CASES])
def test_dataset_load_refuses_bad_files(tiny_dataset, corrupt, error, named, fragments):
    overrides = corrupt()
    with pytest.raises(error) as info:
        build(**overrides)
    message = str(info.value)
    assert str(named) in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_extra_rows_and_unknown_ids_are_ignored(tiny_dataset):
    """Documented: a feature file may hold rows for items the dataset does not have (more rows than
    items, or ids-file tokens that are no item); they are ignored."""
    text = tiny_dataset["text"]
    np.save(TINY / "text.npy", np.vstack([text, np.ones((7, text.shape[1]), dtype=text.dtype)]))
    reference = build().item_features
    tokens = [str(i) for i in range(30)] + [f"extra{i}" for i in range(7)]
    dataset = build(modalities=_write_ids(tokens))
    for features in (reference, dataset.item_features):
        ids = dataset.field2id_token["item_id"]
        assert features.matrices["text"].shape == (len(ids), text.shape[1])
        np.testing.assert_allclose(features.matrices["text"][1:], text[[int(t) for t in ids[1:]]])


def test_training_command_reports_a_bad_dataset_file_in_one_line(tiny_dataset, capsys):
    from recbole_mamex.cli import main

    _write("tiny.test.inter", "user_id:token\titem_id:token\n")
    assert main(["--model=BPR", "--dataset=tiny", "--epochs=1", "--state=WARNING", "--show_progress=False"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "tiny.test.inter: expected at least one interaction" in err[-1]
