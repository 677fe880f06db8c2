"""Small things the tests share: a generated MMRec-layout dataset and a minimal multimodal model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from recbole.model.loss import BPRLoss
from recbole.utils import InputType

from recbole_mamex.model.abstract import MultimodalRecommender

FAST = {
    "epochs": 2,
    "train_batch_size": 256,
    "eval_batch_size": 4096,
    "show_progress": False,
    "use_gpu": False,
    "state": "WARNING",
    "seed": 7,
}


def write_mmrec(
    root: Path,
    n_users: int = 24,
    n_items: int = 30,
    per_user: int = 8,
    seed: int = 0,
    zero_rows: dict[str, list[int]] | None = None,
) -> dict:
    """Write an MMRec-layout dataset (tiny.inter with x_label, text_feat.npy, audio_feat.npy) to ``root``.

    Each user has ``per_user`` distinct random items: the last two go to valid and test. Items therefore
    first appear in a shuffled order, so RecBole's internal ids differ from the tokens.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\trating\tx_label"]
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for k, i in enumerate(items):
            label = 0 if k < per_user - 2 else (1 if k == per_user - 2 else 2)
            lines.append(f"{u}\t{i}\t1\t{label}")
    (root / "tiny.inter").write_text("\n".join(lines) + "\n")
    text = rng.normal(size=(n_items, 8)).astype(np.float32)
    audio = rng.normal(size=(n_items, 4)).astype(np.float64)
    zero_rows = zero_rows if zero_rows is not None else {"text": [5], "audio": [7]}
    text[zero_rows.get("text", [])] = 0.0
    audio[zero_rows.get("audio", [])] = 0.0
    np.save(root / "text_feat.npy", text)
    np.save(root / "audio_feat.npy", audio)
    return {"inter": root / "tiny.inter", "text": text, "audio": audio}


class ContentDot(MultimodalRecommender):
    """Minimal content model for plumbing tests: item = sum of per-modality linear maps of its features."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        d = 8
        self.user_embedding = torch.nn.Embedding(self.n_users, d)
        self.projections = torch.nn.ModuleDict(
            {m: torch.nn.Linear(self.modality_dims[m], d) for m in self.modality_names}
        )
        self.loss = BPRLoss()

    def item_vectors(self, items=None):
        out = 0
        for j, m in enumerate(self.modality_names):
            feats = self.modality_features(m)
            mask = self.modality_mask[:, j : j + 1].float()
            if items is not None:
                feats, mask = feats[items], mask[items]
            out = out + self.projections[m](feats) * mask
        return out

    def calculate_loss(self, interaction):
        u = self.user_embedding(interaction[self.USER_ID])
        pos = self.item_vectors(interaction[self.ITEM_ID])
        neg = self.item_vectors(interaction[self.NEG_ITEM_ID])
        return self.loss((u * pos).sum(-1), (u * neg).sum(-1))

    def predict(self, interaction):
        u = self.user_embedding(interaction[self.USER_ID])
        return (u * self.item_vectors(interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        u = self.user_embedding(interaction[self.USER_ID])
        return (u @ self.item_vectors().T).view(-1)


def write_content_driven(root: Path, n_users=120, n_items=200, per_user=20, latent=4, seed=0) -> Path:
    """MMRec-layout data where preference follows item content: users and items have latent vectors;
    a user interacts with items drawn by softmax(affinity); two modalities are noisy linear views of the
    item latent vectors. Returns the .inter path."""
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, latent))
    items = rng.normal(size=(n_items, latent))
    root.mkdir(parents=True, exist_ok=True)
    lines = ["userID\titemID\trating\tx_label"]
    for u in range(n_users):
        affinity = 3.0 * items @ users[u]
        p = np.exp(affinity - affinity.max())
        chosen = rng.choice(n_items, size=per_user, replace=False, p=p / p.sum())
        lines += [f"{u}\t{i}\t1\t0" for i in chosen]
    (root / "content.inter").write_text("\n".join(lines) + "\n")
    text = items @ rng.normal(size=(latent, 24)) + 0.3 * rng.normal(size=(n_items, 24))
    audio = items @ rng.normal(size=(latent, 12)) + 0.3 * rng.normal(size=(n_items, 12))
    np.save(root / "text_feat.npy", text.astype(np.float32))
    np.save(root / "audio_feat.npy", audio.astype(np.float32))
    return root / "content.inter"


def write_milk_split(src: Path, text: bool = False) -> Path:
    """A tiny dataset in the LATTICE / MILK authors' layout under ``src`` (10 items, 5 of them cold; image
    features, and text features when ``text``)."""
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    (src / "train.txt").write_text("0 1 2 3\n1 2 4\n2 0 1\n")
    (src / "val.txt").write_text("0 5 4\n1 6\n")
    (src / "test.txt").write_text("0 7\n1 8 9 3\n2 2\n")
    np.save(src / "cold_item_index.npy", np.array([5, 6, 7, 8, 9], dtype=np.int64))
    np.save(src / "image_feat.npy", rng.normal(size=(10, 6)).astype(np.float32))
    if text:
        np.save(src / "text_feat.npy", rng.normal(size=(10, 4)).astype(np.float32))
    return src


def settings_config(spec) -> dict:
    """A stand-in for a run's final config in tests that drive fake runs: its model and settings (so a changed
    setting is a changed config, as with the real one)."""
    return {"model": spec.model, **spec.settings}


def fake_plan(rows, seeds, dataset="d", protocol="cold", configure=settings_config, **kwargs):
    """A comparison plan of fake rows (no real model or dataset behind them)."""
    from recbole_mamex.compare import Plan

    return Plan(dataset, protocol, list(rows), list(seeds), configure=configure, **kwargs)
