"""Run records of a comparison (runs and tuning trials): what they store beside the metrics (the package
versions), how they are written (atomically), and how a stored record is checked against the settings a
command would use now."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_mamex.errors import RecboleMamexError
from recbole_mamex.files import atomic_write_text


class CompareError(RecboleMamexError, ValueError):
    """A comparison that cannot run as asked (found before any training)."""


def versions() -> dict[str, str]:
    import recbole
    import torch

    import recbole_mamex

    return {
        "recbole_mamex": recbole_mamex.__version__,
        "recbole": recbole.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
    }


VERSION_KEYS = ("recbole_mamex", "recbole", "torch")


def jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def write_json_atomic(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def row_settings(record: dict) -> tuple[str, dict]:
    """(model class, settings) a comparison row trained a run record with: its variant's settings, then the
    parameters its tuning selected (the rest of the record's config came from defaults and config files)."""
    params = (record.get("tuning") or {}).get("params") or {}
    return record.get("model_class", record["model"]), {**(record.get("variant") or {}), **params}


def setting_differences(record: dict, planned: dict) -> list[str]:
    """``key: recorded -> planned`` for every setting (and version) that differs, neutral keys left out."""
    from recbole_mamex.config import config_differences

    diffs = config_differences(record.get("config") or {}, planned)
    now = versions()
    diffs += [f"{k} version: {record.get('versions', {}).get(k)!r} -> {now[k]!r}" for k in VERSION_KEYS
              if record.get("versions", {}).get(k) != now[k]]
    return diffs
