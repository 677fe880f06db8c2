"""Models of this package. Every concrete recommender exported here is found by name by
:func:`recbole_mamex.registry.get_model` before RecBole's own models. Classes with ``is_baseline = True``
(VBPR, MILK, CLCRec, ContentProfile, FREEDOM, ALDI, DropoutNet, and Random: RecBole's random ranker with a ranking per user, found by
RecBole's name) are baselines, the others are the models this package proposes
(:func:`recbole_mamex.registry.proposed_models`)."""

from recbole_mamex.model.abstract import MultimodalRecommender
from recbole_mamex.model.aldi import ALDI
from recbole_mamex.model.clcrec import CLCRec
from recbole_mamex.model.content_profile import ContentProfile
from recbole_mamex.model.dropoutnet import DropoutNet
from recbole_mamex.model.freedom import FREEDOM
from recbole_mamex.model.mamex import MAMEX
from recbole_mamex.model.milk import MILK
from recbole_mamex.model.random_ranking import Random
from recbole_mamex.model.rlmultimodalrec import RLMultimodalRec
from recbole_mamex.model.vbpr import VBPR

__all__ = ["MultimodalRecommender", "MAMEX", "RLMultimodalRec", "VBPR", "MILK", "CLCRec", "ContentProfile", "FREEDOM", "ALDI", "DropoutNet", "Random"]
