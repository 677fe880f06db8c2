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
:class:`Recommender` loads a checkpoint once for many calls; :func:`recommend` is the one-call form.
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
    :func:`recbole_mamex.quick_start.load_data_and_model`), answering :meth:`recommend` calls."""

    def __init__(self, checkpoint, allow_changed_features: bool = False):
        from recbole_mamex.quick_start import load_data_and_model

        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise ServingError(self.checkpoint, "a checkpoint file saved by a training run", "no such file")
        config, model, dataset, train_data, valid_data, test_data = load_data_and_model(
            self.checkpoint, allow_changed_features=allow_changed_features
        )
        self.config, self.model, self.dataset = config, model.eval(), dataset
        self.splits = {"train": train_data._dataset, "valid": valid_data._dataset, "test": test_data._dataset}
        self.uid_field, self.iid_field = dataset.uid_field, dataset.iid_field
        self.n_items = dataset.item_num
        self.device = config["device"]
        self._tie_order = tie_break_order(self.n_items, config["seed"]).to(self.device)

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
            if candidates not in CANDIDATE_KINDS:
                raise ServingError(self.checkpoint, f"candidates {list(CANDIDATE_KINDS)} or a list of item tokens", repr(candidates))
            sets = getattr(self.splits[split], "candidate_items", None)
            if sets is None:
                raise ServingError(
                    self.checkpoint, f"a dataset with a train/valid/test split for '{candidates}' candidates", "none"
                )
            mask = np.asarray(sets[candidates], dtype=bool)
            if not mask.any():
                others = [kind for kind in CANDIDATE_KINDS if kind != candidates and np.asarray(sets[kind], dtype=bool).any()]
                raise ServingError(
                    self.checkpoint, f"{candidates} items in the {split} split of dataset '{self.config['dataset']}'",
                    f"none (a dataset without a cold-start split has no cold items); use --candidates {' or '.join(others)}, "
                    "or --items with item tokens",
                )
        else:
            tokens = [str(t) for t in candidates]
            known = self.dataset.field2token_id[self.iid_field]
            unknown = [t for t in tokens if t not in known or known[t] == 0]
            if unknown or not tokens:
                found = f"{len(unknown)} unknown: {unknown[:5]}" if unknown else "an empty list"
                raise ServingError(self.checkpoint, f"item tokens of dataset '{self.config['dataset']}'", found)
            mask = np.zeros(self.n_items, dtype=bool)
            mask[[known[t] for t in tokens]] = True
        return torch.from_numpy(mask.copy()).to(self.device)

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
        if split not in SPLITS:
            raise ServingError(self.checkpoint, f"split one of {list(SPLITS)}", repr(split))
        if not isinstance(k, int) or k < 1:
            raise ServingError(self.checkpoint, "k, a positive integer", repr(k))
        tokens = [str(u) for u in users]
        ids = self.user_ids(tokens)
        mask = self.candidate_mask(candidates, split)
        history = self.history(split) if exclude_history else None
        item_tokens = self.dataset.field2id_token[self.iid_field]
        batch_size = batch_size or full_sort_users_per_batch(self.config, self.n_items)
        result: dict[str, list[Recommendation]] = {}
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            scores = self.scores(batch)
            scores[:, 0] = -np.inf
            if history is not None:
                rows, cols = history[batch].nonzero()
                scores[torch.as_tensor(rows), torch.as_tensor(cols)] = -np.inf
            scores.masked_fill_(~mask, -np.inf)
            top = top_with_tie_order(scores, self._tie_order, min(k, self.n_items))
            top_scores = torch.gather(scores, 1, top)
            for row, token in enumerate(tokens[start : start + batch_size]):
                keep = torch.isfinite(top_scores[row])
                result[token] = [
                    Recommendation(str(item_tokens[i]), float(s))
                    for i, s in zip(top[row][keep].tolist(), top_scores[row][keep].tolist())
                ]
        return result


def recommend(checkpoint, users, k: int = 10, candidates="cold", exclude_history: bool = True, split: str = "test",
              allow_changed_features: bool = False):
    """One call: load ``checkpoint`` and return ``{user token: [Recommendation(item, score), ...]}``."""
    return Recommender(checkpoint, allow_changed_features).recommend(users, k=k, candidates=candidates, exclude_history=exclude_history, split=split)


def build_parser(prog: str = "python -m recbole_mamex.serving") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint saved by run_recbole_mamex (saved/<Model>-<date>.pth)")
    parser.add_argument("--users", nargs="+", required=True, help="user tokens (as in the dataset's files)")
    parser.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    parser.add_argument("--candidates", choices=CANDIDATE_KINDS, default="cold", help="candidate set (default cold)")
    parser.add_argument("--items", nargs="+", help="explicit candidate item tokens (instead of --candidates)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="whose cold items and history (default test)")
    parser.add_argument("--keep-history", action="store_true", help="do not exclude the user's earlier interactions")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tab-separated lines")
    parser.add_argument("--allow-changed-features", action="store_true",
                        help="serve even if the item features differ from those the model was trained on")
    return parser


def main(argv=None, prog: str = "python -m recbole_mamex.serving") -> int:
    args = build_parser(prog).parse_args(argv)
    return report_user_errors(lambda: _serve(args))


def _serve(args) -> int:
    recs = recommend(
        args.checkpoint, args.users, k=args.k, candidates=args.items or args.candidates,
        exclude_history=not args.keep_history, split=args.split, allow_changed_features=args.allow_changed_features,
    )
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
