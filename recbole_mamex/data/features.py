"""Multimodal feature store: pre-computed item features, one ``.npy`` matrix per modality.

A dataset yaml names its modalities (any number, any names)::

    modalities:
      text: text_feat.npy                 # row i = item whose original id (token) is i  (MMRec)
      image: {path: image_feat.npy, ids: image_ids.txt}   # row r = item token on line r of ids
      attributes: attributes.npz          # a scipy.sparse matrix (e.g. multi-hot categories)
      audio: {path: audio.npy, optional: True}   # used when the file is there (see below)

An ``optional`` modality whose file does not exist is left out (and logged) instead of being an error,
unless ``use_modalities`` names it; at least one listed modality must exist. A yaml shipped for a dataset
that several importers write (each with some of its modalities) lists them all this way.

A ``.npz`` file is a sparse matrix written by ``scipy.sparse.save_npz`` (see
:mod:`dataset_prep.attributes`): compact on disk, expanded to dense float32 rows when loaded, so every
model reads it like any other modality.

Relative paths are relative to the dataset directory (``<data_path>/<dataset>/``).

:func:`load_item_features` reads and validates every file, then re-orders rows to RecBole's internal
item ids (which follow first appearance in the ``.inter`` files, with 0 = ``[PAD]``). It returns
float32 matrices of shape ``[n_items, dim]`` (made on first use; the models that prepare their features
read them block by block instead, so a ``.npy`` file is never whole in memory beside the model's copy:
:class:`DenseFeatureFile`, :class:`AlignedMatrices`) and a presence mask ``[n_items, n_modalities]``: an item
is missing a modality when the file has no row for it (``ids`` mapping) or its row is all zeros.
Row 0 (padding) is zero and marked missing. Rows for no item of the dataset (extra rows, or ids-file
tokens that are not items) are ignored; a modality missing for every item is an error.

Every bad input raises :class:`FeatureFileError`, whose message names the file, what was expected
and what was found.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from recbole_mamex.errors import InputFileError, RecboleMamexError  # noqa: F401 (InputFileError: imported from here too)

NPY_MAGIC = b"\x93NUMPY"


class FeatureFileError(InputFileError):
    """A modality feature file (or its entry in the dataset yaml) that cannot be used."""


@dataclass(frozen=True)
class ModalitySpec:
    """One modality as the dataset yaml names it."""

    name: str
    path: Path
    ids_path: Path | None = None
    optional: bool = False


@dataclass
class ItemFeatures:
    """Features of every item, in RecBole's internal item-id order."""

    names: list[str]
    matrices: AlignedMatrices  # name -> float32 [n_items, dim], made on first use
    mask: np.ndarray  # bool [n_items, n_modalities], column order = names
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return int(self.mask.shape[0])

    def dims(self) -> dict[str, int]:
        return {name: self.dim(name) for name in self.names}

    def dim(self, name: str) -> int:
        return self.matrices.dim(name)

    def blocks(self, name: str):
        """``(start, aligned float32 rows)`` blocks over every item, without making the whole matrix when
        it is not made yet."""
        return self.matrices.blocks(name)

    FINGERPRINT_BLOCK = 4096  # rows widened to float64 at a time for the sums

    def fingerprints(self) -> dict[str, str]:
        """A cheap fingerprint of each modality's aligned matrix: its shape and dtype, a hash of up to 512
        evenly spaced rows, and the float64 sum and sum of squares of all values (one pass, in blocks of
        rows: no float64 copy of the whole matrix). Checkpoints record it, so a model is not silently
        served with other features of the same shape."""
        import hashlib

        out = {}
        n = self.n_items
        for name in self.names:
            shape = (n, self.dim(name))
            rows = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, 512)).astype(np.int64))
            digest = hashlib.blake2b(self.matrices.rows(name, rows).tobytes(), digest_size=8)
            digest.update(repr((shape, "float32")).encode())
            total = squares = 0.0
            for start in range(0, n, self.FINGERPRINT_BLOCK):
                block = self.matrices.block(name, start, start + self.FINGERPRINT_BLOCK).astype(np.float64)
                total += float(block.sum())
                squares += float(np.einsum("ij,ij->", block, block))
            digest.update(np.array([total, squares]).tobytes())
            out[name] = f"{shape[0]}x{shape[1]}:{digest.hexdigest()}"
        return out

    def coverage(self) -> dict[str, float]:
        """Share of real items (padding excluded) that have each modality."""
        real = self.mask[1:]
        return {name: float(real[:, j].mean()) if len(real) else 0.0 for j, name in enumerate(self.names)}

    def items_without_any_modality(self) -> np.ndarray:
        """Internal ids (padding excluded) of items that have no modality at all."""
        return np.flatnonzero(~self.mask.any(axis=1))[1:] if self.n_items else np.empty(0, dtype=np.int64)

    def summary(self) -> str:
        cover = self.coverage()
        parts = [f"{name} {self.dim(name)}-d ({cover[name]:.1%} of items)" for name in self.names]
        return "modalities: " + ", ".join(parts)


def parse_modalities(value, dataset_dir) -> list[ModalitySpec]:
    """Read the ``modalities`` entry of a dataset config into specs with resolved paths."""
    if value is None:
        return []
    if not isinstance(value, Mapping) or not value:
        raise FeatureFileError(
            None,
            "config key 'modalities' to map modality names to .npy files, e.g. {text: text_feat.npy}",
            f"{value!r}",
        )
    base = Path(dataset_dir)
    specs = []
    for name, entry in value.items():
        if not isinstance(name, str) or not name:
            raise FeatureFileError(None, "modality names to be non-empty strings", f"{name!r}")
        if isinstance(entry, (str, os.PathLike)):
            path, ids, optional = entry, None, False
        elif (isinstance(entry, Mapping) and "path" in entry and set(entry) <= {"path", "ids", "optional"}
              and isinstance(entry.get("optional", False), bool)):
            path, ids, optional = entry["path"], entry.get("ids"), entry.get("optional", False)
        else:
            raise FeatureFileError(
                None,
                f"modality '{name}' to be a file name or {{path: <file.npy>, ids: <ids.txt>, optional: True|False}}",
                f"{entry!r}",
            )
        specs.append(
            ModalitySpec(
                name=name,
                path=_resolve(base, path),
                ids_path=_resolve(base, ids) if ids is not None else None,
                optional=optional,
            )
        )
    return specs


def present_modalities(specs: Sequence[ModalitySpec], requested: Sequence[str] = ()) -> tuple[list[ModalitySpec], list[ModalitySpec]]:
    """``(kept, left out)``: the optional modalities whose file does not exist are left out, unless
    ``requested`` names them (then reading them gives the missing-file error). Listing modalities that are
    all left out is an error naming their files."""
    # a link counts as there (a broken one gives the load's missing-file error, not a silent omission)
    kept = [s for s in specs if not s.optional or s.name in requested or os.path.lexists(s.path)]
    left_out = [s for s in specs if s not in kept]
    if specs and not kept:
        raise FeatureFileError(
            specs[0].path.parent, "at least one of the modality files the dataset yaml lists",
            "none of " + ", ".join(s.path.name for s in specs) + " (all optional, none there)",
        )
    return kept, left_out


def _resolve(base: Path, path) -> Path:
    path = Path(os.path.expanduser(os.fspath(path)))
    return path if path.is_absolute() else base / path


SPARSE_SUFFIX = ".npz"


def read_sparse_matrix(path):
    """Load and validate one sparse feature matrix (``scipy.sparse.save_npz``): 2-D, numeric, finite.
    Returned as float32 CSR."""
    from scipy import sparse

    path = Path(path)
    try:
        matrix = sparse.load_npz(path)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise FeatureFileError(
            path, "a sparse matrix written by scipy.sparse.save_npz", f"a file scipy cannot read as one ({type(err).__name__}: {err})"
        ) from None
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise FeatureFileError(path, "a 2-D sparse matrix with at least one row and one column", f"shape {matrix.shape}")
    if not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == np.bool_) or np.issubdtype(matrix.dtype, np.complexfloating):
        raise FeatureFileError(path, "real-valued (or boolean) sparse features", f"dtype {matrix.dtype}")
    matrix = matrix.tocsr()
    row_of_value = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    refuse_rows(path, [np.unique(row_of_value[~np.isfinite(matrix.data)])], "finite values", "NaN or Inf in")
    if np.issubdtype(matrix.dtype, np.floating) and np.finfo(matrix.dtype).max > np.finfo(np.float32).max:
        peak = abs(matrix).max(axis=1).toarray().ravel()
        refuse_float32_range(
            path, [np.flatnonzero(peak > np.finfo(np.float32).max)],
            [np.flatnonzero((peak > 0) & (peak < np.finfo(np.float32).tiny))],
        )
    return matrix.astype(np.float32)


def has_nonzero(matrix) -> bool:
    """Whether a dense array or a scipy.sparse matrix holds any non-zero value."""
    return bool(np.any(matrix != 0)) if isinstance(matrix, np.ndarray) else matrix.count_nonzero() > 0


def read_feature_matrix(path):
    """Validate one feature matrix: a ``.npy`` array (2-D, floating point, finite; returned as a
    :class:`DenseFeatureFile`, read in blocks of rows), or a sparse ``.npz`` matrix
    (:func:`read_sparse_matrix`; returned sparse, rows are expanded by the caller)."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(path, "a .npy feature file (or a sparse .npz)", "no such file")
    if path.suffix.lower() == SPARSE_SUFFIX:
        return read_sparse_matrix(path)
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        found = "an empty file" if not head else f"a file that is not .npy (it starts with {head!r})"
        raise FeatureFileError(path, "a .npy file (written by numpy.save)", found)
    try:
        # numpy parses and checks the header; the rows are then read as they are used (DenseFeatureFile)
        matrix = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as err:
        # numpy refuses object arrays without pickle, and truncated or non-.npy files.
        raise FeatureFileError(path, "a numeric .npy array", f"a file numpy cannot read as one ({err})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise FeatureFileError(path, "a readable .npy file", f"{type(err).__name__}: {err}") from None
    if not isinstance(matrix, np.ndarray):
        raise FeatureFileError(path, "a single .npy array", f"{type(matrix).__name__}")
    if matrix.ndim != 2:
        raise FeatureFileError(path, "a 2-D array [n_rows, dim]", f"{matrix.ndim}-D array of shape {matrix.shape}")
    if not np.issubdtype(matrix.dtype, np.floating):
        raise FeatureFileError(
            path, "floating-point features (float16/32/64)", f"dtype {matrix.dtype} (cast the array before saving)"
        )
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise FeatureFileError(path, "at least one row and one column", f"shape {matrix.shape}")
    matrix = DenseFeatureFile(path, matrix)
    wide = np.finfo(matrix.dtype).max > np.finfo(np.float32).max
    not_finite, too_large, too_small = [], [], []
    for start, block in row_blocks(matrix):
        not_finite.append(start + np.flatnonzero(~np.isfinite(block).all(axis=1)))
        if wide:  # the models read float32: rows it cannot hold would become inf, or zero (missing) or imprecise
            peak = np.abs(block).max(axis=1)
            too_large.append(start + np.flatnonzero(peak > np.finfo(np.float32).max))
            too_small.append(start + np.flatnonzero((peak > 0) & (peak < np.finfo(np.float32).tiny)))
    refuse_rows(path, not_finite, "finite values", "NaN or Inf in")
    refuse_float32_range(path, too_large, too_small)
    return matrix


def refuse_rows(path, bad_rows: list[np.ndarray], expected: str, found: str) -> None:
    """A :class:`FeatureFileError` naming the first few of ``bad_rows`` (blocks of row numbers), if any."""
    bad_rows = np.concatenate(bad_rows) if bad_rows else np.empty(0, dtype=np.int64)
    if len(bad_rows):
        shown = ", ".join(str(r) for r in bad_rows[:5]) + (", ..." if len(bad_rows) > 5 else "")
        raise FeatureFileError(path, expected, f"{found} {len(bad_rows)} row(s): {shown}")


def refuse_float32_range(path, too_large, too_small) -> None:
    """Refuse rows of a wider-than-float32 file that float32, which the models compute in, cannot hold:
    a value beyond its range (inf there), or a non-zero row whose largest value is below its smallest
    normal number (zero there, a missing modality, or a direction kept with a few bits only)."""
    refuse_rows(path, too_large, "values within float32's range (|x| <= 3.4e38; the models compute in float32)", "larger values in")
    refuse_rows(
        path, too_small,
        "a value of |x| >= 1.2e-38 (float32's smallest normal number; the models compute in float32) in every non-zero row",
        "only smaller values in",
    )


BLOCK_BYTES = 64 * 2**20  # rows read (and widened) at a time when a whole matrix is checked or aligned


def rows_per_block(row_bytes: int) -> int:
    """How many rows of ``row_bytes`` bytes make a block of about :data:`BLOCK_BYTES` (at least one)."""
    return max(1, BLOCK_BYTES // max(1, row_bytes))


def row_blocks(matrix):
    """``(first row, rows)`` blocks of about :data:`BLOCK_BYTES` of ``matrix`` (an array, a memory map or
    a :class:`DenseFeatureFile`)."""
    step = rows_per_block(matrix.shape[1] * matrix.dtype.itemsize)
    for start in range(0, matrix.shape[0], step):
        yield start, np.asarray(matrix[start : start + step])


class DenseFeatureFile:
    """A validated dense ``.npy`` feature matrix, read from its file by rows (``os.pread``) as they are
    asked for: ``f[a:b]`` (a block) or ``f[index_array]`` (rows in that order) give arrays of the file's
    dtype. The whole matrix never has to be in memory, and the file's pages are not mapped into this
    process, so reading it does not add to the process's resident memory (the operating system's page
    cache holds them, reclaimable). A Fortran-ordered file is read through a memory map instead."""

    ndim = 2

    def __init__(self, path: Path, mapped: np.memmap):
        self.path, self.shape, self.dtype = Path(path), tuple(mapped.shape), mapped.dtype
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._offset = int(mapped.offset)
        self._mapped = mapped if mapped.flags.f_contiguous and not mapped.flags.c_contiguous else None

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, fd: int, start: int, stop: int) -> np.ndarray:
        size = (stop - start) * self._row_bytes
        data = os.pread(fd, size, self._offset + start * self._row_bytes)
        if len(data) != size:
            raise FeatureFileError(self.path, f"{self.shape[0]} rows of {self._row_bytes} bytes", "a shorter file (changed while read?)")
        return np.frombuffer(data, dtype=self.dtype).reshape(stop - start, self.shape[1])

    def __getitem__(self, key) -> np.ndarray:
        if self._mapped is not None:
            return np.array(self._mapped[key])
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                return self[np.arange(start, stop, step)]
            with open(self.path, "rb") as f:
                return self._read(f.fileno(), start, max(start, stop)).copy()
        index = np.asarray(key, dtype=np.int64)
        if index.ndim != 1:
            raise TypeError("DenseFeatureFile takes a slice or a 1-D array of row numbers")
        out = np.empty((len(index), self.shape[1]), dtype=self.dtype)
        if len(index) == 0:
            return out
        if index.min() < -self.shape[0] or index.max() >= self.shape[0]:
            raise IndexError(f"row numbers out of range for {self.shape[0]} rows")
        index = np.where(index < 0, index + self.shape[0], index)
        unique, inverse = np.unique(index, return_inverse=True)
        runs = np.flatnonzero(np.diff(unique) != 1) + 1  # starts of runs of consecutive rows
        rows = np.empty((len(unique), self.shape[1]), dtype=self.dtype)
        with open(self.path, "rb") as f:
            for lo, hi in zip(np.concatenate([[0], runs]), np.concatenate([runs, [len(unique)]])):
                rows[lo:hi] = self._read(f.fileno(), int(unique[lo]), int(unique[hi - 1]) + 1)
        out[:] = rows[inverse]
        return out


INTEGER_TOKEN = re.compile(r"(0|[1-9][0-9]*)\Z")
TEXT_ENCODING = "utf-8-sig"  # UTF-8; a byte-order mark at the start (Windows editors write one) is dropped


def is_integer_token(text) -> bool:
    """Whether ``text`` is a canonical non-negative integer: ``7``, not ``07``, ``+7`` or ``7.0``. Under the
    MMRec convention (row i = item i) ``01`` and ``1`` would otherwise be two items sharing row 1."""
    return bool(INTEGER_TOKEN.match(str(text)))


def read_ids_file(path, n_rows: int, matrix_path) -> list[str]:
    """Item tokens, one per line, line r naming the item of row r of ``matrix_path``."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(path, f"an ids file with one item token per row of {matrix_path}", "no such file")
    with open(path, encoding=TEXT_ENCODING) as f:
        tokens = [line.strip() for line in f if line.strip()]
    if tokens and any(sep in tokens[0] for sep in ("\t", ",", " ")):
        raise FeatureFileError(
            path, f"one item token per line and no header (line r = row r of {matrix_path})",
            f"columns on the first line ({tokens[0]!r}): a mapping table such as MMRec's i_id_mapping.csv; "
            "write its token column alone, in row order",
        )
    if len(tokens) != n_rows:
        raise FeatureFileError(path, f"{n_rows} item tokens (one per row of {matrix_path})", f"{len(tokens)}")
    seen: dict[str, int] = {}
    for row, token in enumerate(tokens):
        if token in seen:
            raise FeatureFileError(path, "each item token once", f"'{token}' on rows {seen[token]} and {row}")
        seen[token] = row
    return tokens


def rows_for_items(spec: ModalitySpec, n_rows: int, item_tokens: Sequence[str]) -> np.ndarray:
    """Row of the feature matrix for every internal item id (-1 = no row). Index 0 is padding."""
    rows = np.full(len(item_tokens), -1, dtype=np.int64)
    if spec.ids_path is not None:
        token_to_row = {token: r for r, token in enumerate(read_ids_file(spec.ids_path, n_rows, spec.path))}
        for internal_id, token in enumerate(item_tokens):
            if internal_id:
                rows[internal_id] = token_to_row.get(str(token), -1)
        return rows
    # MMRec convention: the token is the row number, and every item must have its row.
    for internal_id, token in enumerate(item_tokens):
        if internal_id == 0:
            continue
        text = str(token)
        if not is_integer_token(text):
            raise FeatureFileError(
                spec.path,
                "integer item ids written canonically (row i = item id i: 7, not 07), or an 'ids' file mapping rows to item tokens",
                f"item token '{text}'",
            )
        rows[internal_id] = int(text)
    require_rows_for_ids(spec.path, n_rows, int(rows.max()) if len(rows) > 1 else -1)
    return rows


def require_rows_for_ids(path, n_rows: int, largest_id: int, where: str = "the interactions") -> None:
    """Under the MMRec convention (row i = item i) a matrix needs a row for the largest item id."""
    if largest_id >= n_rows:
        raise FeatureFileError(
            path, f"at least {largest_id + 1} rows (the largest item id in {where} is {largest_id})", f"{n_rows} rows"
        )


def require_some_item_features(path, matrix: np.ndarray, rows: np.ndarray, where: str = "the interactions") -> None:
    """A modality with no non-zero row for any item of the data is a wrong file, not a sparse modality:
    refuse it rather than train on an all-missing modality. ``rows`` = the matrix row of each item
    (-1 = no row)."""
    rows = rows[rows >= 0]
    step = rows_per_block(matrix.shape[1] * 4)
    if any(has_nonzero(matrix[rows[start : start + step]]) for start in range(0, len(rows), step)):
        return
    if len(rows) == 0:
        found = "no row for any of them (does the ids file list this dataset's item tokens?)"
    else:
        found = f"all-zero rows for all {len(np.unique(rows))} of them"
    raise FeatureFileError(path, f"features (a non-zero row) for at least one item of {where}", found)


def check_mmrec_feature_file(path, item_ids: np.ndarray, where: str = "the interactions") -> tuple[int, int]:
    """What importers check in a modality file under the MMRec convention (row i = item i): readable,
    2-D finite floats (:func:`read_feature_matrix`), a row for the largest of ``item_ids`` and a non-zero
    row for at least one of them. Returns the matrix shape."""
    matrix = read_feature_matrix(path)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    require_rows_for_ids(path, matrix.shape[0], int(item_ids.max()) if len(item_ids) else -1, where)
    require_some_item_features(path, matrix, np.unique(item_ids), where)
    return int(matrix.shape[0]), int(matrix.shape[1])


def check_ids_feature_file(path, ids_path, item_tokens, where: str = "the interactions") -> tuple[int, int]:
    """What importers check in a modality file with an ids file (row r = the item token on line r of
    ``ids_path``): readable, 2-D finite floats (:func:`read_feature_matrix`), an ids file with one token per
    row (:func:`read_ids_file`) and a non-zero row for at least one of ``item_tokens``. Returns the matrix
    shape."""
    matrix = read_feature_matrix(path)
    row_of = {token: r for r, token in enumerate(read_ids_file(ids_path, matrix.shape[0], path))}
    rows = np.array([row_of.get(str(token), -1) for token in item_tokens], dtype=np.int64)
    require_some_item_features(path, matrix, np.unique(rows), where)
    return int(matrix.shape[0]), int(matrix.shape[1])


class AlignedMatrices(Mapping):
    """name -> float32 ``[n_items, dim]`` features in internal item-id order, each made from its file on
    first access and kept. :meth:`block` gives rows ``[start, stop)`` without making the whole matrix:
    what the models' feature preparation and the fingerprints read, so a model's (normalised) copy can be
    the only copy of a large modality in memory."""

    def __init__(self, n_items: int):
        self.n_items = n_items
        self._sources: dict[str, tuple] = {}  # name -> (file matrix, file row of each item, presence mask)
        self._made: dict[str, np.ndarray] = {}

    def add(self, name: str, raw, rows: np.ndarray, present: np.ndarray) -> None:
        self._sources[name] = (raw, rows, present)

    def dim(self, name: str) -> int:
        return int(self._sources[name][0].shape[1])

    def block(self, name: str, start: int, stop: int) -> np.ndarray:
        """Aligned float32 rows ``[start, stop)`` of modality ``name`` (absent ones zero)."""
        if name in self._made:
            return self._made[name][start:stop]
        return self.rows(name, np.arange(start, min(stop, self.n_items)))

    def rows(self, name: str, index: np.ndarray) -> np.ndarray:
        """Aligned float32 rows ``index`` (internal item ids) of modality ``name``."""
        index = np.asarray(index, dtype=np.int64)
        if name in self._made:
            return np.ascontiguousarray(self._made[name][index])
        raw, rows, present = self._sources[name]
        out = np.zeros((len(index), raw.shape[1]), dtype=np.float32)
        chosen = np.flatnonzero(present[index])
        if len(chosen):
            picked = raw[rows[index[chosen]]]
            out[chosen] = picked if isinstance(picked, np.ndarray) else picked.toarray()
        return out

    def blocks(self, name: str):
        """``(start, aligned rows)`` blocks of about :data:`BLOCK_BYTES` over every item."""
        step = rows_per_block(self.dim(name) * 4)
        for start in range(0, self.n_items, step):
            yield start, self.block(name, start, start + step)

    def is_made(self, name: str) -> bool:
        return name in self._made

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._made:
            if name not in self._sources:
                raise KeyError(name)
            matrix = np.zeros((self.n_items, self.dim(name)), dtype=np.float32)
            for start, block in self.blocks(name):
                matrix[start : start + len(block)] = block
            self._made[name] = matrix
        return self._made[name]

    def __iter__(self):
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)


def load_item_features(specs: Sequence[ModalitySpec], item_tokens: Sequence[str]) -> ItemFeatures:
    """Read every modality and align its rows to internal item ids.

    Every file is validated in full, in blocks of rows; the aligned matrices are made on first use
    (:class:`AlignedMatrices`).

    Args:
        specs: modalities, from :func:`parse_modalities`.
        item_tokens: original token of every internal item id (``dataset.field2id_token[iid_field]``),
            index 0 being ``[PAD]``.
    """
    n_items = len(item_tokens)
    names, sources = [], {}
    matrices = AlignedMatrices(n_items)
    mask = np.zeros((n_items, len(specs)), dtype=bool)
    for j, spec in enumerate(specs):
        raw = read_feature_matrix(spec.path)
        rows = rows_for_items(spec, raw.shape[0], item_tokens)
        has_row = rows >= 0
        matrices.add(spec.name, raw, rows, has_row)
        for start, block in matrices.blocks(spec.name):  # an all-zero row is a missing modality
            mask[start : start + len(block), j] = np.any(block != 0, axis=1)
        matrices.add(spec.name, raw, rows, mask[:, j].copy())  # absent rows (-0.0 included) read as +0.0
        if n_items > 1 and not mask[1:, j].any():
            require_some_item_features(spec.path, raw, rows[1:], "the dataset")
        names.append(spec.name)
        sources[spec.name] = os.fspath(spec.path)
    return ItemFeatures(names=names, matrices=matrices, mask=mask, sources=sources)
