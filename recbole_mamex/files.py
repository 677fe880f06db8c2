"""File reading and writing shared by every layer: text written whole or not at all (a temporary file
beside the target, then a rename, with the permissions the user's umask gives a new file), and the one
reader of dataset yaml files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str = ""):
    """A new temporary file beside ``path`` (permissions from the umask) for the block to write, renamed
    onto ``path`` when the block ends and removed when it raises. ``suffix`` keeps writers that append
    one (``numpy.save``, ``scipy.sparse.save_npz``) writing to the file yielded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it 0600
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    tmp = temporary_text(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temporary_text(path: Path, text: str) -> Path:
    """``text`` in a new temporary file beside ``path`` (for a later rename onto it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp)


def read_yaml_mapping(path) -> dict:
    """A yaml file's mapping (empty for an empty file): how every dataset yaml is read."""
    import yaml

    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}
