"""``mixed_precision`` and ``feature_storage``: the error for a value neither takes names exactly the values
each accepts (yaml's ``~`` for None)."""

import re

import pytest
from recbole.utils import init_seed

from recbole_mamex.config import Config, ConfigError
from recbole_mamex.data.loading import create_dataset, data_preparation
from recbole_mamex.model import VBPR
from recbole_mamex.model.abstract import PRECISIONS, STORAGE_DTYPES
from recbole_mamex.model.rlmultimodalrec import RLMultimodalRec

from helpers import FAST


def build(model_class, **overrides):
    config = Config(model=model_class.__name__, dataset="tiny", config_dict={**FAST, **overrides}, cmd_args=[])
    train, _, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], True)
    return model_class(config, train._dataset)


def listed(message: str, key: str) -> list[str]:
    """The values ``message`` (``<key>: expected a, b or c, found 'x'``) lists as accepted."""
    match = re.fullmatch(rf"{key}: expected (.+), found '.*'", message)
    assert match, message
    return re.split(r", | or ", match[1])


def test_the_mixed_precision_error_names_every_accepted_value(tiny_dataset):
    with pytest.raises(ConfigError) as refused:
        build(RLMultimodalRec, mixed_precision="fp16")
    message = str(refused.value)
    assert "\n" not in message
    names = listed(message, "mixed_precision")
    assert sorted(names) == sorted("~" if value is None else value for value in PRECISIONS)
    model = build(VBPR)
    for name in names:  # and each value it names is taken
        model.prepare_features("l2", None if name == "~" else name)


def test_the_feature_storage_error_names_every_accepted_value(tiny_dataset):
    model = build(VBPR)
    with pytest.raises(ConfigError) as refused:
        model.prepare_features("l2", "none", "int8")
    names = listed(str(refused.value), "feature_storage")
    assert sorted(names) == sorted("~" if value is None else value for value in STORAGE_DTYPES)
    for name in names:
        model.prepare_features("l2", "none", None if name == "~" else name)
