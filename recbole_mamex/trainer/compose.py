"""How this package's behaviour is put in front of a RecBole trainer: every behaviour is a mixin, and
:func:`derive_trainer` derives a trainer class with one mixin in front. :func:`recbole_mamex.trainer.get_trainer`
chooses which mixins a run gets."""

from __future__ import annotations

_DERIVED: dict[tuple[type, type], type] = {}


def derive_trainer(trainer_class: type, mixin: type, prefix: str, doc: str) -> type:
    """``trainer_class`` with ``mixin`` in front: a subclass named ``<prefix><trainer_class>``, created once
    per (mixin, trainer class) pair and cached; a class that already has ``mixin`` is returned as it is.
    Every behaviour this package adds to RecBole's trainers is such a mixin."""
    if issubclass(trainer_class, mixin):
        return trainer_class
    key = (mixin, trainer_class)
    if key not in _DERIVED:
        _DERIVED[key] = type(
            f"{prefix}{trainer_class.__name__}",
            (mixin, trainer_class),
            {"__module__": mixin.__module__, "__doc__": f"{trainer_class.__name__} {doc}."},
        )
    return _DERIVED[key]
