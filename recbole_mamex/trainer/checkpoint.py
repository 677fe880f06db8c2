"""Checkpoints that never run code when read: the one writer and the one reader of every ``.pth`` a run saves.

RecBole pickles its whole ``Config`` object into each checkpoint, and reading a pickle can run any code the
file holds: a checkpoint handed to a user (for serving, ``interpret`` or ``--resume``) would run its payload
before any check. A checkpoint of this package holds plain values only, which torch reads with
``weights_only=True`` (its unpickler builds tensors, numbers, strings, lists, tuples and dicts, and refuses
every other object):

- ``format`` (:data:`FORMAT`) and ``format_version``;
- ``config``: the run's Config as JSON text (:func:`recbole_mamex.config.config_to_text`);
- what RecBole's trainer writes and reads (``epoch``, ``cur_step``, ``best_valid_score``, ``state_dict``,
  ``other_parameter``, ``optimizer``), so RecBole's own ``evaluate(load_best_model=True)`` reads it
  with torch's default (safe) ``torch.load``;
- ``token_maps``: for the user and item id fields, how many tokens and a hash of RecBole's token -> id map
  (ids follow first appearance in the ``.inter`` files, so re-ordered lines give other ids), checked when
  the checkpoint is loaded (:func:`check_token_maps`);
- a last checkpoint adds what an exact resume needs (:mod:`recbole_mamex.trainer.resume`).

A checkpoint is written whole or not at all (a temporary file beside it, then a rename); a failed write
(disk full) removes the temporary file and is an :class:`~recbole_mamex.files.OutputError` naming the file.
A RecBole checkpoint, or one this package wrote before this format, is refused: it can only be read by
unpickling it.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict

import numpy as np
import torch

from recbole_mamex.config import is_int, is_number
from recbole_mamex.errors import InputFileError, RecboleMamexError

FORMAT = "recbole_mamex checkpoint"
FORMAT_VERSION = 1


class CheckpointFileError(InputFileError):
    """A checkpoint file that cannot be read (missing, empty, truncated, not a checkpoint of this package)."""


class CheckpointMismatchError(InputFileError):
    """A checkpoint whose weights do not fit the model rebuilt from the dataset's current files."""


def _plain(value, where: str):
    """``value`` with numpy values made torch's or Python's, checked to hold only what ``weights_only``
    reads back."""
    if isinstance(value, np.generic):  # first: numpy's float64 is a float too
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor, torch.Size)):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, OrderedDict):
        return OrderedDict((_plain(k, where), _plain(v, f"{where}.{k}")) for k, v in value.items())
    if isinstance(value, dict):
        return {_plain(k, where): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v, where) for v in value)
    if isinstance(value, list):
        return [_plain(v, where) for v in value]
    raise TypeError(
        f"checkpoint entry {where}: expected tensors, numbers, strings, lists or mappings, found a "
        f"{type(value).__name__} (a checkpoint holds plain values only, so that reading it runs no code)"
    )


def write_checkpoint(state: dict, path) -> None:
    """Write ``state`` (RecBole's checkpoint entries, ``config`` a Config) to ``path`` in this package's
    format, atomically."""
    from recbole_mamex.config import config_to_text
    from recbole_mamex.files import OutputError, atomic_path, writing

    payload = {key: value for key, value in state.items() if key != "config"}
    payload = _plain(payload, "checkpoint")
    payload.update(format=FORMAT, format_version=FORMAT_VERSION, config=config_to_text(state["config"]))
    try:
        with writing(path), atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as err:  # torch reports a failed write of its zip file as a RuntimeError
        raise OutputError(path, "no space left on device" if "file write failed" in str(err) else str(err).splitlines()[0]) from None


def read_checkpoint(path, map_location="cpu") -> dict:
    """A checkpoint :func:`write_checkpoint` wrote, read with ``weights_only=True`` (nothing in the file can
    run), its ``config`` a :class:`recbole_mamex.config.Config` again. Anything else is a
    :class:`CheckpointFileError` naming the file."""
    import pickle
    import zipfile

    from recbole_mamex.config import config_from_text

    expected = "a checkpoint saved by a training run"
    if not os.path.isfile(path):
        raise CheckpointFileError(path, expected, "no such file")
    if zipfile.is_zipfile(path):
        # torch stores a checkpoint's entries uncompressed: a compressed entry can expand far beyond the file
        # (a zip bomb of a few MB becomes GBs of tensors), so one is refused before anything is read
        try:
            with zipfile.ZipFile(path) as archive:
                packed = [info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED]
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            raise CheckpointFileError(path, expected, f"a zip file that cannot be read ({err})") from None
        if packed:
            raise CheckpointFileError(path, expected + " (entries stored, as torch writes them)",
                                      f"compressed entries ({', '.join(packed[:3])}): not read")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # torch's "Unsupported global" / "unsupported GLOBAL": an object
            raise CheckpointFileError(
                path, expected + " (weights and settings as plain values)",
                "a file that holds Python objects, which only unpickling can read, and unpickling can run code: "
                "not read. RecBole's own checkpoints and those of recbole_mamex before checkpoint format "
                f"{FORMAT_VERSION} are such files; train again to get one this version reads",
            ) from None
        reason = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if str(err).strip() else "unpickling error"
        raise CheckpointFileError(path, expected, f"a file torch cannot read ({os.path.getsize(path)} bytes, {reason})") from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, AttributeError, OSError) as err:
        size = os.path.getsize(path)
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointFileError(path, expected, f"a file torch cannot read ({size} bytes, {type(err).__name__}: {first})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = f"a {type(checkpoint).__name__}" + (f" with entries {sorted(map(str, checkpoint))[:8]}" if isinstance(checkpoint, dict) else "")
        raise CheckpointFileError(path, f"{expected} (format {FORMAT!r})", found)
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise CheckpointFileError(path, f"checkpoint format version {FORMAT_VERSION}", f"version {checkpoint.get('format_version')!r}")
    problem = entries_problem(checkpoint)
    if problem:
        raise CheckpointFileError(path, expected, problem)
    try:
        checkpoint["config"] = config_from_text(checkpoint["config"])
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointFileError(path, expected, f"a config entry that is not one ({err})") from None
    except RecboleMamexError as err:  # a model this installation does not have, a value no run may have
        raise CheckpointFileError(path, expected + " with settings a run may have", str(err)) from None
    return checkpoint


def entries_problem(checkpoint: dict) -> str | None:
    """What is wrong with the entries of a checkpoint this package reads (``None``: nothing), in words."""
    missing = [key for key in ("config", "state_dict", "token_maps", "epoch") if key not in checkpoint]
    if missing:
        return f"a checkpoint without {', '.join(missing)}"
    if not isinstance(checkpoint["config"], str):
        return f"a config entry that is a {type(checkpoint['config']).__name__}, not JSON text"
    state = checkpoint["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        return "a state_dict that is not a mapping of parameter names to tensors"
    maps = checkpoint["token_maps"]
    if not isinstance(maps, dict) or not all(
        isinstance(field, str) and isinstance(entry, dict) and set(entry) == {"count", "sha256"}
        and is_int(entry["count"]) and isinstance(entry["sha256"], str) for field, entry in maps.items()
    ):
        return "token_maps that are not {field: {count, sha256}}"
    if not isinstance(checkpoint.get("other_parameter") or {}, dict):
        return "an other_parameter entry that is not a mapping"
    if not is_int(checkpoint["epoch"]) or not is_int(checkpoint.get("cur_step", 0)):
        return "epoch and cur_step that are not integers"
    score = checkpoint.get("best_valid_score", 0.0)
    if not is_number(score):
        return "a best_valid_score that is not a number"
    return None


# ----------------------------------------------------------------------------- token maps
def token_maps(dataset) -> dict:
    """For every token field of ``dataset`` (users, items, and any other ``token`` / ``token_seq`` field such as
    a genre): ``{field: {"count": n, "sha256": hash}}`` of RecBole's token -> id map (its ``field2id_token``,
    id order)."""
    maps = {}
    for field in sorted(dataset.field2id_token):
        tokens = [str(token) for token in dataset.field2id_token[field]]
        digest = hashlib.sha256("\n".join(tokens).encode("utf-8")).hexdigest()
        maps[str(field)] = {"count": len(tokens), "sha256": digest}  # RecBole's field names are numpy strings
    return maps


def check_token_maps(model_file, saved, now, config) -> None:
    """Refuse a checkpoint whose users or items have other ids in the dataset built now (``now``:
    :func:`token_maps` of it) than in training (``saved``). RecBole numbers tokens by first appearance in the
    ``.inter`` files: re-ordered lines, added or removed users or items, or another dataset of the same name
    would put every embedding on another user or item. ``now`` None: no dataset to check against (a trainer
    driven from code without one)."""
    if now is None:
        return
    for field in sorted(set(saved) | set(now)):
        then, current = saved.get(field), now.get(field)
        if then == current:
            continue
        if then is None or current is None:
            raise CheckpointMismatchError(
                model_file, f"the token fields the model was trained with ({', '.join(sorted(saved))})",
                f"{', '.join(sorted(now))} in dataset '{config['dataset']}' under {config['data_path']} now: not the "
                "dataset the model was trained on. Use the training's dataset files, or train again",
            )
        if current["count"] != then["count"]:
            what = f"{current['count'] - 1} {field} tokens now, {then['count'] - 1} in training"
        else:
            what = f"the same number of {field} tokens ({then['count'] - 1}), numbered in another order"
        raise CheckpointMismatchError(
            model_file, f"the {field} ids the model was trained with (RecBole numbers tokens by first appearance "
            "in the .inter files)",
            f"{what}: dataset '{config['dataset']}' under {config['data_path']} is not the one the model was trained "
            "on (its lines re-ordered, users or items added or removed, or another dataset of that name). Use the "
            "training's dataset files, or train again",
        )
