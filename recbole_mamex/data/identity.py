"""The identity of a dataset's data: a hash of every file a run of it reads.

A run of dataset ``<dataset>`` reads the atomic files RecBole opens for its config (:func:`atomic_files`:
``<dataset>.inter`` or the benchmark ``.train/.valid/.test.inter``, ``.user`` and ``.item`` when
``load_col`` loads them, ...), the ``cold_items_file``, and the modality files (and their ``ids:`` files)
that its config selects (:func:`selected_modality_specs`): :func:`data_files`.
:func:`data_identity` maps each of them to a hash of its bytes, so that what was made from the data (a
run record, a checkpoint, a saved dataset) can be checked against the data there now: a re-import
(``dataset_prep.* --force``) that changed any file changes the identity (:func:`identity_differences`).

A file is hashed once per process for as long as it is unchanged (same device, inode, size, mtime and
ctime), so checking many records of the same data costs one read of its files.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

_DIGESTS: dict[tuple, str] = {}  # (real path, device, inode, size, mtime_ns, ctime_ns) -> digest
_LOCK = threading.Lock()
_CHUNK = 8 * 2**20


def file_digest(path) -> str:
    """``blake2b`` (128 bits, hex) of the bytes of ``path``, cached while the file is unchanged."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _LOCK:
        known = _DIGESTS.get(key)
    if known is not None:
        return known
    digest = hashlib.blake2b(digest_size=16)
    with open(real, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    with _LOCK:
        _DIGESTS[key] = digest.hexdigest()
    return digest.hexdigest()


def _value(config, key):
    """``config[key]`` of a RecBole Config or of a plain dict (a run record's), ``None`` when unset."""
    return config[key] if key in config else None


def atomic_files(config) -> list[str]:
    """The names of RecBole's atomic files that a run with ``config`` opens, as its dataset reads them
    (``recbole.data.dataset.Dataset._load_data``), whether they are there or not:

    - ``<dataset>.inter``, or with ``benchmark_filename`` ``<dataset>.<name>.inter`` for each name instead;
    - ``<dataset>.user`` and ``<dataset>.item`` when ``load_col`` loads them (it is unset, or names ``user``
      / ``item`` with columns): with a ``load_col`` without them, RecBole never opens the file;
    - ``<dataset>.<suffix>`` for each ``additional_feat_suffix`` (which RecBole requires to be there);
    - ``<dataset>.kg`` and ``<dataset>.link`` for a knowledge-based dataset (its model's type, or a model
      whose own dataset class is one)."""
    name = str(_value(config, "dataset"))
    load_col = _value(config, "load_col")

    def loaded(source: str) -> bool:
        if load_col is None:
            return True
        columns = load_col.get(source)
        return columns == "*" or bool(columns)

    benchmark = _value(config, "benchmark_filename")
    names = [f"{name}.{split}.inter" for split in benchmark] if benchmark else [f"{name}.inter"]
    names += [f"{name}.{source}" for source in ("user", "item") if loaded(source)]
    names += [f"{name}.{suffix}" for suffix in (_value(config, "additional_feat_suffix") or [])]
    if _knowledge_based(config):
        names += [f"{name}.kg", f"{name}.link"]
    return names


def _knowledge_based(config) -> bool:
    """Whether the run's dataset class (:func:`recbole_mamex.data.loading.create_dataset`'s choice) reads a
    knowledge graph (``.kg``, ``.link``)."""
    from recbole.data import dataset as recbole_dataset_module
    from recbole.utils import ModelType

    specific = getattr(recbole_dataset_module, f"{_value(config, 'model')}Dataset", None)
    if isinstance(specific, type):
        return issubclass(specific, recbole_dataset_module.KnowledgeBasedDataset)
    return str(_value(config, "MODEL_TYPE")) == str(ModelType.KNOWLEDGE)


def model_files(config) -> list[str]:
    """The names of the files in the dataset's folder that a RecBole model opens itself, beside the atomic
    files: LDiffRec's ``item_emb.npy`` (the item embeddings it clusters) when ``n_cate`` > 1."""
    if str(_value(config, "model")) == "LDiffRec" and int(_value(config, "n_cate") or 1) > 1:
        return ["item_emb.npy"]
    return []


def data_files(config) -> list[Path]:
    """The files a run with ``config`` reads (those that exist), in a fixed order: the :func:`atomic_files`
    and :func:`model_files` in the dataset's folder ``config['data_path']`` (the dataset's directory, as RecBole's Config makes it),
    the ``cold_items_file``, and the modality files (and their ``ids`` files) the config selects
    (:func:`recbole_mamex.data.dataset.selected_modality_specs`). No other file of the folder (a user's
    backup beside them) is one: it neither changes the identity nor goes into a bundle."""
    from recbole_mamex.data.dataset import selected_modality_specs

    data_path, dataset = _value(config, "data_path"), _value(config, "dataset")
    if not data_path or not dataset or not os.path.isdir(data_path):
        return []
    root = Path(data_path)
    files = [root / name for name in atomic_files(config) + model_files(config)]
    cold = _value(config, "cold_items_file")
    if cold:
        files.append(Path(cold) if Path(cold).is_absolute() else root / cold)
    settings = {key: _value(config, key) for key in ("modalities", "use_modalities")}
    specs, _ = selected_modality_specs(settings, root, str(dataset))
    for spec in specs:
        files += [spec.path] + ([spec.ids_path] if spec.ids_path is not None else [])
    seen, kept = set(), []
    for path in files:
        real = os.path.realpath(path)
        if real not in seen and os.path.isfile(real):
            seen.add(real)
            kept.append(Path(path))
    return kept


def data_identity(config) -> dict[str, str]:
    """``{file: digest}`` of every file of :func:`data_files` (a name relative to the dataset's directory,
    else the absolute path); empty when the dataset's directory is not there. Plain JSON: a record stores
    it as it is."""
    files = data_files(config)
    if not files:
        return {}
    root = Path(_value(config, "data_path"))
    out = {}
    for path in files:
        try:
            name = path.relative_to(root).as_posix()
        except ValueError:
            name = os.path.abspath(path)
        out[name] = file_digest(path)
    return dict(sorted(out.items()))


def identity_differences(before: dict, now: dict, data_path=None) -> list[str]:
    """``<file> changed`` / ``<file> added`` / ``<file> gone`` for every file whose hash differs between two
    :func:`data_identity` values. With ``data_path`` (the dataset's directory), a file of ``before`` that is
    still there but that a run no longer reads (an identity stored before :func:`data_files` followed
    RecBole's rules listed every ``<dataset>.*``, a backup among them) is not a difference."""
    diffs = []
    for name in sorted(set(before) | set(now)):
        if name not in now:
            if data_path is not None and os.path.isfile(Path(data_path) / name):
                continue
            diffs.append(f"{name} gone")
        elif name not in before:
            diffs.append(f"{name} added")
        elif before[name] != now[name]:
            diffs.append(f"{name} changed")
    return diffs
