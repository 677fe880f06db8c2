"""bench/reproduce_record.py: a record made by `compare` trains again to the same validation curve, with the
record's own settings (not only today's defaults); a changed curve is reported as a difference."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from reproduce_record import main as reproduce  # noqa: E402

from recbole_mamex.compare import main as compare, run_file  # noqa: E402


def test_a_record_trains_again_to_its_curve_and_a_changed_one_is_caught(cold_tiny, workdir, capsys):
    # settings from a config file the record does not name: they must come back from the record itself
    (workdir / "fast.yaml").write_text("epochs: 3\ntrain_batch_size: 128\nlearning_rate: 0.01\nuse_gpu: False\n")
    out = workdir / "res"
    assert compare(["--dataset", "tiny-cold", "--models", "VBPR", "--seeds", "1", "--config_files", "fast.yaml",
                    "--out", str(out)]) == 0
    path = run_file(out, "VBPR", 1)
    record = json.loads(path.read_text())
    assert len(record["valid_curve"]) == 3
    capsys.readouterr()
    assert reproduce([str(path), "--epochs", "3"]) == 0
    assert "identical: valid scores of epochs 0..2 (3 validations)" in capsys.readouterr().out

    # a record that lacks a key today's package has: that key takes today's default and is named
    del record["config"]["feature_storage"]
    record["valid_curve"][1][1] += 0.001
    path.write_text(json.dumps(record))
    assert reproduce([str(path), "--epochs", "3"]) == 1
    printed = capsys.readouterr().out
    assert "keys added since the record, at today's defaults: feature_storage = None" in printed
    assert "differs from epoch 1" in printed
