"""Data: the multimodal feature store, the dataset that carries it, and dataset preparation."""

from recbole_mamex.data.features import FeatureFileError, ItemFeatures, load_item_features, parse_modalities, present_modalities

__all__ = ["FeatureFileError", "ItemFeatures", "load_item_features", "parse_modalities", "present_modalities"]
