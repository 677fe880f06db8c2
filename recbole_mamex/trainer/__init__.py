"""Training and evaluation: RecBole's trainers with this package's behaviour in front, composed here only.

- :mod:`~recbole_mamex.trainer.candidates`: top-k collection without dense matrices, candidate-restricted
  evaluation (cold / warm / all items, seeded ties);
- :mod:`~recbole_mamex.trainer.optimizer`: fused Adam, lazy Adam on embedding tables (``learner: sparse_adam``);
- :mod:`~recbole_mamex.trainer.resume`: the resumable last checkpoint;
- :mod:`~recbole_mamex.trainer.distributed`: exact multi-process evaluation;
- :mod:`~recbole_mamex.trainer.compose`: :func:`~recbole_mamex.trainer.compose.derive_trainer`, which puts one
  of these mixins in front of a trainer class.

The mixins share one hook, ``checkpoint_config()`` (the config written into a checkpoint).
"""

from __future__ import annotations

from recbole.utils import get_trainer as _recbole_get_trainer

from recbole_mamex.trainer.candidates import with_candidate_evaluation, with_topk_collector
from recbole_mamex.trainer.distributed import with_distributed_evaluation
from recbole_mamex.trainer.optimizer import with_fused_optimizer
from recbole_mamex.trainer.resume import with_last_checkpoint

__all__ = ["get_trainer"]


def get_trainer(model_type, model_name: str, config=None) -> type:
    """``<Model>Trainer`` from this package if it defines one, else RecBole's choice; given ``config``,
    with fused Adam (``fused_optimizer``) or lazy embedding Adam (``learner: sparse_adam``), top-k metrics collected without dense matrices, a resumable last checkpoint (:mod:`recbole_mamex.trainer.resume`), exact multi-process evaluation for a
    distributed run (:mod:`recbole_mamex.trainer.distributed`), and candidate-restricted evaluation when it sets
    ``eval_candidates`` or ``test_candidates``."""
    trainer = _recbole_get_trainer(model_type, model_name)
    if config is not None:
        trainer = with_topk_collector(with_fused_optimizer(with_last_checkpoint(trainer)))
        if not config["single_spec"]:
            trainer = with_distributed_evaluation(trainer)
    if config is not None and (config["eval_candidates"] is not None or config["test_candidates"]):
        trainer = with_candidate_evaluation(trainer)
    return trainer
