r"""Warm teacher
################################################

The pretrained collaborative vectors that ALDI and DropoutNet start from: a BPR matrix factorisation
(Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", UAI 2009)

``s(u, i) = p_u . q_i``, trained on ``-log sigmoid(s(u, i) - s(u, j)) + teacher_reg_weight * (|p_u|^2 +
|q_i|^2 + |q_j|^2) / 2`` (batch means)

with one negative ``j`` per training interaction, drawn uniformly from the items that have a training
interaction (under the item cold-start protocol cold items do not exist yet while the teacher trains;
the ALDI authors' BPR-MF draws its negatives from the warm items too) and, as RecBole's sampler does,
drawn again while it is one of the user's training items (up to 10 times; the ALDI authors keep such a
draw: about 2% of them on Last.fm-2K's cold split).

The teacher is trained inside the model's ``__init__``, on the dataset RecBole passes to the model: the
training split only, never validation or test interactions. It uses plain torch with its own
generator, seeded from the run's ``seed`` (the same teacher on every process of a distributed run, and
the global random state the student's initialisation draws from is left untouched). Each epoch is one
pass over the training interactions in a fresh order, in batches of the run's ``train_batch_size``,
with Adam. A line goes to RecBole's logger every tenth of the epochs.

Its training is part of the run: it counts in the run's wall time and in the tuning's. A trial builds its
model, so it gets its own teacher: the same one when the training pairs, the ``teacher_*`` keys, the batch
size and the seed are unchanged, which a process then reuses instead of training it again (the last
:data:`TEACHERS_KEPT`; the teacher has its own generator, so a reused one changes nothing else in the
run). A checkpoint stores the teacher's vectors; loading one (inside :func:`restoring_saved_weights`)
trains none.

Items without a training interaction (the cold items) get no gradient: their rows are returned as zeros,
and the models never score them with it.

Keys (each model's yaml): ``teacher_embedding_size`` (d), ``teacher_epochs``, ``teacher_learning_rate``,
``teacher_reg_weight``. Defaults: RecBole's BPR (d = 64, Adam with RecBole's default learning rate
1e-3; its BPR has no regularisation term, the ALDI authors' BPR-MF a very light one, hence a light
1e-4 here); the epoch count, since the teacher cannot stop early on validation (validation is the
student's), is fixed: see the model yamls.
"""

from __future__ import annotations

import contextlib
import hashlib
import contextvars
import math
import time
from dataclasses import dataclass, field
from logging import getLogger

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_mamex.errors import ConfigError

TEACHER_KEYS = ("teacher_embedding_size", "teacher_epochs", "teacher_learning_rate", "teacher_reg_weight")


@dataclass
class Teacher:
    """A trained teacher: ``user`` ``[n_users, d]`` and ``item`` ``[n_items, d]`` vectors (frozen; the rows
    of items without a training interaction are zero), the mean training loss of each epoch, the seconds
    its training took."""

    user: torch.Tensor
    item: torch.Tensor
    losses: list = field(default_factory=list)
    seconds: float = 0.0


def training_pairs(dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(users, items)``: internal ids of the interactions of ``dataset`` (RecBole's training split, as the
    model receives it), int64."""
    inter = dataset.inter_feat
    users = np.asarray(inter[dataset.uid_field], dtype=np.int64)
    items = np.asarray(inter[dataset.iid_field], dtype=np.int64)
    return users, items


def teacher_settings(config) -> dict:
    """The teacher's settings from ``config``, checked: a ``ConfigError`` names the key, what was expected
    and what was found."""
    values = {key: config[key] for key in TEACHER_KEYS}
    for key in ("teacher_embedding_size", "teacher_epochs"):
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}: expected an integer >= 1, found {value!r}")
    rate, reg = values["teacher_learning_rate"], values["teacher_reg_weight"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 or not math.isfinite(rate):
        raise ConfigError(f"teacher_learning_rate: expected a number > 0, found {rate!r}")
    if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not reg >= 0 or not math.isfinite(reg):
        raise ConfigError(f"teacher_reg_weight: expected a number >= 0, found {reg!r}")
    batch = config["train_batch_size"]
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"train_batch_size: expected an integer >= 1, found {batch!r}")
    return {"embedding_size": values["teacher_embedding_size"], "epochs": values["teacher_epochs"],
            "learning_rate": float(rate), "reg_weight": float(reg), "batch_size": batch, "seed": int(config["seed"])}


def train_bpr_teacher(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, *, embedding_size: int,
                      epochs: int, learning_rate: float, reg_weight: float, batch_size: int, seed: int,
                      device="cpu", log=None, label: str = "teacher") -> Teacher:
    """Train the BPR-MF teacher of the module docstring on the interactions ``(users, items)`` (internal
    ids; the training split) and return it. ``log``: a function taking one line (default: RecBole's logger
    at INFO)."""
    log = log or getLogger().info
    device = torch.device(device)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)  # CPU: the same draws on any device
    user_weight = torch.empty(n_users, embedding_size)
    item_weight = torch.empty(n_items, embedding_size)
    for weight in (user_weight, item_weight):  # xavier-normal, as RecBole initialises its BPR
        std = math.sqrt(2.0 / (weight.shape[0] + weight.shape[1]))
        weight.normal_(0.0, std, generator=generator)
    user_e = nn.Parameter(user_weight.to(device))
    item_e = nn.Parameter(item_weight.to(device))
    optimizer = torch.optim.Adam([user_e, item_e], lr=learning_rate)

    pair_users = torch.as_tensor(users, dtype=torch.long)
    pair_items = torch.as_tensor(items, dtype=torch.long)
    warm = torch.zeros(n_items, dtype=torch.bool)
    warm[pair_items] = True
    warm_items = torch.nonzero(warm).flatten()
    n = len(pair_users)
    losses = []
    every = max(1, epochs // 10)
    if n == 0:
        raise ValueError(f"{label}: expected training interactions to train on, found none")
    known = torch.unique(pair_users * n_items + pair_items)  # sorted (user, item) keys of the training pairs
    pair_users_d, pair_items_d = pair_users.to(device), pair_items.to(device)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(n, generator=generator)
        negatives = sample_negatives(pair_users[order], warm_items, known, n_items, generator).to(device)
        order = order.to(device)
        total = torch.zeros((), device=device)
        for begin in range(0, n, batch_size):
            rows = order[begin : begin + batch_size]
            u, i, j = user_e[pair_users_d[rows]], item_e[pair_items_d[rows]], item_e[negatives[begin : begin + batch_size]]
            loss = bpr_loss(u, i, j, reg_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(rows)  # summed on the device: no synchronisation per step
        losses.append(float(total) / n)
        if epoch % every == 0 or epoch == epochs:
            log(f"{label} (BPR-MF, d={embedding_size}): epoch {epoch}/{epochs}, loss {losses[-1]:.4f}, "
                f"{time.perf_counter() - start:.1f} s")
    with torch.no_grad():
        keep = warm.to(device).unsqueeze(1)
        item_out = torch.where(keep, item_e.detach(), torch.zeros((), device=device))  # cold rows: zeros
    return Teacher(user=user_e.detach().clone(), item=item_out.clone(), losses=losses,
                   seconds=time.perf_counter() - start)


def sample_negatives(users: torch.Tensor, candidates: torch.Tensor, known: torch.Tensor, n_items: int,
                     generator: torch.Generator, rounds: int = 10) -> torch.Tensor:
    """One item of ``candidates`` per entry of ``users``, uniformly, drawn again (up to ``rounds`` times)
    where ``(user, item)`` is a training pair (``known``: the sorted keys ``user * n_items + item``)."""
    negatives = candidates[torch.randint(len(candidates), (len(users),), generator=generator)]
    for _ in range(rounds):
        clash = torch.isin(users * n_items + negatives, known)
        if not bool(clash.any()):
            break
        negatives[clash] = candidates[torch.randint(len(candidates), (int(clash.sum()),), generator=generator)]
    return negatives


def bpr_loss(user: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, reg_weight: float) -> torch.Tensor:
    """Mean ``-log sigmoid(u . i - u . j)`` over the batch plus ``reg_weight`` times the batch mean of
    ``(|u|^2 + |i|^2 + |j|^2) / 2``."""
    margin = (user * positive).sum(-1) - (user * negative).sum(-1)
    loss = F.softplus(-margin).mean()
    if reg_weight:
        squares = user.pow(2).sum(-1) + positive.pow(2).sum(-1) + negative.pow(2).sum(-1)
        loss = loss + reg_weight * squares.mean() / 2
    return loss


_RESTORING = contextvars.ContextVar("restoring_saved_weights", default=False)
TEACHERS_KEPT = 2  # trained teachers a process keeps for reuse (a comparison worker: one per split, in turn)
_TRAINED: dict = {}


@contextlib.contextmanager
def restoring_saved_weights():
    """Models built in this block get their weights from a checkpoint or a bundle right after (loading,
    serving, ``interpret``): :func:`teacher_for` gives zero vectors of the teacher's shape instead of
    training one, and the saved teacher replaces them."""
    token = _RESTORING.set(True)
    try:
        yield
    finally:
        _RESTORING.reset(token)


def teacher_for(model, config, dataset) -> Teacher:
    """The teacher of ``model`` (a RecBole general recommender being built): trained on ``dataset`` (the
    training split RecBole passes to the model) with the ``teacher_*`` keys of ``config``, on the model's
    device; zeros of its shape inside :func:`restoring_saved_weights` (the saved teacher comes next)."""
    settings = teacher_settings(config)
    if _RESTORING.get():
        d = settings["embedding_size"]
        return Teacher(torch.zeros(model.n_users, d, device=model.device), torch.zeros(model.n_items, d, device=model.device))
    users, items = training_pairs(dataset)
    # the same training pairs, sizes, settings and seed train the same teacher: a process keeps the last few
    # (tuning trials and the runs of one comparison worker train it once)
    key = (hashlib.sha256(np.ascontiguousarray(users, dtype=np.int64).tobytes()
                          + np.ascontiguousarray(items, dtype=np.int64).tobytes()).hexdigest(),
           model.n_users, model.n_items, str(model.device), tuple(sorted(settings.items())))
    if key in _TRAINED:
        kept = _TRAINED[key]
        getLogger().info(f"{type(model).__name__} teacher: the one this process trained with these settings and data")
        return Teacher(kept.user.clone(), kept.item.clone(), list(kept.losses), 0.0)
    teacher = train_bpr_teacher(users, items, model.n_users, model.n_items, device=model.device,
                                label=f"{type(model).__name__} teacher", **settings)
    _TRAINED[key] = teacher
    while len(_TRAINED) > TEACHERS_KEPT:
        _TRAINED.pop(next(iter(_TRAINED)))
    return Teacher(teacher.user.clone(), teacher.item.clone(), list(teacher.losses), teacher.seconds)


def attach_teacher(model, config, dataset) -> Teacher:
    """:func:`teacher_for` ``model``, kept on it: ``teacher_user`` and ``teacher_item`` buffers (saved with a
    checkpoint), ``teacher_seconds`` and ``teacher_losses``. Returns the teacher."""
    teacher = teacher_for(model, config, dataset)
    model.teacher_seconds = teacher.seconds
    model.teacher_losses = teacher.losses
    model.register_buffer("teacher_user", teacher.user)
    model.register_buffer("teacher_item", teacher.item)
    return teacher


# ----------------------------------------------------------------------------- the students' towers
BATCH_NORM_MOMENTUM = 0.1  # torch's momentum of the towers' running statistics (see TanhBlock)

class TanhBlock(nn.Module):
    """``tanh(BatchNorm(W x + b))``, the hidden layer of both authors' towers, batch norm with epsilon 1e-3
    (TensorFlow's) and running statistics updated with momentum :data:`BATCH_NORM_MOMENTUM` = 0.1 (the
    original DropoutNet's decay 0.9; ALDI's code and DropoutNet's later code keep TensorFlow's 0.99, i.e.
    torch's 0.01, under which the statistics evaluation uses lag for tens of epochs on a catalogue of about
    20 batches an epoch such as Last.fm-2K's: a tower's eval-mode outputs were 80% off its training-mode
    outputs after 10 epochs on such a toy, 1% from epoch 5 with 0.1). A training batch of one row uses the
    running statistics (batch statistics of one row are undefined)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.norm = nn.BatchNorm1d(dim_out, momentum=BATCH_NORM_MOMENTUM, eps=1e-3)

    def forward(self, x: torch.Tensor, pre: torch.Tensor | None = None) -> torch.Tensor:
        """``pre``: ``W x + b`` already computed (a first layer over the feature store); ``x`` is then unused."""
        h = self.linear(x) if pre is None else pre
        if self.training and len(h) < 2:
            n = self.norm
            h = F.batch_norm(h, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)
        else:
            h = self.norm(h)
        return torch.tanh(h)


def tanh_tower(dim_in: int, hidden_sizes, dim_out: int) -> nn.ModuleList:
    """``len(hidden_sizes)`` :class:`TanhBlock` layers, then a linear output layer of ``dim_out``."""
    dims = [dim_in, *hidden_sizes]
    layers = [TanhBlock(dims[k], dims[k + 1]) for k in range(len(hidden_sizes))]
    return nn.ModuleList([*layers, nn.Linear(dims[-1], dim_out)])


def run_tower(tower: nn.ModuleList, x: torch.Tensor | None, first: torch.Tensor | None = None) -> torch.Tensor:
    """``tower`` applied to ``x``; ``first``: the first layer's ``W x + b`` already computed (``x`` unused)."""
    h = x
    for k, layer in enumerate(tower):
        if k == 0 and first is not None:
            h = layer(None, pre=first) if isinstance(layer, TanhBlock) else first
        else:
            h = layer(h)
    return h


def first_linear(tower: nn.ModuleList) -> nn.Linear:
    """The linear map of the tower's first layer (its ``W``, ``b``)."""
    layer = tower[0]
    return layer.linear if isinstance(layer, TanhBlock) else layer


def truncated_normal_init(module: nn.Module, std: float = 0.01) -> None:
    """Both authors' initialisation of their towers: linear weights from a normal of ``std`` truncated at
    two standard deviations, biases zero."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def check_hidden_sizes(value) -> list:
    """``hidden_sizes`` checked: a list of integers >= 1 (possibly empty: a linear tower)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ConfigError(f"hidden_sizes: expected a list of integers >= 1 (like [200]), found {value!r}")
    return list(value)


def warm_negatives(negatives: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
    """``negatives`` with every item that has no training interaction (its teacher vector is untrained)
    replaced by an item drawn uniformly from those that have one (only under ``train_neg_items: all``: by
    default a cold split's negatives are warm already)."""
    cold = ~trained[negatives]
    if not bool(cold.any()):
        return negatives
    warm = torch.nonzero(trained).flatten()
    draws = warm[torch.randint(len(warm), (int(cold.sum()),), device=warm.device)]
    out = negatives.clone()
    out[cold] = draws
    return out
