"""A run that the epoch cap ended while it was still improving is named as such: a warning at the end of the
run (RecBole's log and the command line's stderr) and a mark on its row in every comparison table and summary.md.
A run that early stopping ended is not."""

import json

import pandas as pd
import pytest
from recbole.trainer.trainer import Trainer

from recbole_mamex.cli import main as train_main
from recbole_mamex.compare import aggregate, main as compare_main, run_file, to_csv, to_latex, to_markdown, training_summary
from recbole_mamex.quick_start import capped_improving, run_recbole_mamex

from helpers import FAST

CAPPED_LINE = ("warning: best validation after 2 of 2 epochs: still improving at the cap; raise --epochs "
               "(early stopping ends the run when it converges)")


def scripted_valid_scores(monkeypatch, scores):
    """Validations score ``scores`` in turn (their metrics are the real ones): a curve chosen by the test."""
    original, scores = Trainer._valid_epoch, iter(scores)

    def valid_epoch(self, valid_data, show_progress=False):
        _, result = original(self, valid_data, show_progress=show_progress)
        return next(scores), result

    monkeypatch.setattr(Trainer, "_valid_epoch", valid_epoch)


def logged_warnings(caplog) -> str:
    """The warnings through RecBole's logger (the root logger; under pytest, its handlers are pytest's)."""
    return "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")


@pytest.mark.parametrize("best, epochs_trained, expected", [
    (299, 300, True),   # best at the last validation
    (249, 300, True),   # 10 validations (5 epochs apart) without a better one: early stopping had not fired
    (244, 300, False),  # 11: it would have stopped before the cap
    (299, 250, False),  # early stopping ended it (not every epoch trained)
    (None, 300, False),  # no validation (or, resumed, none since)
])
def test_the_rule_counts_stopping_step_in_validations_as_recboles_early_stopping(best, epochs_trained, expected):
    config = {"epochs": 300, "eval_step": 5, "stopping_step": 10, "MODEL_TYPE": "ModelType.GENERAL"}
    assert capped_improving(best, epochs_trained, config) is expected


def test_the_rule_leaves_out_one_pass_models_and_records_without_its_fields():
    config = {"epochs": 1, "eval_step": 1, "stopping_step": 10}
    assert capped_improving(0, 1, {**config, "MODEL_TYPE": "ModelType.GENERAL"})
    assert not capped_improving(0, 1, {**config, "MODEL_TYPE": "ModelType.TRADITIONAL"})  # Pop: one pass whatever epochs says
    assert not capped_improving(0, 1, {})
    # early stopping fired at the last epoch (stopping_step + 1 validations without a better one): converged
    assert not capped_improving(0, 3, {"epochs": 3, "eval_step": 1, "stopping_step": 1})


def test_a_run_capped_while_improving_warns_on_stderr_and_in_the_log(tiny_dataset, monkeypatch, capsys, caplog):
    scripted_valid_scores(monkeypatch, [0.1, 0.2])  # better at every validation: the cap ends it
    code = train_main(["--model=BPR", "--dataset=tiny", "--epochs=2", "--stopping_step=1", "--show_progress=False",
                       "--state=WARNING", "--use_gpu=False"])
    captured = capsys.readouterr()
    assert code == 0 and "best valid" in captured.out
    assert CAPPED_LINE in captured.err.splitlines()
    assert "best validation after 2 of 2 epochs: still improving at the cap" in logged_warnings(caplog)


def test_a_run_that_early_stopped_does_not_warn(tiny_dataset, monkeypatch, capsys, caplog):
    scripted_valid_scores(monkeypatch, [0.3, 0.1, 0.1, 0.1, 0.1])  # peaks at once; stopping_step=1 ends it at epoch 2
    result = run_recbole_mamex(model="BPR", dataset="tiny", config_dict={**FAST, "epochs": 5, "stopping_step": 1},
                               cmd_args=[])
    assert (result["best_epoch"], result["epochs_trained"], result["capped_improving"]) == (0, 3, False)
    assert "still improving at the cap" not in capsys.readouterr().err + logged_warnings(caplog)
    scripted_valid_scores(monkeypatch, [0.1, 0.2])
    result = run_recbole_mamex(model="BPR", dataset="tiny", config_dict={**FAST, "stopping_step": 1}, cmd_args=[])
    assert (result["best_epoch"], result["epochs_trained"], result["capped_improving"]) == (1, 2, True)


def record(model, seed, best_epoch=None, epochs_trained=None, recall=0.5):
    made = {"model": model, "seed": seed, "dataset": "d", "protocol": "cold", "wall_s": 1.0,
            "results": {"cold": {"recall@10": recall, "ndcg@10": recall / 2}}}
    if best_epoch is not None:
        made.update(best_epoch=best_epoch, epochs_trained=epochs_trained,
                    config={"epochs": 40, "eval_step": 1, "stopping_step": 10, "MODEL_TYPE": "ModelType.GENERAL"})
    return made


def test_tables_and_summary_mark_rows_with_runs_capped_while_improving():
    runs = [record("MAMEX", 1, 38, 40, 0.6), record("MAMEX", 2, 20, 31, 0.7),  # one at the cap, one early-stopped
            record("VBPR", 1, 39, 40, 0.4), record("VBPR", 2, 37, 40, 0.45),  # both at the cap
            record("Old", 1, recall=0.3), record("Old", 2, recall=0.2)]  # records from before the fields: not marked
    metrics = ["recall@10", "ndcg@10"]
    c = aggregate(runs, "cold", metrics, our_models={"MAMEX"})
    markdown = to_markdown(c, metrics)
    assert "| MAMEX | **0.6500 ± 0.0707**† | **0.3250 ± 0.0354**† |" in markdown
    assert "| VBPR | 0.4250 ± 0.0354† | 0.2125 ± 0.0177† |" in markdown
    assert "| Old | 0.2500 ± 0.0707 | 0.1250 ± 0.0354 |" in markdown
    note = ("3 of 6 runs ended at the epoch cap while still improving (best validation within stopping_step validations "
            "of epochs): under-trained; raise epochs: MAMEX: 1 of 2 (seed 1); VBPR: 2 of 2 (seed 1, seed 2)")
    assert f"\n† {note}.\n" in markdown
    table = pd.read_csv(__import__("io").StringIO(to_csv(c, metrics))).set_index("model")
    assert table["n_runs_capped_improving"].to_dict() == {"MAMEX": 1, "VBPR": 2, "Old": 0}
    latex = to_latex(c, metrics)
    assert r"\textbf{0.6500 $\pm$ 0.0707}$^\dagger$" in latex and "Old & 0.2500 $\\pm$ 0.0707 & " in latex
    assert f"% $^\\dagger$ {note}" in latex
    summary = training_summary(runs, {"MAMEX": "MAMEX (tuned)"})
    assert "| MAMEX (tuned) | 2 | 29.0 [20, 38] | 35.5 [31, 40] | 1.0 [1, 1] | - | † 1 of 2 |" in summary
    assert "| VBPR | 2 | 38.0 [37, 39] | 40.0 [40, 40] | 1.0 [1, 1] | - | † 2 of 2 |" in summary
    assert "| Old | 2 | - | - | 1.0 [1, 1] | - | - |" in summary
    summary = "\n".join(summary)
    assert "† 3 of 6 runs ended at the epoch cap while still improving" in summary
    unmarked = aggregate([record("Old", 1), record("MAMEX", 1, 20, 31)], "cold", metrics, our_models={"MAMEX"})
    assert "†" not in to_markdown(unmarked, metrics) and "dagger" not in to_latex(unmarked, metrics)
    assert "†" not in "\n".join(training_summary([record("Old", 1), record("MAMEX", 1, 20, 31)], {}))


def test_a_real_comparison_marks_the_run_the_cap_ended(cold_tiny, workdir, caplog):
    out = workdir / "res"
    argv = ["--dataset", "tiny-cold", "--models", "BPR", "Pop", "--seeds", "1", "--out", str(out),
            "--epochs=2", "--train_batch_size=256", "--use_gpu=False"]
    assert compare_main(argv) == 0  # BPR: 2 epochs with patience >= 1 cannot early-stop; Pop: one pass, never marked
    saved = json.loads(run_file(out, "BPR", 1).read_text())
    assert saved["epochs_trained"] == 2 and saved["config"]["stopping_step"] >= 1
    for kind in ("cold", "warm", "all"):
        text = (out / f"table_{kind}.md").read_text()
        assert "† 1 of 2 runs ended at the epoch cap while still improving" in text and "BPR: 1 of 1 (seed 1)" in text
        assert "| BPR |" in text and "| Pop |" in text
        assert [line for line in text.splitlines() if line.startswith("| Pop |")][0].count("†") == 0
        assert [line for line in text.splitlines() if line.startswith("| BPR |")][0].count("†") == 4
        table = pd.read_csv(out / f"table_{kind}.csv").set_index("model")
        assert table["n_runs_capped_improving"].to_dict() == {"BPR": 1, "Pop": 0}
        assert "% $^\\dagger$ 1 of 2 runs" in (out / f"table_{kind}.tex").read_text()
    summary = (out / "summary.md").read_text()
    assert "| peak RSS GB, max | at the cap, still improving |" in summary and "| † 1 of 1 |" in summary
    assert "after 2 of 2 epochs: still improving at the cap" in logged_warnings(caplog)  # BPR's, at the end of its run


def test_tuning_md_marks_a_trial_capped_while_improving(tmp_path):
    """tuning.md marks the best epoch of a finished trial that the cap ended while it still improved (its score
    is a lower bound), not one that early stopping ended, nor a pruned one."""
    from recbole_mamex.compare.stats import CAP_MARK
    from recbole_mamex.compare.tuning import RowTuning, tuning_markdown

    config = {"epochs": 100, "eval_step": 1, "stopping_step": 10, "MODEL_TYPE": "ModelType.GENERAL"}

    def trial(n, best, trained, status="ok"):
        return {"trial": n, "params": {"learning_rate": 0.01 * n}, "status": status, "score": 0.1 * n,
                "config": config, "details": {"best_epoch": best, "epochs_trained": trained, "wall_s": 1.0}}

    trials = [trial(1, 40, 51), trial(2, 97, 100), trial(3, 12, 13, "pruned")]
    tuning = RowTuning("BPR", "BPR", 3, tmp_path / "BPR.hyper", space={"learning_rate": ("uniform", [0.001, 0.1])},
                       trials=trials, best=trials[1], tuned_on={"dataset": "d", "seed": 1})
    text = tuning_markdown({"BPR": tuning}, "t")
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()}
    assert f"| 97{CAP_MARK} | 100 |" in rows["| 2"]
    assert CAP_MARK not in rows["| 1"] and CAP_MARK not in rows["| 3"]
    assert f"{CAP_MARK} 1 trial(s) ended at the epoch cap while still improving" in text
    assert CAP_MARK not in tuning_markdown({"BPR": RowTuning("BPR", "BPR", 1, tmp_path / "BPR.hyper",
                                                             space=tuning.space, trials=trials[:1], best=trials[0],
                                                             tuned_on=tuning.tuned_on)}, "t")
