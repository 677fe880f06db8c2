"""Model bundles: a trained model to share or deploy, in a folder that loads without unpickling anything.

    from recbole_mamex.bundle import export_bundle, load_bundle
    export_bundle("saved/MAMEX-<date>.pth", "mamex-bundle/")
    config, model, dataset, train_data, valid_data, test_data = load_bundle("mamex-bundle/")

    python -m recbole_mamex.serving export saved/MAMEX-<date>.pth --out mamex-bundle/

A bundle folder holds:

- ``model.safetensors``: the model's ``state_dict`` and every tensor of its ``other_parameter`` (such as
  the ``feature_norm: center_l2`` centres, under the key prefix :data:`OTHER_PREFIX`), in the safetensors
  format, whose reader builds tensors from a JSON header and raw bytes and runs nothing;
- ``bundle.json``: :data:`FORMAT` and :data:`FORMAT_VERSION`, the model's name, the run's config
  (:func:`recbole_mamex.config.config_to_text`, the checkpoint's writer, its data file names those of the
  bundle's copies), RecBole's token maps (:func:`recbole_mamex.trainer.checkpoint.token_maps`) and the user
  and item tokens in id order, the rest of ``other_parameter`` (the item features' fingerprints among it),
  the md5 of every copied data file, and the package versions that exported it;
- ``data/<dataset>/``: copies of the dataset files the run reads (:func:`recbole_mamex.data.identity.data_files`: RecBole's atomic files
  that the config loads, such as the benchmark split files, the ``cold_items_file``, the modality and
  ``ids`` files), so the bundle serves where the dataset's folder is not. No other file of the dataset's
  folder is copied (a backup ``<dataset>.inter.bak``, an atomic file the config does not load).

:func:`load_bundle` reads ``bundle.json`` (as JSON) and ``model.safetensors`` (with safetensors) only,
checks every copied file against its md5, rebuilds the run from the copies and runs the checks of a
checkpoint (:func:`recbole_mamex.quick_start.load_checked_weights`); any other file in the folder is never
read (and one there that the run would read, but that bundle.json does not list, is refused). Every problem
is one :class:`BundleFileError` (or a :class:`~recbole_mamex.trainer.checkpoint.CheckpointMismatchError` of
those checks) naming the file.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from recbole_mamex.data.identity import data_files
from recbole_mamex.trainer.checkpoint import CheckpointFileError, CheckpointMismatchError

FORMAT = "recbole_mamex bundle"
FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
WEIGHTS = "model.safetensors"
DATA = "data"
#: the key prefix in ``model.safetensors`` of the tensors of ``other_parameter`` (the rest is the state_dict)
OTHER_PREFIX = "other_parameter/"
_EXPECTED = "a model bundle folder (bundle.json, model.safetensors and data/, written by export_bundle)"


class BundleFileError(CheckpointFileError):
    """A bundle, or a file of one, that cannot be used (missing, not JSON, another format or version, weights
    that are not safetensors, a copied data file that changed): the message names the file, what was
    expected and what was found."""


class BundleMismatchError(CheckpointMismatchError):
    """A bundle whose dataset rebuilds other users or items than it was exported with."""


def is_bundle(path) -> bool:
    """Whether ``path`` is a bundle folder: a directory holding ``bundle.json``."""
    path = Path(path)
    return path.is_dir() and (path / BUNDLE_JSON).is_file()


# ----------------------------------------------------------------------------- export
def export_bundle(checkpoint, out_dir, allow_changed_features: bool = False) -> Path:
    """Write the bundle of ``checkpoint`` (a ``.pth`` a training run saved) into the folder ``out_dir`` and
    return its path.

    The checkpoint is loaded with every check of :func:`recbole_mamex.quick_start.load_data_and_model`
    (``allow_changed_features`` as there; the bundle keeps the fingerprints and centres the model was
    trained with, so loading it then needs ``allow_changed_features`` too). ``out_dir`` must be new or an
    empty folder: anything in it is a :class:`~recbole_mamex.files.OutputError`, and nothing there is
    touched. The bundle is written into a temporary folder beside ``out_dir`` and renamed onto it at the
    end, so a failed export leaves nothing under that name."""
    from recbole_mamex.files import OutputError, check_writable, umask, writing
    from recbole_mamex.quick_start import load_checkpoint

    out_dir = Path(out_dir)
    _check_new_folder(out_dir)
    check_writable(out_dir)  # before the checkpoint is loaded
    loaded, built = load_checkpoint(checkpoint, allow_changed_features)
    parent = out_dir.absolute().parent
    with writing(out_dir):
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=parent))
    try:
        with writing(out_dir):
            os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it 0700
            _write_bundle(tmp, loaded, built, checkpoint)
        _check_new_folder(out_dir)  # nothing appeared there meanwhile
        try:
            os.replace(tmp, out_dir)  # onto a missing or empty folder only
        except OSError as err:
            raise OutputError(out_dir, err) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the temporary folder made above, nothing else
        raise
    return out_dir


def _check_new_folder(out_dir: Path) -> None:
    from recbole_mamex.files import OutputError

    if os.path.lexists(out_dir) and not out_dir.is_dir():
        raise OutputError(out_dir, "expected a new or empty folder for the bundle, found a file of that name")
    if out_dir.is_dir():
        entries = sorted(os.listdir(out_dir))
        if entries:
            raise OutputError(
                out_dir, f"expected a new or empty folder for the bundle, found {len(entries)} entries in it "
                f"({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''}); nothing there is overwritten: "
                "choose another folder",
            )


def _write_bundle(root: Path, checkpoint: dict, built, source) -> None:
    """Write bundle.json, model.safetensors and data/ of the loaded run into the folder ``root``."""
    from safetensors.torch import save_file

    from recbole_mamex.config import config_from_text, config_to_text
    from recbole_mamex.trainer.checkpoint import token_maps

    config, dataset, model = built.config, built.dataset, built.model
    name = str(config["dataset"])
    files, renamed = _copy_data(config, root / DATA / name)

    bundled = config_from_text(config_to_text(config))  # a copy whose file names are the bundle's
    final = bundled.final_config_dict
    final["data_path"] = f"{DATA}/{name}"  # relative to the bundle; load_bundle sets the folder's
    cold = final.get("cold_items_file")
    if cold:
        final["cold_items_file"] = renamed.get(_resolved(config["data_path"], cold), cold)
    if final.get("modalities"):
        final["modalities"] = _bundled_modalities(final["modalities"], config["data_path"], renamed)
    _without_local_paths(bundled)

    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    clash = sorted(key for key in tensors if key.startswith(OTHER_PREFIX))
    if clash:
        raise BundleFileError(source, f"parameter names that do not start with {OTHER_PREFIX!r}", ", ".join(clash[:3]))
    other = _encode(checkpoint.get("other_parameter") or {}, tensors, OTHER_PREFIX.rstrip("/"))
    uid, iid = dataset.uid_field, dataset.iid_field
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": str(config["model"]),
        "dataset": name,
        "checkpoint": Path(source).name,
        "epoch": int(checkpoint["epoch"]),
        "best_valid_score": _finite_or_none(checkpoint.get("best_valid_score")),
        "config": json.loads(config_to_text(bundled)),
        "token_maps": token_maps(dataset),
        "tokens": {
            "user": {"field": str(uid), "tokens": [str(t) for t in dataset.field2id_token[uid]]},
            "item": {"field": str(iid), "tokens": [str(t) for t in dataset.field2id_token[iid]]},
        },
        "other_parameter": other,
        "data": {"folder": f"{DATA}/{name}", "files": files},
        "versions": _versions(),
    }
    metadata = {"format": "pt", "bundle_format": FORMAT, "bundle_format_version": str(FORMAT_VERSION),
                "model": description["model"]}
    try:
        save_file(tensors, root / WEIGHTS, metadata=metadata)
    except Exception as err:  # safetensors reports a failed write as its own error
        from recbole_mamex.files import OutputError

        if isinstance(err, OSError):
            raise
        raise OutputError(root / WEIGHTS, str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    (root / BUNDLE_JSON).write_text(json.dumps(description, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _finite_or_none(value):
    """A score as JSON holds it: a finite float, else ``None`` (JSON has no NaN or infinity)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _without_local_paths(config) -> None:
    """Keep nothing of the exporting machine's file system in a bundle's config: the layers the final
    settings were merged from (command line, files, variables) are dropped, the property files keep their
    names only, and any other setting that is an absolute path keeps its last part."""
    for layer in ("file_config_dict", "variable_config_dict", "cmd_config_dict", "external_config_dict"):
        setattr(config, layer, {})
    config.loaded_property_files = [Path(os.fspath(f)).name for f in (config.loaded_property_files or [])]
    final = config.final_config_dict
    for key, value in list(final.items()):
        if key != "data_path" and isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
            final[key] = Path(value).name


def _resolved(data_path, name) -> str:
    """The real path of a file ``name`` of the config (relative to the dataset's folder ``data_path``)."""
    path = Path(os.path.expanduser(os.fspath(name)))
    return os.path.realpath(path if path.is_absolute() else Path(data_path) / path)


def _bundled_modalities(modalities, data_path, renamed: dict):
    """The config's ``modalities`` with each file named as its copy in the bundle; a modality whose file was
    not copied (an optional one that is absent, one ``use_modalities`` leaves out) is not in the bundle."""
    kept = {}
    for modality, entry in modalities.items():
        if isinstance(entry, dict):
            path = renamed.get(_resolved(data_path, entry["path"]))
            ids = entry.get("ids")
            if path is None or (ids is not None and _resolved(data_path, ids) not in renamed):
                continue
            kept[modality] = {**entry, "path": path, **({"ids": renamed[_resolved(data_path, ids)]} if ids is not None else {})}
        else:
            path = renamed.get(_resolved(data_path, entry))
            if path is not None:
                kept[modality] = path
    return kept


def _copy_data(config, target: Path) -> tuple[dict, dict]:
    """Copy the files the run reads (:func:`recbole_mamex.data.identity.data_files`) into ``target``:
    ``({name in target: {"md5", "bytes"}}, {real path of the original: name in target})``. A file inside the
    dataset's folder keeps its name there; one outside it goes to ``outside/<its name>``."""
    root = Path(config["data_path"])
    files, renamed, taken = {}, {}, set()
    for path in data_files(config):
        try:
            name = PurePosixPath(path.relative_to(root).as_posix())
        except ValueError:
            name = None
        if name is None or ".." in name.parts:
            stem, n = PurePosixPath("outside") / path.name, 1
            name = stem
            while name.as_posix() in taken:
                n += 1
                name = stem.with_name(f"{n}-{path.name}")
        name = name.as_posix()
        taken.add(name)
        copy = target / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        files[name] = {"md5": _copy_with_md5(path, copy), "bytes": copy.stat().st_size}
        renamed[os.path.realpath(path)] = name
    return dict(sorted(files.items())), renamed


def _copy_with_md5(source: Path, copy: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(source, "rb") as src, open(copy, "wb") as dst:
        for chunk in iter(lambda: src.read(8 * 2**20), b""):
            digest.update(chunk)
            dst.write(chunk)
    return digest.hexdigest()


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 * 2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> dict:
    import safetensors

    from recbole_mamex.records import versions

    return {**versions(), "safetensors": safetensors.__version__}


# other_parameter as JSON: its tensors go to model.safetensors, named by a {"__tensor__": key} in their place
_TAGS = ("__tensor__", "__tuple__", "__size__", "__pairs__")


def _encode(value, tensors: dict, where: str):
    import torch

    if isinstance(value, torch.Tensor):
        key, n = where, 1
        while key in tensors:
            n += 1
            key = f"{where}#{n}"
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Size):
        return {"__size__": list(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}/{i}") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}/{i}") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not set(value) & set(_TAGS):
            return {k: _encode(v, tensors, f"{where}/{k}") for k, v in value.items()}
        pairs = [[_encode(k, tensors, f"{where}/key"), _encode(v, tensors, f"{where}/{k}")] for k, v in value.items()]
        return {"__pairs__": pairs}
    # a checkpoint holds nothing else (read_checkpoint reads plain values only)
    raise TypeError(f"other_parameter entry {where}: a {type(value).__name__}, not a plain value")


def _decode(value, tensors: dict, used: set):
    """``value`` of bundle.json's other_parameter with its tensors put back; ``KeyError``/``ValueError`` for
    anything :func:`_encode` does not write."""
    if isinstance(value, list):
        return [_decode(v, tensors, used) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        key = value["__tensor__"]
        if not isinstance(key, str) or not key.startswith(OTHER_PREFIX) or key not in tensors:
            raise KeyError(f"tensor {key!r}, which {WEIGHTS} does not hold")
        used.add(key)
        return tensors[key]
    if "__size__" in value:
        import torch

        return torch.Size([int(v) for v in value["__size__"]])
    if "__tuple__" in value:
        return tuple(_decode(v, tensors, used) for v in value["__tuple__"])
    if "__pairs__" in value:
        return {_hashable(_decode(k, tensors, used)): _decode(v, tensors, used) for k, v in value["__pairs__"]}
    return {k: _decode(v, tensors, used) for k, v in value.items()}


def _hashable(key):
    if isinstance(key, list):
        raise ValueError("a mapping key that is a list")
    return key


# ----------------------------------------------------------------------------- load
def load_model(path, allow_changed_features: bool = False):
    """A checkpoint file (:func:`recbole_mamex.quick_start.load_data_and_model`) or a bundle folder
    (:func:`load_bundle`), whichever ``path`` is: what serving and ``interpret`` load."""
    from recbole_mamex.quick_start import load_data_and_model

    if Path(path).is_dir():
        return load_bundle(path, allow_changed_features=allow_changed_features)
    return load_data_and_model(path, allow_changed_features=allow_changed_features)


def load_bundle(directory, allow_changed_features: bool = False):
    """Rebuild config, model, dataset and dataloaders from a bundle folder :func:`export_bundle` wrote, as
    :func:`recbole_mamex.quick_start.load_data_and_model` does from a checkpoint, and return the same
    ``(config, model, dataset, train_data, valid_data, test_data)``.

    Only ``bundle.json`` (read as JSON) and ``model.safetensors`` (read by safetensors) are read, and the
    data files under ``data/``, each first checked against its md5 in ``bundle.json``: nothing is unpickled,
    and any other file in the folder is never opened. The run is built from the bundle's copies on this
    process's device, then checked as a checkpoint is (token maps, modalities, shapes, and unless
    ``allow_changed_features`` the feature fingerprints and centres), and its user and item tokens must be
    those bundle.json lists."""
    from recbole_mamex.config import config_from_text
    from recbole_mamex.errors import RecboleMamexError
    from recbole_mamex.quick_start import load_checked_weights, rebuild_run

    directory = Path(directory)
    if not directory.is_dir():
        raise BundleFileError(directory, _EXPECTED, "a file, not a folder" if directory.exists() else "no such folder")
    description = _read_description(directory)
    state_dict, tensors = _read_weights(directory)
    json_file = directory / BUNDLE_JSON
    try:
        used = set()
        other = _decode(description["other_parameter"], tensors, used)
    except (KeyError, ValueError, TypeError, RecursionError) as err:
        raise BundleFileError(json_file, "an other_parameter entry as export_bundle writes it", str(err)) from None
    unused = sorted(set(tensors) - used)
    if unused:
        raise BundleFileError(directory / WEIGHTS, f"the tensors {BUNDLE_JSON} names", f"others too ({', '.join(unused[:3])})")
    try:
        config = config_from_text(json.dumps(description["config"]))
    except (ValueError, TypeError, KeyError) as err:
        raise BundleFileError(json_file, "the run's config (as export_bundle writes it)", str(err)) from None
    except RecboleMamexError as err:  # a model this installation does not have, a value no run may have
        raise BundleFileError(json_file, "a config with settings a run may have", str(err)) from None
    if config["model"] != description["model"] or config["dataset"] != description["dataset"]:
        raise BundleFileError(json_file, f"a config of model {description['model']} on dataset {description['dataset']}",
                              f"model {config['model']} on dataset {config['dataset']}")
    data_dir = directory.absolute() / DATA / description["dataset"]
    config.final_config_dict["data_path"] = os.fspath(data_dir)
    _check_data(directory, data_dir, description["data"]["files"], config)

    built = rebuild_run(config)
    _check_tokens(directory, description["tokens"], built.dataset)
    load_checked_weights(directory, built, state_dict, other, description["token_maps"], allow_changed_features)
    return built.config, built.model, built.dataset, built.train_data, built.valid_data, built.test_data


def _read_description(directory: Path) -> dict:
    """bundle.json of the bundle folder ``directory``, its entries checked."""
    from recbole_mamex.config import is_int
    from recbole_mamex.files import read_json

    path = directory / BUNDLE_JSON
    if not path.is_file():
        raise BundleFileError(directory, _EXPECTED, f"a folder without {BUNDLE_JSON}")
    description = read_json(path, BundleFileError)
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        found = (f"format {description.get('format')!r}" if isinstance(description, dict)
                 else f"a JSON {type(description).__name__}")
        raise BundleFileError(path, f"a bundle description (format {FORMAT!r})", found)
    if description.get("format_version") != FORMAT_VERSION:
        raise BundleFileError(path, f"bundle format version {FORMAT_VERSION}",
                              f"version {description.get('format_version')!r} (export the bundle again with this version)")
    shapes = {"model": str, "dataset": str, "config": dict, "token_maps": dict, "tokens": dict, "data": dict}
    wrong = [key for key, kind in shapes.items() if not isinstance(description.get(key), kind)]
    if "other_parameter" not in description:
        wrong.append("other_parameter")
    if wrong:
        raise BundleFileError(path, "a bundle description as export_bundle writes it", f"no valid {', '.join(wrong)} entry")
    name = description["dataset"]
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise BundleFileError(path, "a dataset name (a folder name under data/)", repr(name))
    files = description["data"].get("files")
    if not isinstance(files, dict) or not all(
        isinstance(entry, dict) and isinstance(entry.get("md5"), str) and is_int(entry.get("bytes", 0))
        for entry in files.values()
    ):
        raise BundleFileError(path, "data.files: {file name: {md5, bytes}}", repr(files)[:80])
    for file_name in files:
        parts = PurePosixPath(file_name).parts
        if not parts or PurePosixPath(file_name).is_absolute() or ".." in parts or "\\" in file_name:
            raise BundleFileError(path, f"data file names inside {DATA}/{name}/", repr(file_name))
    maps = description["token_maps"]
    if not all(isinstance(entry, dict) and set(entry) == {"count", "sha256"} and is_int(entry["count"])
               and isinstance(entry["sha256"], str) for entry in maps.values()):
        raise BundleFileError(path, "token_maps: {field: {count, sha256}}", repr(maps)[:80])
    tokens = description["tokens"]
    for who in ("user", "item"):
        entry = tokens.get(who)
        if not (isinstance(entry, dict) and isinstance(entry.get("field"), str) and isinstance(entry.get("tokens"), list)
                and all(isinstance(t, str) for t in entry["tokens"])):
            raise BundleFileError(path, f"tokens.{who}: {{field, tokens (a list of strings)}}", repr(entry)[:80])
    return description


def _read_weights(directory: Path) -> tuple[dict, dict]:
    """``(state_dict, other tensors)`` of model.safetensors, read by safetensors (never unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = directory / WEIGHTS
    expected = "the model's weights in the safetensors format (written by export_bundle)"
    if not path.is_file():
        raise BundleFileError(path, expected, "no such file")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        found = f"a file safetensors cannot read ({path.stat().st_size} bytes: {first}); not read any other way"
        raise BundleFileError(path, expected, found) from None
    state_dict = {key: value for key, value in tensors.items() if not key.startswith(OTHER_PREFIX)}
    other = {key: value for key, value in tensors.items() if key.startswith(OTHER_PREFIX)}
    return state_dict, other


def _check_data(directory: Path, data_dir: Path, files: dict, config) -> None:
    """Every data file bundle.json lists is in ``data_dir`` with its md5, and the run reads no other file."""
    for name, entry in sorted(files.items()):
        path = data_dir / name
        if path.is_symlink() or not path.is_file():
            found = "a link" if path.is_symlink() else ("no such file" if not path.exists() else "not a file")
            raise BundleFileError(path, f"the copy of the dataset file that {BUNDLE_JSON} lists", found)
        digest = _md5(path)
        if digest != entry["md5"]:
            raise BundleFileError(
                path, f"the dataset file exported with the bundle (md5 {entry['md5']}, in {BUNDLE_JSON})",
                f"other bytes (md5 {digest}): the file changed since the export. Restore it, or export the bundle again",
            )
    # a file the run would read (data_files) that the bundle does not list: one outside the bundle (a config
    # that names it), an atomic file the config loads that was added to data/, a feature, ids or cold-items
    # file the config names that bundle.json does not. A file the run never reads (a backup <dataset>.inter.bak,
    # an atomic file the config does not load) is ignored, as every other file of the folder.
    listed = {os.path.realpath(data_dir / name) for name in files}
    others = [path for path in data_files(config) if os.path.realpath(path) not in listed]
    if others:
        raise BundleFileError(
            directory / BUNDLE_JSON, "the run to read only the data files the bundle lists",
            f"{len(others)} more: {', '.join(os.fspath(p) for p in others[:3])}",
        )


def _check_tokens(directory: Path, tokens: dict, dataset) -> None:
    """The users and items of the dataset rebuilt from the bundle's copies are those it was exported with,
    in the same id order."""
    for who, field in (("user", dataset.uid_field), ("item", dataset.iid_field)):
        stored = tokens[who]
        now = [str(t) for t in dataset.field2id_token[field]]
        if stored["field"] != field or stored["tokens"] != now:
            found = (f"field {field}" if stored["field"] != field else
                     f"{len(now) - 1} {who}s in the rebuilt dataset, numbered otherwise than the "
                     f"{len(stored['tokens']) - 1} listed")
            raise BundleMismatchError(
                directory / BUNDLE_JSON, f"the {who} tokens {BUNDLE_JSON} lists ({stored['field']}, id order)", found,
            )


@contextmanager
def quiet_loading():
    """While a saved model is loaded for serving: INFO and DEBUG records of every logger (RecBole's config
    dump, dataset summary and dataloader settings, logged whatever the run's ``state``) are dropped;
    warnings and errors are logged as before. Training, which never enters this, logs as it always did.
    (``logging.disable``: process-wide while the block runs, restored after it.)"""
    before = logging.root.manager.disable
    logging.disable(max(before, logging.INFO))
    try:
        yield
    finally:
        logging.disable(before)
