"""File reading and writing shared by every layer: text written whole or not at all (a temporary file
beside the target, then a rename, with the permissions the user's umask gives a new file), outputs that
cannot be written refused before the work and reported as one error line (:class:`OutputError`), and the
one reader of dataset yaml files."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

import yaml

from recbole_mamex.errors import RecboleMamexError, os_error_text


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


class OutputError(RecboleMamexError, OSError):
    """A file or directory to write that cannot be written (a read-only or full disk, no permission): the
    message names it and the cause, for one ``error:`` line (:func:`recbole_mamex.errors.report_user_errors`)."""

    def __init__(self, path, cause, hint: str = ""):
        self.path = os.fspath(path)
        message = f"cannot write {self.path}: {os_error_text(cause) if isinstance(cause, OSError) else cause}"
        super().__init__(f"{message}; {hint}" if hint else message)


def read_json(path, error, expected: str = "JSON", parse_hint: str = ""):
    """The JSON value of the UTF-8 text file ``path``; a file that cannot be read, is empty (or blank) or cannot
    be parsed is ``error(path, expected, found)`` (an :class:`~recbole_mamex.errors.InputFileError` class), one
    line. ``parse_hint`` is added to the message of a parse error (e.g. ``"truncated?"``)."""
    import json

    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise error(path, expected, f"bytes that are not UTF-8 text (at byte {err.start})") from None
    except OSError as err:
        raise error(path, "a readable file", os_error_text(err)) from None
    if not text.strip():
        raise error(path, expected, "an empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(path, expected, f"a parse error ({err}{', ' + parse_hint if parse_hint else ''})") from None
    except RecursionError:
        raise error(path, expected, "lists or objects nested too deeply to read") from None
    except ValueError as err:  # a number too long to convert (Python's integer digit limit)
        raise error(path, expected, f"a value that cannot be read ({err})") from None


def check_writable(path) -> None:
    """Refuse (:class:`OutputError`), before any work, an output location that cannot be written: a probe
    file is written in, and removed from, ``path`` when it is a directory, else its nearest existing parent
    (where the missing directories would be made). Nothing made here stays."""
    path = Path(path)
    directory = path
    while not os.path.lexists(directory) and directory.parent != directory:
        directory = directory.parent
    if not directory.is_dir():
        raise OutputError(path, f"{directory} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise OutputError(path, err) from None


@contextlib.contextmanager
def writing(path):
    """An ``OSError`` of the block, which writes ``path``, becomes an :class:`OutputError` naming it (the
    package's own errors pass as they are). Pair it with :func:`atomic_path` or :func:`atomic_write_text`,
    which leave nothing under the name when the write fails."""
    try:
        yield
    except RecboleMamexError:
        raise
    except OSError as err:
        raise OutputError(path, err) from None


class YamlValueError(RecboleMamexError, yaml.constructor.ConstructorError):
    """Text yaml parses into something Python cannot build (too deep, a number or date out of range): a
    ``yaml.YAMLError``, so every reader's one-line handling of unreadable yaml applies."""


@contextlib.contextmanager
def pid_lock(lock, on_busy, os_error):
    """Hold ``lock`` (``fcntl.flock`` on that file, this process's id written in it) for the block: the one
    lock of every "one process at a time" in the package. When another process holds it, ``on_busy(holder)``
    (the holder's process id, as text) either raises to refuse or returns to wait for it. An ``OSError`` of
    the lock's own steps becomes ``os_error(err, step)`` (``step``: "open" or "write"), which it raises. The lock
    goes with the process: a killed holder holds nothing."""
    import fcntl

    lock = Path(lock)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise os_error(err, "open") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_busy(os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown")
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            os.fsync(fd)
        except OSError as err:
            raise os_error(err, "write") from None
        yield
    finally:
        os.close(fd)  # releases the lock


class ConfigYamlLoader(yaml.SafeLoader):
    """The one yaml reader of the package (config files, dataset yaml, ``--key=value`` values, the property
    files RecBole reads through our Config): yaml's safe loader, which builds plain values only (a python tag
    is an error, never a call), that reads ``1e-3`` as a number, as RecBole's loader does, and refuses
    aliases (``*name``): an alias repeats a whole node, so a few hundred bytes of nested aliases expand to
    gigabytes."""

    def get_single_data(self):
        # yaml.load's one entry: a document nested deeper than Python's recursion limit (5000 ``[``) stops
        # the composer, which recurses once per level
        try:
            return super().get_single_data()
        except RecursionError:
            raise YamlValueError(None, None, "lists or mappings nested too deeply to read", self.get_mark()) from None

    def construct_object(self, node, deep=False):
        # a scalar yaml reads but Python cannot hold: an integer of over 4300 digits, a timestamp whose
        # date or offset (-99:00) datetime refuses
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as err:
            raise YamlValueError(None, None, f"a value Python cannot hold ({err})", node.start_mark) from None

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"an alias (*{event.anchor}): aliases are not accepted, write the value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


# a number with an exponent and no dot (1e-3, 5E+2) is a string to yaml 1.1 and a float to RecBole
ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_loader():
    """The loader class :func:`load_yaml` uses."""
    return ConfigYamlLoader


def load_yaml(text):
    """``text`` (a string or an open file) read by :class:`ConfigYamlLoader`; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=yaml_loader())


def yaml_problem(err) -> str:
    """What a ``yaml.YAMLError`` says, with where: for one-line error messages."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"text yaml cannot read{where}: {getattr(err, 'problem', None) or err}"


def read_yaml_mapping(path, error=None) -> dict:
    """A yaml file's mapping (empty for an empty file): how every config file and dataset yaml is read. A file
    that is not yaml, not UTF-8 or not a mapping is an ``error`` (default
    :class:`~recbole_mamex.errors.InputFileError`) naming it."""
    from recbole_mamex.errors import InputFileError

    error = error or InputFileError
    expected = "a yaml mapping of config keys"
    try:
        with open(path, encoding="utf-8") as f:
            loaded = load_yaml(f)
    except yaml.YAMLError as err:
        raise error(path, expected, yaml_problem(err)) from None
    except UnicodeDecodeError as err:
        raise error(path, expected, f"bytes that are not UTF-8 text (at byte {err.start})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise error(path, expected + " (key: value lines)", f"a yaml {type(loaded).__name__}")
    return loaded
