"""Each shim in recbole_mamex.compat: the RecBole code path that needs it fails in a fresh process with
the shim switched off, and works with it on."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

from recbole_mamex import compat

from helpers import FAST


def run_python(code: str, cwd, disabled=()):
    env = dict(os.environ)
    env[compat.DISABLE_ENV] = ",".join(disabled)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


NUMPY_PATHS = """
    import json
    from recbole_mamex import compat as _shims; _shims.apply_all()
    import numpy as np
    results = {}
    def attempt(key, fn):
        try:
            fn()
            results[key] = "ok"
        except AttributeError as err:
            results[key] = f"AttributeError: {err}"
    def config():
        from recbole.config import Config
        Config(model="BPR", dataset="ml-100k", config_dict={"use_gpu": False})
    def metrics():
        from recbole.evaluator.metrics import NDCG
        NDCG({"topk": [2], "metric_decimal_place": 4}).metric_info(np.array([[True, False]]), np.array([1]))
    def ray_tune():
        from ray import tune
    attempt("config", config)
    attempt("metrics", metrics)
    import importlib.util
    if importlib.util.find_spec("ray") is not None:  # ray is not installed on Python 3.12+ (see setup.cfg)
        attempt("ray_tune", ray_tune)
    print(json.dumps(results))
"""


def test_numpy_aliases_needed_by_recbole_config_metrics_and_ray(tmp_path):
    off = run_python(NUMPY_PATHS, tmp_path, disabled=["numpy_aliases"])
    assert off.returncode == 0, off.stderr
    without = json.loads(off.stdout.strip().splitlines()[-1])
    assert "float_" in without["config"]
    assert "'float'" in without["metrics"]
    if "ray_tune" in without:
        assert "bool8" in without["ray_tune"]
    on = run_python(NUMPY_PATHS, tmp_path)
    assert on.returncode == 0, on.stderr
    expected = {"config": "ok", "metrics": "ok"} | ({"ray_tune": "ok"} if "ray_tune" in without else {})
    assert json.loads(on.stdout.strip().splitlines()[-1]) == expected


def lightgcn_norm_adj(workdir):
    from recbole.data import data_preparation
    from recbole.model.general_recommender import LightGCN

    from recbole_mamex.config import Config
    from recbole_mamex.data.loading import create_dataset

    config = Config(model="LightGCN", dataset="tiny", config_dict=FAST, cmd_args=[])
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    model = LightGCN(config, train._dataset)
    return model.norm_adj_matrix.to_dense().numpy(), train._dataset


def test_dok_update_lets_lightgcn_build_its_adjacency(tiny_dataset, workdir):
    adjacency, train = lightgcn_norm_adj(workdir)
    # dense reference: D^-1/2 A D^-1/2 of the bipartite user-item graph of the training interactions
    n_users, n_items = train.user_num, train.item_num
    r = train.inter_matrix(form="coo").toarray()
    a = np.zeros((n_users + n_items, n_users + n_items))
    a[:n_users, n_users:] = r
    a[n_users:, :n_users] = r.T
    degree = a.sum(1) + 1e-7
    expected = a / np.sqrt(degree)[:, None] / np.sqrt(degree)[None, :]
    np.testing.assert_allclose(adjacency, expected, rtol=1e-5, atol=1e-7)

    off = run_python(
        """
        from recbole_mamex import compat; compat.apply_all()
        import scipy.sparse as sp
        m = sp.dok_matrix((3, 3), dtype=float)
        m._update({(0, 1): 1.0})
        """,
        workdir,
        disabled=["scipy_dok_update"],
    )
    assert off.returncode != 0 and "_update" in off.stderr


WARNING_PATH = """
    import warnings
    warnings.simplefilter("default")
    from recbole_mamex import compat as _shims; _shims.apply_all()
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.trainer import Trainer
    config = Config(model="BPR", dataset="ml-100k", config_dict={"use_gpu": False, "state": "ERROR"})
"""


def test_known_warnings_are_quiet(tmp_path):
    code = WARNING_PATH + """
    import torch
    Trainer.__init__.__globals__["amp"].GradScaler(enabled=False)
    """
    on = run_python(code, tmp_path)
    assert on.returncode == 0, on.stderr
    assert "torch.cuda.amp" not in on.stderr and "pkg_resources" not in on.stderr
    off = run_python(code, tmp_path, disabled=["quiet_known_warnings"])
    assert off.returncode == 0, off.stderr
    assert "torch.cuda.amp" in off.stderr or "pkg_resources" in off.stderr


def test_shims_are_applied_once_and_unknown_names_rejected(monkeypatch):
    assert compat.applied_shims() == list(compat.SHIMS)
    assert compat.apply_all() == []
    assert np.float_ is np.float64 and hasattr(sp.dok_matrix, "_update")
    monkeypatch.setenv(compat.DISABLE_ENV, "numpy_alias")
    with pytest.raises(ValueError, match="unknown shim name"):
        compat.apply_all()


def test_recbole_sine_import_leaves_anomaly_detection_off(tmp_path):
    import torch

    assert not torch.is_anomaly_enabled()
    code = """
        from recbole_mamex import compat; compat.apply_all()
        import torch
        import recbole.model.sequential_recommender.sine
        print(torch.is_anomaly_enabled())
    """
    on = run_python(code, tmp_path)
    assert on.returncode == 0 and on.stdout.strip().splitlines()[-1] == "False", on.stderr
    off = run_python(code, tmp_path, disabled=["autograd_anomaly_off"])
    assert off.returncode == 0 and off.stdout.strip().splitlines()[-1] == "True", off.stderr
