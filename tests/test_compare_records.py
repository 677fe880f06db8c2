"""What compare reads back and writes: records checked against the data they were trained on and validated
field by field, one comparison per output folder, write errors, diverging runs and impossible rows as one
error line each."""

import errno
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from helpers import fake_plan
from recbole_mamex.compare import Plan, Split, main, planned_config, run_all, run_file
from recbole_mamex.errors import CompareError
from recbole_mamex.records import versions

FAST = "epochs: 1\ntrain_batch_size: 256\nuse_gpu: False\n"


def compare(workdir, *args, out="res"):
    (workdir / "fast.yaml").write_text(FAST)
    return main(["--dataset", "tiny-cold", "--config_files", "fast.yaml", "--out", str(workdir / out), *args])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ---------------------------------------------------------------------------------------------------- data identity


def test_data_identity_hashes_the_files_a_run_reads(workdir, monkeypatch):
    from recbole_mamex.data import identity
    from recbole_mamex.data.identity import data_identity, identity_differences

    root = workdir / "dataset" / "d"
    root.mkdir(parents=True)
    (root / "d.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    (root / "d.cold_items.json").write_text("{}")
    (root / "dx.inter").write_text("another dataset's file\n")
    np.save(root / "text.npy", np.ones((3, 2), dtype=np.float32))
    np.save(root / "image.npy", np.ones((3, 2), dtype=np.float32))
    (root / "image_ids.txt").write_text("1\n2\n3\n")
    np.save(root / "audio.npy", np.ones((3, 2), dtype=np.float32))
    config = {"data_path": str(root), "dataset": "d", "cold_items_file": "d.cold_items.json", "use_modalities": ["text", "image"],
              "modalities": {"text": "text.npy", "image": {"path": "image.npy", "ids": "image_ids.txt"}, "audio": "audio.npy"}}
    first = data_identity(config)
    assert sorted(first) == ["d.cold_items.json", "d.inter", "image.npy", "image_ids.txt", "text.npy"]  # audio is not read
    # a backup beside the files is not read, so it is no part of the identity; nor is a .item load_col leaves out
    (root / "d.inter.bak").write_text("user_id:token\titem_id:token\n9\t9\n")
    (root / "d.item").write_text("item_id:token\n2\n")
    assert data_identity({**config, "load_col": {"inter": ["user_id", "item_id"]}}) == first
    # an identity stored when every <dataset>.* counted: the backup still there is no difference, a file gone is
    older = {**first, "d.inter.bak": "0" * 32}
    assert identity_differences(older, first, root) == [] and identity_differences(older, first) == ["d.inter.bak gone"]
    assert sorted(data_identity(config)) == sorted([*first, "d.item"])  # without load_col RecBole reads .item
    (root / "d.item").unlink()
    # cached while a file is unchanged: a second identity reads no file again
    reads = []
    real_open = open
    monkeypatch.setattr(identity, "open", lambda path, *a, **k: reads.append(path) or real_open(path, *a, **k), raising=False)
    assert data_identity(config) == first and reads == []
    time.sleep(0.05)  # a later modification time than the first hash saw, on any file system
    (root / "image_ids.txt").write_text("3\n2\n1\n")  # same size, other bytes
    now = data_identity(config)
    monkeypatch.undo()
    assert [os.path.basename(p) for p in reads] == ["image_ids.txt"]
    assert identity_differences(first, now) == ["image_ids.txt changed"]
    (root / "d.inter").unlink()
    assert identity_differences(first, data_identity(config)) == ["d.inter gone", "image_ids.txt changed"]
    assert data_identity({**config, "data_path": str(workdir / "nowhere")}) == {}


def test_data_files_follow_recbole_reading_rules(workdir):
    """Split inter files, additional feature files, a knowledge graph and LDiffRec's item embeddings count
    exactly when RecBole opens them."""
    from recbole.utils import ModelType

    from recbole_mamex.data.identity import data_files

    root = workdir / "dataset" / "d"
    root.mkdir(parents=True)
    for name in ("d.inter", "d.train.inter", "d.valid.inter", "d.test.inter", "d.ent", "d.kg", "d.link", "item_emb.npy"):
        (root / name).write_text("x\n")
    base = {"data_path": str(root), "dataset": "d", "model": "BPR", "MODEL_TYPE": ModelType.GENERAL}

    def names(**settings):
        return [p.name for p in data_files({**base, **settings})]

    assert names() == ["d.inter"]
    assert names(benchmark_filename=["train", "valid", "test"]) == ["d.train.inter", "d.valid.inter", "d.test.inter"]
    assert names(additional_feat_suffix=["ent"]) == ["d.inter", "d.ent"]
    assert names(model="KGAT", MODEL_TYPE=ModelType.KNOWLEDGE) == ["d.inter", "d.kg", "d.link"]
    assert names(model="LDiffRec", n_cate=1) == ["d.inter"]
    assert names(model="LDiffRec", n_cate=2) == ["d.inter", "item_emb.npy"]


def test_runs_of_data_that_changed_are_refused_and_rerun(cold_tiny, workdir, capsys):
    base = ["--models", "Pop", "BPR", "--seeds", "1"]
    assert compare(workdir, *base) == 0
    records = {m: run_file(workdir / "res", m, 1) for m in ("Pop", "BPR")}
    saved = {m: json.loads(p.read_text()) for m, p in records.items()}
    assert set(saved["BPR"]["data_identity"]) >= {"tiny-cold.train.inter", "text.npy", "audio.npy"}
    before = {m: p.read_bytes() for m, p in records.items()}
    summary = (workdir / "res" / "summary.md").read_text()
    capsys.readouterr()
    # the dataset is imported again with other features (dataset_prep ... --force): same names, other bytes
    np.save(cold_tiny / "text.npy", np.load(cold_tiny / "text.npy") * 2)
    assert compare(workdir, *base) == 2
    err = one_error_line(capsys)
    assert "2 finished run(s) were trained on data that has changed since (text.npy changed)" in err
    assert "Pop-seed1.json" in err and "BPR-seed1.json" in err and "--rerun" in err
    assert {m: p.read_bytes() for m, p in records.items()} == before  # nothing replaced, nothing deleted
    assert (workdir / "res" / "summary.md").read_text() == summary
    assert compare(workdir, *base, "--rerun") == 0
    assert "trained again (--rerun)" in capsys.readouterr().out
    again = json.loads(records["BPR"].read_text())
    assert again["data_identity"]["text.npy"] != saved["BPR"]["data_identity"]["text.npy"]
    assert compare(workdir, *base) == 0
    assert capsys.readouterr().out.count("done before, skipped (same settings)") == 2
    # a record written before records stored the data's identity: reused, and said so (output and summary)
    old = json.loads(records["Pop"].read_text())
    del old["data_identity"]
    records["Pop"].write_text(json.dumps(old))
    assert compare(workdir, *base) == 0
    out = capsys.readouterr().out
    assert "note: 1 finished run(s)" in out and "were recorded before records stored their data's identity (Pop-seed1.json)" in out
    assert "1 run(s) were recorded before records stored their data's identity" in (workdir / "res" / "summary.md").read_text()


def test_trials_of_data_that_changed_are_refused(workdir):
    from recbole_mamex.compare.tuning import tune_rows

    (workdir / "properties" / "hyper").mkdir(parents=True)
    (workdir / "properties" / "hyper" / "BPR.hyper").write_text("learning_rate choice [0.001,0.01,0.1]\n")
    data = workdir / "dataset" / "d"
    data.mkdir(parents=True)
    (data / "d.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    calls = []

    def runner(spec, on_epoch):
        calls.append(spec.settings["learning_rate"])
        return {"best_valid_score": spec.settings["learning_rate"], "valid_metric": "NDCG@20", "best_valid": {},
                "best_epoch": 1, "epochs_trained": 2, "wall_s": 0.1}

    def tune(rerun=False):
        def configure(spec):
            return {"model": spec.model, "data_path": str(data), "dataset": spec.dataset, **spec.settings}

        return tune_rows(fake_plan(["BPR"], [5], configure=configure), 3, Split(None, "d"), 5, workdir / "out", runner,
                         rerun=rerun, log=lambda *_: None)["BPR"]

    tune()
    trial = json.loads((workdir / "out" / "tuning" / "BPR" / "trial-001.json").read_text())
    assert list(trial["data_identity"]) == ["d.inter"]
    calls.clear()
    tune()
    assert calls == []  # same data: replayed
    (data / "d.inter").write_text("user_id:token\titem_id:token\n1\t3\n")
    with pytest.raises(CompareError, match=r"3 finished trial\(s\) were trained on data that has changed since \(d.inter changed\)"):
        tune()
    assert calls == []
    tune(rerun=True)
    assert calls and len(calls) == len(set(calls))  # trained again, each proposal once
    assert json.loads((workdir / "out" / "tuning" / "BPR" / "trial-001.json").read_text())["data_identity"] != trial["data_identity"]


def tune_fake(workdir, runner, rerun=False, n_trials=3):
    from recbole_mamex.compare.tuning import tune_rows

    hyper = workdir / "properties" / "hyper" / "BPR.hyper"
    hyper.parent.mkdir(parents=True, exist_ok=True)
    hyper.write_text("learning_rate loguniform -7,-1\n")
    return tune_rows(fake_plan(["BPR"], [5]), n_trials, Split(None, "d"), 5, workdir / "out", runner, rerun=rerun,
                     log=lambda *_: None)["BPR"]


def scored(calls, first_score=None):
    def runner(spec, on_epoch):
        calls.append(spec.settings["learning_rate"])
        value = first_score if first_score is not None and len(calls) == 1 else spec.settings["learning_rate"]
        return {"best_valid_score": value, "valid_metric": "NDCG@20", "best_valid": {}, "best_epoch": 1, "epochs_trained": 2,
                "wall_s": 0.1}

    return runner


def test_a_trial_that_evaluated_no_user_is_a_failed_trial(workdir):
    tuning = tune_fake(workdir, scored([], first_score=float("nan")), n_trials=3)
    assert [t["status"] for t in tuning.trials] == ["failed", "ok", "ok"] and tuning.best["trial"] != 1
    assert "no user evaluated in validation" in tuning.trials[0]["error"]
    assert json.loads((workdir / "out" / "tuning" / "BPR" / "trial-001.json").read_text())["score"] is None


@pytest.mark.parametrize("name, damage, found", [
    ("trial-002.json", lambda text: text[:30], "a parse error ("),
    ("trial-002.json", lambda text: text.replace('"status": "ok"', '"status": "great"'), "expected status to be one of ok, failed, repeat"),
    ("trial-002.json", lambda text: text.replace('"trial": 2', '"trial": 3'), "expected trial to be 2, the number of the file's name"),
    ("search.json", lambda text: "", "an empty file"),
], ids=["truncated", "unknown status", "other number", "empty search"])
def test_a_bad_trial_record_names_it_and_rerun_trains_it_again(workdir, name, damage, found):
    calls = []
    first = tune_fake(workdir, scored(calls))
    path = workdir / "out" / "tuning" / "BPR" / name
    path.write_text(damage(path.read_text()))
    with pytest.raises(CompareError, match=re.escape(str(path)) + f": .*{re.escape(found)}.*use --rerun to run the trials again"):
        tune_fake(workdir, scored(calls))
    calls.clear()
    again = tune_fake(workdir, scored(calls), rerun=True)
    assert calls and [t["params"] for t in again.trials] == [t["params"] for t in first.trials]


# ---------------------------------------------------------------------------------------------------- one comparison per folder


def test_a_second_comparison_into_the_same_folder_is_refused(cold_tiny, workdir, capsys):
    out = workdir / "res"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from recbole_mamex.records import locked_output\n"
         f"with locked_output(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert compare(workdir, "--models", "Pop", "--seeds", "1") == 2
        err = one_error_line(capsys)
        assert f"--out {out}: expected a folder no other comparison is writing, found one held by process {holder.pid}" in err
        assert not (out / "runs").exists()  # nothing trained
    finally:
        holder.kill()
        holder.wait()
    assert compare(workdir, "--models", "Pop", "--seeds", "1") == 0  # the lock goes with its process


# ---------------------------------------------------------------------------------------------------- stored records


def write_records(out, results_of, models=("BPR", "Pop"), seeds=(1, 2)):
    """Records of a finished comparison on tiny-cold (made with today's settings), nothing to train."""
    paths = {}
    for model in models:
        for seed in seeds:
            path = run_file(out, model, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"model": model, "seed": seed, "dataset": "tiny-cold", "protocol": "cold", "results": results_of(model, seed),
                      "wall_s": 1.0, "best_epoch": 0, "epochs_trained": 1,
                      "config": planned_config(Plan("tiny-cold", "cold", [model], [seed]).spec(model, seed)), "versions": versions()}
            path.write_text(json.dumps(record))
            paths[(model, seed)] = path
    return paths


ARGS = ["--dataset", "tiny-cold", "--seeds", "1", "2", "--metrics", "recall@10", "ndcg@10", "--models", "BPR", "Pop"]


def good(model, seed):
    value = 0.2 + 0.1 * seed + (0.1 if model == "BPR" else 0)
    return {kind: {"recall@10": value, "ndcg@10": value / 2} for kind in ("cold", "warm", "all")}


@pytest.mark.parametrize(
    "damage, found",
    [
        (lambda p, r: p.write_bytes(b""), "expected a JSON record written by compare, found an empty file"),
        (lambda p, r: p.write_text(json.dumps(r)[:40]), "found a parse error ("),
        (lambda p, r: p.write_text('{"seed": ' + "9" * 5000 + "}"), "found a value that cannot be read ("),
        (lambda p, r: p.write_bytes(json.dumps(r).encode().replace(b'"BPR"', b'"BPR\xff"', 1)), "found bytes that are not UTF-8"),
        (lambda p, r: p.write_text("[1, 2]"), "expected a JSON object (a record written by compare), found a JSON list"),
        (lambda p, r: p.write_text(json.dumps({**r, "results": {**r["results"], "cold": {"recall@10": "0.9", "ndcg@10": 0.1}}})),
         "expected results.cold.recall@10 to be a number, found '0.9' (a string)"),
        (lambda p, r: p.write_text(json.dumps({**r, "results": {**r["results"], "cold": {"recall@10": 99.0, "ndcg@10": 0.1}}})),
         "expected results.cold.recall@10 to be a number in [0, 1] (or NaN: no user evaluated), found 99.0"),
        (lambda p, r: p.write_text(json.dumps({**r, "results": {**r["results"], "cold": {"recall@10": 0.5}}})),
         "expected results.cold to hold the metrics ['recall@10', 'ndcg@10'], found ['ndcg@10'] missing"),
        (lambda p, r: p.write_text(json.dumps({**r, "model": "Pop"})), "expected model to be 'BPR', the model of the file's name"),
        (lambda p, r: p.write_text(json.dumps({**r, "seed": 2})),
         "expected seed to be 1, the seed of the file's name (an integer), found 2"),
        (lambda p, r: p.write_text(json.dumps({**r, "seed": "1"})),
         "expected seed to be 1, the seed of the file's name (an integer), found '1'"),
        (lambda p, r: p.write_text(json.dumps({**r, "split_seed": 3})), "expected split_seed to be absent"),
        (lambda p, r: p.write_text(json.dumps({**r, "config": ["epochs", 1]})), "expected config to be an object, found ['epochs', 1]"),
        (lambda p, r: p.write_text(json.dumps({**r, "wall_s": "fast"})), "expected wall_s to be a finite number >= 0 or null"),
        (lambda p, r: p.write_text(json.dumps({**r, "results": {"test": r["results"]["cold"]}})),
         "expected results to be an object of the candidate sets ['cold', 'warm', 'all'], found ['test']"),
    ],
    ids=["empty", "truncated", "huge integer", "not utf-8", "a list", "string metric", "recall 99", "metric missing", "other model",
         "other seed", "seed a string", "split seed", "config a list", "wall_s a string", "unknown candidate set"],
)
def test_a_bad_record_is_one_error_line_naming_it(workdir, capsys, damage, found):
    out = workdir / "res"
    paths = write_records(out, good)
    path = paths[("BPR", 1)]
    damage(path, json.loads(path.read_text()))
    broken = path.read_bytes()
    assert main([*ARGS, "--out", str(out)]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {path}: ") and found in err and "use --rerun to train it again" in err, err
    assert path.read_bytes() == broken and not (out / "summary.md").exists()


def test_a_bad_record_is_trained_again_with_rerun(cold_tiny, workdir, capsys):
    assert compare(workdir, "--models", "Pop", "--seeds", "1") == 0
    path = run_file(workdir / "res", "Pop", 1)
    path.write_text(path.read_text()[:100])  # truncated
    assert compare(workdir, "--models", "Pop", "--seeds", "1") == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {path}: expected a JSON record written by compare, found a parse error (") and ", truncated?)" in err, err
    assert compare(workdir, "--models", "Pop", "--seeds", "1", "--rerun") == 0
    assert "cannot be used (a parse error (" in capsys.readouterr().out
    assert json.loads(path.read_text())["model"] == "Pop"


def test_runs_that_evaluated_no_user_are_counted_apart(workdir, capsys):
    out = workdir / "res"

    def results(model, seed):
        made = good(model, seed)
        if (model, seed) == ("BPR", 2):  # no user of the cold candidates: the run writes NaN
            made["cold"] = {"recall@10": float("nan"), "ndcg@10": float("nan")}
        return made

    write_records(out, results)
    assert "NaN" in run_file(out, "BPR", 2).read_text()
    assert main([*ARGS, "--out", str(out)]) == 0
    cold = (out / "table_cold.md").read_text()
    assert "| BPR | **0.4000** |" in cold  # seed 1 alone (0.4), not the NaN
    assert ("No user evaluated: 1 run(s) evaluated no user among the cold candidates (NaN in their records) and are left out "
            "of the means, sds and tests where they are NaN: BPR: seed 2.") in cold
    assert "No user evaluated" in (out / "summary.md").read_text() and "No user evaluated" not in (out / "table_warm.md").read_text()
    table = pd.read_csv(out / "table_cold.csv").set_index("model")
    assert table.loc["BPR", "n_runs"] == 1 and table.loc["BPR", "n_runs_no_user_evaluated"] == 1
    assert table.loc["Pop", "n_runs"] == 2 and table.loc["Pop", "n_runs_no_user_evaluated"] == 0
    assert pd.read_csv(out / "table_warm.csv").set_index("model").loc["BPR", "n_runs"] == 2


# ---------------------------------------------------------------------------------------------------- writing


def test_an_output_folder_that_cannot_be_written_is_refused_before_training(cold_tiny, workdir, capsys, monkeypatch):
    (workdir / "a-file").write_text("")
    assert compare(workdir, "--models", "Pop", "--seeds", "1", out="a-file/res") == 2
    err = one_error_line(capsys)
    assert f"--out {workdir / 'a-file' / 'res'}: expected a folder this process can write, found" in err
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(workdir / "ro")) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    (workdir / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    assert compare(workdir, "--models", "Pop", "--seeds", "1", out="ro") == 2
    err = capsys.readouterr()
    assert "training" not in err.out  # refused before any work
    assert err.err.startswith(f"error: --out {workdir / 'ro'}: expected a folder this process can write, found OSError: "
                              "Read-only file system") and err.err.count("\n") == 1


@pytest.mark.parametrize("failing", ["Pop-seed2.json", "summary.md", "main_metric.png"])
def test_a_full_disk_while_writing_is_one_error_line_naming_the_file(cold_tiny, workdir, capsys, monkeypatch, failing):
    real_replace = os.replace

    def full(src, dst, *args, **kwargs):
        if os.path.basename(dst) == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    assert compare(workdir, "--models", "Pop", "--seeds", "1", "2") == 2
    err = one_error_line(capsys)
    target = (workdir / "res" / "runs" / failing) if failing.endswith(".json") else workdir / "res" / failing
    assert err.strip() == (f"error: cannot write {target}: no space left on device; free space or give write access there and run "
                   "the same command again (the runs that finished are kept)"), err
    assert run_file(workdir / "res", "Pop", 1).is_file()  # what finished is kept
    assert not [p for p in (workdir / "res").rglob(".*") if p.name != ".compare.lock"]  # no temporary file left


# ---------------------------------------------------------------------------------------------------- diverging runs, rows


def test_a_diverging_run_is_one_error_line_and_the_finished_runs_are_kept(tmp_path):
    from recbole_mamex.trainer.resume import TrainingDivergedError

    def runner(spec, on_epoch):
        model, seed, dataset = spec.model, spec.settings["seed"], spec.dataset
        if model == "B":  # every trainer's loss check
            raise TrainingDivergedError("training diverged: the loss became nan in epoch 3 (learning_rate 0.5). Lower learning_rate")
        return {"model": model, "seed": seed, "dataset": dataset, "wall_s": 0.0, "results": {"cold": {"recall@10": 0.1}}}

    with pytest.raises(CompareError, match=r"B seed 1: training diverged: the loss became nan in epoch 3 \(learning_rate 0.5\)"):
        run_all(fake_plan(["A", "B"], [1], configure=None), tmp_path, runner=runner, log=lambda *_: None)
    assert run_file(tmp_path, "A", 1).is_file()

    def other(spec, on_epoch):
        raise ValueError("a bug, not a divergence")

    with pytest.raises(ValueError, match="a bug") as raised:
        run_all(fake_plan(["C"], [1], configure=None), tmp_path, runner=other, log=lambda *_: None)
    assert not isinstance(raised.value, CompareError)


def test_a_diverging_comparison_names_the_run(cold_tiny, workdir, capsys):
    assert compare(workdir, "--models", "Pop", "BPR", "--seeds", "1", "--learning_rate=1e30", "--epochs=3") == 2
    err = one_error_line(capsys)
    assert err.startswith("error: BPR seed 1: training diverged") and "learning_rate" in err
    assert f"the runs that finished are kept in {workdir / 'res' / 'runs'}" in err
    assert run_file(workdir / "res", "Pop", 1).is_file()


def test_a_row_the_data_cannot_give_is_refused_before_any_training(cold_tiny, workdir, capsys):
    started = time.time()
    assert compare(workdir, "--models", "Pop", "--variant", "MAMEX-video=use_modalities:[video]", "--seeds", "1") == 2
    err = one_error_line(capsys)
    assert err.startswith("error: MAMEX-video: ") and "use_modalities" in err and "['video']" in err
    assert not (workdir / "res" / "runs").exists()  # Pop, the row before it, did not train
    assert time.time() - started < 60


@pytest.mark.parametrize("given, where", [
    (["--seed=7"], "a config entry"),
    (["--variant", "Pop-7=seed:7"], "--variant Pop-7"),
])
def test_a_seed_set_for_every_run_is_refused(cold_tiny, workdir, capsys, given, where):
    # it would give every run of --seeds the same seed, and records whose seed is not their file's
    assert compare(workdir, "--models", "Pop", "--seeds", "1", "2", *given) == 2
    err = one_error_line(capsys)
    assert "seed: expected the seeds in --seeds" in err and where in err
    assert not (workdir / "res" / "runs").exists()


def test_a_runspec_refuses_one_string_for_a_list():
    from recbole_mamex.runspec import RunSpec

    with pytest.raises(TypeError, match="config_files: expected a list of strings, found one string 'my.yaml'"):
        RunSpec("BPR", "d", "my.yaml")
    assert RunSpec("BPR", "d", ["my.yaml"]).config_files == ("my.yaml",)
