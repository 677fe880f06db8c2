import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from recbole_mamex import compat as _shims  # noqa: E402

_shims.apply_all()  # the shims before RecBole is used

pytest.register_assert_rewrite("helpers")  # the shared checks report their values as a test's asserts do

from helpers import write_mmrec  # noqa: E402


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working directory: RecBole writes dataset/, saved/ and log/ relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def tiny_dataset(workdir):
    """The generated MMRec data imported as RecBole dataset 'tiny' under ./dataset, yaml under ./properties."""
    from dataset_prep.mmrec import import_mmrec

    raw = write_mmrec(workdir / "raw")
    import_mmrec(
        raw["inter"],
        {"text": workdir / "raw" / "text_feat.npy", "audio": workdir / "raw" / "audio_feat.npy"},
        "tiny",
        out_root=workdir / "dataset",
        properties_dir=workdir / "properties",
        log=lambda *_: None,
    )
    return raw


@pytest.fixture(autouse=True)
def _recbole_warnings_quiet():
    """pytest resets warning filters around each test; put back the ones recbole_mamex sets on import."""
    from recbole_mamex import compat

    compat.quiet_known_warnings()
    yield


@pytest.fixture
def cold_tiny(tiny_dataset, workdir):
    """'tiny' split again by the cold-start splitter into dataset 'tiny-cold'."""
    from dataset_prep.coldstart import main

    assert main(["--dataset", "tiny", "--seed", "1"]) == 0
    return workdir / "dataset" / "tiny-cold"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cuda: needs a visible CUDA GPU, skipped without one (`pytest -m cuda`; bench/gpu_check.py runs them)"
    )
