"""One description of a training run, passed from the command lines through compare, tuning, the parallel
backends, the multi-process launcher and :mod:`recbole_mamex.quick_start`.

A run is RecBole's four config layers and the model and dataset they are for: the package's properties,
then ``config_files`` (later ones win), then ``settings`` (RecBole's ``config_dict``: a comparison's seed,
protocol and row settings, a tuning trial's parameters), then ``cmd_args`` (``--key=value`` entries of a
command line; ``None``: read ``sys.argv`` as RecBole does). The seed, the device and every other setting
are config entries, so they are in these layers. ``saved``: write the best checkpoint (a tuning trial does
not). Plain data: it is sent to worker processes and Ray tasks, and a comparison's records keep it
(:meth:`RunSpec.to_record`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping


@dataclass(frozen=True)
class RunSpec:
    """One training run (see the module docstring)."""

    model: str | None = None
    dataset: str | None = None
    config_files: tuple[str, ...] = ()
    settings: Mapping[str, object] = field(default_factory=dict)
    cmd_args: tuple[str, ...] | None = ()
    saved: bool = True

    def __post_init__(self):  # lists given for the tuples are kept as tuples (they cannot change afterwards)
        for name in ("config_files", "cmd_args"):
            if isinstance(getattr(self, name), (str, bytes)):
                raise TypeError(f"RunSpec.{name}: expected a list of strings, found one string {getattr(self, name)!r}")
        object.__setattr__(self, "config_files", tuple(str(f) for f in self.config_files or ()))
        if self.cmd_args is not None:
            object.__setattr__(self, "cmd_args", tuple(self.cmd_args))
        object.__setattr__(self, "settings", dict(self.settings or {}))

    def with_settings(self, **more) -> RunSpec:
        """This run with ``more`` settings on top of its own."""
        return replace(self, settings={**self.settings, **more})

    def config_arguments(self) -> dict:
        """The keyword arguments of RecBole's ``Config`` (and of ``run_recbole``) for this run."""
        return {"model": self.model, "dataset": self.dataset, "config_file_list": list(self.config_files) or None,
                "config_dict": dict(self.settings), "cmd_args": None if self.cmd_args is None else list(self.cmd_args)}

    def to_record(self) -> dict:
        """What a record keeps of it (JSON)."""
        return {"model": self.model, "dataset": self.dataset, "config_files": list(self.config_files),
                "settings": dict(self.settings), "cmd_args": None if self.cmd_args is None else list(self.cmd_args),
                "saved": self.saved}
