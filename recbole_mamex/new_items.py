"""Items that arrive after training: their features read and checked before a model scores them.

A new item is given by its token and, for each modality the model was trained on, one row of features as a
feature file holds them (before any normalisation: the model applies the training's). Two forms:

- in Python, ``tokens`` (a list) and ``features`` (modality name -> ``[len(tokens), dim]`` float array);
- a folder in the feature store's layout: ``items.txt`` (one token per line; line r = row r of every
  matrix) and one ``<modality>.npy`` (or sparse ``<modality>.npz``) per modality, named after it.

A modality with no array (no file) is missing for every new item, an all-zero row for that item, the
feature store's rule; the model then scores the item from the modalities it has, as it scores a dataset
item that lacks one. An item with no modality at all cannot be scored from content and is refused.

Every problem is one :class:`NewItemsError` naming the file (or the argument), what was expected and what
was found: a row of another width than the model's modality, NaN or Inf, a modality the model does not
know, a token twice, a token the catalogue already has, a count of rows other than the tokens'.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from recbole_mamex.data.features import SPARSE_SUFFIX, read_feature_matrix, read_ids_file
from recbole_mamex.errors import InputFileError

IDS_FILE = "items.txt"
MATRIX_SUFFIXES = (".npy", SPARSE_SUFFIX)


class NewItemsError(InputFileError):
    """New items that cannot be scored as given; the message names the file or argument, the expected and
    the found."""


@dataclass(frozen=True)
class NewItems:
    """Checked new items: ``tokens``, ``features`` (every modality of the model, float32 ``[m, dim]``, zero
    rows where missing) and ``mask`` (bool ``[m, n_modalities]``, the model's modality order)."""

    tokens: list[str]
    features: dict[str, np.ndarray]
    mask: np.ndarray


def read_folder(folder) -> tuple[list[str], dict[str, np.ndarray], dict[str, Path]]:
    """``items.txt``'s tokens, ``{modality: rows}`` and ``{modality: its file}`` from a new-items folder (see
    the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        found = "a file, not a folder" if folder.exists() else "no such folder"
        raise NewItemsError(folder, f"a folder holding {IDS_FILE} and one <modality>.npy per modality", found)
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in MATRIX_SUFFIXES and p.is_file() and not p.name.startswith("."))
    if not files:
        raise NewItemsError(folder, "one <modality>.npy (or .npz) per modality of the new items", "no such file")
    stems = [p.stem for p in files]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise NewItemsError(folder, "one file per modality", f"both a .npy and a .npz for {twice}")
    matrices = {p.stem: read_feature_matrix(p) for p in files}
    first = files[0]
    try:
        tokens = read_ids_file(folder / IDS_FILE, matrices[first.stem].shape[0], first)
    except (UnicodeDecodeError, OSError) as err:
        raise NewItemsError(folder / IDS_FILE, "a readable UTF-8 text file, one item token per line", f"{type(err).__name__}: {err}") from None
    for path in files[1:]:
        rows = matrices[path.stem].shape[0]
        if rows != len(tokens):
            raise NewItemsError(path, f"{len(tokens)} rows (one per token of {folder / IDS_FILE})", f"{rows} rows")
    return tokens, {name: _dense(matrix) for name, matrix in matrices.items()}, {p.stem: p for p in files}


def _dense(matrix) -> np.ndarray:
    if hasattr(matrix, "toarray"):
        return matrix.toarray()
    return np.asarray(matrix[0 : matrix.shape[0]])


def check_new_items(tokens: Sequence, features: Mapping, modality_dims: Mapping[str, int], catalogue: Mapping,
                    sources: Mapping | None = None) -> NewItems:
    """Check new items against a model's modalities (``modality_dims``: name -> width, in the model's order)
    and the tokens the catalogue already has (``catalogue``: token -> id). ``sources``: modality -> the file
    it came from, for the messages (default: the ``features`` argument)."""
    sources = dict(sources or {})

    def where(name):
        return sources.get(name, f"features[{name!r}]")

    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise NewItemsError(None, "new item tokens as a list", f"{type(tokens).__name__} {tokens!r:.40}")
    tokens = [str(t) for t in tokens]
    if not tokens or any(not t for t in tokens):
        raise NewItemsError(None, "at least one new item token, none empty", f"{len(tokens)} token(s): {tokens[:5]}")
    odd = [t for t in tokens if any(c.isspace() for c in t) or t == "[PAD]"]
    if odd:
        raise NewItemsError(sources.get("ids"), "item tokens without spaces, tabs or line breaks (and not [PAD])", f"{odd[:5]}")
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token in seen:
            raise NewItemsError(sources.get("ids"), "each new item token once", f"'{token}' at positions {seen[token]} and {i}")
        seen[token] = i
    existing = [t for t in tokens if t in catalogue]
    if existing:
        raise NewItemsError(
            sources.get("ids"), "tokens of items the catalogue does not have yet (a new item needs a new token)",
            f"{len(existing)} already there: {existing[:5]}",
        )
    if not isinstance(features, Mapping) or not features:
        raise NewItemsError(None, f"features: a mapping of modality -> array for some of {list(modality_dims)}", repr(features)[:60])
    unknown = sorted(str(name) for name in features if name not in modality_dims)
    if unknown:
        raise NewItemsError(
            where(unknown[0]), f"features of the model's modalities ({', '.join(modality_dims)})", f"unknown modality {unknown}",
        )
    m = len(tokens)
    dense, mask = {}, np.zeros((m, len(modality_dims)), dtype=bool)
    for j, (name, dim) in enumerate(modality_dims.items()):
        if name not in features:
            dense[name] = np.zeros((m, dim), dtype=np.float32)
            continue
        rows = np.asarray(features[name]) if not hasattr(features[name], "toarray") else features[name].toarray()
        if rows.ndim != 2 or not np.issubdtype(rows.dtype, np.floating):
            raise NewItemsError(where(name), "a 2-D floating-point array [n_items, dim]", f"{rows.ndim}-D {rows.dtype} array")
        if rows.shape[0] != m:
            raise NewItemsError(where(name), f"{m} rows (one per new item token)", f"{rows.shape[0]} rows")
        if rows.shape[1] != dim:
            raise NewItemsError(where(name), f"rows of {dim} values (the width of modality '{name}' in training)", f"{rows.shape[1]}")
        bad = np.flatnonzero(~np.isfinite(rows).all(axis=1))
        if len(bad):
            raise NewItemsError(where(name), "finite values", f"NaN or Inf in {len(bad)} row(s): items {[tokens[i] for i in bad[:5]]}")
        with np.errstate(over="ignore"):
            rows32 = rows.astype(np.float32)
        too_large = np.flatnonzero(~np.isfinite(rows32).all(axis=1))
        if len(too_large):
            raise NewItemsError(where(name), "values within float32's range (the models compute in float32)",
                                f"larger values for items {[tokens[i] for i in too_large[:5]]}")
        dense[name] = rows32
        mask[:, j] = (rows32 != 0).any(axis=1)
    empty = [tokens[i] for i in np.flatnonzero(~mask.any(axis=1))]
    if empty:
        raise NewItemsError(
            None, "features in at least one modality for every new item (a model scores a new item from its content)",
            f"none for {len(empty)} item(s): {empty[:5]}",
        )
    return NewItems(tokens, dense, mask)


def new_items_from(tokens, features, modality_dims: Mapping[str, int], catalogue: Mapping) -> NewItems:
    """:func:`check_new_items` of ``tokens`` and ``features``, or of a folder given as ``features`` (a path;
    ``tokens`` then ``None``: they are its ``items.txt``)."""
    if isinstance(features, (str, os.PathLike)):
        if tokens is not None:
            raise NewItemsError(features, f"tokens=None with a folder (its {IDS_FILE} names the items)", f"tokens {list(tokens)[:5]}")
        folder = Path(features)
        tokens, matrices, files = read_folder(folder)
        return check_new_items(tokens, matrices, modality_dims, catalogue, {**files, "ids": folder / IDS_FILE})
    return check_new_items(tokens, features, modality_dims, catalogue)
