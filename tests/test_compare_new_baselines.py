"""FREEDOM, ALDI and DropoutNet through ``python -m recbole_mamex.compare``: tuned within their search
spaces next to MAMEX, counted as baselines in the tables, and refused by ``interpret`` (no modality weights)."""

import json
import math
from pathlib import Path

import pandas as pd

from recbole_mamex.compare import main, run_file
from recbole_mamex.compare.tuning import hyper_file_for
from recbole_mamex.tuning import read_params_file

BASELINES = ["FREEDOM", "ALDI", "DropoutNet"]
# the variant fixes a modality selection and one key of FREEDOM's search space (dropout), which its trials
# must then leave out
VARIANT = "FREEDOM-text"
VARIANT_FIXED = {"use_modalities": ["text"], "dropout": 0.9}
ROWS = ["MAMEX", *BASELINES, VARIANT]
N_TRIALS = 2


def inside(value, kind: str, text: str) -> bool:
    """Whether ``value`` is a point of a ``.hyper`` line's space (``kind``, value text)."""
    import ast

    if kind == "choice":
        return value in ast.literal_eval(text)
    bounds = [float(part) for part in text.split(",")]
    low, high = (math.exp(bounds[0]), math.exp(bounds[1])) if kind == "loguniform" else (bounds[0], bounds[1])
    return isinstance(value, (int, float)) and low * (1 - 1e-9) <= value <= high * (1 + 1e-9)


def test_new_baselines_tuned_compared_and_refused_by_interpret(cold_tiny, workdir, capsys):
    out = workdir / "res"
    args = ["--dataset", "tiny-cold", "--models", "MAMEX", *BASELINES,
            "--variant", f"{VARIANT}=use_modalities:[text];dropout:0.9",
            "--tune", str(N_TRIALS), "--protocol", "cold", "--seeds", "1", "--out", str(out),
            "--epochs=1", "--train_batch_size=256", "--use_gpu=False", "--embedding_size=16", "--hidden_sizes=[16]",
            "--teacher_epochs=2", "--teacher_embedding_size=16"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out

    # 1. every row: N_TRIALS trial records whose parameters lie in its model's .hyper space
    for row in ROWS:
        model = "FREEDOM" if row == VARIANT else row
        space = read_params_file(hyper_file_for(model))
        files = sorted((out / "tuning" / row).glob("trial-*.json"))
        assert [f.name for f in files] == [f"trial-{n:03d}.json" for n in range(1, N_TRIALS + 1)], (row, files)
        searched = set(space) - (set(VARIANT_FIXED) if row == VARIANT else set())
        for path in files:
            trial = json.loads(path.read_text())
            assert trial["status"] in ("ok", "repeat"), (path, trial.get("error"))
            assert set(trial["params"]) == searched, (path, trial["params"])
            for name, value in trial["params"].items():
                assert inside(value, *space[name]), (path, name, value, space[name])
            assert trial["config"]["model"] == model
            if row == VARIANT:  # the fixed keys are in the trial's config with the variant's values
                assert {k: trial["config"][k] for k in VARIANT_FIXED} == VARIANT_FIXED
    assert "dropout" in read_params_file(hyper_file_for("FREEDOM"))  # so leaving it out above means something
    search = json.loads((out / "tuning" / VARIANT / "search.json").read_text())
    assert "dropout" not in json.dumps(search) and "reg_weight" in json.dumps(search)

    # 2. a run record per row, and the baselines on the baseline side of "best ours vs best baseline"
    records = {row: json.loads(run_file(out, row, 1).read_text()) for row in ROWS}
    for row, record in records.items():
        assert record["model"] == row and record["tuning"]["trials"] == N_TRIALS
        assert record["config"]["model"] == ("FREEDOM" if row == VARIANT else row)
    assert records[VARIANT]["model_class"] == "FREEDOM" and records[VARIANT]["variant"] == VARIANT_FIXED
    summary = (out / "summary.md").read_text()
    for kind in ("cold", "warm", "all"):
        table = pd.read_csv(out / f"table_{kind}.csv")
        assert list(table["model"]) == ROWS and (table["n_runs"] == 1).all()
        lines = [line for line in (out / f"table_{kind}.md").read_text().splitlines()
                 if line.startswith("| best ours vs best baseline |")]
        assert len(lines) == 1 and lines[0] in summary and lines[0] in printed
        cells = [cell.strip() for cell in lines[0].strip("|").split("|")[1:]]
        metrics = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]  # the default metrics
        assert len(cells) == len(metrics)
        means = table.set_index("model")
        for metric, cell in zip(metrics, cells):
            # ours: MAMEX; the best baseline: the first row with the highest mean among the four baseline rows
            theirs = means.loc[[*BASELINES, VARIANT], f"{metric}_mean"]
            best = theirs.idxmax()
            gain = (means.loc["MAMEX", f"{metric}_mean"] - theirs.max()) / theirs.max()
            assert cell == f"MAMEX vs {best}: {gain:+.1%} (p n/a)", (kind, metric, lines[0])

    # 3. interpret on a FREEDOM checkpoint of the comparison: one error line, exit status 2
    from recbole_mamex.interpret import main as interpret

    checkpoint = Path(records["FREEDOM"]["checkpoint"])
    assert checkpoint.is_file() and checkpoint.name.startswith("FREEDOM-")
    csv = workdir / "weights.csv"
    assert interpret([str(checkpoint), "--out", str(csv)]) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith(f"error: {checkpoint}: "), err
    assert "expected a checkpoint of a model with modality weights" in err and "found one of FREEDOM" in err, err
    assert "Traceback" not in captured.out + err and not csv.exists()
