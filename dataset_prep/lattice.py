"""Import a cold-start split in the LATTICE / MILK layout, to evaluate on the exact split authors used.

Input directory:

- ``train.txt``, ``val.txt``, ``test.txt``: one line per user, ``uid item item ...`` (space-separated
  integer ids; a user with no item on a line is fine);
- ``cold_item_index.npy``: the integer ids of the cold items;
- one ``.npy`` per modality (``image_feat.npy``, ``text_feat.npy``, ...), row i = item i.

Cold items found in ``val.txt`` become cold-valid, those in ``test.txt`` cold-test (an item in both is
counted and kept as cold-test only; its valid interactions then never count as hits); a cold item in
``train.txt`` is an error. Output is the layout of ``dataset_prep.coldstart``: RecBole benchmark files,
``<name>.cold_items.json``, the features, and ``properties/dataset/<name>.yaml``::

    python -m dataset_prep.lattice /data/milk/baby --name baby-milk
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_prep.coldstart import COLD_EXTRA_CONFIG
from dataset_prep.common import (
    DataImportError,
    add_output_options,
    check_destination,
    dataset_yaml_text,
    frame_to_atomic,
    locate_in_files,
    require_unique_pairs,
    run_reporting_errors,
    write_benchmark_dataset,
)
from dataset_prep.mmrec import discover_modalities
from recbole_mamex.data.features import TEXT_ENCODING, check_mmrec_feature_file, is_integer_token

SPLIT_FILES = {"train": "train.txt", "valid": "val.txt", "test": "test.txt"}


def read_user_item_lines(path: Path) -> pd.DataFrame:
    """``uid item item ...`` lines -> a frame of (user, item) rows, in file order."""
    if not path.is_file():
        raise DataImportError(path, "a file of 'uid item item ...' lines", "no such file")
    users, items = [], []
    with open(path, encoding=TEXT_ENCODING) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if not all(map(is_integer_token, fields)):
                bad = next(field for field in fields if not is_integer_token(field))
                raise DataImportError(path, "non-negative integer ids on every line (7, not 07)", f"{bad!r} on line {number}")
            users += [fields[0]] * (len(fields) - 1)
            items += fields[1:]
    if not items:
        raise DataImportError(path, "at least one 'uid item ...' line with an item", "none (an empty file or users without items)")
    return pd.DataFrame({"user_id:token": users, "item_id:token": items})


def read_cold_items(path: Path) -> set[str]:
    if not path.is_file():
        raise DataImportError(path, "a .npy array of cold item ids", "no such file")
    try:
        ids = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise DataImportError(path, "a numeric .npy array of cold item ids", f"a file numpy cannot read as one ({err})") from None
    except (OSError, EOFError) as err:
        raise DataImportError(path, "a readable .npy array of cold item ids", f"{type(err).__name__}: {err}") from None
    if not isinstance(ids, np.ndarray) or ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        found = f"{ids.ndim}-D array of dtype {ids.dtype}" if isinstance(ids, np.ndarray) else type(ids).__name__
        raise DataImportError(path, "a 1-D integer array of item ids", found)
    if len(ids) == 0:
        raise DataImportError(path, "at least one cold item id", "an empty array")
    return {str(int(i)) for i in ids}


def import_lattice(
    src,
    name: str,
    modalities: dict[str, Path] | None = None,
    out_root="dataset",
    properties_dir="properties",
    force: bool = False,
    link: bool = False,
    log=print,
):
    """Import a LATTICE/MILK-layout split; see the module docstring. Returns the split counts."""
    src = Path(src)
    yaml_path = Path(properties_dir) / "dataset" / f"{name}.yaml"
    sources = [src / filename for filename in SPLIT_FILES.values()] + [src / "cold_item_index.npy"] + list((modalities or {}).values())
    check_destination(Path(out_root), name, yaml_path, force, sources)
    frames = {split: read_user_item_lines(src / filename) for split, filename in SPLIT_FILES.items()}
    cold = read_cold_items(src / "cold_item_index.npy")
    if modalities is None:
        modalities = discover_modalities(src, exclude=("cold_item_index.npy",))
    in_train = sorted(cold & set(frames["train"]["item_id:token"]), key=int)
    if in_train:
        raise DataImportError(
            src / "train.txt", "no interaction with a cold item (cold_item_index.npy)", f"{len(in_train)} cold items, e.g. {in_train[:3]}"
        )
    files = [(SPLIT_FILES[split], len(frame)) for split, frame in frames.items()]
    require_unique_pairs(pd.concat(frames.values(), ignore_index=True), "user_id:token", "item_id:token", src, locate_in_files(files, 0))
    valid_items, test_items = set(frames["valid"]["item_id:token"]), set(frames["test"]["item_id:token"])
    cold_test = sorted(cold & test_items, key=int)
    cold_valid = sorted((cold & valid_items) - test_items, key=int)
    both = cold & valid_items & test_items
    unused = cold - valid_items - test_items
    all_items = pd.concat([f["item_id:token"] for f in frames.values()]).astype(int).to_numpy()
    for path in modalities.values():
        check_mmrec_feature_file(path, all_items, "train/val/test.txt")
    log(
        f"[dataset_prep] {src}: interactions { {s: len(f) for s, f in frames.items()} }, "
        f"{len(cold_valid)} cold-valid and {len(cold_test)} cold-test items"
        + (f"; {len(both)} cold items in both val.txt and test.txt kept as cold-test" if both else "")
        + (f"; {len(unused)} cold items without interactions ignored" if unused else "")
    )
    cold_file = f"{name}.cold_items.json"
    payload = {
        "dataset": name,
        "source": f"LATTICE/MILK layout in {src}",
        "protocol": "item cold-start, split given by the source files",
        "cold_valid": cold_valid,
        "cold_test": cold_test,
    }
    write_benchmark_dataset(
        name,
        {split: frame_to_atomic(frame) for split, frame in frames.items()},
        modalities,
        out_root,
        extra_files={cold_file: json.dumps(payload, indent=1) + "\n"},
        link=link,
        force=force,
        log=log,
        yaml_path=yaml_path,
        sources=sources,
        yaml_text=lambda files: dataset_yaml_text(
            name,
            files,
            f"imported by dataset_prep.lattice from {src}",
            extra_lines=(f"cold_items_file: {cold_file}",) + COLD_EXTRA_CONFIG,
        ),
    )
    return {split: len(frame) for split, frame in frames.items()}


def build_parser(prog: str = "python -m dataset_prep.lattice") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="directory with train.txt, val.txt, test.txt, cold_item_index.npy, *_feat.npy")
    parser.add_argument("--name", required=True, help="dataset name for RecBole")
    add_output_options(parser)
    return parser


def main(argv=None, prog: str = "python -m dataset_prep.lattice") -> int:
    args = build_parser(prog).parse_args(argv)
    return run_reporting_errors(
        lambda: import_lattice(args.src, args.name, out_root=args.out, properties_dir=args.properties, force=args.force, link=args.link)
    )


if __name__ == "__main__":
    sys.exit(main())
