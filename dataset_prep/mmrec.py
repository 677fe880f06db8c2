"""Import a dataset in MMRec's layout into RecBole atomic benchmark files.

MMRec layout (one directory): ``<ds>.inter``, tab-separated with a header holding at least
``userID itemID x_label`` (``x_label`` 0 = train, 1 = valid, 2 = test; ``rating`` and ``timestamp``
are kept when present; each (userID, itemID) pair once), and one ``.npy`` per modality whose row i
belongs to item id i.

Output, under ``<out>/<name>/``: ``<name>.train.inter``, ``<name>.valid.inter``, ``<name>.test.inter``
and ``<modality>.npy`` for every modality (a copy, or a symlink with ``--link``); and the dataset's
config ``<properties>/dataset/<name>.yaml``. Everything is written to a temporary directory next to
the destination and renamed into place at the end, so a failed import leaves nothing behind. An
existing dataset or yaml is never replaced without ``--force``.

Example (MMRec's Amazon Sports files)::

    python -m dataset_prep.mmrec /data/mmrec/sports --name amazon-sports \\
        --modality image=image_feat.npy --modality text=text_feat.npy
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where it is used, so that `--help` stays quick
    import pandas as pd

from dataset_prep.common import (
    DataImportError,
    add_output_options,
    run_reporting_errors,
    check_destination,
    modalities_cover,
    overriding_yaml,
    shipped_dataset_settings,
    dataset_yaml_text,
    require_unique_pairs,
    write_benchmark_dataset,
)
from recbole_mamex.data.features import TEXT_ENCODING, check_mmrec_feature_file, is_integer_token

REQUIRED_COLUMNS = ("userID", "itemID", "x_label")
OPTIONAL_COLUMNS = {"rating": "rating:float", "timestamp": "timestamp:float"}
SPLITS = {0: "train", 1: "valid", 2: "test"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ImportResult:
    dataset_dir: Path
    yaml_path: Path | None
    counts: dict[str, int]
    n_users: int
    n_items: int
    modalities: dict[str, tuple[int, int]]  # name -> (rows, dim)


def discover(src: Path) -> tuple[Path, dict[str, Path]]:
    """The single ``.inter`` file in ``src`` and every ``.npy`` as a modality named after its file
    (``image_feat.npy`` -> ``image``)."""
    inters = sorted(src.glob("*.inter"))
    if len(inters) != 1:
        raise DataImportError(src, "exactly one .inter file (or pass --inter)", f"{len(inters)}: {[p.name for p in inters]}")
    return inters[0], discover_modalities(src)


def discover_modalities(src: Path, exclude: tuple[str, ...] = ()) -> dict[str, Path]:
    """Every ``.npy`` in ``src`` (but ``exclude``) as a modality named after its file minus ``_feat``."""
    return {
        (path.stem[: -len("_feat")] if path.stem.endswith("_feat") else path.stem): path
        for path in sorted(src.glob("*.npy"))
        if path.name not in exclude
    }


def read_mmrec_inter(path: Path, with_splits: bool = True) -> pd.DataFrame:
    """Read and check an MMRec ``.inter`` file; ids are kept as tokens (strings). With ``with_splits``
    False (the cold-start splitter re-splits), ``x_label`` is neither needed nor checked."""
    import pandas as pd

    if not path.is_file():
        raise DataImportError(path, "an MMRec .inter file", "no such file")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding=TEXT_ENCODING)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataImportError(path, "a tab-separated file with a header line", f"{type(err).__name__}: {err}") from None
    required = REQUIRED_COLUMNS if with_splits else REQUIRED_COLUMNS[:2]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataImportError(path, f"tab-separated columns {list(required)} in the header", f"columns {list(frame.columns)}")
    if frame.empty:
        raise DataImportError(path, "at least one interaction", "a header only")
    for column in ("userID", "itemID"):
        bad = frame[column].str.strip() == ""
        if bad.any():
            line = int(bad.to_numpy().nonzero()[0][0]) + 2
            raise DataImportError(path, f"a value in column {column} on every line", f"an empty one on line {line}")
    require_unique_pairs(frame.assign(userID=frame["userID"].str.strip(), itemID=frame["itemID"].str.strip()), "userID", "itemID", path)
    for column in OPTIONAL_COLUMNS:
        if column in frame.columns and pd.to_numeric(frame[column], errors="coerce").isna().any():
            raise DataImportError(path, f"numbers in column {column}", "non-numeric values")
    if not with_splits:
        return frame.drop(columns=["x_label"], errors="ignore")
    labels = pd.to_numeric(frame["x_label"], errors="coerce")
    bad = ~labels.isin(list(SPLITS))
    if bad.any():
        line = int(bad.to_numpy().nonzero()[0][0]) + 2
        raise DataImportError(
            path, "x_label 0 (train), 1 (valid) or 2 (test)", f"{frame['x_label'].iloc[line - 2]!r} on line {line} ({int(bad.sum())} such lines)"
        )
    frame["x_label"] = labels.astype(int)
    for label, split in SPLITS.items():
        if not (frame["x_label"] == label).any():
            raise DataImportError(path, "interactions in every split", f"none with x_label {label} ({split})")
    return frame


def check_features(modalities: dict[str, Path], inter: pd.DataFrame, inter_path: Path) -> dict[str, tuple[int, int]]:
    """Validate every feature file against the item ids of ``inter`` (MMRec convention: row i = id i)."""
    items = inter["itemID"].str.strip()
    non_numeric = ~items.map(is_integer_token)
    if non_numeric.any() and modalities:
        raise DataImportError(
            inter_path, "integer itemIDs written canonically (MMRec: row i of every .npy is item i; 7, not 07)",
            f"itemID {items[non_numeric].iloc[0]!r}",
        )
    ids = items.astype(int).to_numpy() if modalities else None
    return {name: check_mmrec_feature_file(path, ids, inter_path.name) for name, path in modalities.items()}


def inter_lines(frame: pd.DataFrame) -> str:
    """RecBole atomic ``.inter`` text for the rows of ``frame`` (order kept)."""
    columns = ["userID", "itemID"] + [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    header = ["user_id:token", "item_id:token"] + [OPTIONAL_COLUMNS[c] for c in columns[2:]]
    body = frame[columns].astype(str).apply(lambda col: col.str.strip())
    return "\t".join(header) + "\n" + "".join("\t".join(row) + "\n" for row in body.itertuples(index=False, name=None))


def mmrec_source(source: str) -> str:
    return f"imported by dataset_prep.mmrec from {source}"


def import_mmrec(
    inter_path,
    modalities: dict[str, os.PathLike | str],
    name: str,
    out_root="dataset",
    properties_dir="properties",
    force: bool = False,
    link: bool = False,
    write_yaml: bool = True,
    source: str | None = None,
    log=print,
) -> ImportResult:
    """Import one MMRec dataset; see the module docstring. Returns what was written."""
    if not _NAME_RE.match(name or ""):
        raise DataImportError(None, "a dataset name of letters, digits, '.', '_' or '-'", repr(name))
    for modality, path in modalities.items():
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", modality):
            raise DataImportError(
                None, "modality names of letters, digits and '_'",
                f"{modality!r} (named after {Path(path).name}); name it yourself, e.g. --modality text={Path(path).name}",
            )
    inter_path = Path(inter_path)
    out_root = Path(out_root)
    listed = shipped_dataset_settings(name).get("modalities")
    destination = Path(properties_dir) / "dataset" / f"{name}.yaml"
    if (write_yaml and listed and modalities_cover(listed, {m: f"{m}.npy" for m in modalities})
            and not overriding_yaml(name, destination)):
        write_yaml = False  # e.g. amazon-sports: the shipped yaml names these files and applies everywhere
        log(f"[dataset_prep] the yaml shipped with recbole_mamex for '{name}' applies; none written")
    yaml_path = destination if write_yaml else None
    sources = [inter_path, *modalities.values()]
    check_destination(out_root, name, yaml_path, force, sources)

    log(f"[dataset_prep] reading {inter_path}")
    frame = read_mmrec_inter(inter_path)
    modality_paths = {m: Path(p) for m, p in modalities.items()}
    shapes = check_features(modality_paths, frame, inter_path)

    counts = {}
    split_texts = {}
    for label, split in SPLITS.items():
        part = frame[frame["x_label"] == label]
        split_texts[split] = inter_lines(part)
        counts[split] = int(len(part))
        log(f"[dataset_prep] {split}: {len(part)} interactions")
    for modality, path in modality_paths.items():
        log(f"[dataset_prep] modality {modality}: {shapes[modality][0]} x {shapes[modality][1]} from {path}")
    final_dir, _ = write_benchmark_dataset(
        name, split_texts, modality_paths, out_root, link=link, force=force, log=log, yaml_path=yaml_path, sources=sources,
        yaml_text=lambda files: dataset_yaml_text(name, files, mmrec_source(source or str(inter_path.parent))),
    )
    return ImportResult(
        dataset_dir=final_dir,
        yaml_path=yaml_path,
        counts=counts,
        n_users=int(frame["userID"].nunique()),
        n_items=int(frame["itemID"].nunique()),
        modalities=shapes,
    )


def _parse_modality_args(values: list[str], src: Path) -> dict[str, Path]:
    result = {}
    for value in values:
        if "=" not in value:
            raise DataImportError(None, "--modality NAME=FILE", repr(value))
        modality, path = value.split("=", 1)
        if modality in result:
            raise DataImportError(None, "each modality named once in --modality", f"{modality!r} given twice ({result[modality]} and {path})")
        path = Path(path)
        # relative to SRC when the file is there (as in the commands this project prints), else to the cwd;
        # a file in neither place is reported under SRC
        result[modality] = path if path.is_absolute() or (path.exists() and not (src / path).exists()) else src / path
    return result


def build_parser(prog: str = "python -m dataset_prep.mmrec") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Import an MMRec-layout dataset (<ds>.inter with x_label + one .npy per modality) into RecBole atomic files.",
    )
    parser.add_argument("src", type=Path, help="directory holding the MMRec files")
    parser.add_argument("--name", required=True, help="dataset name for RecBole (e.g. amazon-sports)")
    parser.add_argument("--inter", type=Path, help="the .inter file (default: the only .inter in SRC)")
    parser.add_argument(
        "--modality",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="a modality and its .npy (repeatable; default: every .npy in SRC, named after the file minus '_feat')",
    )
    add_output_options(parser)
    return parser


def main(argv=None, prog: str = "python -m dataset_prep.mmrec") -> int:
    args = build_parser(prog).parse_args(argv)

    def task():
        if args.modality:
            inter = args.inter or discover(args.src)[0]
            modalities = _parse_modality_args(args.modality, args.src)
        else:
            found_inter, modalities = discover(args.src)
            inter = args.inter or found_inter
        import_mmrec(
            inter, modalities, args.name, out_root=args.out, properties_dir=args.properties, force=args.force, link=args.link
        )

    return run_reporting_errors(task)


if __name__ == "__main__":
    sys.exit(main())
