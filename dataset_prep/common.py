"""What every importer shares: its errors and the write-then-rename steps that keep a failed
import from leaving a half-written dataset behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class DataImportError(ValueError):
    """An input file an importer cannot use; the message names the file, the expected and the found."""

    def __init__(self, path, expected: str, found: str):
        self.path = os.fspath(path) if path is not None else None
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}expected {expected}, found {found}")


class DatasetExistsError(FileExistsError):
    """The destination of an import exists and ``force`` was not given."""

    def __init__(self, path):
        self.path = os.fspath(path)
        super().__init__(f"{self.path} already exists; pass --force to replace it (nothing was written)")


def replace_dir(new_dir: Path, final_dir: Path) -> None:
    """Move the finished ``new_dir`` to ``final_dir``, replacing an existing one only at the very end."""
    if not final_dir.exists():
        os.replace(new_dir, final_dir)
        return
    backup = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.old-", dir=final_dir.parent))
    os.rmdir(backup)
    os.replace(final_dir, backup)
    try:
        os.replace(new_dir, final_dir)
    except BaseException:
        os.replace(backup, final_dir)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
