"""What every importer shares: its errors and the write-then-rename steps that keep a failed
import from leaving a half-written dataset behind. Output locations are checked writable before any
work (:func:`check_output_locations`), and a write that fails (a full or read-only disk) is one error
naming the file and the cause (:class:`recbole_mamex.files.OutputError`), the partial files removed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from recbole_mamex.errors import RecboleMamexError, report_user_errors
from recbole_mamex.errors import InputFileError
from recbole_mamex.files import check_writable, read_yaml_mapping, temporary_text, umask, writing


class DataImportError(InputFileError):
    """An input file an importer cannot use; the message names the file, the expected and the found."""


def require_unique_pairs(frame, user_col: str, item_col: str, path, locate=None) -> None:
    """Each (user, item) pair once: a repeat would be counted twice in training, or land in training
    and in a held-out split, where evaluation masks it (a hit that can never be scored).
    ``locate(row)`` says where a row of ``frame`` is (default: ``line <row + 2>``, after a header)."""
    repeated = frame.duplicated([user_col, item_col], keep=False)
    if not repeated.any():
        return
    locate = locate or (lambda row: f"line {row + 2}")
    pairs = list(zip(frame[user_col], frame[item_col]))
    rows = repeated.to_numpy().nonzero()[0]
    first = pairs[rows[0]]
    where = [locate(int(r)) for r in rows if pairs[r] == first][:2]
    n_pairs = len({pairs[r] for r in rows})
    raise DataImportError(
        path,
        "each (user, item) interaction once (remove the repeats, e.g. keep the first)",
        f"{n_pairs} repeated pair(s), e.g. user {first[0]!r} item {first[1]!r} on {where[0]} and {where[1]}",
    )


def locate_in_files(files: list[tuple[str, int]], header_lines: int = 1):
    """``locate`` for :func:`require_unique_pairs` over rows concatenated from ``(file name, n_rows)``."""

    def locate(row: int) -> str:
        for name, n_rows in files:
            if row < n_rows:
                return f"{name} line {row + 1 + header_lines}" if header_lines else name
            row -= n_rows
        return f"row {row}"

    return locate


class DatasetExistsError(RecboleMamexError, FileExistsError):
    """The destination of an import exists and ``force`` was not given."""

    def __init__(self, path):
        self.path = os.fspath(path)
        super().__init__(f"{self.path} already exists; pass --force to replace it (nothing was written)")


MANIFEST = ".dataset_prep.json"  # in every dataset directory an importer wrote: the files it wrote
IMPORTING_MARKER = ".dataset_prep-importing"  # in every temporary directory of an import in progress
TEMPORARY_GLOB = ".*.importing-*"


def _within(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def refuse_sources_inside(final_dir: Path, sources) -> None:
    """An import's inputs (and, for symlinks, their targets) must lie outside the directory it writes:
    replacing that directory would delete them, and a ``--link`` dataset would point at deleted files."""
    targets = {os.path.abspath(final_dir), os.path.realpath(final_dir)}
    for source in sources:
        if source is None:
            continue
        for candidate, how in ((os.path.abspath(source), ""), (os.path.realpath(source), " (through a symlink)")):
            if any(_within(candidate, target) for target in targets):
                raise DataImportError(
                    source,
                    f"input files outside {final_dir}, the directory this import writes and would replace",
                    f"this input inside it{how}; write the dataset under another --name or --out, or move the "
                    "input out first (nothing was written)",
                )


def check_replaceable(final_dir: Path) -> None:
    """``--force`` replaces only a dataset directory an importer wrote, holding nothing but the files it
    wrote (its manifest lists them): it never deletes a file it did not create."""
    manifest = final_dir / MANIFEST
    expected = f"a dataset directory written by dataset_prep, with only the files it wrote (listed in {MANIFEST}), for --force to replace"
    if not final_dir.is_dir() or not manifest.is_file():
        raise DataImportError(final_dir, expected, "no such list: remove or rename the directory yourself, or choose another --name (nothing was written)")
    try:
        listed = set(json.loads(manifest.read_text(encoding="utf-8"))["files"]) | {MANIFEST}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataImportError(manifest, "the file list dataset_prep wrote", f"an unreadable file ({err})") from None
    others = sorted(
        os.path.relpath(os.path.join(root, name), final_dir)
        for root, dirs, files in os.walk(final_dir)
        for name in files + [d for d in dirs if not os.listdir(os.path.join(root, d))]
        if os.path.relpath(os.path.join(root, name), final_dir) not in listed
    )
    if others:
        raise DataImportError(
            final_dir, expected,
            f"{len(others)} other file(s), e.g. {others[:5]}: move them out or choose another --name (nothing was written)",
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(out_root: Path, log=print) -> None:
    """Remove the temporary directories of imports that were killed (their marker names a process of
    this host that no longer runs); point at those without a marker, which this code did not write."""
    host = socket.gethostname()
    for path in sorted(Path(out_root).glob(TEMPORARY_GLOB)):
        if not path.is_dir():
            continue
        try:
            owner = json.loads((path / IMPORTING_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log(f"[dataset_prep] {path} looks like an unfinished import without a marker: remove it if no import is running")
            continue
        if owner.get("host") == host and isinstance(owner.get("pid"), int) and not _alive(owner["pid"]):
            shutil.rmtree(path, ignore_errors=True)
            log(f"[dataset_prep] removed {path}, left by an import (process {owner['pid']}) that did not finish")


def temporary_import_dir(out_root: Path, label: str, log=print) -> Path:
    """A new directory ``<out_root>/.<label>.importing-XXXX`` with the marker of this process (so a later
    import can remove it when this one is killed), permissions from the user's umask."""
    out_root = Path(out_root)
    with writing(out_root):
        out_root.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_root, log)
        path = Path(tempfile.mkdtemp(prefix=f".{label}.importing-", dir=out_root))
        try:
            os.chmod(path, 0o777 & ~umask())
            (path / IMPORTING_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}), encoding="utf-8")
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
    return path


@contextlib.contextmanager
def temporary_import_directory(out_root: Path, label: str, log=print):
    """:func:`temporary_import_dir`, removed on leaving."""
    path = temporary_import_dir(out_root, label, log)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


SPLIT_NAMES = ("train", "valid", "test")


def dataset_yaml_text(
    name: str,
    modality_files: dict[str, str],
    source: str,
    user_field: str = "user_id",
    item_field: str = "item_id",
    extra_lines: tuple[str, ...] = (),
) -> str:
    """The dataset config an importer writes (deterministic text)."""
    lines = [
        f"# Dataset '{name}', {source}.",
        f"# Files: <data_path>/{name}/{name}.{{train,valid,test}}.inter and one .npy per modality.",
        f"USER_ID_FIELD: {user_field}",
        f"ITEM_ID_FIELD: {item_field}",
        "RATING_FIELD: rating",
        "TIME_FIELD: timestamp",
        "load_col:",
        f"  inter: [{user_field}, {item_field}]",
        "benchmark_filename: [train, valid, test]",
    ]
    if modality_files:
        lines.append("modalities:")
        lines += [f"  {modality}: {modality_entry(entry)}" for modality, entry in modality_files.items()]
    lines += list(extra_lines)
    return "\n".join(lines) + "\n"


def modality_entry(entry) -> str:
    """A modality's value in a dataset yaml: its file name, or ``{path: <file>, ids: <ids file>}``."""
    if isinstance(entry, dict):
        return "{" + ", ".join(f"{key}: {value}" for key, value in entry.items()) + "}"
    return str(entry)


def frame_to_atomic(frame) -> str:
    """RecBole atomic-file text of a DataFrame whose columns are already typed headers
    (``user_id:token`` ...); values are written as they are, rows in order."""
    body = frame.astype(str)
    return "\t".join(frame.columns) + "\n" + "".join("\t".join(row) + "\n" for row in body.itertuples(index=False, name=None))


def shipped_dataset_settings(name: str) -> dict:
    """What the package's own ``properties/dataset/<name>.yaml`` says (empty when none ships). Such a
    yaml applies wherever the package is used, so an importer need not write one that says the same."""
    from recbole_mamex.paths import properties_dir

    path = properties_dir() / "dataset" / f"{name}.yaml"
    return read_yaml_mapping(path) if path.is_file() else {}


def shipped_yaml_applies(name: str, yaml_text: str, destination: Path | None = None) -> bool:
    """Whether the package's own yaml for ``name`` already says what an importer's ``yaml_text`` says:
    the same value for every key, every modality written listed there with the same file, and every
    modality listed there either written or ``optional``. Then the importer writes no yaml of its own
    (in a source checkout it would have to replace the package's file). Not when ``destination``, the
    yaml the importer would write, is another file that says something else: that file overrides the
    package's at run time, so the importer goes through the usual refusal (or ``--force``) instead."""
    import yaml

    shipped = shipped_dataset_settings(name)
    if not shipped or overriding_yaml(name, destination):
        return False
    written = yaml.safe_load(yaml_text) or {}
    if any(shipped.get(key) != value for key, value in written.items() if key != "modalities"):
        return False
    return modalities_cover(shipped.get("modalities") or {}, written.get("modalities") or {})


def overriding_yaml(name: str, destination: Path | None) -> bool:
    """Whether ``destination`` (the working directory's yaml for ``name``) is a file other than the
    package's own that says something else than it: it overrides the package's yaml at run time."""
    from recbole_mamex.paths import properties_dir

    if destination is None or not Path(destination).is_file():
        return False
    own = properties_dir() / "dataset" / f"{name}.yaml"
    if own.is_file() and Path(destination).resolve() == own.resolve():
        return False
    return read_yaml_mapping(destination) != shipped_dataset_settings(name)


def modalities_cover(listed: dict, files: dict) -> bool:
    """Whether a yaml's ``modalities`` entry ``listed`` describes the modality files an importer wrote
    (``{modality: file name}``): each listed under its name with that file, and each listed one that is not
    ``optional`` written."""

    def file_of(entry):
        if isinstance(entry, dict):
            return None if entry.get("ids") is not None else entry.get("path")
        return entry

    if listed and not files:  # nothing written: no run could load the dataset
        return False
    if any(file_of(listed.get(modality)) != filename for modality, filename in files.items()):
        return False
    return all(modality in files or (isinstance(entry, dict) and entry.get("optional") is True)
               for modality, entry in listed.items())


def check_output_locations(out_root, yaml_path: Path | None = None) -> None:
    """Refuse, before any work, a data path (or the yaml's directory) that cannot be written (read-only,
    no permission, a full disk): :func:`recbole_mamex.files.check_writable`."""
    check_writable(out_root)
    if yaml_path is not None:
        check_writable(Path(yaml_path).parent)


def check_destination(out_root: Path, name: str, yaml_path: Path | None, force: bool, sources=()) -> Path:
    """The dataset directory to write; refuses an existing dataset or yaml unless ``force``, a directory
    ``force`` may not replace (:func:`check_replaceable`), inputs inside it (:func:`refuse_sources_inside`)
    and output locations that cannot be written (:func:`check_output_locations`)."""
    final_dir = Path(out_root) / name
    if (final_dir.exists() or final_dir.is_symlink()) and not force:
        raise DatasetExistsError(final_dir)
    if yaml_path is not None and Path(yaml_path).exists() and not force:
        raise DatasetExistsError(yaml_path)
    refuse_sources_inside(final_dir, sources)
    if final_dir.exists() or final_dir.is_symlink():
        check_replaceable(final_dir)
    check_output_locations(out_root, yaml_path)
    return final_dir


def feature_suffix(path) -> str:
    """``.npz`` for a sparse feature matrix, ``.npy`` otherwise (the suffix the feature store reads by)."""
    from recbole_mamex.data.features import SPARSE_SUFFIX

    return SPARSE_SUFFIX if Path(path).suffix.lower() == SPARSE_SUFFIX else ".npy"


def write_benchmark_dataset(
    name: str,
    split_texts: dict[str, str],
    modality_paths: dict[str, Path],
    out_root,
    extra_files: dict[str, str] | None = None,
    link: bool = False,
    force: bool = False,
    log=print,
    yaml_path: Path | None = None,
    yaml_text=None,
    sources=(),
    modality_ids: dict[str, Path] | None = None,
) -> tuple[Path, dict[str, str | dict]]:
    """Write ``<out_root>/<name>/``: ``<name>.<split>.inter`` for every split text, the modality
    files (copied, or symlinked with ``link``) as ``<modality>.npy`` (``.npz`` for a sparse one), the ids
    file of each modality in ``modality_ids`` (row r = the item on its line r) as ``<modality>.ids.txt``, and ``extra_files``;
    all into a temporary directory renamed into place at the end. With ``yaml_path``, the dataset yaml
    ``yaml_text(modality_files)`` is written to a temporary file first and renamed right after the
    directory, so a yaml that cannot be written leaves no dataset behind.

    The inputs (``modality_paths`` and the other ``sources`` the importer read) must lie outside the
    directory; ``force`` replaces only a directory an importer wrote (see :func:`check_destination`).
    The directory gets a manifest of what it holds; a killed import's temporary directory is removed by
    the next import into ``out_root``.

    Returns the dataset directory and the modality file names (for the yaml: ``{path: ..., ids: ...}`` for
    one with an ids file).
    """
    out_root = Path(out_root)
    modality_ids = modality_ids or {}
    final_dir = check_destination(out_root, name, None, force, [*sources, *modality_paths.values(), *modality_ids.values()])
    tmp_dir = temporary_import_dir(out_root, name, log)
    tmp_yaml = None
    try:
        for split, text in split_texts.items():
            with writing(final_dir / f"{name}.{split}.inter"):
                (tmp_dir / f"{name}.{split}.inter").write_text(text, encoding="utf-8")
        modality_files = {}
        for modality, path in modality_paths.items():
            targets = {tmp_dir / f"{modality}{feature_suffix(path)}": path}
            if modality in modality_ids:
                targets[tmp_dir / f"{modality}.ids.txt"] = modality_ids[modality]
            for target, source in targets.items():
                with writing(final_dir / target.name):
                    if link:
                        os.symlink(Path(source).resolve(), target)
                    else:
                        shutil.copyfile(source, target)
            names = [target.name for target in targets]
            modality_files[modality] = {"path": names[0], "ids": names[1]} if len(names) > 1 else names[0]
        for filename, text in (extra_files or {}).items():
            with writing(final_dir / filename):
                (tmp_dir / filename).write_text(text, encoding="utf-8")
        if yaml_path is not None:
            with writing(yaml_path):
                tmp_yaml = temporary_text(Path(yaml_path), yaml_text(modality_files))
        with writing(final_dir / MANIFEST):
            (tmp_dir / IMPORTING_MARKER).unlink()
            written = sorted(os.listdir(tmp_dir))
            (tmp_dir / MANIFEST).write_text(json.dumps({"written_by": "dataset_prep", "files": written}, indent=1) + "\n", encoding="utf-8")
        with writing(final_dir):
            replace_dir(tmp_dir, final_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if tmp_yaml is not None:
            tmp_yaml.unlink(missing_ok=True)
        raise
    log(f"[dataset_prep] dataset '{name}' written to {final_dir}")
    if tmp_yaml is not None:
        try:
            with writing(yaml_path):
                os.replace(tmp_yaml, yaml_path)
        except BaseException:
            tmp_yaml.unlink(missing_ok=True)
            raise
        log(f"[dataset_prep] wrote {yaml_path}")
    return final_dir, modality_files


def add_output_options(parser, out_flag: str = "--out") -> None:
    """The options every importer shares (stored as ``out``, ``properties``, ``force``, ``link``)."""
    parser.add_argument(out_flag, dest="out", type=Path, default=Path("dataset"), help="RecBole data_path to write into (default: dataset)")
    parser.add_argument("--properties", type=Path, default=Path("properties"), help="where to write dataset/<name>.yaml (default: ./properties)")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset and yaml of that name")
    parser.add_argument("--link", action="store_true", help="symlink the .npy files instead of copying them")


def run_reporting_errors(task) -> int:
    """Run ``task()``; an input, option or destination problem becomes one ``error:`` line and exit status 2."""

    def run() -> int:
        task()
        return 0

    return report_user_errors(run)
