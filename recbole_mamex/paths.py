"""Where the package's own files are: the one place that knows the layout of a checkout and of an
installed copy."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def properties_dir() -> Path:
    """The ``properties/`` tree shipped with the package.

    In a source checkout it is the top-level ``properties/`` next to the package; an installed copy
    carries it as ``recbole_mamex/properties`` (``package_dir`` in setup.cfg maps one onto the other).
    """
    for candidate in (_PACKAGE_DIR / "properties", _PACKAGE_DIR.parent / "properties"):
        if (candidate / "overall.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"recbole_mamex: no properties/overall.yaml found next to {_PACKAGE_DIR}; "
        "the installation is incomplete (reinstall the package)"
    )


def bundled_data_dir(name: str) -> Path:
    """Raw files of a dataset shipped inside the package (see its PROVENANCE.md)."""
    return _PACKAGE_DIR / "bundled" / name


RECBOLE_LOG_ROOT = "./log"  # fixed in recbole.utils.logger.init_logger


def make_log_dir(model: str) -> None:
    """Make RecBole's log folder for ``model`` before ``init_logger`` does: its ``exists`` then ``makedirs``
    fails when two processes (``compare --jobs``, DDP ranks) start a run of one model at the same moment."""
    import os

    os.makedirs(os.path.join(RECBOLE_LOG_ROOT, model), exist_ok=True)
