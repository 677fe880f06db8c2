"""bench/results/README.md indexes every result, and a comparison's summary.md opens its shared settings with
those a reader of the tables needs (the ones that are not RecBole's defaults), not RecBole's field names."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def test_every_result_has_its_line_and_every_line_its_file():
    index = (RESULTS / "README.md").read_text(encoding="utf-8")
    linked = {target.rstrip("/") for target in re.findall(r"\]\(([^)#]+)\)", index)}
    present = {p.name for p in RESULTS.iterdir() if p.name not in ("README.md", "archive")}
    present |= {f"archive/{p.name}" for p in (RESULTS / "archive").iterdir()}
    assert sorted(present - linked) == []  # a result without its line
    assert sorted(t for t in linked if not (RESULTS / t).exists()) == []  # a line without its result
    assert "archive" in linked


def test_summary_opens_with_the_settings_that_are_not_recboles_defaults(cold_tiny, workdir):
    from recbole_mamex.compare import main

    out = workdir / "res"
    argv = ["--dataset", "tiny-cold", "--models", "Pop", "--seeds", "1", "--out", str(out), "--epochs=1", "--stopping_step=3"]
    assert main(argv) == 0
    summary = (out / "summary.md").read_text(encoding="utf-8")
    shared = summary.split("## Settings shared by every run\n\n", 1)[1]
    own, rest = shared.split("RecBole's defaults, its field names and what it derives:", 1)
    assert own.startswith("Not RecBole's defaults (RecBole's value in brackets, where it has one):")
    # set by the command, our overall.yaml and the dataset's yaml, with RecBole's value where it has one
    for line in ("- `epochs`: `1` (RecBole: `300`)", "- `stopping_step`: `3` (RecBole: `10`)", '- `topk`: `[10, 20]` (RecBole: `[10]`)',
                 '- `eval_candidates`: `"cold"`', '- `cold_candidates`: `"split"`', '- `encoding`: `"utf-8-sig"`'):
        assert line in own.splitlines(), line
    # RecBole's own defaults, its internal field names and what it derives come after them
    for line in ('- `ENTITY_ID_FIELD`: `"entity_id"`', '- `NEG_PREFIX`: `"neg_"`', "- `train_batch_size`: `2048`",
                 '- `eval_type`: `"EvaluatorType.RANKING"`', "- `local_rank`: `0`"):
        assert line in rest.splitlines(), line
    assert "eval_args" in rest and "eval_args" not in own  # RecBole's default, as its Config spells it out
