"""Make sure a dataset's files are there before RecBole reads them: prepare a bundled dataset on first
use, and turn a missing dataset into an error that says how to prepare it."""

from __future__ import annotations

from logging import getLogger
from pathlib import Path

import yaml

from dataset_prep.bundled import BUNDLED, BUNDLED_COLD, S3REC_BUNDLED, prepare_bundled
from recbole_mamex.errors import RecboleMamexError


# Amazon datasets (amazon-sports, amazon-baby, amazon-clothing) are known from their shipped yaml's
# `amazon_source` (McAuley's category name and MMRec's folder name); see amazon_prepare_commands.
MMREC_MODALITY_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}


class DatasetNotPreparedError(RecboleMamexError, FileNotFoundError):
    """A dataset whose files are not under ``data_path``; the message says how to prepare it."""


def expected_inter_files(config) -> list[Path]:
    data_dir = Path(config["data_path"])
    name = config["dataset"]
    suffixes = config["benchmark_filename"]
    if suffixes:
        return [data_dir / f"{name}.{suffix}.inter" for suffix in suffixes]
    return [data_dir / f"{name}.inter"]


def mmrec_import_command(name: str, mmrec_folder: str) -> str:
    modality_args = " ".join(f"--modality {m}={f}" for m, f in MMREC_MODALITY_FILES.items())
    return f"python -m dataset_prep.mmrec /path/to/mmrec/data/{mmrec_folder} --name {name} {modality_args}"


def amazon_prepare_commands(name: str, amazon_source: dict) -> list[str]:
    """How to prepare an Amazon dataset whose yaml names its ``amazon_source``: from McAuley's original
    2014 files, or from MMRec's preprocessed copy."""
    category = amazon_source.get("category", "<Category>")
    commands = [
        f"python -m dataset_prep.amazon --reviews reviews_{category}_5.json.gz --meta meta_{category}.json.gz "
        f"--images image_features_{category}.b --name {name}"
    ]
    if amazon_source.get("mmrec_folder"):
        commands.append(mmrec_import_command(name, amazon_source["mmrec_folder"]))
    return commands


def prepare_bundled_cold(name: str, out_root, force: bool = False):
    """Make the cold-start split ``name`` of a bundled dataset under ``<out_root>/<name>`` (its yaml ships
    with the package)."""
    from dataset_prep.coldstart import make_cold_dataset, source_from_prepared

    spec = BUNDLED_COLD[name]
    frame, user_col, item_col, modalities, source = source_from_prepared(spec.base, Path(out_root))
    return make_cold_dataset(
        frame, user_col, item_col, modalities, name, source,
        out_root=out_root, fraction=spec.fraction, seed=spec.seed, force=force, write_yaml=False, log=getLogger().info,
    )


def _recbole_downloadable(name: str) -> bool:
    import recbole

    url_file = Path(recbole.__file__).parent / "properties" / "dataset" / "url.yaml"
    try:
        with open(url_file, encoding="utf-8") as f:
            return name in (yaml.safe_load(f) or {})
    except OSError:
        return False


def ensure_dataset_files(config) -> None:
    """Prepare a bundled dataset that is not there yet; raise :class:`DatasetNotPreparedError` with the
    command to run for a known dataset that is missing, or with the files expected for any other one.

    A dataset RecBole can download itself (its ``url.yaml``) is left to RecBole.
    """
    from dataset_prep.common import DatasetExistsError

    expected = expected_inter_files(config)
    if all(path.is_file() for path in expected):
        return
    name = config["dataset"]
    data_dir = Path(config["data_path"])
    if name in BUNDLED or name in BUNDLED_COLD:
        if data_dir.exists():
            raise DatasetNotPreparedError(
                f"{data_dir} exists but lacks {[p.name for p in expected if not p.is_file()]}; "
                f"remove the directory to let recbole_mamex prepare the bundled '{name}' again"
            )
        getLogger().info(f"Preparing bundled dataset '{name}' into {data_dir} (first use)")
        try:
            if name in BUNDLED:
                prepare_bundled(name, data_dir.parent)
            else:
                prepare_bundled_cold(name, data_dir.parent)
        except DatasetExistsError:
            pass  # another process prepared it meanwhile
        return
    out = f" --out {data_dir.parent}" if data_dir.parent != Path("dataset") else ""
    shipped = S3REC_BUNDLED.get(name.removesuffix("-cold"))
    if shipped is not None:
        made = "and its cold split " if name == shipped.name else f"({name} is the cold split of {shipped.name}) "
        text = (
            f"dataset '{name}' is not prepared: no RecBole files in {data_dir}. The interaction graph and item "
            f"attributes ship with recbole_mamex; one command writes {shipped.name} {made}with the attributes as a "
            f"modality (add --mmrec <MMRec folder> for MMRec's image and text features):\n    {shipped.command}{out}"
        )
        if isinstance(config["amazon_source"], dict):
            text += "".join(
                f"\nor, with image and text features from other sources:\n    {command}{out}"
                for command in amazon_prepare_commands(name, config["amazon_source"])
            )
        raise DatasetNotPreparedError(text)
    if isinstance(config["amazon_source"], dict):
        first, *others = [command + out for command in amazon_prepare_commands(name, config["amazon_source"])]
        raise DatasetNotPreparedError(
            f"dataset '{name}' is not prepared: no RecBole files in {data_dir}. Build it from McAuley's "
            f"original Amazon 2014 files:\n    {first}"
            + "".join(f"\nor import MMRec's preprocessed copy:\n    {command}" for command in others)
        )
    if not data_dir.exists() and _recbole_downloadable(name):
        return
    missing = [str(p) for p in expected if not p.is_file()]
    raise DatasetNotPreparedError(
        f"dataset '{name}': expected RecBole atomic file(s) {', '.join(missing)}, found none there. "
        "Import MMRec-layout data with `python -m dataset_prep.mmrec <dir> --name "
        f"{name}`, or set data_path to the directory that holds '{name}/'"
    )
