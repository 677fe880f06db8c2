"""RecBole dataset that also carries the multimodal item features named in its config."""

from __future__ import annotations

from recbole.data.dataset import Dataset
from recbole.utils import set_color

from recbole_mamex.data.features import ItemFeatures, load_item_features, parse_modalities


class MultimodalDataset(Dataset):
    """RecBole's :class:`~recbole.data.dataset.Dataset` plus :attr:`item_features`.

    With no ``modalities`` in the config it is exactly RecBole's dataset and ``item_features`` is
    ``None``. With them, the features are read, validated and aligned to internal item ids once, right
    after RecBole has remapped the ids; the train/valid/test copies share them.
    """

    item_features: ItemFeatures | None

    def _from_scratch(self):
        super()._from_scratch()
        self.item_features = self._load_item_features()

    def _load_item_features(self) -> ItemFeatures | None:
        specs = parse_modalities(self.config["modalities"], self.dataset_path)
        if not specs:
            return None
        tokens = self.field2id_token[self.iid_field]
        features = load_item_features(specs, tokens)
        self.logger.info(set_color("Item features", "pink") + f": {features.summary()}")
        without = features.items_without_any_modality()
        if len(without):
            self.logger.warning(f"{len(without)} item(s) have no modality at all (all rows absent or zero)")
        return features

    def __str__(self):
        text = super().__str__()
        if self.item_features is not None:
            text += "\n" + set_color("Item features", "blue") + f": {self.item_features.summary()}"
        return text
