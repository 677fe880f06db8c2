"""Top-k recommendations for given users from a saved checkpoint, restricted to a candidate set.

    from recbole_mamex.serving import recommend
    recs = recommend("saved/MAMEX-<date>.pth", users=["12", "40"], k=10, candidates="cold")
    # {"12": [("845", 3.71), ("17", 3.02), ...], "40": [...]}   (original tokens, best first)

    python -m recbole_mamex.serving saved/MAMEX-<date>.pth --users 12 40 --k 10 --candidates cold

The ranking is the one the trainer's candidate evaluation uses (:mod:`recbole_mamex.trainer`), for the
split named by ``split`` (``test`` by default, or ``valid``):

- candidates: ``cold`` = the cold items of that split (for a dataset made by ``dataset_prep.coldstart``
  or ``dataset_prep.lattice``, the ``cold_test`` or ``cold_valid`` items of its ``cold_items_file``;
  without that file, every item with no training interaction); ``warm`` = items with a training
  interaction; ``all`` = both; or an explicit list of item tokens;
- with ``exclude_history`` (default), the user's interactions in the splits before ``split`` (train, and
  valid for test) are excluded, as RecBole masks them at evaluation;
- equal scores are ordered by the trainer's fixed, seeded item order (:func:`tie_break_order`).

A user gets fewer than ``k`` items when fewer candidates are left. Scores are the model's own.
:class:`Recommender` loads a checkpoint (or a bundle folder, :mod:`recbole_mamex.bundle`) once for many
calls; :func:`recommend` is the one-call form.

**Items that arrive after training** (:meth:`Recommender.add_items`, ``--new-items DIR``): a model that
scores items from their content (MAMEX, MILK, VBPR's and CLCRec's content parts, ContentProfile,
RLMultimodalRec with ``use_content``) scores them from their features alone, normalised as in training
(:mod:`recbole_mamex.new_items` reads and checks them). They join the catalogue as items without a
training interaction, candidates ``new`` (them only) or ``all+new``, or by token in an explicit list;
in the tie order they come after the dataset's items, among themselves in an order seeded by the
run's seed. A dataset's cold item given again as a new item gets its dataset score.

**Every user at once** (:meth:`Recommender.recommend_all`, ``--all-users --out FILE``): each user's
top-k written to a CSV or Parquet file (columns ``user, rank, item, score``), users scored in batches
of the evaluation's memory rule, with a progress bar; the file is written whole or not at all and an
existing one is only replaced with ``--force``.

Loading for serving is quiet (:func:`recbole_mamex.bundle.quiet_loading`): the config dump and dataset summary that RecBole logs
at INFO while a run is rebuilt are not shown, its warnings and errors are; stdout holds the answer only.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_mamex.errors import RecboleMamexError, report_user_errors
from recbole_mamex.data.loaders import full_sort_users_per_batch
from recbole_mamex.data.dataset import CANDIDATE_KINDS
from recbole_mamex.trainer.candidates import tie_break_order, top_with_tie_order

SPLITS = ("valid", "test")
NEW_KINDS = ("new", "all+new")  # candidates once new items are added
OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet"}


class ServingError(RecboleMamexError, ValueError):
    """A request the checkpoint's data cannot answer; the message names the checkpoint, the expected and
    the found."""

    def __init__(self, checkpoint, expected: str, found: str):
        super().__init__(f"{checkpoint}: expected {expected}, found {found}")


@dataclass(frozen=True)
class Recommendation:
    item: str
    score: float


class Recommender:
    """A checkpoint loaded once (model, dataset and splits, through
    :func:`recbole_mamex.quick_start.load_data_and_model`), answering :meth:`recommend` calls. It loads
    quietly (:func:`recbole_mamex.bundle.quiet_loading`): warnings and errors only."""

    def __init__(self, checkpoint, allow_changed_features: bool = False):
        from recbole_mamex.bundle import load_model, quiet_loading

        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.exists():
            raise ServingError(self.checkpoint, "a checkpoint file saved by a training run, or a bundle folder", "no such file")
        with quiet_loading():
            config, model, dataset, train_data, valid_data, test_data = load_model(self.checkpoint, allow_changed_features)
        self.config, self.model, self.dataset = config, model.eval(), dataset
        self.splits = {"train": train_data._dataset, "valid": valid_data._dataset, "test": test_data._dataset}
        self.uid_field, self.iid_field = dataset.uid_field, dataset.iid_field
        self.n_items = dataset.item_num
        self.device = config["device"]
        self._tie_order = tie_break_order(self.n_items, config["seed"]).to(self.device)
        self.item_tokens = [str(t) for t in dataset.field2id_token[self.iid_field]]
        self.item_ids = {token: i for i, token in enumerate(self.item_tokens) if i}
        self.is_new = np.zeros(self.n_items, dtype=bool)

    # -- new items -------------------------------------------------------------------------------------

    def add_items(self, tokens=None, features=None) -> list[str]:
        """Add items that arrived after training: ``tokens`` (a list) and ``features`` (modality -> ``[m,
        dim]`` array, rows as a feature file holds them), or ``features`` a folder (``items.txt`` and one
        ``<modality>.npy`` each; ``tokens`` None). See :mod:`recbole_mamex.new_items` for the checks and the
        missing-modality rule. Returns the tokens added; they are candidates ``new`` and ``all+new``."""
        from recbole_mamex.model.abstract import MultimodalRecommender
        from recbole_mamex.new_items import new_items_from

        model = self.model
        if not isinstance(model, MultimodalRecommender) or not model.serves_new_items:
            reason = getattr(model, "new_items_refusal", None) or (
                "it scores items by ID embeddings learned from their interactions, which a new item has none of")
            raise ServingError(
                self.checkpoint, "a model that scores items from their content (MAMEX, MILK, VBPR, CLCRec, ContentProfile, "
                "RLMultimodalRec with use_content, FREEDOM, ALDI, DropoutNet) to score new items", f"{self.config['model']}, which cannot: {reason}",
            )
        items = new_items_from(tokens, features, model.modality_dims, self.item_ids)
        before = model.n_items
        model.add_items(items.features, items.mask)
        self.n_items = model.n_items
        # new items after the dataset's in the tie order, among themselves in an order seeded by the run's seed
        extra = tie_break_order(len(items.tokens), int(self.config["seed"] or 0) + before).to(self.device) + before
        self._tie_order = torch.cat([self._tie_order, extra])
        self.item_ids.update({token: before + i for i, token in enumerate(items.tokens)})
        self.item_tokens.extend(items.tokens)
        self.is_new = np.concatenate([self.is_new, np.ones(len(items.tokens), dtype=bool)])
        return list(items.tokens)

    # -- request checks --------------------------------------------------------------------------------

    def user_ids(self, users: Iterable) -> np.ndarray:
        tokens = [str(u) for u in users]
        known = self.dataset.field2token_id[self.uid_field]
        unknown = [t for t in tokens if t not in known]
        if unknown:
            examples = [str(t) for t in self.dataset.field2id_token[self.uid_field][1:4]]
            raise ServingError(
                self.checkpoint,
                f"user tokens of dataset '{self.config['dataset']}' (e.g. {examples})",
                f"{len(unknown)} unknown: {unknown[:5]}",
            )
        return np.array([known[t] for t in tokens], dtype=np.int64)

    def candidate_mask(self, candidates, split: str = "test") -> torch.Tensor:
        """Boolean mask over internal item ids for a candidate kind or a list of item tokens."""
        if isinstance(candidates, str):
            if candidates in NEW_KINDS:
                if not self.is_new.any():
                    raise ServingError(self.checkpoint, f"new items for '{candidates}' candidates (add_items, --new-items DIR)", "none added")
                mask = self.is_new.copy()
                if candidates == "all+new":
                    mask |= self._dataset_kind_mask("all", split)
                return torch.from_numpy(mask).to(self.device)
            if candidates not in CANDIDATE_KINDS:
                kinds = list(CANDIDATE_KINDS) + (list(NEW_KINDS) if self.is_new.any() else [])
                raise ServingError(self.checkpoint, f"candidates {kinds} or a list of item tokens", repr(candidates))
            mask = self._dataset_kind_mask(candidates, split)
            if not mask.any():
                sets = self.splits[split].candidate_items
                others = [kind for kind in CANDIDATE_KINDS if kind != candidates and np.asarray(sets[kind], dtype=bool).any()]
                raise ServingError(
                    self.checkpoint, f"{candidates} items in the {split} split of dataset '{self.config['dataset']}'",
                    f"none (a dataset without a cold-start split has no cold items); use --candidates {' or '.join(others)}, "
                    "or --items with item tokens",
                )
        else:
            tokens = [str(t) for t in candidates]
            unknown = [t for t in tokens if t not in self.item_ids]
            if unknown or not tokens:
                found = f"{len(unknown)} unknown: {unknown[:5]}" if unknown else "an empty list"
                raise ServingError(self.checkpoint, f"item tokens of dataset '{self.config['dataset']}' or added ones", found)
            mask = np.zeros(self.n_items, dtype=bool)
            mask[[self.item_ids[t] for t in tokens]] = True
        return torch.from_numpy(mask.copy()).to(self.device)

    def _dataset_kind_mask(self, kind: str, split: str) -> np.ndarray:
        """``kind``'s items of the dataset as a mask over the catalogue (added items: False)."""
        sets = getattr(self.splits[split], "candidate_items", None)
        if sets is None:
            raise ServingError(self.checkpoint, f"a dataset with a train/valid/test split for '{kind}' candidates", "none")
        mask = np.zeros(self.n_items, dtype=bool)
        dataset_mask = np.asarray(sets[kind], dtype=bool)
        mask[: len(dataset_mask)] = dataset_mask
        return mask

    def history(self, split: str):
        """Users x items CSR matrix of the interactions in the splits before ``split``."""
        before = ("train",) if split == "valid" else ("train", "valid")
        matrix = None
        for name in before:
            part = self.splits[name].inter_matrix(form="csr").astype(bool)
            matrix = part if matrix is None else (matrix + part)
        return matrix

    # -- scoring ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def scores(self, user_ids: np.ndarray) -> torch.Tensor:
        """The model's scores of every item for ``user_ids`` ([n_users, n_items]), as the trainer gets them."""
        interaction = self.dataset.join(Interaction({self.uid_field: torch.as_tensor(user_ids)})).to(self.device)
        try:
            scores = self.model.full_sort_predict(interaction)
        except NotImplementedError:  # models without full-sort scoring, as RecBole's trainer does
            pairs = interaction.repeat_interleave(self.n_items)
            pairs.update(Interaction({self.iid_field: torch.arange(self.n_items).repeat(len(user_ids))}).to(self.device))
            scores = self.model.predict(pairs)
        return scores.view(len(user_ids), self.n_items).float()

    def _checked_request(self, k, split):
        if split not in SPLITS:
            raise ServingError(self.checkpoint, f"split one of {list(SPLITS)}", repr(split))
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ServingError(self.checkpoint, "k, a positive integer", repr(k))

    def _top(self, ids: np.ndarray, k: int, mask: torch.Tensor, history, batch_size: int | None):
        """``(start, top item ids [b, k'], their scores)`` per batch of ``ids`` (masked items score -inf)."""
        batch_size = batch_size or full_sort_users_per_batch(self.config, self.n_items)
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            scores = self.scores(batch)
            scores[:, 0] = -np.inf
            if history is not None:
                rows, cols = history[batch].nonzero()
                scores[torch.as_tensor(rows), torch.as_tensor(cols)] = -np.inf
            scores.masked_fill_(~mask, -np.inf)
            top = top_with_tie_order(scores, self._tie_order, min(k, self.n_items))
            yield start, top, torch.gather(scores, 1, top)

    def recommend(
        self,
        users: Sequence,
        k: int = 10,
        candidates="cold",
        exclude_history: bool = True,
        split: str = "test",
        batch_size: int | None = None,
    ) -> dict[str, list[Recommendation]]:
        """Top-``k`` candidate items for each user token, best first; see the module docstring.
        Users are scored ``batch_size`` at a time (default: as many as a full-sort evaluation batch
        holds, :func:`recbole_mamex.data.loaders.full_sort_users_per_batch`)."""
        self._checked_request(k, split)
        tokens = [str(u) for u in users]
        ids = self.user_ids(tokens)
        mask = self.candidate_mask(candidates, split)
        history = self.history(split) if exclude_history else None
        result: dict[str, list[Recommendation]] = {}
        for start, top, top_scores in self._top(ids, k, mask, history, batch_size):
            for row, token in enumerate(tokens[start : start + len(top)]):
                keep = torch.isfinite(top_scores[row])
                result[token] = [
                    Recommendation(self.item_tokens[i], float(s))
                    for i, s in zip(top[row][keep].tolist(), top_scores[row][keep].tolist())
                ]
        return result

    def recommend_all(
        self,
        out,
        k: int = 10,
        candidates="cold",
        exclude_history: bool = True,
        split: str = "test",
        batch_size: int | None = None,
        force: bool = False,
        progress: bool = True,
    ) -> int:
        """Every user's top-``k`` (as :meth:`recommend`) written to ``out`` (``.csv`` or ``.parquet``; columns
        ``user, rank, item, score``, users in id order, best first), batch by batch, with a progress bar on
        stderr. A user with no candidate left (all seen, with ``exclude_history``) has no row. ``out`` is
        written whole or not at all; an existing file is refused unless ``force``. Returns the number of
        rows written."""
        from tqdm import tqdm

        from recbole_mamex.files import atomic_path, check_writable, writing

        out = Path(out)
        fmt = OUTPUT_FORMATS.get(out.suffix.lower())
        if fmt is None:
            raise ServingError(out, f"an output file ending in {' or '.join(OUTPUT_FORMATS)}", repr(out.suffix or out.name))
        if out.is_dir():
            raise ServingError(out, "an output file", "a folder")
        if out.exists() and not force:
            raise ServingError(out, "a file name not taken (or --force to replace it)", "an existing file")
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ServingError(out, "pyarrow for a Parquet file (pip install pyarrow), or a .csv file", "no pyarrow") from None
        self._checked_request(k, split)
        check_writable(out.parent)
        mask = self.candidate_mask(candidates, split)
        history = self.history(split) if exclude_history else None
        ids = np.arange(1, self.dataset.user_num, dtype=np.int64)
        user_tokens = np.asarray([str(t) for t in self.dataset.field2id_token[self.uid_field]], dtype=object)
        item_tokens = np.asarray(self.item_tokens, dtype=object)
        batch_size = batch_size or full_sort_users_per_batch(self.config, self.n_items)
        written = 0
        with writing(out), atomic_path(out, suffix=out.suffix) as tmp:
            writer = _TableWriter(tmp, fmt)
            bar = tqdm(total=len(ids), unit="user", desc=f"top-{k} of every user", disable=not progress, file=sys.stderr)
            try:
                for start, top, top_scores in self._top(ids, k, mask, history, batch_size):
                    keep = torch.isfinite(top_scores).cpu().numpy()
                    users = np.repeat(ids[start : start + len(top)], keep.sum(axis=1))
                    ranks = (np.cumsum(keep, axis=1))[keep]
                    writer.write({
                        "user": user_tokens[users].tolist(), "rank": ranks.astype(np.int32),
                        "item": item_tokens[top.cpu().numpy()[keep]].tolist(),
                        "score": top_scores.cpu().numpy()[keep].astype(np.float32),
                    })
                    written += int(keep.sum())
                    bar.update(len(top))
            finally:
                bar.close()
                writer.close()
        return written


class _TableWriter:
    """Rows appended to one CSV or Parquet file, batch by batch, under one schema: ``user`` and ``item``
    strings, ``rank`` int32, ``score`` float32 (a batch without rows changes nothing)."""

    COLUMNS = ("user", "rank", "item", "score")

    def __init__(self, path: Path, fmt: str):
        self.fmt = fmt
        if fmt == "csv":
            self._file = open(path, "w", encoding="utf-8", newline="")
            self._file.write(",".join(self.COLUMNS) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._schema = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()), ("score", pa.float32())])
            self._file = pq.ParquetWriter(path, self._schema)

    def write(self, columns: dict) -> None:
        import pandas as pd

        if not len(columns["user"]):
            return
        if self.fmt == "csv":
            pd.DataFrame(columns).to_csv(self._file, index=False, header=False)
            return
        import pyarrow as pa

        self._file.write_table(pa.Table.from_pydict({name: columns[name] for name in self.COLUMNS}, schema=self._schema))

    def close(self) -> None:
        self._file.close()


def recommend(checkpoint, users, k: int = 10, candidates="cold", exclude_history: bool = True, split: str = "test",
              allow_changed_features: bool = False):
    """One call: load ``checkpoint`` and return ``{user token: [Recommendation(item, score), ...]}``."""
    return Recommender(checkpoint, allow_changed_features).recommend(users, k=k, candidates=candidates, exclude_history=exclude_history, split=split)


def build_parser(prog: str = "python -m recbole_mamex.serving") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0],
        epilog=f"{prog} export CHECKPOINT --out DIR writes a bundle (safetensors and JSON, no pickle) that serves "
        "anywhere: pass the folder wherever a checkpoint is accepted",
    )
    parser.add_argument("checkpoint", type=Path,
                        help="a checkpoint saved by run_recbole_mamex (saved/<Model>-<date>.pth), or a bundle folder")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", nargs="+", help="user tokens (as in the dataset's files)")
    who.add_argument("--all-users", action="store_true", help="every user of the dataset, written to --out")
    parser.add_argument("--out", type=Path, help="with --all-users: the output file, .csv or .parquet (user, rank, item, score)")
    parser.add_argument("--force", action="store_true", help="with --all-users: replace an existing --out file")
    parser.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    parser.add_argument("--candidates", choices=CANDIDATE_KINDS + NEW_KINDS, default="cold",
                        help="candidate set (default cold; new and all+new with --new-items)")
    parser.add_argument("--items", nargs="+", help="explicit candidate item tokens (instead of --candidates)")
    parser.add_argument("--new-items", type=Path, metavar="DIR",
                        help="items that arrived after training: a folder with items.txt (one token per line) and one "
                        "<modality>.npy per modality, rows in items.txt's order; scored from their features")
    parser.add_argument("--split", choices=SPLITS, default="test", help="whose cold items and history (default test)")
    parser.add_argument("--keep-history", action="store_true", help="do not exclude the user's earlier interactions")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tab-separated lines")
    parser.add_argument("--allow-changed-features", action="store_true",
                        help="serve even if the item features differ from those the model was trained on")
    return parser


def build_export_parser(prog: str = "python -m recbole_mamex.serving") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{prog} export",
        description="Write a model bundle: weights as safetensors, config, token maps and feature statistics as JSON, "
        "and a copy of the dataset's files; it loads without unpickling anything.",
    )
    parser.add_argument("checkpoint", type=Path, help="a checkpoint saved by run_recbole_mamex")
    parser.add_argument("--out", type=Path, required=True, help="the bundle folder to create (new or empty)")
    parser.add_argument("--allow-changed-features", action="store_true",
                        help="export even if the item features differ from those the model was trained on")
    return parser


def parse_command_line(argv=None, prog: str = "python -m recbole_mamex.serving") -> argparse.Namespace:
    """The serving command line (``command``: ``serve``) or its ``export`` sub-command (``command``: ``export``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        args = build_export_parser(prog).parse_args(argv[1:])
        args.command = "export"
        return args
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.all_users and args.out is None:
        parser.error("--all-users needs --out FILE (.csv or .parquet)")
    if args.out is not None and not args.all_users:
        parser.error("--out goes with --all-users (recommendations for --users are printed)")
    args.command = "serve"
    return args


def main(argv=None, prog: str = "python -m recbole_mamex.serving") -> int:
    args = parse_command_line(argv, prog)
    return report_user_errors(lambda: _export(args) if args.command == "export" else _serve(args))


def _export(args) -> int:
    from recbole_mamex.bundle import export_bundle, quiet_loading

    with quiet_loading():
        out = export_bundle(args.checkpoint, args.out, allow_changed_features=args.allow_changed_features)
    print(f"wrote bundle {out}")
    return 0


def _serve(args) -> int:
    server = Recommender(args.checkpoint, args.allow_changed_features)
    if args.new_items is not None:
        added = server.add_items(features=args.new_items)
        print(f"added {len(added)} new items from {args.new_items}", file=sys.stderr)
    candidates = args.items or args.candidates
    if args.all_users:
        rows = server.recommend_all(args.out, k=args.k, candidates=candidates, exclude_history=not args.keep_history,
                                    split=args.split, force=args.force)
        print(f"wrote {rows} recommendations for {server.dataset.user_num - 1} users to {args.out}")
        return 0
    recs = server.recommend(args.users, k=args.k, candidates=candidates, exclude_history=not args.keep_history, split=args.split)
    if args.json:
        print(json.dumps({u: [{"item": r.item, "score": r.score} for r in items] for u, items in recs.items()}, indent=1))
    else:
        print("user\trank\titem\tscore")
        for user, items in recs.items():
            for rank, rec in enumerate(items, start=1):
                print(f"{user}\t{rank}\t{rec.item}\t{rec.score:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
