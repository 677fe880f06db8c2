"""compare --tune (equal-budget TPE, selection on validation, resumable trials) and --split-seeds."""

import json
import math

import pandas as pd
import pytest

from recbole_mamex.compare import Split, main, run_file
from recbole_mamex.compare.tuning import tune_rows
from recbole_mamex.errors import CompareError

from helpers import fake_plan


def fake_runner(calls, interrupt_at=None):
    """A run whose validation score rises with the learning rate while its test recall falls."""

    def runner(spec, on_epoch):
        settings = spec.settings
        calls.append(settings["learning_rate"])
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        lr = settings["learning_rate"]
        return {"best_valid_score": lr, "valid_metric": "NDCG@20", "best_valid": {"ndcg@20": lr},
                "results": {"cold": {"recall@20": 1 - lr}}, "best_epoch": 3, "epochs_trained": 9, "wall_s": 0.1}

    return runner


def run_tuning(workdir, runner, n_trials, rerun=False, pruner="median"):
    tunings = tune_rows(fake_plan(["BPR"], [5]), n_trials, Split(None, "d"), 5, workdir / "out", runner, rerun=rerun,
                        log=lambda *_: None, pruner=pruner)
    return tunings["BPR"]


def test_tuning_selects_on_validation_where_test_disagrees(workdir):
    (workdir / "properties" / "hyper").mkdir(parents=True)
    (workdir / "properties" / "hyper" / "BPR.hyper").write_text("learning_rate choice [0.001,0.01,0.1]\n")
    calls = []
    tuning = run_tuning(workdir, fake_runner(calls), 6)
    assert len(tuning.trials) == 6
    assert sorted(calls) == sorted(set(calls))  # a repeated proposal is not trained again
    assert {t["status"] for t in tuning.trials} <= {"ok", "repeat"}
    # the best validation score selects, although the same trial has the worst test recall
    assert tuning.params == {"learning_rate": 0.1}
    assert tuning.best["score"] == max(t["score"] for t in tuning.trials)
    stored = json.loads((workdir / "out" / "tuning" / "BPR" / f"trial-{tuning.best['trial']:03d}.json").read_text())
    assert "results" not in json.dumps(stored)  # trials keep validation only
    assert tuning.label() == "BPR (tuned, 6 trials)" and tuning.record()["params"] == {"learning_rate": 0.1}


def test_interrupted_tuning_goes_on_where_it_stopped(workdir):
    (workdir / "properties" / "hyper").mkdir(parents=True)
    (workdir / "properties" / "hyper" / "BPR.hyper").write_text("learning_rate loguniform -7,-1\n")
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_tuning(workdir, fake_runner(calls, interrupt_at=4), 7)
    assert len(calls) == 4 and len(list((workdir / "out" / "tuning" / "BPR").glob("trial-*.json"))) == 3
    calls.clear()
    resumed = run_tuning(workdir, fake_runner(calls), 7)
    assert len(calls) == 4  # trials 4..7 only
    # the same trials as one uninterrupted search with the same seed
    fresh = run_tuning(workdir / "fresh", fake_runner([]), 7)
    assert [t["params"] for t in resumed.trials] == [t["params"] for t in fresh.trials]
    assert len({t["params"]["learning_rate"] for t in fresh.trials}) == 7
    calls.clear()
    assert run_tuning(workdir, fake_runner(calls), 7).params == resumed.params and calls == []
    # a stored trial made with other settings is refused, or trained again with rerun
    path = workdir / "out" / "tuning" / "BPR" / "trial-002.json"
    trial = json.loads(path.read_text())
    trial["config"]["seed"] = 99
    path.write_text(json.dumps(trial))
    with pytest.raises(ValueError, match="trial-002.json: a finished trial made with other settings.*seed: 99 -> 5"):
        run_tuning(workdir, fake_runner(calls), 7)
    run_tuning(workdir, fake_runner(calls), 7, rerun=True)
    assert len(calls) == 1


def test_failed_trial_is_recorded_and_the_search_goes_on(workdir):
    (workdir / "properties" / "hyper").mkdir(parents=True)
    (workdir / "properties" / "hyper" / "BPR.hyper").write_text("learning_rate loguniform -7,-1\n")
    calls = []
    fine = fake_runner(calls)

    def runner(*args, **kwargs):
        if not calls:
            calls.append("nan")
            from recbole_mamex.trainer.resume import TrainingDivergedError

            raise TrainingDivergedError("training diverged: the loss became nan in epoch 0")
        return fine(*args, **kwargs)

    tuning = run_tuning(workdir, runner, 4)
    assert [t["status"] for t in tuning.trials][0] == "failed" and tuning.best["trial"] != 1
    assert len(tuning.trials) == 4


def test_tuned_comparison_end_to_end(cold_tiny, workdir, capsys):
    (workdir / "properties" / "hyper").mkdir(parents=True, exist_ok=True)
    (workdir / "properties" / "hyper" / "BPR.hyper").write_text("learning_rate choice [0.0001,0.05]\n")
    (workdir / "fast.yaml").write_text("epochs: 2\ntrain_batch_size: 256\nuse_gpu: False\n")
    out = workdir / "res"
    args = ["--dataset", "tiny-cold", "--models", "BPR", "Pop", "--seeds", "1", "2", "--config_files", "fast.yaml",
            "--out", str(out), "--tune", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "BPR (tuned, 3 trials)" in printed and "Pop (untuned: no search space)" in printed
    tuning_md = (out / "tuning.md").read_text()
    trials = [json.loads(p.read_text()) for p in sorted((out / "tuning" / "BPR").glob("trial-*.json"))]
    best = max((t for t in trials if t["score"] is not None), key=lambda t: t["score"])
    for seed in (1, 2):
        record = json.loads(run_file(out, "BPR", seed).read_text())
        assert record["config"]["learning_rate"] == best["params"]["learning_rate"]
        assert record["tuning"]["selected_trial"] == best["trial"] and record["tuning"]["trials"] == 3
    assert f"**{best['score']:.4f}**" in tuning_md
    # no pruner unless asked (--prune median): on Last.fm-2K it selected worse parameters for 4 of 12 rows
    assert json.loads((out / "tuning" / "BPR" / "search.json").read_text())["pruner"] == {"rule": "none"}
    table = pd.read_csv(out / "table_cold.csv")
    assert list(table["label"]) == ["BPR (tuned, 3 trials)", "Pop (untuned: no search space)"]
    assert main(args) == 0  # everything reused
    again = capsys.readouterr().out
    assert "trial 1/3: done before" in again
    assert again.count("done before, skipped (same settings)") == 4


def test_split_seeds_make_splits_and_pair_runs(cold_tiny, workdir, capsys):
    (workdir / "fast.yaml").write_text("epochs: 1\ntrain_batch_size: 256\nuse_gpu: False\n")
    out = workdir / "res"
    args = ["--dataset", "tiny-cold", "--models", "BPR", "Pop", "--seeds", "1", "2", "--split-seeds", "1", "3",
            "--config_files", "fast.yaml", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    # seed 1 is tiny-cold's own split; seed 3 is a new dataset made through dataset_prep.coldstart
    made = workdir / "dataset" / "tiny-cold-split3"
    assert (workdir / "properties" / "dataset" / "tiny-cold-split3.yaml").is_file()
    first = json.loads((cold_tiny / "tiny-cold.cold_items.json").read_text())
    second = json.loads((made / "tiny-cold-split3.cold_items.json").read_text())
    assert second["seed"] == 3 and second["fraction"] == first["fraction"] and second["source"] == first["source"]
    assert set(first["cold_valid"] + first["cold_test"]) != set(second["cold_valid"] + second["cold_test"])
    record = json.loads(run_file(out, "BPR", 2, split_seed=3).read_text())
    assert record["dataset"] == "tiny-cold-split3" and record["split_seed"] == 3
    table = pd.read_csv(out / "table_cold.csv")
    assert (table["n_runs"] == 4).all()  # 2 splits x 2 seeds
    assert "2 cold splits (split seeds [1, 3]) x 2 seeds" in (out / "summary.md").read_text()
    # runs record what early stopping did
    curve = record["valid_curve"]
    assert record["epochs_trained"] == 1 and [e for e, _ in curve] == [0] and record["best_epoch"] == 0
    assert main(args) == 0
    assert capsys.readouterr().out.count("done before, skipped") == 8
    assert main(args[:-2] + ["--split-seeds", "1", "3", "--protocol", "warm"]) == 2
    assert "--split-seeds: expected --protocol cold" in capsys.readouterr().err


def test_pairs_are_split_and_seed():
    from recbole_mamex.compare import aggregate

    def rec(model, split, seed, value):
        return {"model": model, "seed": seed, "split_seed": split, "results": {"cold": {"recall@20": value}}}

    runs = [rec("Ours", s, 1, v) for s, v in ((1, 0.5), (2, 0.7), (3, 0.6))]
    runs += [rec("Base", s, 1, v) for s, v in ((1, 0.4), (2, 0.65), (3, 0.45))]
    c = aggregate(runs, "cold", ["recall@20"], our_models={"Ours"})
    # pairs (split, seed): differences 0.10, 0.05, 0.15 -> t = 2 sqrt(3), df 2
    t = 0.1 / (0.05 / math.sqrt(3))
    assert c.p_value["recall@20"] == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(2 + t * t))), rel=1e-6)


def curve_runner(calls, interrupt_at=None, delay=0.0):
    """A run that validates every epoch: the score climbs to its final value in a number of epochs that
    grows as the learning rate falls (a slow trial), then stays; it early-stops 10 epochs after its best."""

    def runner(spec, on_epoch):
        import time as _time

        lr = spec.settings["learning_rate"]
        calls.append(lr)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        final = 1 - abs(math.log(lr) - math.log(0.05)) / 10
        rise = min(80, int(0.5 / lr))
        curve = []
        for epoch in range(rise + 11):
            score = final * min(1.0, (epoch + 1) / (rise + 1))
            curve.append((epoch, score))
            on_epoch(epoch, score)
            _time.sleep(delay)
        return {"best_valid_score": final, "valid_metric": "NDCG@20", "best_valid": {"ndcg@20": final},
                "best_epoch": rise, "epochs_trained": rise + 11, "wall_s": 0.1, "valid_curve": curve,
                "results": {"cold": {"recall@20": 0.0}}}

    return runner


def lr_space(workdir):
    (workdir / "properties" / "hyper").mkdir(parents=True, exist_ok=True)
    (workdir / "properties" / "hyper" / "BPR.hyper").write_text("learning_rate loguniform -7,-1\n")


def test_a_pruned_trial_is_recorded_with_its_epoch_and_never_selected(workdir):
    lr_space(workdir)
    calls = []
    tuning = run_tuning(workdir, curve_runner(calls), 12)
    pruned = [t for t in tuning.trials if t["status"] == "pruned"]
    assert pruned, [(t["params"], t["status"]) for t in tuning.trials]
    for trial in pruned:
        details = trial["details"]
        # stopped at its pruning epoch, before the end it would have reached, after the warm-up
        lr = trial["params"]["learning_rate"]
        assert 10 <= details["pruned_at"] < min(80, int(0.5 / lr)) + 10
        assert details["epochs_trained"] == details["pruned_at"] + 1 == len(details["valid_curve"])
        assert trial["trial"] > 3  # the first three finish: the median needs them
    assert tuning.best["status"] == "ok" and tuning.best["trial"] not in {t["trial"] for t in pruned}
    stored = json.loads((workdir / "out" / "tuning" / "BPR" / f"trial-{pruned[0]['trial']:03d}.json").read_text())
    assert stored["status"] == "pruned" and stored["details"]["pruned_at"] == pruned[0]["details"]["pruned_at"]
    from recbole_mamex.compare.tuning import tuning_markdown

    text = tuning_markdown({"BPR": tuning}, "t")
    assert f"pruned at epoch {pruned[0]['details']['pruned_at']}" in text and "with the median pruner" in text
    # a pruned trial is never selected, even when its score so far is the highest of all
    from recbole_mamex.search import best_trial

    top = {**pruned[0], "score": 2.0}
    assert best_trial([top, *[t for t in tuning.trials if t is not pruned[0]]])["status"] == "ok"


def test_without_the_pruner_every_trial_trains_to_its_end(workdir):
    lr_space(workdir)
    tunings = tune_rows(fake_plan(["BPR"], [5]), 8, Split(None, "d"), 5, workdir / "out", curve_runner([]),
                        log=lambda *_: None, pruner="none")
    assert {t["status"] for t in tunings["BPR"].trials} <= {"ok", "repeat"}


def test_an_interrupted_pruned_tuning_resumes_to_the_same_selection(workdir):
    lr_space(workdir)
    fresh = run_tuning(workdir / "fresh", curve_runner([]), 12)
    assert any(t["status"] == "pruned" for t in fresh.trials[:8])
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_tuning(workdir, curve_runner(calls, interrupt_at=9), 12)
    calls.clear()
    resumed = run_tuning(workdir, curve_runner(calls), 12)
    assert len(calls) == 4  # trials 9..12 only: the eight stored ones, pruned ones included, are replayed
    assert [(t["params"], t["status"], t["score"]) for t in resumed.trials] == [
        (t["params"], t["status"], t["score"]) for t in fresh.trials]
    assert resumed.best["trial"] == fresh.best["trial"]
    calls.clear()
    assert run_tuning(workdir, curve_runner(calls), 12).params == fresh.params and calls == []


def test_parallel_trials_leave_records_the_serial_search_goes_on_from(workdir):
    import threading

    lr_space(workdir)
    running, most, lock = [0], [0], threading.Lock()
    inner = curve_runner([], delay=0.001)

    def runner(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return inner(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    together = tune_rows(fake_plan(["BPR"], [5]), 8, Split(None, "d"), 5, workdir / "out", runner, log=lambda *_: None,
                         jobs=2, pruner="median")["BPR"]
    assert most[0] == 2  # one row's trials ran two at once
    # two trials out at once were not handed the same parameters (TPE's running trials count as poor ones)
    assert len({t["params"]["learning_rate"] for t in together.trials}) == 8
    calls = []
    serial = run_tuning(workdir, curve_runner(calls), 8)
    assert calls == [] and serial.params == together.params
    assert [t["status"] for t in serial.trials] == [t["status"] for t in together.trials]
    calls.clear()
    more = run_tuning(workdir, curve_runner(calls), 10)  # a larger budget goes on from them
    assert len(calls) == 2 and [t["params"] for t in more.trials[:8]] == [t["params"] for t in together.trials]


def test_rerun_of_another_search_removes_its_trials(workdir):
    lr_space(workdir)
    run_tuning(workdir, curve_runner([]), 6)  # median pruner
    trial_dir = workdir / "out" / "tuning" / "BPR"
    assert len(list(trial_dir.glob("trial-*.json"))) == 6

    def without_pruner(n_trials, rerun=False, calls=None):
        return tune_rows(fake_plan(["BPR"], [5]), n_trials, Split(None, "d"), 5, workdir / "out",
                         curve_runner([] if calls is None else calls), rerun=rerun, log=lambda *_: None, pruner="none")

    with pytest.raises(ValueError, match="trials of another search"):
        without_pruner(3)
    without_pruner(3, rerun=True)
    # the median-pruned search's trials 4-6 are gone: a later search without --rerun does not take them in
    assert sorted(p.name for p in trial_dir.glob("trial-*.json")) == ["trial-001.json", "trial-002.json", "trial-003.json"]
    calls = []
    more = without_pruner(6, calls=calls)
    assert len(calls) == 3 and {t["status"] for t in more["BPR"].trials} <= {"ok", "repeat"}


def test_an_error_in_parallel_trials_stops_the_search_at_once(workdir):
    import threading

    lr_space(workdir)
    started, lock = [], threading.Lock()
    inner = curve_runner([])

    def runner(spec, on_epoch):
        with lock:
            started.append(spec.settings["learning_rate"])
            number = len(started)
        if number == 3:
            raise RuntimeError("out of memory")  # not a divergence: the comparison's own error
        return inner(spec, on_epoch)

    with pytest.raises(RuntimeError, match="out of memory"):
        tune_rows(fake_plan(["BPR"], [5]), 10, Split(None, "d"), 5, workdir / "out", runner, log=lambda *_: None, jobs=2,
                  pruner="median")
    assert len(started) <= 4  # the trial running beside it finishes; no new one starts
    # what finished is kept, and the search goes on from it
    kept = len(list((workdir / "out" / "tuning" / "BPR").glob("trial-*.json")))
    calls = []
    assert len(run_tuning(workdir, curve_runner(calls), 10).trials) == 10 and len(calls) == 10 - kept


def test_the_stalled_rule_lets_a_climbing_trial_train_and_stops_a_stalled_one_below_the_median():
    from recbole_mamex.search import STALL_EPOCHS, PruningMonitor, TrialPruned

    fast = tuple((epoch, min(0.5, 0.1 * (epoch + 1))) for epoch in range(60))  # at 0.5 from epoch 4 on
    references = (fast, fast, fast)

    def stopped_at(curve, stall):
        monitor = PruningMonitor(references, 100, stall=stall)
        try:
            for epoch, score in curve:
                monitor(epoch, score)
        except TrialPruned as pruned:
            return pruned.info["epoch"]
        return None

    climbing = [(epoch, 0.005 * (epoch + 1)) for epoch in range(100)]  # a new best every epoch, below 0.5 until 99
    assert stopped_at(climbing, stall=0) == 10  # the median rule stops it at its warm-up
    assert stopped_at(climbing, stall=STALL_EPOCHS) is None  # still improving: it trains on
    flat = [(epoch, min(0.2, 0.05 * (epoch + 1))) for epoch in range(100)]  # best 0.2 from epoch 3 on
    assert stopped_at(flat, stall=0) == 10
    assert stopped_at(flat, stall=STALL_EPOCHS) == 3 + STALL_EPOCHS
    above = [(epoch, min(0.6, 0.1 * (epoch + 1))) for epoch in range(100)]  # above the median: never stopped
    assert stopped_at(above, stall=STALL_EPOCHS) is None


def test_a_stalled_rule_search_is_its_own_search_and_says_so(workdir):
    lr_space(workdir)
    tunings = tune_rows(fake_plan(["BPR"], [5]), 8, Split(None, "d"), 5, workdir / "out", curve_runner([]),
                        log=lambda *_: None, pruner="stalled")
    search = json.loads((workdir / "out" / "tuning" / "BPR" / "search.json").read_text())
    assert search["pruner"]["rule"] == "stalled" and search["pruner"]["stall_epochs"] > 0
    from recbole_mamex.compare.tuning import tuning_markdown

    assert "only once its best has not improved for" in tuning_markdown(tunings, "t")
    # the same trials under another rule are another search's: refused, not mixed in, and the error says how
    # to go on with the stored one
    with pytest.raises(CompareError, match="Use --prune stalled to go on with that search, another --out"):
        tune_rows(fake_plan(["BPR"], [5]), 8, Split(None, "d"), 5, workdir / "out", curve_runner([]),
                  log=lambda *_: None, pruner="median")
