"""Comparisons spread over processes (--jobs N) and Ray tasks (--ray): same records as one at a time,
written as runs finish, nothing that trained lost on an error, a task whose worker dies run again."""

import json
import os
import threading
import time

import pytest
import torch

from helpers import fake_plan
from recbole_mamex.compare import main, run_all, run_file
from recbole_mamex.parallel import LocalProcesses, ParallelError, RayTasks, run_concurrently


def fake_record(model, seed):
    return {"model": model, "seed": seed, "dataset": "d", "protocol": "cold", "wall_s": 0.01,
            "results": {"cold": {"recall@10": 0.1 * seed}}}


def test_runs_at_once_are_written_as_they_finish_and_returned_in_job_order(tmp_path):
    running, most = set(), [0]
    lock = threading.Lock()

    def runner(spec, on_epoch):
        model, seed = spec.model, spec.settings["seed"]
        with lock:
            running.add((model, seed))
            most[0] = max(most[0], len(running))
        time.sleep(0.3 if seed == 1 else 0.05)  # seed 1 finishes after seed 2
        on_epoch(0, 0.5)
        with lock:
            running.discard((model, seed))
        return fake_record(model, seed)

    lines = []
    records = run_all(fake_plan(["A", "B"], [1, 2], configure=None), tmp_path, runner=runner, log=lines.append, jobs_at_once=2)
    assert most[0] == 2  # two at once, never more
    assert [(r["model"], r["seed"]) for r in records] == [("A", 1), ("A", 2), ("B", 1), ("B", 2)]
    assert all(run_file(tmp_path, m, s).is_file() for m in "AB" for s in (1, 2))
    finished = [line for line in lines if "finished in" in line]
    assert finished.index("[2/4] A seed 2: finished in 0 s") < finished.index("[1/4] A seed 1: finished in 0 s")
    assert "    A seed 1: epoch 0, valid score 0.5000" in lines


def test_an_error_keeps_the_runs_in_progress_and_skips_the_rest(tmp_path):
    started = []

    def runner(spec, on_epoch):
        model, seed = spec.model, spec.settings["seed"]
        started.append((model, seed))
        if model == "Bad":
            raise ValueError("this run's own error")
        time.sleep(0.3)  # still running when Bad fails
        return fake_record(model, seed)

    with pytest.raises(ValueError, match="this run's own error"):
        run_all(fake_plan(["Bad", "A", "C"], [1], configure=None), tmp_path, runner=runner, log=lambda *_: None,
                jobs_at_once=2)
    assert run_file(tmp_path, "A", 1).is_file()  # running when Bad failed: finished and kept
    assert ("C", 1) not in started and not run_file(tmp_path, "C", 1).exists()  # not started: skipped


def test_an_interrupt_ends_the_tasks_running_and_raises_at_once():
    ended = []

    def slow():
        time.sleep(0.5)
        return "slow"

    def interrupted():
        raise KeyboardInterrupt

    started = time.time()
    with pytest.raises(KeyboardInterrupt):
        for _ in run_concurrently([slow, interrupted, slow], 2, on_interrupt=lambda: ended.append(True)):
            pass
    assert ended == [True]
    assert time.time() - started < 0.45  # did not wait for the slow task


def test_jobs_gives_the_records_of_one_at_a_time(cold_tiny, workdir, capsys):
    (workdir / "fast.yaml").write_text("epochs: 2\ntrain_batch_size: 256\nuse_gpu: False\n")
    base = ["--dataset", "tiny-cold", "--models", "BPR", "MAMEX", "--seeds", "1", "2", "--config_files", "fast.yaml"]
    assert main([*base, "--jobs", "2", "--out", str(workdir / "two")]) == 0
    printed = capsys.readouterr().out
    assert "compare: training on 2 worker processes" in printed
    threads = json.loads(run_file(workdir / "two", "BPR", 1).read_text())["torch_threads"]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # the same threads as a worker: the same floating-point sums
    try:
        assert main([*base, "--out", str(workdir / "one")]) == 0
    finally:
        torch.set_num_threads(before)
    for model in ("BPR", "MAMEX"):
        for seed in (1, 2):
            two = json.loads(run_file(workdir / "two", model, seed).read_text())
            one = json.loads(run_file(workdir / "one", model, seed).read_text())
            assert two["results"] == one["results"] and two["best_epoch"] == one["best_epoch"]
            assert two["config"] == one["config"]
    # the records of --jobs 2 are reused by a command without it (the backend is not a setting)
    assert main([*base, "--out", str(workdir / "two")]) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 4


def test_bad_parallel_arguments_are_refused_before_training(cold_tiny, workdir, capsys):
    base = ["--dataset", "tiny-cold", "--models", "Pop", "--seeds", "1", "--out", str(workdir / "res")]
    assert main([*base, "--jobs", "0"]) == 2
    assert "--jobs: expected a number of runs at once >= 1, found 0" in capsys.readouterr().err
    assert main([*base, "--ray-cpus", "2"]) == 2
    assert "--ray-cpus: expected together with --ray" in capsys.readouterr().err
    assert not (workdir / "res" / "runs").exists()
    with pytest.raises(ParallelError, match="--jobs"):
        LocalProcesses(lambda *a, **k: None, 0)


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is not installed (the [ray] extra)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_reruns_a_task_whose_worker_died(local_ray, tmp_path):
    marker = tmp_path / "first-attempt"

    def dies_once(spec, on_epoch):
        # sent to Ray's workers by value: no name of this test module in here
        import os

        model, seed, dataset = spec.model, spec.settings["seed"], spec.dataset
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker process dies mid-run, as on a lost node
        return {"model": model, "seed": seed, "dataset": dataset, "wall_s": 0.01,
                "results": {"cold": {"recall@10": 0.1 * seed}}, "pid": os.getpid()}

    backend = RayTasks(dies_once, cpus=1, max_retries=2)
    records = run_all(fake_plan(["A"], [1, 2], configure=None), tmp_path, runner=backend.run_one, log=lambda *_: None,
                      jobs_at_once=backend.jobs)
    assert [(r["model"], r["seed"]) for r in records] == [("A", 1), ("A", 2)]
    assert marker.exists() and all(r["pid"] != int(marker.read_text()) for r in records)
    assert json.loads(run_file(tmp_path, "A", 1).read_text())["torch_threads"] == 1

    def fails(*args, **kwargs):
        raise ValueError("the run's own error")

    with pytest.raises(ValueError, match="the run's own error"):  # not retried, raised as itself
        RayTasks(fails).run_one(fake_plan(["A"], [1]).spec("A", 1), None)


def test_compare_on_ray_writes_the_runs_here(local_ray, cold_tiny, workdir, capsys):
    (workdir / "fast.yaml").write_text("epochs: 1\ntrain_batch_size: 256\nuse_gpu: False\n")
    out = workdir / "res"
    args = ["--dataset", "tiny-cold", "--models", "BPR", "Pop", "--seeds", "1", "--config_files", "fast.yaml",
            "--out", str(out), "--ray"]
    assert main(args) == 0
    assert "compare: training on Ray tasks (2 CPUs in the cluster, 1 per run, up to 2 at once)" in capsys.readouterr().out
    for model in ("BPR", "Pop"):
        record = json.loads(run_file(out, model, 1).read_text())
        assert record["torch_threads"] == 1 and set(record["results"]) == {"cold", "warm", "all"}
    assert local_ray.is_initialized()  # a cluster the caller started is left running


def test_rows_tune_at_once_one_trial_of_each_while_both_have_trials_left(workdir):
    from recbole_mamex.compare import Split
    from recbole_mamex.compare.tuning import tune_rows

    (workdir / "properties" / "hyper").mkdir(parents=True)
    for model in ("BPR", "LightGCN"):
        (workdir / "properties" / "hyper" / f"{model}.hyper").write_text("learning_rate loguniform -9.2,-2.3\n")
    running, started = [], []
    lock = threading.Lock()

    def runner(spec, on_epoch):
        model, settings = spec.model, spec.settings
        with lock:
            running.append(model)
            started.append(sorted(running))
        time.sleep(0.02)
        with lock:
            running.remove(model)
        lr = settings["learning_rate"]
        score = -abs(lr - (0.01 if model == "BPR" else 0.001))
        return {"best_valid_score": score, "valid_metric": "NDCG@20", "best_valid": {"ndcg@20": score},
                "best_epoch": 1, "epochs_trained": 2, "wall_s": 0.02}

    def tune(out, jobs, n_trials):
        return tune_rows(fake_plan(["BPR", "LightGCN"], [5]), n_trials, Split(None, "d"), 5, out, runner,
                         log=lambda *_: None, jobs=jobs)

    together = tune(workdir / "two", 2, 6)
    assert max(len(now) for now in started) == 2
    # while both rows had trials left, a second trial went to the other row
    assert ["BPR", "LightGCN"] in started and ["BPR", "BPR"] not in started[:6]
    started.clear()
    alone = tune(workdir / "two", 1, 6)  # the serial search takes every record the parallel one left
    assert started == []
    for row in ("BPR", "LightGCN"):
        assert len(together[row].trials) == 6 and alone[row].params == together[row].params


def validates_poorly(spec, on_epoch):
    """A run (module-level: sent to a worker process by reference) that validates 0.1 at every epoch."""
    for epoch in range(20):
        on_epoch(epoch, 0.1)
    return {"model": spec.model, "seed": spec.settings["seed"], "best_valid_score": 0.1}


def strong_references():
    return tuple(tuple((epoch, 0.9) for epoch in range(20)) for _ in range(3))


def test_a_trial_is_pruned_inside_a_worker_process_and_the_signal_comes_back():
    from recbole_mamex.parallel import EpochLog
    from recbole_mamex.search import PruningMonitor, TrialPruned

    backend = LocalProcesses(validates_poorly, 1)
    try:
        monitor = PruningMonitor(strong_references(), horizon=20, warmup=4)
        with pytest.raises(TrialPruned) as caught:
            backend.run_one(fake_plan(["A"], [1]).spec("A", 1, saved=False), EpochLog("A trial 4", monitor=monitor))
        assert caught.value.info["epoch"] == 4 and caught.value.info["score"] == 0.1
        assert caught.value.info["curve"] == [(e, 0.1) for e in range(5)]
        # without a monitor the same run goes to its end
        assert backend.run_one(fake_plan(["A"], [1]).spec("A", 1), EpochLog("A run"))["best_valid_score"] == 0.1
    finally:
        backend.close()


def test_a_real_training_stops_when_pruned_and_leaves_no_file(cold_tiny, workdir):
    from recbole_mamex.compare import Plan, run_one
    from recbole_mamex.parallel import EpochLog
    from recbole_mamex.search import PruningMonitor, TrialPruned

    (workdir / "fast.yaml").write_text("epochs: 30\ntrain_batch_size: 256\nuse_gpu: False\n")
    monitor = PruningMonitor(strong_references(), horizon=30, warmup=1)
    with pytest.raises(TrialPruned) as caught:
        run_one(Plan("tiny-cold", "cold", ["BPR"], [1], ("fast.yaml",)).spec("BPR", 1, saved=False),
                EpochLog("BPR trial 4", log=lambda *_: None, monitor=monitor))
    info = caught.value.info
    assert info["epoch"] == 1 and len(info["curve"]) == 2 and info["wall_s"] > 0 and info["cpu_s"] > 0
    assert not list(workdir.glob("saved/*.pth"))  # a trial writes no checkpoint, and a pruned one no -last file
