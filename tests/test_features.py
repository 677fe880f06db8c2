"""Feature store: alignment to RecBole's internal ids, presence mask, and every bad-input error."""

import re
from pathlib import Path

import numpy as np
import pytest

from recbole_mamex.config import Config
from recbole_mamex.data.features import (
    FeatureFileError,
    ModalitySpec,
    load_item_features,
    parse_modalities,
    read_feature_matrix,
)
from recbole_mamex.data.loading import create_dataset

from helpers import FAST


def build_dataset(model="BPR", **overrides):
    config = Config(model=model, dataset="tiny", config_dict={**FAST, **overrides}, cmd_args=[])
    return create_dataset(config)


def test_rows_follow_recbole_internal_ids(tiny_dataset):
    dataset = build_dataset()
    features = dataset.item_features
    tokens = dataset.field2id_token["item_id"]
    order = [int(t) for t in tokens[1:]]
    assert order != sorted(order), "fixture must give a shuffled first-appearance order"
    assert features.names == ["text", "audio"]
    for j, name in enumerate(features.names):
        raw = tiny_dataset[name]
        matrix = features.matrices[name]
        assert matrix.dtype == np.float32
        assert matrix.shape == (len(tokens), raw.shape[1])
        np.testing.assert_array_equal(matrix[0], 0)
        for internal_id in range(1, len(tokens)):
            np.testing.assert_allclose(matrix[internal_id], raw[int(tokens[internal_id])].astype(np.float32))
    # all-zero rows (text of item 5, audio of item 7) and padding are missing; everything else present
    token_of = {int(t): i for i, t in enumerate(tokens[1:], start=1)}
    expected = np.ones_like(features.mask)
    expected[0] = False
    expected[token_of[5], 0] = False
    expected[token_of[7], 1] = False
    np.testing.assert_array_equal(features.mask, expected)


def test_train_valid_test_copies_share_features(tiny_dataset):
    from recbole.data import data_preparation

    dataset = build_dataset()
    train, valid, test = data_preparation(dataset.config, dataset)
    assert train._dataset.item_features is dataset.item_features
    assert test._dataset.item_features is dataset.item_features


def test_ids_file_maps_rows_and_absent_items_are_missing(tmp_path):
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3) + 1
    np.save(tmp_path / "f.npy", matrix)
    (tmp_path / "f_ids.txt").write_text("b\nzz\na\nc\n")
    specs = parse_modalities({"img": {"path": "f.npy", "ids": "f_ids.txt"}}, tmp_path)
    tokens = np.array(["[PAD]", "a", "b", "d"])  # 'd' has no row, 'zz' is not an item
    features = load_item_features(specs, tokens)
    np.testing.assert_array_equal(features.matrices["img"][1], matrix[2])
    np.testing.assert_array_equal(features.matrices["img"][2], matrix[0])
    np.testing.assert_array_equal(features.matrices["img"][3], 0)
    assert features.mask[:, 0].tolist() == [False, True, True, False]
    assert features.items_without_any_modality().tolist() == [3]


def test_float64_and_float16_become_float32(tmp_path):
    for dtype in (np.float64, np.float16):
        np.save(tmp_path / "x.npy", np.ones((3, 2), dtype=dtype))
        features = load_item_features([ModalitySpec("x", tmp_path / "x.npy")], np.array(["[PAD]", "2", "0"]))
        assert features.matrices["x"].dtype == np.float32


def _expect_error(path, *fragments):
    with pytest.raises(FeatureFileError) as info:
        read_feature_matrix(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.npy", "expected a .npy feature file", "no such file")


def test_not_two_dimensional(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(5, dtype=np.float32))
    _expect_error(tmp_path / "a.npy", "expected a 2-D array", "1-D array of shape (5,)")
    np.save(tmp_path / "b.npy", np.ones((2, 3, 4), dtype=np.float32))
    _expect_error(tmp_path / "b.npy", "expected a 2-D array", "3-D")


def test_integer_and_object_dtypes(tmp_path):
    np.save(tmp_path / "i.npy", np.ones((3, 2), dtype=np.int64))
    _expect_error(tmp_path / "i.npy", "floating-point", "dtype int64")
    np.save(tmp_path / "o.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    _expect_error(tmp_path / "o.npy", "numeric .npy array")


def test_nan_and_inf_rows_are_named(tmp_path):
    m = np.ones((6, 2), dtype=np.float32)
    m[1, 0] = np.nan
    m[4, 1] = np.inf
    np.save(tmp_path / "n.npy", m)
    _expect_error(tmp_path / "n.npy", "expected finite values", "2 row(s): 1, 4")


def test_truncated_and_non_npy_files(tmp_path):
    np.save(tmp_path / "t.npy", np.ones((50, 8), dtype=np.float32))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) // 2])
    message = _expect_error(tmp_path / "t.npy", "expected a numeric .npy array, found a file numpy cannot read as one")
    assert message.startswith(f"{tmp_path / 't.npy'}: ") and "\n" not in message
    (tmp_path / "text.npy").write_text("not numpy at all")
    message = _expect_error(tmp_path / "text.npy", "expected a .npy file (written by numpy.save), "
                            "found a file that is not .npy (it starts with b'not nu')")
    assert message.startswith(f"{tmp_path / 'text.npy'}: ") and "\n" not in message


def test_empty_matrix(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 4), dtype=np.float32))
    _expect_error(tmp_path / "e.npy", "at least one row", "shape (0, 4)")


def test_too_few_rows_for_item_ids(tmp_path):
    np.save(tmp_path / "s.npy", np.ones((3, 2), dtype=np.float32))
    with pytest.raises(FeatureFileError) as info:
        load_item_features([ModalitySpec("s", tmp_path / "s.npy")], np.array(["[PAD]", "1", "9"]))
    assert "at least 10 rows" in str(info.value) and "found 3 rows" in str(info.value)
    assert str(tmp_path / "s.npy") in str(info.value)


def test_non_integer_tokens_need_an_ids_file(tmp_path):
    np.save(tmp_path / "s.npy", np.ones((3, 2), dtype=np.float32))
    with pytest.raises(FeatureFileError, match="item token 'B00X'"):
        load_item_features([ModalitySpec("s", tmp_path / "s.npy")], np.array(["[PAD]", "B00X"]))


def test_bad_ids_files(tmp_path):
    np.save(tmp_path / "s.npy", np.ones((3, 2), dtype=np.float32))
    tokens = np.array(["[PAD]", "a"])
    (tmp_path / "short.txt").write_text("a\nb\n")
    with pytest.raises(FeatureFileError, match=r"expected 3 item tokens .* found 2"):
        load_item_features([ModalitySpec("s", tmp_path / "s.npy", tmp_path / "short.txt")], tokens)
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(FeatureFileError, match="'a' on rows 0 and 2"):
        load_item_features([ModalitySpec("s", tmp_path / "s.npy", tmp_path / "dup.txt")], tokens)
    with pytest.raises(FeatureFileError, match="no such file"):
        load_item_features([ModalitySpec("s", tmp_path / "s.npy", tmp_path / "absent.txt")], tokens)


@pytest.mark.parametrize("value,expected,found", [
    (["text.npy"], "config key 'modalities' to map modality names to .npy files", "['text.npy']"),
    ({}, "config key 'modalities' to map modality names to .npy files", "{}"),
    ({"text": 3}, "modality 'text' to be a file name or {path: <file.npy>, ids: <ids.txt>, optional: True|False}", "3"),
    ({"text": {"file": "x.npy"}}, "modality 'text' to be a file name or {path: <file.npy>", "{'file': 'x.npy'}"),
])
def test_bad_modalities_entries(tmp_path, value, expected, found):
    """What was expected and what was found (the entry as written)."""
    with pytest.raises(FeatureFileError, match=rf"^expected {re.escape(expected)}.*, found {re.escape(found)}$"):
        parse_modalities(value, tmp_path)


def test_dataset_yaml_naming_a_missing_file_fails_at_load(tiny_dataset, workdir):
    (workdir / "dataset" / "tiny" / "audio.npy").unlink()
    with pytest.raises(FeatureFileError) as info:
        build_dataset()
    assert str(Path("dataset") / "tiny" / "audio.npy") in str(info.value)
    assert "no such file" in str(info.value)


def test_an_optional_modality_without_its_file_is_left_out_unless_asked_for(tiny_dataset, workdir):
    (workdir / "dataset" / "tiny" / "audio.npy").unlink()
    optional = {"text": "text.npy", "audio": {"path": "audio.npy", "optional": True}}
    assert build_dataset(modalities=optional).item_features.names == ["text"]
    with pytest.raises(FeatureFileError, match="no such file"):  # named in use_modalities: read, and missing
        build_dataset(modalities=optional, use_modalities=["audio"])
    both_optional = {"text": {"path": "gone.npy", "optional": True}, "audio": {"path": "audio.npy", "optional": True}}
    with pytest.raises(FeatureFileError, match="none of gone.npy, audio.npy"):
        build_dataset(modalities=both_optional)
    # a broken link is not an absent file: the load names it instead of leaving the modality out
    (workdir / "dataset" / "tiny" / "audio.npy").symlink_to(workdir / "moved-away.npy")
    with pytest.raises(FeatureFileError, match="no such file"):
        build_dataset(modalities=optional)
    with pytest.raises(FeatureFileError, match="optional: True"):
        parse_modalities({"audio": {"path": "audio.npy", "optional": "yes"}}, workdir)


def test_model_buffers_are_float32_non_persistent_and_follow_the_model(tiny_dataset):
    from helpers import ContentDot

    dataset = build_dataset(model=ContentDot)
    model = ContentDot(dataset.config, dataset)
    assert model.modality_features("text").dtype == torch_float32()
    assert not any(key.startswith("modality_") for key in model.state_dict())
    names = {name for name, _ in model.named_buffers()}
    assert {"modality_feat_text", "modality_feat_audio", "modality_mask"} <= names
    model = model.to("meta")
    assert model.modality_features("audio").device.type == "meta"


def torch_float32():
    import torch

    return torch.float32


def test_multimodal_model_without_modalities_is_a_clear_error(tiny_dataset, workdir):
    from helpers import ContentDot

    dataset = build_dataset(model=ContentDot, modalities=None)
    assert dataset.item_features is None
    with pytest.raises(ValueError, match="needs item features.*modalities"):
        ContentDot(dataset.config, dataset)


def test_dense_file_reads_the_rows_asked_for_in_their_order(tmp_path):
    from recbole_mamex.data.features import DenseFeatureFile

    matrix = np.random.default_rng(0).standard_normal((50, 7)).astype(np.float32)
    np.save(tmp_path / "m.npy", matrix)
    np.save(tmp_path / "f.npy", np.asfortranarray(matrix))
    for name in ("m.npy", "f.npy"):
        dense = read_feature_matrix(tmp_path / name)
        assert isinstance(dense, DenseFeatureFile) and dense.shape == (50, 7)
        index = np.array([49, 3, 4, 5, 3, 0, 17, 48, 49])  # runs, repeats, any order
        np.testing.assert_array_equal(dense[index], matrix[index])
        np.testing.assert_array_equal(dense[10:13], matrix[10:13])
        np.testing.assert_array_equal(dense[np.array([], dtype=np.int64)], matrix[:0])
        with pytest.raises(IndexError):
            dense[np.array([50])]


def test_aligned_matrices_are_made_only_when_asked_and_blocks_match(tmp_path, monkeypatch):
    import recbole_mamex.data.features as features_module

    matrix = np.random.default_rng(1).standard_normal((40, 5)).astype(np.float32)
    matrix[7] = 0.0  # an all-zero row: a missing modality
    np.save(tmp_path / "m.npy", matrix)
    tokens = np.array(["[PAD]"] + [str(i) for i in np.random.default_rng(2).permutation(40)])
    monkeypatch.setattr(features_module, "BLOCK_BYTES", 3 * 5 * 4)  # blocks of 3 rows
    features = load_item_features([ModalitySpec("m", tmp_path / "m.npy")], tokens)
    fingerprint = features.fingerprints()
    assert not features.matrices.is_made("m")  # fingerprints, mask, dims: no whole copy
    blocks = np.concatenate([block for _, block in features.blocks("m")])
    whole = features.matrices["m"]
    assert features.matrices.is_made("m")
    expected = np.zeros((41, 5), dtype=np.float32)
    expected[1:] = matrix[[int(t) for t in tokens[1:]]]
    np.testing.assert_array_equal(blocks, expected)
    np.testing.assert_array_equal(whole, expected)
    assert features.fingerprints() == fingerprint  # the same from blocks as from the made matrix
    assert features.mask[:, 0].sum() == 39 and not features.mask[list(tokens).index("7"), 0]
