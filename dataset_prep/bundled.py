"""The datasets bundled with the package: their raw files (``recbole_mamex/bundled/``), how each plain one
is imported, and the cold splits made from them. Every name here has its yaml in the package's
``properties/dataset/`` and is prepared on first use (:func:`dataset_prep.prepare.ensure_bundled`)."""

from __future__ import annotations

from dataclasses import dataclass
from logging import getLogger
from pathlib import Path

from recbole_mamex.paths import bundled_data_dir


@dataclass(frozen=True)
class BundledDataset:
    """Raw MMRec-layout files shipped inside the package (``recbole_mamex/bundled/<name>/``)."""

    name: str
    inter: str
    modalities: dict[str, str]

    @property
    def source_dir(self) -> Path:
        return bundled_data_dir(self.name)

    @property
    def source_label(self) -> str:
        return f"the copy bundled with recbole_mamex (recbole_mamex/bundled/{self.name}, see PROVENANCE.md)"


BUNDLED = {
    "lastfm-2k": BundledDataset(
        name="lastfm-2k",
        inter="lfm2k.inter",
        modalities={"text": "all-MiniLM-L6-v2.npy", "vggish": "vggish.npy", "whisper": "whisper.npy"},
    ),
}

@dataclass(frozen=True)
class BundledColdSplit:
    """A cold-start split of a bundled dataset, made on first use by ``dataset_prep.coldstart``."""

    name: str
    base: str
    fraction: float = 0.2
    seed: int = 2025


BUNDLED_COLD = {
    "lastfm-2k-cold": BundledColdSplit(name="lastfm-2k-cold", base="lastfm-2k"),
    "amazon-sports-cold": BundledColdSplit(name="amazon-sports-cold", base="amazon-sports"),
}


@dataclass(frozen=True)
class BundledS3Rec:
    """An S3Rec-layout graph with item attributes shipped inside the package, imported by
    ``dataset_prep.s3rec`` (a dataset of the same name can also be built from other sources, e.g. with
    image and text features: the first use prepares it only when none is there)."""

    name: str
    sequential: str = "sequential_data.txt"
    attributes: str = "item2attributes.json"
    id_maps: str = "id_maps.json"

    @property
    def source_dir(self) -> Path:
        return bundled_data_dir(self.name)


S3REC_BUNDLED = {"amazon-sports": BundledS3Rec(name="amazon-sports")}


def is_bundled(name: str) -> bool:
    return name in BUNDLED or name in BUNDLED_COLD or name in S3REC_BUNDLED


def prepare_bundled(name: str, out_root, force: bool = False):
    """Import the bundled dataset ``name`` into ``<out_root>/<name>`` (its yaml ships with the package)."""
    from dataset_prep.mmrec import import_mmrec

    spec = BUNDLED[name]
    logger = getLogger()
    return import_mmrec(
        spec.source_dir / spec.inter,
        {m: spec.source_dir / f for m, f in spec.modalities.items()},
        name,
        out_root=out_root,
        force=force,
        write_yaml=False,
        source=spec.source_label,
        log=logger.info,
    )
