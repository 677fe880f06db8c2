"""Model lookup that knows this package's classes first and RecBole's after (the way RecBole-GNN extends
RecBole without forking it)."""

from __future__ import annotations

import difflib
import importlib

from recbole.model.abstract_recommender import AbstractRecommender
from recbole.utils import get_model as _recbole_get_model

from recbole_mamex.errors import RecboleMamexError

_RECBOLE_MODEL_PACKAGES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


class UnknownModelError(RecboleMamexError, ValueError):
    """A model name that neither this package nor RecBole defines."""


def _recommenders_in(module) -> dict[str, type]:
    """Concrete recommenders a model package exports (abstract bases are left out: RecBole's live in
    ``recbole.model.abstract_recommender``, ours set ``is_abstract_base = True`` in their own body)."""
    return {name: value for name, value in vars(module).items() if _is_recommender(value)}


def _is_recommender(value) -> bool:
    """Whether ``value`` is a concrete recommender class (not an abstract base, not any other attribute a
    model module happens to hold)."""
    return (
        isinstance(value, type)
        and issubclass(value, AbstractRecommender)
        and value.__module__ != "recbole.model.abstract_recommender"
        and not vars(value).get("is_abstract_base", False)
    )


def our_models() -> dict[str, type]:
    """Models defined by this package, by class name (``recbole_mamex.model`` exports them)."""
    module = importlib.import_module("recbole_mamex.model")
    return _recommenders_in(module)


def proposed_models() -> dict[str, type]:
    """Models this package proposes: :func:`our_models` less the re-implemented baselines (classes with
    ``is_baseline = True``). The "ours" side of :mod:`recbole_mamex.compare`."""
    return {name: cls for name, cls in our_models().items() if not getattr(cls, "is_baseline", False)}


def recbole_model_names() -> list[str]:
    """Every model name RecBole 1.2.1 defines (read from its model packages' exports)."""
    names = []
    for package in _RECBOLE_MODEL_PACKAGES:
        try:
            module = importlib.import_module(f"recbole.model.{package}")
        except Exception:  # exlib needs optional packages (xgboost, lightgbm)
            continue
        names.extend(_recommenders_in(module))
    return sorted(set(names))


def available_model_names() -> list[str]:
    """Ours first, then RecBole's."""
    ours = sorted(our_models())
    return ours + [name for name in recbole_model_names() if name not in ours]


def get_model(model_name: str) -> type:
    """The model class called ``model_name``: ours first, RecBole's after. A name both define is ours:
    ``Random`` is :class:`recbole_mamex.model.random_ranking.Random` (a random ranking per user), not
    RecBole's ``Random`` (one ranking shared by the users of an evaluation batch).

    Raises:
        UnknownModelError: listing the available names (and the closest ones) when neither has it.
    """
    if not isinstance(model_name, str) or not model_name:
        raise UnknownModelError(f"model name must be a non-empty string, got {model_name!r}")
    ours = our_models()
    if model_name in ours:
        return ours[model_name]
    # RecBole's lookup returns whatever attribute of that name the module named after it holds:
    # "random" is the stdlib module recbole/model/general_recommender/random.py imports
    try:
        found = _recbole_get_model(model_name)
    except (ValueError, AttributeError, ImportError):
        found = None
    if _is_recommender(found):
        return found
    names = available_model_names()
    close = difflib.get_close_matches(model_name, names, n=3, cutoff=0.5)
    close += [n for n in names if n.lower() == model_name.lower() and n not in close]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model '{model_name}'.{hint} Available models (ours first, then RecBole's): "
        + ", ".join(names)
    )
