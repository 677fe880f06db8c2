"""Item cold-start split of any dataset (the MILK / MAMEX protocol).

- A seeded ``fraction`` of the items (default 0.2) become cold: all their interactions leave training.
- Cold items are split by item into cold-valid and cold-test halves, so model selection never sees a
  test item.
- Warm interactions are split per user 80/10/10 into train / warm-valid / warm-test (a random order per
  user; valid and test get one interaction when their share rounds to zero and the user has more than one
  training interaction, RecBole's rule).
- valid = warm-valid + every interaction of a cold-valid item; test = warm-test + every interaction of a
  cold-test item.

Output under ``<out>/<name>/``: ``<name>.{train,valid,test}.inter``, ``<name>.cold_items.json`` (the
cold-valid and cold-test item tokens), the modality features; and ``properties/dataset/<name>.yaml``
(which sets ``eval_candidates: cold`` and ``test_candidates: [cold, warm, all]``). The split is a pure
function of (interactions in file order, seed, fraction): the same inputs give byte-identical files.

Sources: a prepared RecBole dataset (``--dataset NAME``: ``<name>.inter`` or its benchmark files, and
the modalities of its yaml, those with an ``ids:`` file too: it is copied beside the features as
``<modality>.ids.txt``) or an MMRec-layout directory (``--mmrec DIR``; its x_label is ignored)::

    python -m dataset_prep.coldstart --dataset lastfm-2k            # -> dataset lastfm-2k-cold
    python -m dataset_prep.coldstart --mmrec /data/mmrec/baby --name amazon-baby-cold
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_mamex.data.features import TEXT_ENCODING, ModalitySpec, is_integer_token
from recbole_mamex.errors import ConfigError
from dataset_prep.common import (
    DataImportError,
    add_output_options,
    check_destination,
    check_output_locations,
    dataset_yaml_text,
    frame_to_atomic,
    locate_in_files,
    require_unique_pairs,
    run_reporting_errors,
    write_benchmark_dataset,
)

DEFAULT_FRACTION = 0.2
DEFAULT_SEED = 2025
WARM_RATIOS = (0.8, 0.1, 0.1)
COLD_EXTRA_CONFIG = ("eval_candidates: cold", "test_candidates: [cold, warm, all]")


@dataclass
class ColdSplit:
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    cold_valid: list[str]
    cold_test: list[str]

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def warm_split_sizes(n: np.ndarray, ratios=WARM_RATIOS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user (train, valid, test) sizes for users with ``n`` warm interactions."""
    n = np.asarray(n, dtype=np.int64)
    valid = np.floor(ratios[1] * n + 1e-9).astype(np.int64)
    test = np.floor(ratios[2] * n + 1e-9).astype(np.int64)
    train = n - valid - test
    for share, part in ((ratios[2], test), (ratios[1], valid)):
        bump = (train > 1) & (share * n > 0) & (share * n < 1)
        part += bump
        train -= bump
    return train, valid, test


def per_user_split_labels(users: np.ndarray, rng: np.random.Generator, ratios=WARM_RATIOS) -> np.ndarray:
    """Split label (0 train, 1 valid, 2 test) of every interaction, given its user: a random order per
    user (drawn from ``rng``), then the first 80% train, the next 10% valid, the rest test."""
    keys = rng.random(len(users))
    order = np.lexsort((keys, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(sorted_users)])
    position = np.arange(len(sorted_users)) - np.repeat(starts, sizes)
    n_train, n_valid, _ = warm_split_sizes(sizes, ratios)
    n_train, n_valid = np.repeat(n_train, sizes), np.repeat(n_valid, sizes)
    labels = np.empty(len(users), dtype=np.int8)
    labels[order] = np.where(position < n_train, 0, np.where(position < n_train + n_valid, 1, 2))
    return labels


def cold_start_split(
    frame: pd.DataFrame,
    user_col: str,
    item_col: str,
    fraction: float = DEFAULT_FRACTION,
    seed: int = DEFAULT_SEED,
) -> ColdSplit:
    """Split interactions (rows of ``frame``, any extra columns kept) by the protocol above."""
    if not 0 < fraction < 1:
        raise ConfigError(f"cold fraction: expected a number in (0, 1), found {fraction}")
    rng = np.random.default_rng(seed)
    items = np.array(sorted(frame[item_col].astype(str).unique()))
    n_cold = int(round(fraction * len(items)))
    if n_cold < 2 or n_cold >= len(items):
        raise ConfigError(
            f"a cold fraction of {fraction} of {len(items)} items gives {n_cold} cold items; "
            "need at least 2 cold items (one for valid, one for test) and at least one warm item"
        )
    chosen = items[rng.permutation(len(items))[:n_cold]]
    cold_valid = sorted(chosen[: n_cold // 2].tolist())
    cold_test = sorted(chosen[n_cold // 2 :].tolist())

    item_tokens = frame[item_col].astype(str)
    is_cold_valid = item_tokens.isin(cold_valid).to_numpy()
    is_cold_test = item_tokens.isin(cold_test).to_numpy()
    warm_rows = np.flatnonzero(~(is_cold_valid | is_cold_test))

    label = np.empty(len(frame), dtype=np.int8)
    label[warm_rows] = per_user_split_labels(frame[user_col].astype(str).to_numpy()[warm_rows], rng)
    label[is_cold_valid] = 1
    label[is_cold_test] = 2
    return ColdSplit(
        train=frame[label == 0],
        valid=frame[label == 1],
        test=frame[label == 2],
        cold_valid=cold_valid,
        cold_test=cold_test,
    )


def cold_items_json(name: str, source: str, split: ColdSplit, fraction: float, seed: int, n_items: int) -> str:
    payload = {
        "dataset": name,
        "source": source,
        "protocol": "item cold-start: cold items leave training; cold-valid / cold-test split by item",
        "fraction": fraction,
        "seed": seed,
        "n_items": n_items,
        "cold_valid": split.cold_valid,
        "cold_test": split.cold_test,
    }
    return json.dumps(payload, indent=1) + "\n"


def read_atomic_inter(paths: list[Path]) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """Concatenate RecBole atomic ``.inter`` files (same header), all values kept as text. Also returns
    (file name, rows) of each file, in order."""
    frames = []
    for path in paths:
        if not path.is_file():
            raise DataImportError(path, "a RecBole atomic .inter file", "no such file")
        try:
            frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding=TEXT_ENCODING)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise DataImportError(path, "a tab-separated atomic file with a header line", f"{type(err).__name__}: {err}") from None
        if frames and list(frame.columns) != list(frames[0].columns):
            raise DataImportError(path, f"the header of {paths[0].name}: {list(frames[0].columns)}", f"{list(frame.columns)}")
        frames.append(frame)
    whole = pd.concat(frames, ignore_index=True)
    if whole.empty:
        raise DataImportError(paths[0], f"at least one interaction in {[p.name for p in paths]}", "header lines only")
    return whole, [(path.name, len(frame)) for path, frame in zip(paths, frames)]


def find_column(frame: pd.DataFrame, field: str, path) -> str:
    for column in frame.columns:
        if column.split(":")[0] == field:
            return column
    raise DataImportError(path, f"a column for field '{field}'", f"columns {list(frame.columns)}")


def source_from_prepared(name: str, data_path: Path, yaml_path: Path | None = None):
    """Interactions, field columns and modalities of a prepared dataset (its yaml decides fields: the
    package's and the working directory's, then ``yaml_path`` when it is there, e.g. one an importer just
    wrote under another ``--properties``): a modality is its file (row i = item i), or its
    :class:`ModalitySpec` when it has an ids file."""
    from recbole_mamex.config import dataset_config_dict
    from recbole_mamex.data.features import parse_modalities, present_modalities
    from recbole_mamex.files import read_yaml_mapping
    from dataset_prep.bundled import BUNDLED, prepare_bundled

    dataset_dir = data_path / name
    if not dataset_dir.exists() and name in BUNDLED:
        prepare_bundled(name, data_path)
    settings = dataset_config_dict(name)
    if yaml_path is not None and Path(yaml_path).is_file():
        settings.update(read_yaml_mapping(yaml_path))
    whole = dataset_dir / f"{name}.inter"
    suffixes = settings.get("benchmark_filename") or []
    paths = [whole] if whole.is_file() or not suffixes else [dataset_dir / f"{name}.{s}.inter" for s in suffixes]
    frame, files = read_atomic_inter(paths)
    user_col = find_column(frame, settings.get("USER_ID_FIELD", "user_id"), paths[0])
    item_col = find_column(frame, settings.get("ITEM_ID_FIELD", "item_id"), paths[0])
    require_unique_pairs(frame, user_col, item_col, dataset_dir, locate_in_files(files))
    modalities = {}
    for spec in present_modalities(parse_modalities(settings.get("modalities"), dataset_dir))[0]:
        modalities[spec.name] = spec.path if spec.ids_path is None else spec
    return frame, user_col, item_col, modalities, prepared_source_label(name)


def prepared_source_label(name: str) -> str:
    """The ``source`` a split of the prepared dataset ``name`` records (see :func:`base_dataset_of`)."""
    return f"dataset '{name}'"


def base_dataset_of(cold_items: dict) -> str | None:
    """The prepared dataset a cold split (its ``cold_items.json`` content) was made from, or ``None`` when
    it was made from other files (an MMRec directory)."""
    match = re.fullmatch(r"dataset '(.+)'", str(cold_items.get("source", "")))
    return match.group(1) if match else None


def source_from_mmrec(src: Path, modality_args: list[str]):
    from dataset_prep.mmrec import _parse_modality_args, discover, read_mmrec_inter

    inter, found = discover(src)
    modalities = _parse_modality_args(modality_args, src) if modality_args else found
    frame = read_mmrec_inter(inter, with_splits=False)
    typed = {"userID": "user_id:token", "itemID": "item_id:token", "rating": "rating:float", "timestamp": "timestamp:float"}
    frame = frame[[c for c in typed if c in frame.columns]].rename(columns=typed)
    return frame, "user_id:token", "item_id:token", modalities, f"MMRec files in {src}"


def make_cold_dataset(
    frame: pd.DataFrame,
    user_col: str,
    item_col: str,
    modalities: dict[str, Path | ModalitySpec],
    name: str,
    source: str,
    out_root="dataset",
    properties_dir="properties",
    fraction: float = DEFAULT_FRACTION,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    link: bool = False,
    write_yaml: bool = True,
    log=print,
    sources=(),
) -> ColdSplit:
    """Split ``frame`` and write the cold-start dataset ``name``; see the module docstring. ``modalities``:
    name -> feature file (row i = item i), or a :class:`ModalitySpec` with an ids file (row r = the item
    on its line r; the split's yaml names a copy of it). Each modality file is read once here and checked
    (readable, 2-D, finite floats, a row for every integer item id or an ids file with a token per row, a
    non-zero row for at least one item). ``sources``: the files ``frame`` was read from (none may lie in the
    directory written, see :func:`dataset_prep.common.check_destination`)."""
    from recbole_mamex.data.features import check_ids_feature_file, check_mmrec_feature_file

    yaml_path = Path(properties_dir) / "dataset" / f"{name}.yaml" if write_yaml else None
    specs = {m: v if isinstance(v, ModalitySpec) else ModalitySpec(m, Path(v)) for m, v in modalities.items()}
    ids_files = {m: spec.ids_path for m, spec in specs.items() if spec.ids_path is not None}
    sources = [*sources, *(spec.path for spec in specs.values()), *ids_files.values()]
    check_destination(Path(out_root), name, yaml_path, force, sources)
    items = frame[item_col].astype(str)
    numeric = items.map(is_integer_token)
    for modality, spec in specs.items():
        if modality in ids_files:
            check_ids_feature_file(spec.path, spec.ids_path, items.unique())
            continue
        if not numeric.all():
            raise DataImportError(
                spec.path,
                "integer item ids written canonically (row i of every .npy is item i; 7, not 07), or an ids file "
                f"for the modality in the dataset yaml ({modality}: {{path: <file>, ids: <ids file>}})",
                f"item tokens such as {items[~numeric].iloc[0]!r} in the interactions of {source}",
            )
        check_mmrec_feature_file(spec.path, items.astype(int).to_numpy())
    split = cold_start_split(frame, user_col, item_col, fraction, seed)
    n_items = int(frame[item_col].nunique())
    log(
        f"[dataset_prep] cold split of {source}: {n_items} items, {len(split.cold_valid)} cold-valid and "
        f"{len(split.cold_test)} cold-test items (fraction {fraction}, seed {seed}); interactions {split.counts()}"
    )
    cold_file = f"{name}.cold_items.json"
    texts = {s: frame_to_atomic(getattr(split, s)) for s in ("train", "valid", "test")}
    write_benchmark_dataset(
        name,
        texts,
        {m: spec.path for m, spec in specs.items()},
        out_root,
        modality_ids=ids_files,
        extra_files={cold_file: cold_items_json(name, source, split, fraction, seed, n_items)},
        link=link,
        force=force,
        log=log,
        yaml_path=yaml_path,
        sources=sources,
        yaml_text=lambda files: cold_yaml_text(
            name, files, source, fraction, seed, user_field=user_col.split(":")[0], item_field=item_col.split(":")[0],
        ),
    )
    return split


def cold_source(source: str, fraction: float, seed: int) -> str:
    return f"item cold-start split of {source} by dataset_prep.coldstart (fraction {fraction}, seed {seed})"


def cold_yaml_text(name: str, modality_files: dict, source: str, fraction: float, seed: int,
                   user_field: str = "user_id", item_field: str = "item_id") -> str:
    """The yaml of the cold split ``name`` of ``source`` (:func:`dataset_prep.common.dataset_yaml_text`)."""
    return dataset_yaml_text(
        name, modality_files, cold_source(source, fraction, seed), user_field=user_field, item_field=item_field,
        extra_lines=(f"cold_items_file: {name}.cold_items.json",) + COLD_EXTRA_CONFIG,
    )


def build_parser(prog: str = "python -m dataset_prep.coldstart") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a prepared RecBole dataset under --data-path (bundled ones are prepared first)")
    source.add_argument("--mmrec", type=Path, help="a directory in MMRec's layout")
    parser.add_argument("--name", help="name of the new dataset (default: <dataset>-cold)")
    parser.add_argument("--modality", action="append", default=[], metavar="NAME=FILE", help="with --mmrec: a modality and its .npy")
    parser.add_argument("--fraction", type=float, default=DEFAULT_FRACTION, help="share of items made cold (default 0.2)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    add_output_options(parser, out_flag="--data-path")
    return parser


def main(argv=None, prog: str = "python -m dataset_prep.coldstart") -> int:
    args = build_parser(prog).parse_args(argv)

    def task():
        name = args.name or f"{args.dataset or args.mmrec.name}-cold"
        check_output_locations(args.out, args.properties / "dataset" / f"{name}.yaml")  # before the source is read
        if args.dataset:
            frame, user_col, item_col, modalities, source = source_from_prepared(args.dataset, args.out)
            read_from = args.out / args.dataset
        else:
            frame, user_col, item_col, modalities, source = source_from_mmrec(args.mmrec, args.modality)
            read_from = args.mmrec
        inputs = [path for path in read_from.iterdir() if path.is_file()]  # the interactions read are among them
        make_cold_dataset(
            frame, user_col, item_col, modalities, name, source,
            out_root=args.out, properties_dir=args.properties, fraction=args.fraction, seed=args.seed,
            force=args.force, link=args.link, sources=inputs,
        )

    return run_reporting_errors(task)


if __name__ == "__main__":
    sys.exit(main())
