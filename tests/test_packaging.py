"""The wheel carries properties/ and the bundled data, and an installed copy finds them."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("recbole_mamex", "properties", "dataset_prep"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel_file,) = out.glob("recbole_mamex-*.whl")
    return wheel_file


def test_wheel_contains_properties_and_bundled_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in [*(REPO / "properties").rglob("*.yaml"), *(REPO / "properties").rglob("*.hyper")]:
        assert "recbole_mamex/properties/" + path.relative_to(REPO / "properties").as_posix() in names
    for dataset in ("lastfm-2k", "amazon-sports"):
        for path in (REPO / "recbole_mamex" / "bundled" / dataset).iterdir():
            assert f"recbole_mamex/bundled/{dataset}/{path.name}" in names
    assert "dataset_prep/mmrec.py" in names
    # every module of the source tree (a subpackage missing from setup.cfg's list would be left out)
    for package in ("recbole_mamex", "dataset_prep"):
        for path in (REPO / package).rglob("*.py"):
            assert path.relative_to(REPO).as_posix() in names, path


def test_installed_copy_finds_its_properties(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site))
    code = "import recbole_mamex.paths as p; print(p.properties_dir()); print(p.bundled_data_dir('lastfm-2k'))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    props, bundled = proc.stdout.split()
    assert Path(props) == site / "recbole_mamex" / "properties"
    assert (Path(bundled) / "lfm2k.inter").is_file()
