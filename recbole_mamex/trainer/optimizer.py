"""The optimizers this package builds in place of RecBole's.

- ``fused_optimizer: True`` (default): Adam and AdamW with torch's fused kernel (:class:`FusedOptimizerMixin`).
- ``learner: sparse_adam``: lazy Adam on the embedding tables (:class:`LazyEmbeddingAdam`). RecBole maps this
  name to ``torch.optim.SparseAdam`` over every parameter, which fails on the first dense gradient (any
  model with a linear layer); here the embedding tables get sparse gradients and SparseAdam, every other
  parameter plain (fused) Adam.

Why lazy Adam exists here: with dense Adam every step reads and writes every row of every embedding table
(the gradient is allocated dense, the update visits each row), so a step costs in proportion to users +
items and an epoch to interactions x (users + items). With lazy Adam a step of a lookup model (BPR, VBPR,
MAMEX, MILK, CLCRec) touches only the batch's rows; on 16x Amazon Sports that is what keeps the epoch
linear in interactions (``bench/results/scaling_at_scale_settings.md``). The update differs: a row absent from a batch keeps
its moments and is not moved (dense Adam keeps moving it with its decaying momentum), which is TensorFlow's
LazyAdam and torch's SparseAdam rule. Graph models (LightGCN, RLMultimodalRec) read whole tables at every
step, so their gradients are dense and this learner refuses them.
"""

from __future__ import annotations

import torch
from torch import nn

from recbole_mamex.errors import ConfigError
from recbole_mamex.trainer.compose import derive_trainer


def fusable(params) -> bool:
    """Whether torch's fused Adam kernel takes every parameter of ``params`` (dense floating point on the
    CPU or a GPU)."""
    return all(p.is_floating_point() and not p.is_sparse and p.device.type in ("cpu", "cuda") for p in params)


def embedding_tables(model: nn.Module) -> dict[str, nn.Embedding]:
    """The model's trainable ``nn.Embedding`` modules by name (each once, even when shared)."""
    tables, seen = {}, set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and module.weight.requires_grad and id(module) not in seen:
            seen.add(id(module))
            tables[name] = module
    return tables


def make_tables_sparse(model: nn.Module) -> None:
    """Let every embedding table of ``model`` give sparse gradients (its lookups: ``module(ids)``)."""
    for module in embedding_tables(model).values():
        module.sparse = True


class LazyEmbeddingAdam:
    """Adam whose embedding rows move only in the steps that look them up (see the module docstring).

    One optimizer to the trainer: ``torch.optim.SparseAdam`` over the embedding tables, ``torch.optim.Adam``
    (fused when asked) over every other parameter, the same learning rate. ``state_dict`` holds both, so
    checkpoints and resumption work as with one optimizer.
    """

    def __init__(self, model: nn.Module, lr: float, fused: bool = False):
        make_tables_sparse(model)
        tables = embedding_tables(model)
        if not tables:
            raise ConfigError(f"learner: sparse_adam: {type(model).__name__} has no embedding table (nn.Embedding) to update "
                              "lazily; use learner: adam")
        table_ids = {id(m.weight) for m in tables.values()}
        self.names = {id(p): name for name, p in model.named_parameters()}
        sparse = [m.weight for m in tables.values()]
        dense = [p for p in model.parameters() if p.requires_grad and id(p) not in table_ids]
        self.sparse = torch.optim.SparseAdam(sparse, lr=lr)
        self.dense = None
        if dense:
            self.dense = torch.optim.Adam(dense, lr=lr, fused=True) if fused and fusable(dense) else torch.optim.Adam(dense, lr=lr)
        self.model_name = type(model).__name__

    @property
    def optimizers(self) -> list:
        return [self.sparse] + ([self.dense] if self.dense is not None else [])

    @property
    def param_groups(self) -> list:
        return [group for opt in self.optimizers for group in opt.param_groups]

    @property
    def state(self) -> dict:
        return {p: s for opt in self.optimizers for p, s in opt.state.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        for group in self.sparse.param_groups:
            for p in group["params"]:
                if p.grad is not None and not p.grad.is_sparse:
                    raise ConfigError(
                        f"learner: sparse_adam: {self.model_name}'s {self.names.get(id(p), 'embedding table')} got a dense "
                        "gradient: the model reads the whole table in training (a graph model propagates over every row), "
                        "so its rows cannot be updated lazily; use learner: adam"
                    )
        loss = closure() if closure is not None else None
        for opt in self.optimizers:
            opt.step()
        return loss

    def state_dict(self) -> dict:
        return {"lazy_embedding_adam": True, "sparse": self.sparse.state_dict(),
                "dense": self.dense.state_dict() if self.dense is not None else None}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or not state.get("lazy_embedding_adam"):
            raise ConfigError("learner: sparse_adam: the checkpoint's optimizer state is another learner's (dense Adam's "
                              "moments cannot become lazy Adam's); resume with the learner it was trained with")
        self.sparse.load_state_dict(state["sparse"])
        if self.dense is not None:
            self.dense.load_state_dict(state["dense"])

    def __repr__(self) -> str:
        return f"LazyEmbeddingAdam(sparse={self.sparse!r}, dense={self.dense!r})"


class FusedOptimizerMixin:
    """The trainer's optimizer: RecBole's, except

    - Adam and AdamW with torch's fused kernel when ``fused_optimizer`` is True (our default). RecBole builds
      ``torch.optim.Adam(params, lr, weight_decay)``, whose CPU implementation loops over the parameters with
      several element-wise passes each; the fused kernel updates every element in one pass. The update rule
      is the same (up to float rounding); on Amazon Sports with MAMEX it cut the optimizer step from 35 to
      6 ms per batch on one CPU thread. Other optimizers, and parameters the fused kernel does not take
      (sparse, non-float, other devices), keep RecBole's optimizer.
    - ``learner: sparse_adam``: :class:`LazyEmbeddingAdam`; refused with ``weight_decay`` (SparseAdam has
      none), with ``clip_grad_norm`` (torch's clipping takes no sparse gradient) and in a distributed run
      (RecBole's ``sync_grad_loss`` touches every parameter at every step).
    """

    FUSED = (torch.optim.Adam, torch.optim.AdamW)

    def __init__(self, config, model):
        if str(config["learner"]).lower() == "sparse_adam":
            if config["weight_decay"]:
                raise ConfigError(f"learner: sparse_adam takes no weight_decay (a lazy update moves only the batch's rows); "
                                  f"found weight_decay: {config['weight_decay']}; use the model's reg_weight, or learner: adam")
            if config["clip_grad_norm"]:
                raise ConfigError(f"learner: sparse_adam cannot take clip_grad_norm ({config['clip_grad_norm']}): torch's "
                                  "gradient clipping does not take the tables' sparse gradients; use learner: adam")
            if not config["single_spec"]:
                raise ConfigError("learner: sparse_adam does not run with several processes: RecBole's DDP path adds "
                                  "0 x the sum of every parameter to each loss, which makes the tables' gradients dense; "
                                  "use one process, or learner: adam")
        super().__init__(config, model)

    def _build_optimizer(self, **kwargs):
        learner = kwargs.get("learner", self.learner)
        if str(learner).lower() == "sparse_adam" and "params" not in kwargs:
            return LazyEmbeddingAdam(self.model, kwargs.get("learning_rate", self.learning_rate),
                                     fused=bool(self.config["fused_optimizer"]))
        optimizer = super()._build_optimizer(**kwargs)
        if not self.config["fused_optimizer"] or type(optimizer) not in self.FUSED:
            return optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not params or not fusable(params):
            return optimizer
        # every group carries RecBole's settings (lr, weight_decay, ...); only the kernel changes
        groups = [{**group, "fused": True, "foreach": None} for group in optimizer.param_groups]
        return type(optimizer)(groups, fused=True)


def with_fused_optimizer(trainer_class: type) -> type:
    """``trainer_class`` building fused Adam/AdamW or lazy embedding Adam (see :class:`FusedOptimizerMixin`)."""
    return derive_trainer(trainer_class, FusedOptimizerMixin, "Fused", "with fused Adam/AdamW, lazy embedding Adam")
