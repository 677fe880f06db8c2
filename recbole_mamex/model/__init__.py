"""Models of this package. Every concrete recommender exported here is found by name by
:func:`recbole_mamex.utils.get_model` before RecBole's own models."""

from recbole_mamex.model.abstract import MultimodalRecommender
from recbole_mamex.model.mamex import MAMEX
from recbole_mamex.model.rlmultimodalrec import RLMultimodalRec

__all__ = ["MultimodalRecommender", "MAMEX", "RLMultimodalRec"]
