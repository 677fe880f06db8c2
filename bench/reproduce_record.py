"""Does a stored comparison record still reproduce under the package as it is now?

    python bench/reproduce_record.py bench/results/compare_tuned_lastfm_2k_warm/runs/LightGCN-seed2020.json \
        --epochs 20

A comparison refuses a record whose settings differ from the ones it would use now (``--rerun`` trains it
again). A setting added to the package after the record was made shows up as a difference even where its
default reproduces the earlier behaviour. This script answers the question for one record by training: it
trains the record's own settings (every recorded key, at its recorded value; only the keys added since take
today's defaults) for ``--epochs`` epochs with today's code and compares the validation score of every epoch
with the record's ``valid_curve``. It prints the keys added since (with the default they took) and either
"identical" or the first epoch whose score differs. Identical scores over the first epochs with a seeded,
deterministic CPU run mean the same initialisation, batches, negatives and updates; the record's later
epochs, early stop and test figures then follow from the same trajectory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from recbole_mamex.compare import planned_config, run_one, run_settings  # noqa: E402
from recbole_mamex.runspec import RunSpec  # noqa: E402
from recbole_mamex.config import NEUTRAL_KEYS  # noqa: E402
from recbole_mamex.records import row_settings  # noqa: E402

# settings that only this check changes (the record trained longer), and those that never affect training
CHANGED_HERE = {"epochs"}
NOT_COMPARED = NEUTRAL_KEYS | CHANGED_HERE


def spec_of(record: dict, model: str, settings: dict, saved: bool = True) -> RunSpec:
    """The run of ``record`` (its dataset, seed and protocol) with ``settings``."""
    return RunSpec(model, record["dataset"], (), run_settings(record["seed"], record["protocol"], settings), (), saved)


def settings_of(record: dict, epochs: int) -> tuple[str, dict, dict, list[str]]:
    """(model class, settings to train with, planned config, keys the record lacks): the record's variant
    settings and tuned parameters, then every other recorded key whose value today's defaults would change."""
    model, settings = row_settings(record)
    settings["epochs"] = epochs
    recorded = record["config"]

    def plan():
        return planned_config(spec_of(record, model, settings))

    def differing(now):
        return [k for k in recorded if k not in NOT_COMPARED and k in now and now[k] != recorded[k]]

    now = plan()
    kept = differing(now)
    if kept:
        settings.update({k: recorded[k] for k in kept})
        now = plan()
        if wrong := differing(now):
            raise SystemExit(f"error: the record's {wrong} cannot be set again as recorded")
    added = sorted(k for k in now if k not in recorded and k not in NEUTRAL_KEYS)
    return model, settings, now, added


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", type=Path, help="run records (<out>/runs/*.json)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs to train and compare (default 20)")
    args = parser.parse_args(argv)
    failed = 0
    for path in args.records:
        record = json.loads(path.read_text(encoding="utf-8"))
        model, settings, now, added = settings_of(record, args.epochs)
        print(f"{path}: {record['model']} seed {record['seed']} on {record['dataset']} ({record['protocol']})")
        print("  keys added since the record, at today's defaults: "
              + (", ".join(f"{k} = {now[k]!r}" for k in added) if added else "none"))
        fresh = run_one(spec_of(record, model, settings, saved=False),
                        on_epoch=lambda epoch, score: print(f"    epoch {epoch}: valid {score:.4f}", flush=True))
        old = {int(e): s for e, s in record["valid_curve"]}
        new = {int(e): s for e, s in fresh["valid_curve"]}
        shared = sorted(set(old) & set(new))
        first = next((e for e in shared if old[e] != new[e]), None)
        if not shared:
            print("  no validated epoch in common")
            failed += 1
        elif first is None:
            print(f"  identical: valid scores of epochs {shared[0]}..{shared[-1]} ({len(shared)} validations) "
                  "equal the record's")
        else:
            print(f"  differs from epoch {first}: recorded {old[first]} now {new[first]}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
