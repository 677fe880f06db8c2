"""Categorical item attributes (brand, category path entries, tags, ...) as a multi-hot modality.

Two input layouts:

- json, S3Rec's ``item2attributes.json``: ``{"<item id>": [<attribute id>, ...], ...}``, attribute ids
  integers >= 1; item keys integers >= 1 written canonically (``7``, not ``07``) where the items are
  integers (no ``--ids``, or an ids file of integers), else the item tokens of ``--ids`` (ASINs ...);
- tsv: one line per item, ``<item token><TAB><attribute> <attribute> ...``; tokens are any strings
  without whitespace, ``#`` lines and blank lines are skipped.

The result is a sparse matrix, one row per item of ``item_tokens`` (the dataset's items, in row order),
one column per attribute (in sorted order: numeric for json ids, lexicographic for tsv tokens), 1 where
the item has the attribute. It is written with ``scipy.sparse.save_npz`` (``attributes.npz``) with the
column tokens beside it (``attributes.columns.txt``); the feature store reads ``.npz`` modalities like
``.npy`` ones, so every multimodal model takes it as one more modality. An item the file does not list
gets an empty row: a missing modality for that item, as an all-zero feature row is.

Bad input is refused with the file and the offending entries named, before anything is written: an item
the dataset does not have, an item listed with no attribute, an attribute id below 1, an item key that
is not an integer where the items are integers (json), a repeated item, a line without a tab (tsv). An
output folder that cannot be written is refused before the input is read.

    python -m dataset_prep.attributes item2attributes.json --ids item_ids.txt --out attributes.npz
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from dataset_prep.common import DataImportError, run_reporting_errors
from recbole_mamex.data.features import TEXT_ENCODING, is_integer_token
from recbole_mamex.files import check_writable, writing

FORMATS = ("json", "tsv")
SHOWN = 5


@dataclass
class Attributes:
    """Multi-hot attributes of a list of items."""

    matrix: "object"  # scipy.sparse.csr_matrix [n_items, n_attributes], uint8
    columns: list[str]  # attribute token of each column
    listed: int  # items of item_tokens the file lists

    def summary(self) -> str:
        per_item = np.diff(self.matrix.indptr)
        listed = per_item[per_item > 0]
        return (
            f"{self.matrix.shape[0]} items, {len(self.columns)} attributes, {self.listed} items with attributes "
            f"({len(listed) and listed.min()}-{len(listed) and listed.max()} per item, mean {listed.mean() if len(listed) else 0:.1f})"
        )


def _shown(values) -> str:
    values = list(values)
    return ", ".join(repr(v) for v in values[:SHOWN]) + (f" and {len(values) - SHOWN} more" if len(values) > SHOWN else "")


def detect_format(path: Path) -> str:
    return "json" if path.suffix.lower() == ".json" else "tsv"


def read_json_attributes(path: Path, integer_keys: bool = True, keys_hint: str = "", zero: bool = False) -> dict[str, list[str]]:
    """``{item key: [attribute id, ...]}`` of a json file. ``integer_keys``: the items are integers (row i =
    item i, or an ids file of integers), so a key must be one, written canonically, and >= 1 unless ``zero``
    (an ids file that lists item 0); else any token."""
    try:
        data = json.loads(path.read_text(encoding=TEXT_ENCODING))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataImportError(path, 'a json object {"<item id>": [<attribute id>, ...]}', f"a file that is not json ({err})") from None
    except RecursionError:
        raise DataImportError(path, 'a json object {"<item id>": [<attribute id>, ...]}', "json nested too deeply to read") from None
    if not isinstance(data, dict) or not data:
        raise DataImportError(path, 'a non-empty json object {"<item id>": [<attribute id>, ...]}', f"{type(data).__name__} {str(data)[:60]}")
    bad_keys = [k for k in data if not is_integer_token(k) or (k == "0" and not zero)] if integer_keys else []
    if bad_keys:  # other keys are checked against the item tokens (read_attributes)
        raise DataImportError(path, f"item ids written as integers{'' if zero else ' >= 1'} (7, not 07 or 'B000ABC'){keys_hint}", f"item keys {_shown(bad_keys)}")
    out, empty, bad_values, low = {}, [], [], []
    for item, values in data.items():
        if not isinstance(values, list):
            bad_values.append(item)
            continue
        if not values:
            empty.append(item)
            continue
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            bad_values.append(item)
            continue
        if min(values) < 1:
            low.append(item)
            continue
        out[item] = [str(v) for v in values]
    if bad_values:
        raise DataImportError(path, "a list of integer attribute ids for every item", f"other values for items {_shown(bad_values)}")
    if empty:
        raise DataImportError(path, "at least one attribute id for every item listed (leave an item without attributes out)", f"empty lists for items {_shown(empty)}")
    if low:
        raise DataImportError(path, "attribute ids >= 1", f"ids below 1 for items {_shown(low)}")
    return out


def read_tsv_attributes(path: Path) -> dict[str, list[str]]:
    out, malformed, empty, repeated = {}, [], [], []
    try:
        lines = path.read_text(encoding=TEXT_ENCODING).splitlines()
    except UnicodeDecodeError as err:
        raise DataImportError(path, "UTF-8 text: <item token><TAB><attribute> <attribute> ...", f"bytes that are not UTF-8 ({err})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        item, tab, rest = line.partition("\t")
        item = item.strip()
        if not tab or not item or any(c.isspace() for c in item):
            malformed.append(number)
            continue
        values = rest.split()
        if not values:
            empty.append(item)
        elif item in out:
            repeated.append(item)
        else:
            out[item] = values
    if malformed:
        raise DataImportError(path, "lines '<item token><TAB><attribute> <attribute> ...'", f"other text on line(s) {_shown(malformed)}")
    if empty:
        raise DataImportError(path, "at least one attribute for every item listed (leave an item without attributes out)", f"no attribute for items {_shown(empty)}")
    if repeated:
        raise DataImportError(path, "each item on one line", f"items listed more than once: {_shown(repeated)}")
    if not out:
        raise DataImportError(path, "at least one line '<item token><TAB><attribute> ...'", "none")
    return out


def read_attributes(path, item_tokens: Sequence[str], file_format: str | None = None) -> Attributes:
    """The multi-hot matrix of ``path`` for ``item_tokens`` (row r = ``item_tokens[r]``; a ``None`` token,
    e.g. RecBole's padding row or an unused MMRec row, stays empty)."""
    from scipy import sparse

    path = Path(path)
    if not path.is_file():
        raise DataImportError(path, "an attributes file (.json or tab-separated)", "no such file")
    file_format = file_format or detect_format(path)
    if file_format not in FORMATS:
        raise DataImportError(path, f"format one of {FORMATS}", repr(file_format))
    if file_format == "json":
        integer_keys = all(is_integer_token(t) for t in item_tokens if t is not None)
        by_item = read_json_attributes(path, integer_keys, ", as the dataset's item tokens are", zero="0" in item_tokens)
    else:
        by_item = read_tsv_attributes(path)
    row_of = {str(t): r for r, t in enumerate(item_tokens) if t is not None}
    unknown = [item for item in by_item if item not in row_of]
    if unknown:
        raise DataImportError(
            path, f"attributes only for items of the dataset ({len(row_of)} items)", f"{len(unknown)} unknown item(s): {_shown(unknown)}"
        )
    tokens = {v for values in by_item.values() for v in values}
    columns = sorted(tokens, key=int) if file_format == "json" else sorted(tokens)
    column_of = {token: c for c, token in enumerate(columns)}
    rows, cols = [], []
    for item, values in by_item.items():
        unique = sorted({column_of[v] for v in values})
        rows += [row_of[item]] * len(unique)
        cols += unique
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.uint8), (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64))),
        shape=(len(item_tokens), len(columns)),
    )
    matrix.sort_indices()
    return Attributes(matrix=matrix, columns=columns, listed=len(by_item))


def check_outputs(out: Path, force: bool = False) -> Path:
    """The columns file beside ``out``, after refusing a name without ``.npz``, an existing file without
    ``force`` and a folder that cannot be written (:func:`recbole_mamex.files.check_writable`)."""
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise DataImportError(out, "an output file name ending in .npz (a sparse matrix)", f"suffix {out.suffix or '(none)'!r}")
    columns_path = out.with_name(out.stem + ".columns.txt")
    for path in (out, columns_path):
        if path.exists() and not force:
            raise DataImportError(path, "a new file (or --force to replace it)", "an existing file")
    check_writable(out.parent)
    return columns_path


def write_attributes(attributes: Attributes, out: Path, force: bool = False, shown_as: Path | None = None) -> tuple[Path, Path]:
    """``out`` (``.npz``) and ``<out stem>.columns.txt`` beside it, both written to temporary files renamed
    at the end (a failed write leaves neither, and is one error naming the file: ``shown_as`` where ``out``
    is a temporary one); an existing file is kept unless ``force``."""
    from scipy import sparse

    from recbole_mamex.files import atomic_path

    out = Path(out)
    columns_path = check_outputs(out, force)
    shown = Path(shown_as) if shown_as is not None else out
    with writing(shown), atomic_path(out, suffix=".npz") as tmp:
        sparse.save_npz(tmp, attributes.matrix, compressed=True)
        with writing(shown.with_name(columns_path.name)), atomic_path(columns_path) as tmp_columns:
            tmp_columns.write_text("".join(f"{c}\n" for c in attributes.columns), encoding="utf-8")
    return out, columns_path


def read_ids(path: Path) -> list[str]:
    """One item token per line, no header (the rows of the output)."""
    if not path.is_file():
        raise DataImportError(path, "an ids file (one item token per line)", "no such file")
    tokens = [line.strip() for line in path.read_text(encoding=TEXT_ENCODING).splitlines() if line.strip()]
    if not tokens:
        raise DataImportError(path, "one item token per line", "an empty file")
    seen, repeated = set(), []
    for token in tokens:
        if token in seen:
            repeated.append(token)
        seen.add(token)
    if repeated:
        raise DataImportError(path, "each item token once", f"repeated tokens {_shown(repeated)}")
    return tokens


def build_parser(prog: str = "python -m dataset_prep.attributes") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("attributes", type=Path, help="item2attributes.json or a tab-separated <item><TAB><attr> ... file")
    parser.add_argument("--ids", type=Path, help="item tokens, one per line: row r of the output is line r "
                        "(default for json: row i = item id i, rows 0..largest id)")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write (columns in <stem>.columns.txt beside it)")
    parser.add_argument("--format", choices=FORMATS, help="default: json for a .json file, else tsv")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    return parser


def main(argv=None, prog: str = "python -m dataset_prep.attributes") -> int:
    args = build_parser(prog).parse_args(argv)

    def task():
        check_outputs(args.out, args.force)  # before the input is read
        file_format = args.format or detect_format(args.attributes)
        if args.ids is not None:
            tokens = read_ids(args.ids)
        elif file_format == "json":
            keys = read_json_attributes(args.attributes, keys_hint=" (row i = item i without --ids; other keys need --ids)")
            tokens = [None] + [str(i) for i in range(1, max(int(k) for k in keys) + 1)]
        else:
            raise DataImportError(args.attributes, "--ids (the item tokens in row order) for a tab-separated file", "no --ids")
        attributes = read_attributes(args.attributes, tokens, file_format)
        out, columns = write_attributes(attributes, args.out, args.force)
        print(f"[dataset_prep] {attributes.summary()}; wrote {out} and {columns}")

    return run_reporting_errors(task)


if __name__ == "__main__":
    raise SystemExit(main())
