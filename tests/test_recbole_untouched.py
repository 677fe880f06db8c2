"""Importing recbole_mamex changes nothing in RecBole beyond version fixes: a program that drives RecBole
itself (its Config, data preparation, loaders, training sampler, trainer and ``Random`` model) computes
the same things with and without ``import recbole_mamex`` (and ``recbole_mamex.config``, which applies
the shims of :mod:`recbole_mamex.compat`) before it. This package's evaluation batches, compressed
per-user rows, per-user random ranking and warm-item negatives are its own classes, built by its own code
(``tests/test_eval_batches.py``, ``tests/test_content_options.py``)."""

import json
import subprocess
import sys
import textwrap

import numpy as np

# What a program that drives RecBole 1.2.1 by itself does: the numpy aliases RecBole needs on numpy 2 (the
# one version fix these code paths need), then RecBole's own Config, data preparation, loaders, trainer and
# Random model. {prelude} is empty (plain RecBole) or imports recbole_mamex first.
RECBOLE_ALONE = """
    import hashlib, json, sys, warnings
    {prelude}
    import numpy as np
    for name, value in {{"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_, "float": float,
                        "int": int, "bool": bool, "long": int, "str": str, "object": object, "unicode": str}}.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if not hasattr(np, name):
                setattr(np, name, value)
    import torch
    torch.set_num_threads(1)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    def digest(value):
        return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]

    def config(model):
        return Config(model=model, dataset="plain", config_dict={{
            "data_path": {data_path!r}, "checkpoint_dir": "saved", "load_col": {{"inter": ["user_id", "item_id"]}},
            "use_gpu": False, "seed": 2020, "epochs": 1, "train_batch_size": 64, "eval_batch_size": 300,
            "full_sort_batch_mb": 16, "show_progress": False, "state": "ERROR", "metric_decimal_place": 12,
        }})

    out = {{}}
    config_bpr = config("BPR")
    init_seed(config_bpr["seed"], True)
    dataset = create_dataset(config_bpr)
    train, valid, test = data_preparation(config_bpr, dataset)
    for name, loader in (("valid", valid), ("test", test)):
        batches = [[users["user_id"].tolist(), history_u.tolist(), history_i.tolist(), positive_u.tolist(),
                    positive_i.tolist()] for users, (history_u, history_i), positive_u, positive_i in loader]
        out[name] = {{
            "loader": f"{{type(loader).__module__}}.{{type(loader).__qualname__}}",
            "step": loader.step, "batch_size": loader._batch_size, "batches": len(batches),
            "lists": type(loader.uid2history_item).__name__, "content": digest(batches),
            "history": [loader.uid2history_item[u].tolist() for u in loader.uid_list[:5].tolist()],
        }}
    init_seed(config_bpr["seed"], True)
    negatives = [batch["neg_item_id"].tolist() for batch in train]
    out["train"] = {{
        "loader": f"{{type(train).__module__}}.{{type(train).__qualname__}}", "step": train.step,
        "sampler": f"{{type(train._sampler).__module__}}.{{type(train._sampler).__qualname__}}",
        "negatives": digest(negatives), "n_negatives": sum(map(len, negatives)),
    }}
    model = get_model("BPR")(config_bpr, train.dataset)
    trainer = get_trainer(config_bpr["MODEL_TYPE"], "BPR")(config_bpr, model)
    trainer.fit(train, saved=False, show_progress=False)
    out["BPR"] = dict(trainer.evaluate(test, load_best_model=False))

    config_random = config("Random")
    random_class = get_model("Random")
    model = random_class(config_random, train.dataset)
    users = next(iter(valid))[0]
    scores = model.full_sort_predict(users).view(len(users), -1)
    out["Random"] = {{
        "class": f"{{random_class.__module__}}.{{random_class.__qualname__}}",
        "users": len(users), "rows equal to the first": int((scores == scores[0]).all(dim=1).sum()),
        "scores": hashlib.sha256(scores.numpy().tobytes()).hexdigest()[:16],
    }}
    trainer = get_trainer(config_random["MODEL_TYPE"], "Random")(config_random, random_class(config_random, train.dataset))
    out["Random"]["test"] = dict(trainer.evaluate(test, load_best_model=False))
    out["recbole_mamex imported"] = "recbole_mamex" in sys.modules
    print(json.dumps(out, sort_keys=True))
"""

# recbole_mamex.config applies the shims; then every module of the data, model and trainer packages, and
# the run assembly
WITH_RECBOLE_MAMEX = """
    import importlib, pkgutil
    import recbole_mamex, recbole_mamex.config
    for package in ("recbole_mamex.data", "recbole_mamex.model", "recbole_mamex.trainer"):
        for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
            importlib.import_module(f"{package}.{module.name}")
    import recbole_mamex.quick_start
"""


def write_dataset(folder):
    """A small atomic dataset: 40 users with 9-16 distinct items each out of 50."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    lines = ["user_id:token\titem_id:token"]
    for user in range(40):
        for item in rng.choice(50, size=int(rng.integers(9, 17)), replace=False):
            lines.append(f"u{user}\ti{item}")
    (folder / "plain.inter").write_text("\n".join(lines) + "\n")


def recbole_run(tmp_path, prelude: str) -> dict:
    code = textwrap.dedent(RECBOLE_ALONE).format(prelude=textwrap.dedent(prelude).strip(),
                                                 data_path=str(tmp_path / "dataset"))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_recbole_mamex_leaves_recbole_as_it_is(tmp_path):
    write_dataset(tmp_path / "dataset" / "plain")
    alone = recbole_run(tmp_path, "")
    after_import = recbole_run(tmp_path, WITH_RECBOLE_MAMEX)
    assert alone.pop("recbole_mamex imported") is False and after_import.pop("recbole_mamex imported") is True
    # what plain RecBole 1.2.1 does, so that the comparison below compares something
    for split in ("valid", "test"):
        assert alone[split]["loader"] == "recbole.data.dataloader.general_dataloader.FullSortEvalDataLoader"
        assert alone[split]["step"] == 300 // 51 and alone[split]["lists"] == "ndarray"  # 50 items + padding
        assert alone[split]["batches"] == 8  # 40 users, 5 per batch
    assert alone["train"]["sampler"] == "recbole.sampler.sampler.Sampler" and alone["train"]["n_negatives"] > 300
    assert alone["Random"]["class"] == "recbole.model.general_recommender.random.Random"
    assert alone["Random"]["rows equal to the first"] == alone["Random"]["users"] == 5  # one ranking per batch
    changed = {key: (alone[key], after_import[key]) for key in alone if after_import[key] != alone[key]}
    assert not changed, f"RecBole alone vs after importing recbole_mamex: {changed}"
