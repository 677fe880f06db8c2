"""Make sure a dataset's files are there before RecBole reads them: prepare a bundled dataset on first
use, and turn a missing dataset into an error that says how to prepare it."""

from __future__ import annotations

import contextlib
import sys
import time
from logging import INFO, getLogger
from pathlib import Path

import yaml

from dataset_prep.bundled import BUNDLED, BUNDLED_COLD, S3REC_BUNDLED, is_bundled, prepare_bundled
from recbole_mamex.errors import RecboleMamexError
from recbole_mamex.files import OutputError, pid_lock


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
    with the package) from its base dataset, prepared there."""
    from dataset_prep.coldstart import make_cold_dataset, source_from_prepared

    spec = BUNDLED_COLD[name]
    frame, user_col, item_col, modalities, source = source_from_prepared(spec.base, Path(out_root))
    return make_cold_dataset(
        frame, user_col, item_col, modalities, name, source,
        out_root=out_root, fraction=spec.fraction, seed=spec.seed, force=force, write_yaml=False, log=getLogger().info,
    )


def progress(message: str) -> None:
    """A line the user sees at once: through the root logger once a run has set it up (then it is in the
    log file too), else on stderr (a first use comes before RecBole's logger is configured)."""
    logger = getLogger()
    if logger.hasHandlers() and logger.isEnabledFor(INFO):
        logger.info(message)
    else:
        print(message, file=sys.stderr, flush=True)


def lock_file(out_root, name: str) -> Path:
    """The lock of the preparation of ``<out_root>/<name>``, beside that folder."""
    return Path(out_root) / f".{name}.lock"


@contextlib.contextmanager
def preparing(out_root, name: str):
    """Hold ``<out_root>/.<name>.lock`` (``fcntl.flock``) for the block, waiting, with a message, while another
    process holds it: one process at a time prepares a dataset. The lock goes with the process (a killed
    preparation holds nothing; its temporary folder is removed by the next import)."""
    lock = lock_file(out_root, name)

    def wait(holder):
        progress(f"waiting for another process preparing '{name}' into {Path(out_root) / name} (process {holder})")

    with pid_lock(lock, wait, lambda err, step: OutputError(lock, err)):
        yield


def bundled_files(name: str, out_root) -> list[Path]:
    """The interaction files of dataset ``name`` under ``out_root``, as its yaml names them."""
    from recbole_mamex.config import dataset_config_dict

    data_dir = Path(out_root) / name
    suffixes = dataset_config_dict(name).get("benchmark_filename")
    return [data_dir / f"{name}.{suffix}.inter" for suffix in suffixes] if suffixes else [data_dir / f"{name}.inter"]


def ensure_bundled(name: str, out_root, expected: list[Path] | None = None) -> None:
    """Prepare the bundled dataset ``name`` into ``<out_root>/<name>`` unless its ``expected`` files (default:
    those its yaml names) are there; a cold split's base dataset first. One process at a time
    (:func:`preparing`): one that waited finds the files the other wrote. A folder of that name that lacks
    them is refused (it is not this package's to replace). Any other name: nothing done."""
    from dataset_prep.common import DatasetExistsError
    from dataset_prep.s3rec import prepare_s3rec

    if not is_bundled(name):
        return
    out_root = Path(out_root)
    data_dir = out_root / name
    expected = expected or bundled_files(name, out_root)

    def there() -> bool:
        return all(path.is_file() for path in expected)

    if there():
        return
    with preparing(out_root, name):
        if there():
            return  # another process prepared it while this one waited
        if data_dir.exists():
            raise DatasetNotPreparedError(
                f"{data_dir} exists but lacks {[p.name for p in expected if not p.is_file()]}; "
                f"remove the directory to let recbole_mamex prepare the bundled '{name}' again"
            )
        start = time.monotonic()
        progress(f"Preparing bundled dataset '{name}' into {data_dir} (first use) ...")
        try:
            if name in BUNDLED_COLD:
                ensure_bundled(BUNDLED_COLD[name].base, out_root)
                prepare_bundled_cold(name, out_root)
            elif name in BUNDLED:
                prepare_bundled(name, out_root)
            else:
                spec = S3REC_BUNDLED[name]
                prepare_s3rec(spec.source_dir / spec.sequential, spec.source_dir / spec.attributes, name,
                              spec.source_dir / spec.id_maps, out_root=out_root, cold=False, write_yaml=False,
                              log=getLogger().info)
        except DatasetExistsError:
            if not there():  # written meanwhile by an importer run by hand, which takes no lock
                raise
        if not there():  # a config that names other files than the package's yaml
            raise DatasetNotPreparedError(
                f"prepared the bundled '{name}' into {data_dir}, but the config expects "
                f"{[p.name for p in expected if not p.is_file()]} there (its benchmark_filename differs from the package's yaml)"
            )
        progress(f"Prepared '{name}' in {time.monotonic() - start:.1f} s")


def _recbole_downloadable(name: str) -> bool:
    import recbole

    url_file = Path(recbole.__file__).parent / "properties" / "dataset" / "url.yaml"
    try:
        with open(url_file, encoding="utf-8") as f:
            return name in (yaml.safe_load(f) or {})
    except OSError:
        return False


def ensure_dataset_files(config) -> None:
    """Prepare a bundled dataset that is not there yet (:func:`ensure_bundled`); raise
    :class:`DatasetNotPreparedError` with the command to run for a known dataset that is missing, or with
    the files expected for any other one.

    A dataset RecBole can download itself (its ``url.yaml``) is left to RecBole.
    """
    expected = expected_inter_files(config)
    if all(path.is_file() for path in expected):
        return
    name = config["dataset"]
    data_dir = Path(config["data_path"])
    if is_bundled(name):
        ensure_bundled(name, data_dir.parent, expected)
        return
    out = f" --out {data_dir.parent}" if data_dir.parent != Path("dataset") else ""
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
