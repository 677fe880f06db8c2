"""One device rule: use_gpu False means the CPU on every path, and a checkpoint loads onto the loading
process's device (a GPU-trained checkpoint serves on a CPU-only host). Run on CPU by simulating a GPU."""

import torch

from recbole_mamex.trainer.checkpoint import read_checkpoint, write_checkpoint

from recbole_mamex.config import Config, run_device
from recbole_mamex.quick_start import load_data_and_model, run_recbole_mamex
from recbole_mamex.serving import recommend

from helpers import FAST


def test_use_gpu_false_means_cpu_even_with_a_visible_gpu(tiny_dataset, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    off = Config(model="BPR", dataset="tiny", config_dict={**FAST, "use_gpu": False}, cmd_args=[])
    assert off["device"] == torch.device("cpu")  # RecBole's own rule would say cuda here
    on = Config(model="BPR", dataset="tiny", config_dict={**FAST, "use_gpu": True}, cmd_args=[])
    assert on["device"] == torch.device("cuda")
    assert run_device({"use_gpu": True, "gpu_id": ""}) == torch.device("cpu")  # no GPU named
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert run_device({"use_gpu": True, "gpu_id": "0"}) == torch.device("cpu")  # none visible


def test_a_gpu_trained_checkpoint_loads_and_serves_on_cpu(tiny_dataset, workdir):
    result = run_recbole_mamex("BPR", "tiny", config_dict={**FAST, "epochs": 1}, cmd_args=[])
    checkpoint = read_checkpoint(result["model_file"])
    checkpoint["config"].final_config_dict.update({"device": torch.device("cuda"), "use_gpu": True})
    write_checkpoint(checkpoint, result["model_file"])
    config, model, *_ = load_data_and_model(result["model_file"])
    assert config["device"] == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in model.parameters())
    recs = recommend(result["model_file"], ["1"], k=3, candidates="all")
    assert len(recs["1"]) == 3
