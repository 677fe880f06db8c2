"""Small things the tests share: generated datasets, a minimal multimodal model, and the building, batches,
scoring and checks the model tests have in common."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.model.loss import BPRLoss
from recbole.utils import InputType, init_seed

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


# ----------------------------------------------------------------------------- models on the generated data
def build_model(model_class, dataset="tiny", **settings):
    """``model_class`` built on the imported ``dataset`` with the FAST settings and ``settings`` over them, seeded
    as a run seeds it. Returns (config, dataset, training loader, model)."""
    from recbole_mamex.config import Config
    from recbole_mamex.data.loading import create_dataset, data_preparation

    config = Config(model=model_class.__name__, dataset=dataset, config_dict={**FAST, **settings}, cmd_args=[])
    data = create_dataset(config)
    train, _, _ = data_preparation(config, data)
    init_seed(config["seed"], True)
    return config, data, train, model_class(config, train._dataset)


def batch(users, pos, neg):
    """A pairwise training batch: each user (internal id) with a positive and a negative item."""
    return Interaction({"user_id": torch.tensor(users), "item_id": torch.tensor(pos), "neg_item_id": torch.tensor(neg)})


def item_id(data, token):
    """The internal id of item ``token`` in dataset ``data``."""
    return data.field2token_id["item_id"][token]


def cold_and_warm_items(model):
    """The internal ids of the items without a training interaction (padding excluded), and of those with one."""
    trained = model.item_has_training
    return torch.nonzero(~trained[1:]).flatten() + 1, torch.nonzero(trained).flatten()


def full_scores(model, users=(1, 2, 3)):
    """Full-sort scores of ``users`` (internal ids), one row each, computed afresh in evaluation mode (loading
    the model's own state drops any evaluation cache)."""
    model.load_state_dict(model.state_dict())
    model.eval()
    with torch.no_grad():
        return model.full_sort_predict(Interaction({"user_id": torch.tensor(users)})).view(len(users), -1)


def check_step_and_scores_with_missing_modalities(model, data):
    """On 'tiny' (item 5 has no text, item 7 no audio): a training loss over batches holding those items is a
    finite scalar with finite gradients (left on the parameters); in evaluation the full-sort scores of users
    1-5 cover the catalogue, are finite and agree with ``predict``. Returns the ids of items 5 and 7."""
    assert (~model.modality_mask[1:]).any(), "fixture has items with a missing modality"
    item5, item7 = item_id(data, "5"), item_id(data, "7")
    model.train()
    loss = model.calculate_loss(batch([1, 2, 3, 4], [item5, item7, 1, 2], [3, 4, item5, item7]))
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name
    model.eval()
    full = model.full_sort_predict(Interaction({"user_id": torch.arange(1, 6)}))
    assert full.shape == (5 * data.item_num,) and torch.isfinite(full).all()
    pairs = Interaction({"user_id": torch.tensor([1, 2, 3]), "item_id": torch.tensor([item5, item7, 4])})
    torch.testing.assert_close(model.predict(pairs), full.view(5, -1)[[0, 1, 2], [item5, item7, 4]])
    return item5, item7


def cold_recall_on_content_data(workdir, model, epochs, **settings):
    """Train ``model`` for ``epochs`` (FAST settings, ``settings`` over them) on write_content_driven data (500
    items) split by the cold-start splitter into dataset 'content' under ``workdir``, the working directory.
    Returns its recall@10 on the cold test items and that of a random ranking of them."""
    from dataset_prep.coldstart import make_cold_dataset, source_from_mmrec
    from recbole_mamex.quick_start import run_recbole_mamex

    inter = write_content_driven(workdir / "raw", n_items=500)
    frame, user_col, item_col, modalities, source = source_from_mmrec(inter.parent, [])
    make_cold_dataset(frame, user_col, item_col, modalities, "content", source, seed=1, log=lambda *_: None)
    config = {**FAST, "epochs": epochs, "stopping_step": epochs, "topk": [10], "metrics": ["Recall"],
              "valid_metric": "Recall@10", **settings}
    result = run_recbole_mamex(model, "content", config_dict=config, saved=False, cmd_args=[])
    n_cold = len(json.loads((workdir / "dataset" / "content" / "content.cold_items.json").read_text())["cold_test"])
    cold, chance = result["test_result_by_candidates"]["cold"]["recall@10"], 10 / n_cold
    print(f"{model} cold recall@10 {cold:.3f}, random {chance:.3f}")
    return cold, chance
