"""Per-item modality weights of a trained model, from its checkpoint, to CSV.

    python -m recbole_mamex.interpret saved/MAMEX-<date>.pth --out mamex_weights.csv

Writes one row per item (original token): the fusion weight of each modality and, for MAMEX, the expert
with the largest gate weight in each modality; prints the mean weight per modality. An existing file is
never replaced without ``--force``; a folder that cannot be written is refused before the checkpoint is
loaded, and a write that fails (a full disk) is one error line, with no file left under the name.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from recbole_mamex.errors import InputFileError
from recbole_mamex.errors import report_user_errors


def modality_report_from_checkpoint(model_file) -> pd.DataFrame:
    from recbole_mamex.bundle import load_model, quiet_loading

    with quiet_loading():
        config, model, dataset, *_ = load_model(model_file)
    if not hasattr(model, "modality_report"):
        raise InputFileError(model_file, "a checkpoint of a model with modality weights (MAMEX, RLMultimodalRec)", f"one of {config['model']}")
    return model.modality_report(dataset.field2id_token[dataset.iid_field])


def summarize(report: pd.DataFrame) -> str:
    weights = [c for c in report.columns if c.startswith("weight_")]
    lines = ["mean fusion weight per modality (all items / items that have the modality):"]
    for column in weights:
        name = column[len("weight_") :]
        has = report.get(f"top_expert_{name}", pd.Series(0, index=report.index)) >= 0
        lines.append(f"  {name}: {report[column].mean():.4f} / {report.loc[has, column].mean():.4f}")
    for column in [c for c in report.columns if c.startswith("top_expert_")]:
        shares = report.loc[report[column] >= 0, column].value_counts(normalize=True).sort_index()
        lines.append(f"  most used expert, {column[len('top_expert_'):]}: " + ", ".join(f"e{int(k)} {v:.1%}" for k, v in shares.items()))
    return "\n".join(lines)


def build_parser(prog: str = "python -m recbole_mamex.interpret") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("model_file", type=Path, help="a checkpoint saved by run_recbole_mamex (saved/<Model>-<date>.pth), or a bundle folder")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    return parser


def main(argv=None, prog: str = "python -m recbole_mamex.interpret") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} already exists; pass --force to replace it", file=sys.stderr)
        return 2
    if not args.model_file.is_file():
        print(f"error: {args.model_file}: expected a checkpoint file, found no such file", file=sys.stderr)
        return 2
    return report_user_errors(lambda: _interpret(args))


def _interpret(args) -> int:
    from recbole_mamex.files import atomic_write_text, check_writable, writing

    check_writable(args.out.parent)
    report = modality_report_from_checkpoint(args.model_file)
    with writing(args.out):
        atomic_write_text(args.out, report.to_csv(index=False))
    print(f"wrote {len(report)} items to {args.out}")
    print(summarize(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
