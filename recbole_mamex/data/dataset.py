"""RecBole dataset that also carries the multimodal item features and the cold/warm item sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from recbole.data.dataset import Dataset
from recbole.utils import FeatureType, set_color

from recbole_mamex.data.features import (
    FeatureFileError, InputFileError, ItemFeatures, load_item_features, parse_modalities, present_modalities,
)
from recbole_mamex.files import read_json

CANDIDATE_KINDS = ("cold", "warm", "all")
SPLIT_NAMES = ("train", "valid", "test")


class DatasetFileError(InputFileError):
    """A file of a dataset that cannot be used; the message names the file, the expected and the found."""


COLD_CANDIDATE_RULES = ("split", "all_cold")  # cold_candidates: the values Config accepts


def modality_selection(value) -> list | None:
    """``use_modalities`` as a list of names (None: every modality). The command line hands RecBole's
    config a string: ``[text, audio]`` and ``text`` are read as yaml, ``~`` / ``none`` as None."""
    if isinstance(value, str):
        from recbole_mamex.files import load_yaml

        value = load_yaml(value) if value.strip().lower() not in ("none", "") else None
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def selected_modality_specs(config, dataset_path, dataset_name) -> tuple[list, list]:
    """``(specs, left out)``: the modalities a dataset built from ``config`` loads now, those of the yaml's
    ``modalities`` whose file is there (optional ones may be absent) and that ``use_modalities`` selects,
    and the optional ones left out because their file is absent."""
    wanted = modality_selection(config["use_modalities"])
    specs, left_out = present_modalities(parse_modalities(config["modalities"], dataset_path), wanted or ())
    if wanted is not None and specs:
        names = [spec.name for spec in specs]
        unknown = [name for name in wanted if name not in names]
        if unknown or not wanted:
            raise FeatureFileError(
                None, f"use_modalities: a non-empty list of the modalities of dataset '{dataset_name}' ({names})",
                f"{wanted!r}",
            )
        specs = [spec for spec in specs if spec.name in wanted]  # the others are never read
    return specs, left_out


class ColdItemsFileError(DatasetFileError):
    """A ``cold_items_file`` that cannot be used."""


class InterFileError(DatasetFileError):
    """An atomic ``.inter`` file that RecBole would misread (or read as nothing) without saying so."""


class MultimodalDataset(Dataset):
    """RecBole's :class:`~recbole.data.dataset.Dataset` plus :attr:`item_features` and item candidate sets.

    With no ``modalities`` in the config, ``item_features`` is ``None`` and the dataset is RecBole's.
    With them, the features are read, validated and aligned to internal item ids once, right after
    RecBole has remapped the ids; the train/valid/test copies share them.

    :meth:`build` labels its three parts ``split_name`` train/valid/test and gives the valid and test
    parts :attr:`candidate_items`, boolean masks over internal item ids:

    - ``warm``: items with at least one training interaction;
    - ``cold``: the cold items of this split, from ``cold_items_file`` (json with ``cold_valid`` and
      ``cold_test`` item tokens, written by ``dataset_prep.coldstart``); without that file, every item
      with no training interaction;
    - ``all``: warm plus this split's cold items.
    """

    item_features: ItemFeatures | None
    split_name: str | None = None
    candidate_items: dict[str, np.ndarray] | None = None

    def _from_scratch(self):
        super()._from_scratch()
        self.item_features = self._load_item_features()
        self.cold_item_tokens = self._load_cold_item_tokens()

    def _load_inter_feat(self, token, dataset_path):
        """RecBole's loading, after checking each file's header (RecBole reads a file without the user or
        item column, or with an empty line for a header, as interactions with no such field) and before
        refusing a file with no interaction."""
        names = self.benchmark_filename_list or [None]
        paths = [Path(dataset_path) / (f"{token}.{name}.inter" if name else f"{token}.inter") for name in names]
        for path in paths:
            if path.is_file():
                self._check_inter_header(path)
        super()._load_inter_feat(token, dataset_path)
        sizes = getattr(self, "file_size_list", None) if self.benchmark_filename_list else [len(self.inter_feat)]
        for path, size in zip(paths, sizes or []):
            if size == 0:
                raise InterFileError(path, "at least one interaction", "a header line only")

    def _check_inter_header(self, path: Path) -> None:
        separator = self.config["field_separator"]
        with open(path, encoding=self.config["encoding"]) as f:
            header = f.readline().rstrip("\r\n")
        if not header:
            raise InterFileError(path, "a header line of field:type columns", "an empty file" if path.stat().st_size == 0 else "an empty first line")
        columns = header.split(separator)
        types = {t.value for t in FeatureType}
        bad = [c for c in columns if c.count(":") != 1 or c.split(":")[1] not in types]
        if bad:
            raise InterFileError(
                path, f"header columns field:type with type in {sorted(types)} (e.g. user_id:token)", f"{bad[:3]}"
            )
        fields = [c.split(":")[0] for c in columns]
        needed = [f for f in (self.uid_field, self.iid_field) if f and self._field_is_loaded(f)]
        missing = [f for f in needed if f not in fields]
        if missing:
            raise InterFileError(path, f"columns for the fields {needed} (USER_ID_FIELD, ITEM_ID_FIELD)", f"columns {columns}")

    def _field_is_loaded(self, field: str) -> bool:
        load_col = self.config["load_col"]
        if load_col is None or load_col.get("inter") == "*":
            return True
        return field in (load_col.get("inter") or [])

    def _load_item_features(self) -> ItemFeatures | None:
        specs, left_out = selected_modality_specs(self.config, self.dataset_path, self.dataset_name)
        for spec in left_out:
            self.logger.info(f"modality '{spec.name}': optional and {spec.path} does not exist; not used")
        if not specs:
            return None
        tokens = self.field2id_token[self.iid_field]
        features = load_item_features(specs, tokens)
        self.logger.info(set_color("Item features", "pink") + f": {features.summary()}")
        without = features.items_without_any_modality()
        if len(without):
            self.logger.warning(f"{len(without)} item(s) have no modality at all (all rows absent or zero)")
        return features

    def _load_cold_item_tokens(self) -> dict[str, list[str]] | None:
        name = self.config["cold_items_file"]
        if not name:
            return None
        path = Path(name) if Path(name).is_absolute() else Path(self.dataset_path) / name
        if not path.is_file():
            raise ColdItemsFileError(path, "the cold items json named by cold_items_file", "no such file")
        payload = read_json(path, ColdItemsFileError, "json")
        if not isinstance(payload, dict) or not all(isinstance(payload.get(k), list) for k in ("cold_valid", "cold_test")):
            found = f"keys {sorted(payload)}" if isinstance(payload, dict) else type(payload).__name__
            raise ColdItemsFileError(path, "an object with lists 'cold_valid' and 'cold_test'", found)
        overlap = set(map(str, payload["cold_valid"])) & set(map(str, payload["cold_test"]))
        if overlap:
            raise ColdItemsFileError(
                path, "disjoint cold_valid and cold_test items", f"{len(overlap)} in both, e.g. {sorted(overlap)[:3]}"
            )
        return {"valid": [str(t) for t in payload["cold_valid"]], "test": [str(t) for t in payload["cold_test"]]}

    def build(self):
        datasets = super().build()
        if len(datasets) != 3:
            return datasets
        warm = np.zeros(self.item_num, dtype=bool)
        warm[datasets[0].inter_feat[self.iid_field].numpy()] = True
        warm[0] = False
        for part, split in zip(datasets, SPLIT_NAMES):
            part.split_name = split
            if split == "train":
                continue
            cold = self._cold_mask(split, warm)
            part.candidate_items = {"cold": cold, "warm": warm.copy(), "all": warm | cold}
        return datasets

    def _cold_mask(self, split: str, warm: np.ndarray) -> np.ndarray:
        if self.cold_item_tokens is None:
            cold = ~warm
            cold[0] = False
            return cold
        rule = self.config["cold_candidates"] or "split"  # checked by Config; absent in older checkpoints' configs
        cold = np.zeros(self.item_num, dtype=bool)
        token_to_id = self.field2token_id[self.iid_field]
        tokens = self.cold_item_tokens[split] if rule == "split" else self.cold_item_tokens["valid"] + self.cold_item_tokens["test"]
        ids = [token_to_id[t] for t in tokens if t in token_to_id]
        cold[ids] = True
        leaked = np.flatnonzero(cold & warm)
        if len(leaked):
            tokens = self.field2id_token[self.iid_field][leaked[:3]].tolist()
            raise ColdItemsFileError(
                self.config["cold_items_file"],
                "cold items to have no training interaction",
                f"{len(leaked)} of the cold_{split} items in the train file, e.g. {tokens}",
            )
        return cold

    def __str__(self):
        text = super().__str__()
        if self.item_features is not None:
            text += "\n" + set_color("Item features", "blue") + f": {self.item_features.summary()}"
        if self.cold_item_tokens is not None:
            text += (
                "\n" + set_color("Cold items", "blue")
                + f": {len(self.cold_item_tokens['valid'])} cold-valid, {len(self.cold_item_tokens['test'])} cold-test"
            )
        return text
