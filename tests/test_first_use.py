"""Every bundled dataset is prepared from the package's files the first time a run names it
(dataset_prep.prepare.ensure_bundled), one process at a time: two first uses at once both succeed and
leave the files a single preparation writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from dataset_prep.bundled import BUNDLED, BUNDLED_COLD, S3REC_BUNDLED
from helpers import FAST

REPO = Path(__file__).resolve().parents[1]
SPORTS = S3REC_BUNDLED["amazon-sports"]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_datasets(out: Path, reference: Path, names) -> None:
    """Every dataset folder of ``names`` byte for byte the reference's; no temporary folder left over."""
    for name in names:
        written, expected = files_of(out / name), files_of(reference / name)
        assert sorted(written) == sorted(expected), name
        assert [f for f in written if written[f] != expected[f]] == [], name
    assert [p.name for p in out.glob(".*.importing-*")] == []


def sports_cut(root: Path, n_users: int = 300) -> Path:
    """The first ``n_users`` lines of the shipped Sports graph, with the attributes of their items (ids kept)."""
    source = SPORTS.source_dir
    cut = root / SPORTS.name
    cut.mkdir(parents=True)
    lines = (source / SPORTS.sequential).read_text(encoding="utf-8").splitlines()[:n_users]
    (cut / SPORTS.sequential).write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = {item for line in lines for item in line.split()[1:]}
    attributes = json.loads((source / SPORTS.attributes).read_text(encoding="utf-8"))
    (cut / SPORTS.attributes).write_text(json.dumps({i: a for i, a in attributes.items() if i in items}), encoding="utf-8")
    (cut / SPORTS.id_maps).write_bytes((source / SPORTS.id_maps).read_bytes())
    return cut


def test_every_bundled_name_has_the_packages_yaml():
    """A first use reads the package's yaml: it is there for each bundled name, plain or cold split."""
    from recbole_mamex.paths import properties_dir

    names = [*BUNDLED, *BUNDLED_COLD, *S3REC_BUNDLED]
    assert {"lastfm-2k", "lastfm-2k-cold", "amazon-sports", "amazon-sports-cold"} <= set(names)
    for name in names:
        assert (properties_dir() / "dataset" / f"{name}.yaml").is_file(), name
    for spec in BUNDLED_COLD.values():
        assert spec.base in BUNDLED or spec.base in S3REC_BUNDLED


def test_sports_is_prepared_on_first_use_and_trains(workdir, monkeypatch, capsys):
    """``run_recbole_mamex.py --dataset=amazon-sports-cold`` (and ``amazon-sports``) on a fresh working
    directory: both prepared with a progress line, as ``python -m dataset_prep.s3rec`` writes them, no yaml
    written, and MAMEX trains on the attributes. A small cut of the Sports graph stands in for the shipped
    one (``dataset_prep.bundled.bundled_data_dir`` is where the bundled raw files are looked up)."""
    from dataset_prep import bundled
    from dataset_prep.s3rec import prepare_s3rec
    from recbole_mamex.cli import main

    cut = sports_cut(workdir / "cut")
    monkeypatch.setattr(bundled, "bundled_data_dir", lambda name: cut.parent / name)
    settings = [f"--{key}={value}" for key, value in {**FAST, "epochs": 1}.items()]
    assert main(["--model=MAMEX", "--dataset=amazon-sports-cold", *settings]) == 0
    captured = capsys.readouterr()
    for name in ("amazon-sports-cold", "amazon-sports"):
        assert f"Preparing bundled dataset '{name}' into dataset/{name} (first use)" in captured.err
    assert "test [cold candidates]: recall@10:" in captured.out
    assert not (workdir / "properties").exists()  # the package's yaml applies
    assert main(["--model=MAMEX", "--dataset=amazon-sports", *settings]) == 0  # there now: not prepared again
    captured = capsys.readouterr()
    assert "Preparing" not in captured.err and "test:" in captured.out
    # the explicit command keeps working and writes the same datasets
    prepare_s3rec(cut / SPORTS.sequential, cut / SPORTS.attributes, id_maps=cut / SPORTS.id_maps,
                  out_root=workdir / "by-hand", properties_dir=workdir / "properties", log=lambda *_: None)
    assert_same_datasets(workdir / "dataset", workdir / "by-hand", ["amazon-sports", "amazon-sports-cold"])
    assert not (workdir / "properties").exists()


def test_a_comparison_prepares_sports_on_first_use(workdir, monkeypatch, capsys):
    from dataset_prep import bundled
    from recbole_mamex.compare import main

    cut = sports_cut(workdir / "cut", n_users=150)
    monkeypatch.setattr(bundled, "bundled_data_dir", lambda name: cut.parent / name)
    assert main(["--dataset", "amazon-sports-cold", "--models", "Pop", "--seeds", "1", "--out", "results",
                 "--show_progress=False", "--use_gpu=False"]) == 0
    assert "Preparing bundled dataset 'amazon-sports-cold' into dataset/amazon-sports-cold (first use)" in capsys.readouterr().err
    assert len(list((workdir / "results" / "runs").glob("Pop-*.json"))) == 1


def test_the_explicit_command_in_a_source_checkout(workdir):
    """``python -m dataset_prep.s3rec`` run where ./properties is the package's own (a checkout's root): the
    shipped yaml of both datasets applies, none is written or refused."""
    from dataset_prep.s3rec import main
    from recbole_mamex.paths import properties_dir

    cut = sports_cut(workdir / "cut")
    checkout = workdir / "properties" / "dataset"
    checkout.mkdir(parents=True)
    for name in ("amazon-sports", "amazon-sports-cold"):
        (checkout / f"{name}.yaml").write_bytes((properties_dir() / "dataset" / f"{name}.yaml").read_bytes())
    before = files_of(checkout)
    assert main(["--sequential", str(cut / SPORTS.sequential), "--attributes", str(cut / SPORTS.attributes)]) == 0
    assert files_of(checkout) == before
    assert (workdir / "dataset" / "amazon-sports-cold" / "amazon-sports-cold.cold_items.json").is_file()


def test_a_folder_without_the_files_is_refused_not_replaced(workdir, capsys):
    from recbole_mamex.cli import main

    mine = workdir / "dataset" / "amazon-sports" / "notes.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text("mine")
    assert main(["--model=MAMEX", "--dataset=amazon-sports-cold"]) == 2
    err = capsys.readouterr().err
    assert "dataset/amazon-sports exists but lacks ['amazon-sports.train.inter'" in err
    assert mine.read_text() == "mine" and not (workdir / "dataset" / "amazon-sports-cold").exists()


def test_a_data_path_that_cannot_be_written_is_one_error_line(workdir, monkeypatch, capsys):
    import errno
    import os

    from recbole_mamex.cli import main

    real_open = os.open

    def read_only(path, *args, **kwargs):  # the data path is read-only: its lock cannot be made
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)  # the lock is opened by recbole_mamex.files.pid_lock
    assert main(["--model=MAMEX", "--dataset=amazon-sports"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: cannot write dataset/.amazon-sports.lock: read-only file system"
    assert not (workdir / "dataset" / "amazon-sports").exists()


DRIVER = "import sys; from dataset_prep.prepare import ensure_bundled; ensure_bundled(sys.argv[1], sys.argv[2])"


def test_two_concurrent_first_uses(tmp_path):
    """Two processes started at once prepare the same bundled dataset (the shipped Sports data, in full, a
    cold split and its base: the mechanism of every bundled name): this test holds the preparation's lock
    until both wait on it, so they overlap for sure; then both succeed and the folders are those of a
    single preparation."""
    from dataset_prep.prepare import ensure_bundled, preparing

    name = "amazon-sports-cold"
    out = tmp_path / "dataset"
    ensure_bundled(name, tmp_path / "single")
    procs = []
    with preparing(out, name):
        for _ in range(2):
            procs.append(subprocess.Popen([sys.executable, "-c", DRIVER, name, str(out)], cwd=REPO,
                                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True))
        for proc in procs:  # each says it waits for the other process (this one)
            deadline = time.monotonic() + 120
            line = proc.stderr.readline()
            while "waiting for another process" not in line:
                assert line and time.monotonic() < deadline, f"no waiting line, process ended with {proc.wait()}"
                line = proc.stderr.readline()
            assert f"preparing '{name}' into {out / name}" in line
    errs = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errs
    assert sum(f"Preparing bundled dataset '{name}'" in err for err in errs) == 1  # the other found it there
    base = BUNDLED_COLD[name].base
    assert_same_datasets(out, tmp_path / "single", [name, base])
