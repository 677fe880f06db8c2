"""An S3Rec-layout dataset (``sequential_data.txt`` + ``item2attributes.json``) as a warm and a cold-start
RecBole dataset, with the item attributes as a multi-hot modality.

With no input named, the Amazon Sports & Outdoors 5-core copy that ships with the package
(``recbole_mamex/bundled/amazon-sports``, see its PROVENANCE.md) becomes ``amazon-sports`` and
``amazon-sports-cold``, as the first run that names either does by itself
(:func:`dataset_prep.prepare.ensure_bundled`)::

    python -m dataset_prep.s3rec
    python run_recbole_mamex.py --model=MAMEX --dataset=amazon-sports-cold

- ``sequential_data.txt``: one line per user, ``user item item ...`` (integer ids from 1);
- ``item2attributes.json``: ``{item id: [attribute id, ...]}`` (:mod:`dataset_prep.attributes`), written
  as the modality ``attributes`` (``attributes.npz``, sparse; an item without attributes misses it);
- with ``--mmrec DIR`` (MMRec's folder for the same data: ``image_feat.npy``, ``text_feat.npy`` and
  ``i_id_mapping.csv``) the image and text features are added as modalities, their rows placed through the
  ASINs of ``id_maps.json``'s ``item2id`` and MMRec's ``i_id_mapping.csv`` (an item MMRec lacks gets a
  zero row: missing);
- the warm dataset ``<name>``: per user a seeded random 80/10/10 train/valid/test split (MMRec's x_label
  rule, the warm part of :mod:`dataset_prep.coldstart`);
- the cold dataset ``<name>-cold``: :mod:`dataset_prep.coldstart`'s item cold-start split of it
  (fraction 0.2, seed 2025 by default).

The yaml of each goes to ``./properties/dataset/``, except where the yaml shipped with the package already
says it (``amazon-sports`` and ``amazon-sports-cold``: their modalities are optional); for such a name the
counts are checked against its ``expected_statistics``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dataset_prep.amazon import ITEM_MAP_FILE, check_statistics
from dataset_prep.attributes import read_attributes, write_attributes
from dataset_prep.bundled import S3REC_BUNDLED
from dataset_prep.coldstart import (
    DEFAULT_FRACTION,
    DEFAULT_SEED,
    cold_yaml_text,
    make_cold_dataset,
    per_user_split_labels,
    prepared_source_label,
    source_from_prepared,
)
from dataset_prep.common import (
    DataImportError,
    check_destination,
    dataset_yaml_text,
    frame_to_atomic,
    run_reporting_errors,
    shipped_dataset_settings,
    shipped_yaml_applies,
    temporary_import_directory,
    write_benchmark_dataset,
)
from recbole_mamex.data.features import TEXT_ENCODING, is_integer_token, read_feature_matrix
from recbole_mamex.files import writing

USER, ITEM = "user_id:token", "item_id:token"
MMREC_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}


def read_sequences(path: Path) -> pd.DataFrame:
    """(user, item) rows of a ``user item item ...`` file, in file order; ids must be canonical integers."""
    if not path.is_file():
        raise DataImportError(path, "a sequential_data.txt file (one line per user: user item item ...)", "no such file")
    users, items, bad = [], [], []
    with open(path, encoding=TEXT_ENCODING) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2 or not all(is_integer_token(t) and t != "0" for t in fields):
                bad.append(number)
                continue
            users += [fields[0]] * (len(fields) - 1)
            items += fields[1:]
    if bad:
        shown = ", ".join(str(n) for n in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DataImportError(path, "lines 'user item item ...' of integer ids >= 1", f"other text on line(s) {shown}")
    if not users:
        raise DataImportError(path, "at least one line 'user item item ...'", "none")
    frame = pd.DataFrame({USER: users, ITEM: items})
    repeated = frame.duplicated()
    if repeated.any():
        first = frame[repeated].iloc[0]
        raise DataImportError(path, "each (user, item) pair once", f"{int(repeated.sum())} repeated pair(s), e.g. user {first[USER]} item {first[ITEM]}")
    return frame


def mmrec_features(mmrec: Path, id_maps: Path, n_rows: int, work: Path, dataset_dir: Path | None = None) -> tuple[dict[str, Path], dict]:
    """MMRec's image/text rows re-ordered to row i = item i of the S3Rec graph; written under ``work`` (a
    failed write names the file of ``dataset_dir`` it is for)."""
    mapping_file = mmrec / ITEM_MAP_FILE
    if not mapping_file.is_file():
        raise DataImportError(mapping_file, f"MMRec's item id mapping ({ITEM_MAP_FILE}: asin<TAB>itemID) beside its features", "no such file")
    mapping = pd.read_csv(mapping_file, sep="\t", dtype=str, encoding=TEXT_ENCODING)
    if not {"asin", "itemID"} <= set(mapping.columns):
        raise DataImportError(mapping_file, "columns asin and itemID", f"columns {list(mapping.columns)}")
    mmrec_row = dict(zip(mapping["asin"], mapping["itemID"].astype(int)))
    try:
        item2id = json.loads(id_maps.read_text(encoding=TEXT_ENCODING))["item2id"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataImportError(id_maps, "a json object with 'item2id' (ASIN -> item id)", f"{type(err).__name__}: {err}") from None
    ours = np.full(n_rows, -1, dtype=np.int64)  # MMRec row of each of our item ids
    for asin, item in item2id.items():
        if int(item) < n_rows and asin in mmrec_row:
            ours[int(item)] = mmrec_row[asin]
    paths, report = {}, {}
    for modality, filename in MMREC_FILES.items():
        source = mmrec / filename
        if not source.is_file():
            continue
        raw = read_feature_matrix(source)
        if hasattr(raw, "tocsr"):  # a scipy.sparse matrix
            raise DataImportError(source, "a dense .npy feature matrix", "a sparse matrix")
        valid = (ours >= 0) & (ours < raw.shape[0])
        aligned = np.zeros((n_rows, raw.shape[1]), dtype=np.float32)
        aligned[valid] = raw[ours[valid]]
        paths[modality] = work / f"{modality}.npy"
        with writing((dataset_dir or work) / paths[modality].name):
            np.save(paths[modality], aligned)
        report[modality] = {"file": str(source), "dim": int(raw.shape[1]), "items_placed": int(valid[1:].sum())}
    if not paths:
        raise DataImportError(mmrec, f"MMRec's {' or '.join(MMREC_FILES.values())}", "neither")
    return paths, report


def prepare_s3rec(
    sequential=None,
    attributes=None,
    name: str = "amazon-sports",
    id_maps=None,
    mmrec=None,
    out_root="dataset",
    properties_dir="properties",
    cold: bool = True,
    fraction: float = DEFAULT_FRACTION,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    log=print,
    write_yaml: bool = True,
) -> dict:
    """Write ``<name>`` (warm) and, with ``cold``, ``<name>-cold``; return the counts and paths. Without
    ``write_yaml`` no yaml is written (a bundled name's first use: the package's own applies)."""
    bundled = S3REC_BUNDLED.get(name)
    if sequential is None or attributes is None:
        if bundled is None:
            raise DataImportError(None, f"--sequential and --attributes (no copy of '{name}' ships; shipped: {sorted(S3REC_BUNDLED)})", "neither")
        sequential = sequential or bundled.source_dir / bundled.sequential
        attributes = attributes or bundled.source_dir / bundled.attributes
        id_maps = id_maps or bundled.source_dir / bundled.id_maps
    sequential, attributes = Path(sequential), Path(attributes)
    out_root, properties_dir = Path(out_root), Path(properties_dir)
    source = f"S3Rec-layout files {sequential.name} and {attributes.name}, prepared by dataset_prep.s3rec (warm split seed {seed})"
    planned = {"attributes": "attributes.npz"} | {
        modality: f"{modality}.npy" for modality, filename in MMREC_FILES.items() if mmrec is not None and (Path(mmrec) / filename).is_file()
    }
    cold_name = f"{name}-cold"
    yaml_texts = {name: dataset_yaml_text(name, planned, source)}
    if cold:
        yaml_texts[cold_name] = cold_yaml_text(cold_name, planned, prepared_source_label(name), fraction, seed)
    yaml_paths = {}
    for dataset, text in yaml_texts.items():
        yaml_paths[dataset] = properties_dir / "dataset" / f"{dataset}.yaml" if write_yaml else None
        if yaml_paths[dataset] is not None and shipped_yaml_applies(dataset, text, yaml_paths[dataset]):
            yaml_paths[dataset] = None
            log(f"[dataset_prep] the yaml shipped with recbole_mamex for '{dataset}' applies; none written")
    yaml_path = yaml_paths[name]
    # both destinations are checked before anything is read or written
    check_destination(out_root, name, yaml_path, force, [sequential, attributes])
    if cold:
        check_destination(out_root, cold_name, yaml_paths[cold_name], force)
    if mmrec is not None and id_maps is None:
        raise DataImportError(mmrec, "--id-maps (id_maps.json with item2id) to place MMRec's rows", "no id maps")

    frame = read_sequences(sequential)
    n_rows = int(frame[ITEM].astype(int).max()) + 1
    tokens = [None] + [str(i) for i in range(1, n_rows)]
    attrs = read_attributes(attributes, tokens, "json" if attributes.suffix.lower() == ".json" else "tsv")
    log(f"[dataset_prep] {sequential}: {frame[USER].nunique()} users, {frame[ITEM].nunique()} items, {len(frame)} interactions")
    log(f"[dataset_prep] {attributes}: {attrs.summary()}")
    listed_not_in_graph = set(np.flatnonzero(np.diff(attrs.matrix.indptr))) - set(frame[ITEM].astype(int))
    if listed_not_in_graph:
        shown = ", ".join(str(i) for i in sorted(listed_not_in_graph)[:5])
        raise DataImportError(attributes, f"attributes only for items of {sequential.name}", f"items without an interaction: {shown}")

    rng = np.random.default_rng(seed)
    labels = per_user_split_labels(frame[USER].to_numpy(), rng)
    texts = {split: frame_to_atomic(frame[labels == k]) for k, split in enumerate(("train", "valid", "test"))}
    found = {"users": int(frame[USER].nunique()), "items": int(frame[ITEM].nunique()), "interactions": len(frame)}
    verdict = check_statistics(name, shipped_dataset_settings(name).get("expected_statistics"), found, log)
    report = {"inputs": {"sequential": str(sequential), "attributes": str(attributes)}, "statistics": found | {"check": verdict},
              "attributes": {"columns": len(attrs.columns), "items_with_attributes": attrs.listed},
              "splits": {split: int((labels == k).sum()) for k, split in enumerate(("train", "valid", "test"))}}
    with temporary_import_directory(out_root, f"{name}.features", log) as work:
        modality_paths = {}
        modality_paths["attributes"], columns = write_attributes(attrs, work / "attributes.npz", shown_as=out_root / name / "attributes.npz")
        if mmrec is not None:
            paths, report["mmrec"] = mmrec_features(Path(mmrec), Path(id_maps), n_rows, work, out_root / name)
            modality_paths.update(paths)
            log(f"[dataset_prep] MMRec features: {report['mmrec']}")
        extra = {"attributes.columns.txt": columns.read_text(encoding="utf-8"), f"{name}.prep.json": json.dumps(report, indent=1) + "\n"}
        if id_maps is not None:
            extra["id_maps.json"] = Path(id_maps).read_text(encoding=TEXT_ENCODING)
        final_dir, _ = write_benchmark_dataset(
            name, texts, modality_paths, out_root, extra_files=extra, force=force, log=log, yaml_path=yaml_path,
            yaml_text=lambda files: dataset_yaml_text(name, files, source), sources=[sequential, attributes],
        )
    result = {"warm": final_dir, "statistics": found, "check": verdict}
    if cold:
        frame_w, user_col, item_col, modalities, warm_source = source_from_prepared(name, out_root, properties_dir / "dataset" / f"{name}.yaml")
        split = make_cold_dataset(
            frame_w, user_col, item_col, modalities, cold_name, warm_source,
            out_root=out_root, properties_dir=properties_dir, fraction=fraction, seed=seed, force=force, log=log,
            write_yaml=yaml_paths[cold_name] is not None, sources=[p for p in final_dir.iterdir() if p.is_file()],
        )
        result["cold"] = out_root / cold_name
        result["cold_counts"] = split.counts()
    return result


def build_parser(prog: str = "python -m dataset_prep.s3rec") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=Path, help="sequential_data.txt (default: the shipped copy of --name)")
    parser.add_argument("--attributes", type=Path, help="item2attributes.json or a tab-separated file (default: the shipped copy)")
    parser.add_argument("--id-maps", type=Path, help="id_maps.json (item2id: ASIN -> item id), needed with --mmrec (default: the shipped copy)")
    parser.add_argument("--name", default="amazon-sports", help="the warm dataset's name; the cold one is <name>-cold (default amazon-sports)")
    parser.add_argument("--mmrec", type=Path, help="MMRec's folder for the same data: adds image_feat.npy / text_feat.npy")
    parser.add_argument("--no-cold", dest="cold", action="store_false", help="write the warm dataset only")
    parser.add_argument("--fraction", type=float, default=DEFAULT_FRACTION, help="cold items' share (default 0.2)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split seed (default {DEFAULT_SEED})")
    parser.add_argument("--out", type=Path, default=Path("dataset"), help="RecBole data_path to write into (default: dataset)")
    parser.add_argument("--properties", type=Path, default=Path("properties"), help="where to write dataset/<name>.yaml (default: ./properties)")
    parser.add_argument("--force", action="store_true", help="replace existing datasets and yaml files of these names")
    return parser


def main(argv=None, prog: str = "python -m dataset_prep.s3rec") -> int:
    args = build_parser(prog).parse_args(argv)

    def task():
        prepare_s3rec(
            args.sequential, args.attributes, args.name, args.id_maps, args.mmrec, args.out, args.properties,
            args.cold, args.fraction, args.seed, args.force,
        )

    return run_reporting_errors(task)


if __name__ == "__main__":
    raise SystemExit(main())
