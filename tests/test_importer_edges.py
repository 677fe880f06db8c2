"""Edges of the importers and of the feature pipeline: features of any finite float32 magnitude normalise to
unit rows, outputs that cannot be written (read-only, full disk) are one error line with nothing left behind,
and datasets whose modalities use an ``ids:`` file can be split cold (and attributes keyed by ASINs)."""

from __future__ import annotations

import builtins
import contextlib
import errno
import gzip
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from recbole.data.interaction import Interaction
from scipy import sparse

from dataset_prep import amazon, attributes, coldstart, images, lattice, mmrec, s3rec
from dataset_prep.common import DataImportError
from recbole_mamex import interpret
from recbole_mamex.config import Config, dataset_config_dict
from recbole_mamex.data.features import FeatureFileError, ModalitySpec, load_item_features, parse_modalities, read_feature_matrix
from recbole_mamex.data.loading import create_dataset, data_preparation
from recbole_mamex.model import VBPR, ContentProfile
from recbole_mamex.quick_start import run_recbole_mamex

from helpers import FAST, write_milk_split, write_mmrec

QUIET = {"log": lambda *_: None}


# ------------------------------------------------------------------ features of any finite float32 magnitude
def build(model_class, **overrides):
    config = Config(model=model_class.__name__, dataset="tiny-cold", config_dict={**FAST, **overrides}, cmd_args=[])
    data = create_dataset(config)
    train, _, _ = data_preparation(config, data)
    return data, model_class(config, train._dataset)


def scale_features(dataset_dir: Path, factor: float) -> None:
    for name in ("text", "audio"):
        matrix = np.load(dataset_dir / f"{name}.npy")
        np.save(dataset_dir / f"{name}.npy", (matrix.astype(np.float64) * factor).astype(matrix.dtype))


@pytest.mark.parametrize("factor", [1e19, 1e-20])
@pytest.mark.parametrize("feature_norm", ["l2", "center_l2"])
def test_normalised_features_do_not_depend_on_their_scale(cold_tiny, workdir, feature_norm, factor):
    """1e19 made zero rows (squares overflow float32), 1e-20 rows shorter than one (F.normalize's eps)."""
    _, model = build(VBPR, feature_norm=feature_norm)
    reference = {name: model.modality_features(name).clone() for name in model.modality_names}
    scale_features(cold_tiny, factor)
    _, scaled = build(VBPR, feature_norm=feature_norm)
    for j, name in enumerate(scaled.modality_names):
        has = scaled.modality_mask[:, j]
        norms = scaled.modality_features(name).norm(dim=1)
        torch.testing.assert_close(norms[has], torch.ones(int(has.sum())), rtol=0, atol=1e-5)
        torch.testing.assert_close(scaled.modality_features(name), reference[name], rtol=0, atol=1e-5)


@pytest.mark.parametrize("center", [True, False])
def test_content_profile_ranks_the_same_at_any_feature_scale(cold_tiny, workdir, center):
    data, model = build(ContentProfile, profile_center=center)
    users = Interaction({"user_id": torch.arange(data.user_num)})
    reference = model.full_sort_predict(users)
    for factor in (1e19, 1e-20 / 1e19):  # the second call scales the 1e19 files down to 1e-20
        scale_features(cold_tiny, factor)
        _, scaled = build(ContentProfile, profile_center=center)
        torch.testing.assert_close(scaled.full_sort_predict(users), reference, rtol=0, atol=1e-5)


def test_extreme_rows_and_centres_normalise_to_unit_rows():
    from recbole_mamex.model.layers import l2_normalize_rows

    big = float(np.finfo(np.float32).max)
    x = torch.tensor([[big, -big, 1.0], [1e-45, 0.0, 0.0], [0.0, 0.0, 0.0], [3e-39, 4e-39, 0.0]])
    unit = l2_normalize_rows(x)
    expected = torch.tensor([[2 ** -0.5, -(2 ** -0.5), 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.6, 0.8, 0.0]])
    torch.testing.assert_close(unit, expected, rtol=0, atol=1e-6)
    center = torch.tensor([-big, big, 0.0])  # x - center is beyond float32 in the first row
    centred = l2_normalize_rows(x, center, torch.tensor([True, False, False, False]))
    torch.testing.assert_close(centred, expected, rtol=0, atol=1e-6)


def test_float64_rows_float32_cannot_hold_are_refused_with_their_rows(tmp_path):
    """A non-zero float64 row below float32's smallest normal number would become zero (a missing
    modality, silently) or keep a few bits only."""
    matrix = np.ones((4, 3))
    matrix[2] = [1e-39, 0.0, -1e-50]
    np.save(tmp_path / "f.npy", matrix)
    with pytest.raises(FeatureFileError, match=r"f.npy: expected a value of \|x\| >= 1.2e-38 .* in every non-zero row, found only smaller values in 1 row\(s\): 2"):
        read_feature_matrix(tmp_path / "f.npy")
    sparse.save_npz(tmp_path / "f.npz", sparse.csr_matrix(matrix))
    with pytest.raises(FeatureFileError, match=r"f.npz: expected a value of \|x\| >= 1.2e-38 .* 1 row\(s\): 2"):
        read_feature_matrix(tmp_path / "f.npz")
    matrix[2] = 1e-30  # small but within float32's normal range: kept
    np.save(tmp_path / "f.npy", matrix)
    assert read_feature_matrix(tmp_path / "f.npy").shape == (4, 3)


# --------------------------------------------------------------------- outputs that cannot be written
class Disk:
    """Every way the code writes a file, made to fail under ``roots`` as a read-only file system does
    (``errno.EROFS``: nothing can be created) or as a full disk (``errno.ENOSPC``: ``room`` bytes are
    written, across files, then a write stops half-way, leaving the file truncated)."""

    def __init__(self, monkeypatch, roots, error: int, room: int = 0):
        self.roots = [os.path.realpath(r) for r in roots]
        self.error, self.room = error, room
        self._patch(monkeypatch)

    def _under(self, path) -> bool:
        if isinstance(path, int):
            try:
                path = os.readlink(f"/proc/self/fd/{path}")
            except OSError:
                return False
        try:
            real = os.path.realpath(os.fspath(path))
        except TypeError:
            return False
        return any(real == root or real.startswith(root + os.sep) for root in self.roots)

    def _fail(self, path):
        raise OSError(self.error, os.strerror(self.error), os.fspath(path) if not isinstance(path, int) else None)

    def _spend(self, n: int) -> int:
        """How many of ``n`` bytes still fit."""
        fits = max(0, min(n, self.room))
        self.room -= fits
        return fits

    def _patch(self, mp):
        disk, real_open, real_os_open, real_write = self, builtins.open, os.open, os.write
        read_only = self.error == errno.EROFS

        class Truncating:
            """A file open for writing on the full disk: writes stop when the room is used up."""

            def __init__(self, f):
                self._f = f

            def write(self, data):
                fits = disk._spend(len(data))
                if fits < len(data):
                    self._f.write(data[:fits])
                    self._f.flush()
                    disk._fail(self._f.name)
                return self._f.write(data)

            def fileno(self):  # no descriptor: shutil and numpy write through write()
                raise io.UnsupportedOperation("fileno")

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self._f.close()

            def __iter__(self):
                return iter(self._f)

            def __getattr__(self, name):
                return getattr(self._f, name)

        def opening(file, mode="r", *args, **kwargs):
            writes = any(c in mode for c in "wax+")
            if writes and disk._under(file):
                if read_only:
                    disk._fail(file)
                return Truncating(real_open(file, mode, *args, **kwargs))
            return real_open(file, mode, *args, **kwargs)

        def os_opening(path, flags, *args, **kwargs):
            if read_only and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and disk._under(path):
                disk._fail(path)
            return real_os_open(path, flags, *args, **kwargs)

        def os_writing(fd, data):
            if disk._under(fd):
                fits = disk._spend(len(data))
                if fits < len(data):
                    real_write(fd, bytes(data[:fits]))
                    disk._fail(fd)
            return real_write(fd, data)

        def refused(real, which):
            def call(*args, **kwargs):
                if disk._under(args[which]):
                    disk._fail(args[which])
                return real(*args, **kwargs)
            return call

        mp.setattr(builtins, "open", opening)
        mp.setattr(io, "open", opening)
        mp.setattr(os, "open", os_opening)
        mp.setattr(os, "write", os_writing)
        if read_only:
            for name, which in (("mkdir", 0), ("replace", 1), ("rename", 1), ("symlink", 1)):
                mp.setattr(os, name, refused(getattr(os, name), which))


def files_under(roots) -> set[str]:
    """Every file under ``roots``, and every hidden (temporary) folder."""
    return {os.path.join(d, f) for r in roots if os.path.exists(r)
            for d, dirs, names in os.walk(r) for f in names + [x for x in dirs if x.startswith(".")]}


def write_amazon(root: Path) -> list[str]:
    root.mkdir(parents=True)
    asins = [f"B{i:09d}" for i in range(6)]
    with gzip.open(root / "reviews.json.gz", "wt", encoding="utf-8") as f:
        for u in range(8):
            for t, a in enumerate(asins):
                f.write(json.dumps({"reviewerID": f"U{u}", "asin": a, "overall": 5.0, "unixReviewTime": 1000 + t}) + "\n")
    with open(root / "images.b", "wb") as f:
        for i, a in enumerate(asins):
            f.write(a.encode("ascii") + (np.arange(4, dtype="<f4") + i).tobytes())
    return ["--reviews", str(root / "reviews.json.gz"), "--images", str(root / "images.b"), "--image-dim", "4", "--k-core", "2"]


def write_s3rec(root: Path) -> list[str]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    lines = [" ".join([str(u)] + [str(i) for i in rng.choice(np.arange(1, 31), 8, replace=False)]) for u in range(1, 41)]
    (root / "sequential_data.txt").write_text("\n".join(lines) + "\n")
    (root / "item2attributes.json").write_text(json.dumps({str(i): [int(i % 5) + 1, 7] for i in range(1, 31)}))
    return ["--sequential", str(root / "sequential_data.txt"), "--attributes", str(root / "item2attributes.json")]


def write_image_folder(folder: Path, tokens) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, token in enumerate(tokens):
        Image.new("RGB", (20, 16), ((37 * k) % 256, (91 * k) % 256, (53 * k) % 256)).save(folder / f"{token}.png")
    return folder


def write_ids(path: Path, tokens) -> Path:
    path.write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    return path


def trained_mamex(workdir: Path) -> Path:
    raw = write_mmrec(workdir / "raw")
    mmrec.import_mmrec(raw["inter"], {"text": workdir / "raw" / "text_feat.npy"}, "tiny", out_root=workdir / "dataset",
                       properties_dir=workdir / "properties", **QUIET)
    return Path(run_recbole_mamex("MAMEX", "tiny", config_dict={**FAST, "epochs": 1}, cmd_args=[])["model_file"])


def importer_runs(workdir: Path):
    """name -> (setup() -> argv runner, the folders it writes): every importer's command line, and interpret's."""
    disk = workdir / "disk"
    out = ["--out", str(disk / "dataset"), "--properties", str(disk / "properties")]

    def run_mmrec():
        write_mmrec(workdir / "raw")
        return lambda: mmrec.main([str(workdir / "raw"), "--name", "t", *out])

    def run_coldstart_dataset():  # reads dataset 'tiny' from the data path it writes into
        mmrec.main([str(write_mmrec(workdir / "raw")["inter"].parent), "--name", "tiny"])
        return lambda: coldstart.main(["--dataset", "tiny"])

    def run_coldstart_mmrec():
        write_mmrec(workdir / "raw")
        return lambda: coldstart.main(["--mmrec", str(workdir / "raw"), "--name", "c", "--modality", "text=text_feat.npy",
                                       "--data-path", str(disk / "dataset"), "--properties", str(disk / "properties")])

    def run_lattice():
        src = write_milk_split(workdir / "milk")
        return lambda: lattice.main([str(src), "--name", "l", *out])

    def run_amazon():
        args = write_amazon(workdir / "amazon")
        return lambda: amazon.main([*args, "--name", "a", *out])

    def run_s3rec():
        args = write_s3rec(workdir / "s3rec")
        return lambda: s3rec.main([*args, "--name", "s", *out])

    def run_attributes():
        (workdir / "a.json").write_text(json.dumps({"1": [1], "2": [2, 3]}))
        return lambda: attributes.main([str(workdir / "a.json"), "--out", str(disk / "attributes.npz")])

    def run_images():
        tokens = [f"T{i}" for i in range(9)]
        folder, ids = write_image_folder(workdir / "imgs", tokens), write_ids(workdir / "ids.txt", tokens)
        return lambda: images.main([str(folder), "--ids", str(ids), "--out", str(disk / "image.npy"), "--encoder", "tiny", "--chunk-rows", "4"])

    def run_interpret():
        model_file = trained_mamex(workdir)
        return lambda: interpret.main([str(model_file), "--out", str(disk / "weights.csv")])

    return {
        "mmrec": (run_mmrec, [disk]),
        "coldstart-dataset": (run_coldstart_dataset, [workdir / "dataset", workdir / "properties"]),
        "coldstart-mmrec": (run_coldstart_mmrec, [disk]),
        "lattice": (run_lattice, [disk]),
        "amazon": (run_amazon, [disk]),
        "s3rec": (run_s3rec, [disk]),
        "attributes": (run_attributes, [disk]),
        "images": (run_images, [disk]),
        "interpret": (run_interpret, [disk]),
    }


RUNS = ["mmrec", "coldstart-dataset", "coldstart-mmrec", "lattice", "amazon", "s3rec", "attributes", "images", "interpret"]


def one_error_line(err: str, cause: str, roots) -> str:
    """The file named by ``err``, which must be one line ``error: cannot write <file>: <cause>`` naming a
    file under ``roots`` (after the progress bars' last carriage return)."""
    err = err.split("\r")[-1].strip()
    assert "\n" not in err and "Traceback" not in err, err
    match = re.fullmatch(rf"error: cannot write (.+): {cause}", err)
    assert match, err
    named = os.path.realpath(match.group(1))
    assert any(named == os.path.realpath(r) or named.startswith(os.path.realpath(r) + os.sep) for r in roots), err
    return match.group(1)


def ready(workdir, capsys, run):
    """(command, output roots, the files under them now) of importer run ``run``, its inputs written."""
    setup, roots = importer_runs(workdir)[run]
    command = setup()
    for root in roots:
        root.mkdir(parents=True, exist_ok=True)
    capsys.readouterr()
    return command, roots, files_under(roots)


@pytest.mark.parametrize("run", RUNS)
def test_a_read_only_output_is_one_error_line_before_any_work(workdir, monkeypatch, capsys, run):
    command, roots, before = ready(workdir, capsys, run)
    with monkeypatch.context() as mp:
        Disk(mp, roots, errno.EROFS)
        for reader in (images, interpret):  # the slow steps never start
            mp.setattr(reader, "load_encoder" if reader is images else "modality_report_from_checkpoint",
                       lambda *a, **k: pytest.fail("work started before the output was checked"))
        assert command() == 2
    one_error_line(capsys.readouterr().err, "read-only file system", roots)
    assert files_under(roots) == before


@pytest.mark.parametrize("run", RUNS)
def test_a_full_disk_is_one_error_line_and_leaves_no_partial_file(workdir, monkeypatch, capsys, run):
    command, roots, before = ready(workdir, capsys, run)
    with monkeypatch.context() as mp:
        Disk(mp, roots, errno.ENOSPC, room=64)  # the probe fits, the first real file does not
        assert command() == 2
    one_error_line(capsys.readouterr().err, "no space left on device", roots)
    assert files_under(roots) == before  # no truncated or temporary file, no folder that stops a rerun
    assert command() == 0  # space again: the same command works


def test_a_full_disk_during_image_encoding_keeps_the_finished_chunks(workdir, monkeypatch, capsys):
    setup, roots = importer_runs(workdir)["images"]
    command = setup()
    capsys.readouterr()
    with monkeypatch.context() as mp:
        disk = Disk(mp, roots, errno.ENOSPC, room=10**9)
        write_chunk = images._write_chunk

        def fill_after_first_chunk(*args):
            write_chunk(*args)
            disk.room = 0  # the disk is full from the second chunk on

        mp.setattr(images, "_write_chunk", fill_after_first_chunk)
        assert command() == 2
    output = capsys.readouterr()
    assert "chunk-" in one_error_line(output.err, "no space left on device", roots)
    assert "chunks are kept in" in output.out
    assert not (roots[0] / "image.npy").exists() and not (roots[0] / "image.npy.json").exists()
    kept = sorted(p.name for p in (roots[0] / "image.npy.partial").iterdir())
    assert kept == ["chunk-000000.npz", "lock.json", "manifest.json"]  # no temporary, no truncated chunk
    assert command() == 0 and "continuing the partial run" in capsys.readouterr().out


# ------------------------------------------------------------------------------------- ids: modalities
def add_modalities(yaml_path: Path, entries: dict) -> None:
    settings = yaml.safe_load(yaml_path.read_text())
    settings["modalities"].update(entries)
    yaml_path.write_text(yaml.safe_dump(settings, sort_keys=False))


def aligned(name: str, tokens) -> dict[str, np.ndarray]:
    specs = parse_modalities(dataset_config_dict(name)["modalities"], Path("dataset") / name)
    features = load_item_features(specs, ["[PAD]", *tokens])
    return {n: np.asarray(features.matrices[n]) for n in features.names}


def test_coldstart_splits_a_dataset_whose_modalities_use_ids_files(tiny_dataset, workdir, capsys):
    """The image and attribute recipes write a matrix and an ids file (row r = the item on line r); the
    cold split keeps them as such, its yaml naming its own copy of the ids file."""
    tokens = [str(t) for t in np.random.default_rng(3).permutation(30)] + ["9999"]  # one token of no item
    with_image = tokens[::2]
    folder = write_image_folder(workdir / "imgs", with_image)
    (workdir / "features").mkdir()
    ids = write_ids(workdir / "features" / "ids.txt", tokens)
    assert images.main([str(folder), "--ids", str(ids), "--out", str(workdir / "features" / "image.npy"), "--encoder", "tiny"]) == 0
    (workdir / "attrs.json").write_text(json.dumps({t: [int(t) % 4 + 1] for t in tokens[:20]}))
    assert attributes.main([str(workdir / "attrs.json"), "--ids", str(ids), "--out", str(workdir / "features" / "attributes.npz")]) == 0
    add_modalities(workdir / "properties" / "dataset" / "tiny.yaml", {
        "image": {"path": str(workdir / "features" / "image.npy"), "ids": str(ids)},
        "attributes": {"path": str(workdir / "features" / "attributes.npz"), "ids": str(ids)},
    })
    capsys.readouterr()
    assert coldstart.main(["--dataset", "tiny", "--seed", "1"]) == 0, capsys.readouterr().err
    cold = yaml.safe_load((workdir / "properties" / "dataset" / "tiny-cold.yaml").read_text())["modalities"]
    assert cold["image"] == {"path": "image.npy", "ids": "image.ids.txt"}
    assert cold["attributes"] == {"path": "attributes.npz", "ids": "attributes.ids.txt"}
    items = [str(i) for i in range(30)]
    original, split = aligned("tiny", items), aligned("tiny-cold", items)
    assert set(split) == {"text", "audio", "image", "attributes"}
    for name in original:
        np.testing.assert_array_equal(split[name], original[name])
    assert (split["image"][1:].any(axis=1) == np.isin(items, with_image)).all()
    assert run_recbole_mamex("VBPR", "tiny-cold", config_dict={**FAST, "epochs": 1}, cmd_args=[])["test_result"]


def test_cold_split_of_items_named_by_asins_needs_ids_files_only(workdir):
    rng = np.random.default_rng(0)
    asins = [f"B{i:09d}" for i in range(20)]
    frame = pd.DataFrame([(f"u{u}", a) for u in range(12) for a in rng.choice(asins, 6, replace=False)],
                         columns=["user_id:token", "item_id:token"])
    np.save(workdir / "image.npy", rng.normal(size=(20, 4)).astype(np.float32))
    write_ids(workdir / "image_ids.txt", asins[::-1])
    spec = ModalitySpec("image", workdir / "image.npy", workdir / "image_ids.txt")
    coldstart.make_cold_dataset(frame, "user_id:token", "item_id:token", {"image": spec}, "asin-cold", "asins",
                                out_root=workdir / "dataset", properties_dir=workdir / "properties", **QUIET)
    assert (workdir / "dataset" / "asin-cold" / "image.ids.txt").read_text() == "".join(f"{a}\n" for a in asins[::-1])
    split = aligned("asin-cold", asins)
    np.testing.assert_array_equal(split["image"][1:], np.load(workdir / "image.npy")[::-1])
    with pytest.raises(DataImportError, match=r"image.npy: expected integer item ids .* or an ids file for the modality"):
        coldstart.make_cold_dataset(frame, "user_id:token", "item_id:token", {"image": workdir / "image.npy"}, "plain",
                                    "asins", out_root=workdir / "dataset", properties_dir=workdir / "properties", **QUIET)


def test_json_attributes_keyed_by_asins_with_ids(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps({"B002": [3, 1], "B001": [3]}))
    ids = write_ids(tmp_path / "ids.txt", ["B001", "B003", "B002"])
    out = tmp_path / "attributes.npz"
    assert attributes.main([str(tmp_path / "a.json"), "--ids", str(ids), "--out", str(out)]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(sparse.load_npz(out).toarray(), [[0, 1], [0, 0], [1, 1]])
    assert (tmp_path / "attributes.columns.txt").read_text() == "1\n3\n"
    # an ASIN the ids do not list is named; without --ids the rows are item ids, so keys must be integers
    (tmp_path / "a.json").write_text(json.dumps({"B009": [1]}))
    assert attributes.main([str(tmp_path / "a.json"), "--ids", str(ids), "--out", str(out), "--force"]) == 2
    assert "unknown item(s): 'B009'" in capsys.readouterr().err
    assert attributes.main([str(tmp_path / "a.json"), "--out", str(tmp_path / "b.npz")]) == 2
    assert "other keys need --ids" in capsys.readouterr().err
