"""ContentProfile (the training-free content baseline), modality selection and the all-cold candidate
protocol, against numpy references."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import data_preparation
from recbole.data.interaction import Interaction

from recbole_mamex.config import Config, ConfigError
from recbole_mamex.data.features import FeatureFileError
from recbole_mamex.model import ContentProfile
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.data.loading import create_dataset
from recbole_mamex.registry import get_model, proposed_models

from helpers import FAST


def build(dataset="tiny-cold", **overrides):
    config = Config(model="ContentProfile", dataset=dataset, config_dict={**FAST, **overrides}, cmd_args=[])
    data = create_dataset(config)
    train, valid, test = data_preparation(config, data)
    return config, data, (train, valid, test), ContentProfile(config, train._dataset)


def brute_force_scores(workdir, data, center: bool, modalities=("text", "audio")) -> np.ndarray:
    """numpy: users x items cosine between the mean training-item vector and each item vector."""
    tokens = data.field2id_token["item_id"]
    user_tokens = data.field2id_token["user_id"]
    train = pd.read_csv(workdir / "dataset" / "tiny-cold" / "tiny-cold.train.inter", sep="\t", dtype=str)
    trained = set(train["item_id:token"])
    blocks = []
    for name in modalities:
        raw = np.load(workdir / "dataset" / "tiny-cold" / f"{name}.npy").astype(np.float64)
        rows = np.zeros((len(tokens), raw.shape[1]))
        has = np.zeros(len(tokens), dtype=bool)
        for i, token in enumerate(tokens[1:], start=1):
            rows[i] = raw[int(token)]
            has[i] = np.any(rows[i] != 0)
        if center:
            reference = has & np.array([t in trained for t in tokens])
            rows[has] -= rows[reference].mean(axis=0)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        blocks.append(np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0) / np.sqrt(len(modalities)))
    items = np.hstack(blocks)
    profiles = np.zeros((len(user_tokens), items.shape[1]))
    for u, group in train.groupby("user_id:token"):
        ids = [list(tokens).index(t) for t in set(group["item_id:token"])]
        profiles[list(user_tokens).index(u)] = items[ids].mean(axis=0)
    norms = np.linalg.norm(items, axis=1, keepdims=True)
    unit = np.divide(items, norms, out=np.zeros_like(items), where=norms > 0)
    return profiles @ unit.T


@pytest.mark.parametrize("center", [True, False])
def test_scores_equal_a_numpy_brute_force(cold_tiny, workdir, center):
    config, data, _, model = build(profile_center=center)
    users = Interaction({"user_id": torch.arange(data.user_num)})
    scores = model.full_sort_predict(users).view(data.user_num, -1).double().numpy()
    np.testing.assert_allclose(scores, brute_force_scores(workdir, data, center), atol=1e-5)
    pairs = Interaction({"user_id": torch.tensor([1, 2, 3]), "item_id": torch.tensor([4, 5, 6])})
    torch.testing.assert_close(model.predict(pairs), torch.from_numpy(scores[[1, 2, 3], [4, 5, 6]]).float())


def test_centring_uses_training_items_only(cold_tiny, workdir):
    _, data, (train, _, _), model = build()
    cold = torch.nonzero(~model.item_has_training[1:]).flatten() + 1
    before = model.content_vectors()
    changed = model.modality_features("text").clone()
    changed[cold[0]] += 100.0
    model.register_buffer("modality_feat_text", changed, persistent=False)
    after = model.content_vectors()
    others = torch.ones(len(before), dtype=torch.bool)
    others[cold[0]] = False
    assert torch.equal(before[others], after[others]) and not torch.equal(before[cold[0]], after[cold[0]])


def test_it_is_a_trained_once_baseline_in_runs_and_comparisons(cold_tiny):
    assert get_model("ContentProfile").is_baseline and "ContentProfile" not in proposed_models()
    result = run_recbole_mamex(model="ContentProfile", dataset="tiny-cold", config_dict=FAST, cmd_args=[])
    assert set(result["test_result_by_candidates"]) == {"cold", "warm", "all"}


def test_use_modalities_loads_only_the_chosen_ones(cold_tiny, workdir):
    _, _, _, model = build(use_modalities=["text"])
    assert model.modality_names == ["text"] and not hasattr(model, "modality_feat_audio")
    assert model.modality_mask.shape[1] == 1
    _, data, _, _ = build(use_modalities="[text]")  # the command line's spelling
    assert data.item_features.names == ["text"]
    with pytest.raises(FeatureFileError, match=r"use_modalities: a non-empty list of the modalities of dataset 'tiny-cold' \(\['text', 'audio'\]\), found \['image'\]"):
        build(use_modalities=["image"])
    with pytest.raises(ConfigError, match="use_modalities"):
        build(use_modalities=[3])


def test_all_cold_candidates_rank_valid_and_test_cold_items_together(cold_tiny):
    cold = json.loads((cold_tiny / "tiny-cold.cold_items.json").read_text())
    _, data, (_, valid, test), _ = build(cold_candidates="all_cold")
    ids = data.field2token_id["item_id"]
    union = sorted(ids[t] for t in map(str, cold["cold_valid"] + cold["cold_test"]))
    for split in (valid, test):
        assert np.flatnonzero(split._dataset.candidate_items["cold"]).tolist() == union
    _, _, (_, valid, test), _ = build()
    assert np.flatnonzero(valid._dataset.candidate_items["cold"]).tolist() == sorted(ids[str(t)] for t in cold["cold_valid"])
    with pytest.raises(ConfigError, match="cold_candidates: expected split or all_cold"):
        build(cold_candidates="both")


def test_compare_variants_are_rows_with_their_own_settings(cold_tiny, workdir, capsys):
    from recbole_mamex.compare import main

    out = workdir / "res"
    argv = ["--dataset", "tiny-cold", "--models", "Pop", "--variant", "MAMEX-text=use_modalities:[text];epochs:1",
            "--seeds", "1", "--set", "epochs=2", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads((out / "runs" / "MAMEX-text-seed1.json").read_text())
    assert record["model_class"] == "MAMEX" and record["variant"] == {"use_modalities": ["text"], "epochs": 1}
    assert record["config"]["use_modalities"] == ["text"] and record["config"]["epochs"] == 1
    table = (out / "table_cold.md").read_text()
    assert "| MAMEX-text |" in table and "| Pop |" in table
    assert "MAMEX-text vs Pop" in table  # a variant of a proposed model is on "our" side
    assert main(argv) == 0 and "MAMEX-text seed 1: done before, skipped" in capsys.readouterr().out
    for bad, message in ((["--variant", "MAMEX"], "expected MODEL-LABEL=key:value"),
                         (["--variant", "MAMX-a=epochs:1"], "Unknown model 'MAMX'"),
                         (["--variant", "Pop-a=epochs:1", "Pop-a=epochs:2"], "'Pop-a' repeated")):
        assert main(["--dataset", "tiny-cold", "--models", "Pop", "--seeds", "1", "--out", str(workdir / "r2"), *bad]) == 2
        assert message in capsys.readouterr().err
