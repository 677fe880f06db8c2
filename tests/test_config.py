"""Config layering and model lookup (ours first, RecBole's after)."""

import shutil

import pytest
import recbole.model.general_recommender as recbole_general

import recbole_mamex.config as config_module
import recbole_mamex.model
from recbole_mamex.config import Config
from recbole_mamex.registry import UnknownModelError, available_model_names, get_model

from helpers import ContentDot


def test_our_overall_defaults_override_recbole(workdir):
    config = Config(model="BPR", dataset="ml-100k", cmd_args=[])
    assert config["valid_metric"] == "NDCG@20"  # RecBole's own default is MRR@10
    assert config["topk"] == [10, 20]
    assert config["learning_rate"] == 0.001  # untouched RecBole default


def test_layers_in_order_package_model_yaml_then_user_inputs(workdir, monkeypatch):
    props = workdir / "pkgprops"
    shutil.copytree(config_module.properties_dir(), props)
    (props / "model" / "BPR.yaml").write_text("embedding_size: 24\nlearning_rate: 0.01\nreg_weight: 0.5\n")
    monkeypatch.setattr(config_module, "properties_dir", lambda: props)
    (workdir / "user.yaml").write_text("learning_rate: 0.02\nreg_weight: 0.7\n")
    config = Config(
        model="BPR",
        dataset="ml-100k",
        config_file_list=[str(workdir / "user.yaml")],
        config_dict={"reg_weight": 0.9},
        cmd_args=["--epochs=3"],
    )
    assert config["embedding_size"] == 24  # our model yaml beats RecBole's BPR.yaml (64)
    assert config["learning_rate"] == 0.02  # user file beats our model yaml
    assert config["reg_weight"] == 0.9  # config_dict beats the file
    assert config["epochs"] == 3  # command line beats everything
    assert str(props / "model" / "BPR.yaml") in config.loaded_property_files


def test_working_directory_dataset_yaml_is_loaded(workdir):
    (workdir / "properties" / "dataset").mkdir(parents=True)
    (workdir / "properties" / "dataset" / "mine.yaml").write_text("benchmark_filename: [a, b, c]\n")
    config = Config(model="BPR", dataset="mine", cmd_args=[])
    assert config["benchmark_filename"] == ["a", "b", "c"]
    assert "benchmark_filename" in config.parameters["Dataset"]


def test_cmd_args_none_reads_sys_argv_like_recbole(workdir, monkeypatch):
    monkeypatch.setattr("sys.argv", ["prog", "--epochs=4"])
    assert Config(model="BPR", dataset="ml-100k")["epochs"] == 4
    assert Config(model="BPR", dataset="ml-100k", cmd_args=[])["epochs"] == 1000  # properties/overall.yaml


def test_recbole_models_resolve():
    assert get_model("LightGCN") is recbole_general.LightGCN
    assert get_model("BPR") is recbole_general.BPR


def test_our_models_come_first(monkeypatch):
    class BPR(ContentDot):
        pass

    monkeypatch.setattr(recbole_mamex.model, "BPR", BPR, raising=False)
    assert get_model("BPR") is BPR
    names = available_model_names()
    assert names.index("BPR") < names.index("ADMMSLIM")  # among ours, before RecBole's (alphabetically first)
    assert names.count("BPR") == 1


def test_abstract_base_is_not_a_model():
    assert "MultimodalRecommender" not in available_model_names()
    with pytest.raises(UnknownModelError):
        get_model("MultimodalRecommender")


def test_unknown_model_lists_available_names(monkeypatch):
    monkeypatch.setattr(recbole_mamex.model, "ContentDot", ContentDot, raising=False)
    with pytest.raises(UnknownModelError) as info:
        get_model("LightGNC")
    message = str(info.value)
    assert "Unknown model 'LightGNC'" in message
    assert "Did you mean LightGCN" in message
    assert "ContentDot, " in message and "BPR" in message and "SASRec" in message
    assert message.index("ContentDot") < message.index("ADMMSLIM")  # ours first
    with pytest.raises(UnknownModelError, match="Did you mean.*BPR"):
        get_model("bpr")
