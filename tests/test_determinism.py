"""Same seed and config give identical metrics and weights on CPU, for each of our models."""

import pytest
import torch

from recbole_mamex.quick_start import run_recbole_mamex

from helpers import FAST

CONFIG = {**FAST, "epochs": 3, "eval_step": 1, "metric_decimal_place": 12}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # multi-threaded CPU float sums are not bit-reproducible (see docs/getting-started.md)
    yield
    torch.set_num_threads(threads)


def train(model_name, seed, directory, extra=None):
    config = {**CONFIG, "seed": seed, "checkpoint_dir": directory, **(extra or {})}
    result = run_recbole_mamex(model_name, "tiny-cold", config_dict=config, cmd_args=[])
    weights = torch.load(result["model_file"], map_location="cpu", weights_only=True)["state_dict"]
    return result, weights


@pytest.mark.parametrize(
    "model_name, extra",
    [
        ("MAMEX", None),
        ("MAMEX", {"tower_scope": "catalogue"}),
        ("RLMultimodalRec", None),
        ("RLMultimodalRec", {"gate_form": "item"}),
    ],
)
def test_same_seed_same_metrics(cold_tiny, workdir, one_thread, model_name, extra):
    first, first_weights = train(model_name, 11, "a", extra)
    second, second_weights = train(model_name, 11, "b", extra)
    assert second["best_valid_result"] == first["best_valid_result"]
    assert second["test_result_by_candidates"] == first["test_result_by_candidates"]
    assert first_weights.keys() == second_weights.keys()
    for name, tensor in first_weights.items():
        assert torch.equal(tensor, second_weights[name]), name
    # and the seed matters (so the equality above is not vacuous)
    _, other_weights = train(model_name, 12, "c", extra)
    assert any(not torch.equal(tensor, other_weights[name]) for name, tensor in first_weights.items())
