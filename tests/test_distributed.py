"""Two-process training on CPU through RecBole's DDP path (gloo on loopback, tiny data)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from recbole_mamex import compat
from recbole_mamex.cli import main
from recbole_mamex.distributed import free_port
from recbole_mamex.trainer.distributed import own_rows
from recbole_mamex.quick_start import load_data_and_model, run
from recbole_mamex.runspec import RunSpec
from recbole_mamex.trainer.resume import last_checkpoint_path
from recbole_mamex.trainer import get_trainer

from helpers import FAST, write_mmrec

# Exact metrics: RecBole rounds each process's metrics to metric_decimal_place before they are combined.
DDP = {**FAST, "epochs": 2, "metric_decimal_place": 12, "keep_last_checkpoint": True}


@pytest.fixture
def odd_cold(workdir):
    """25 users (odd: the DistributedSampler pads one split of two processes), cold split 'odd-cold'."""
    from dataset_prep.coldstart import main
    from dataset_prep.mmrec import import_mmrec

    raw = write_mmrec(workdir / "raw", n_users=25, n_items=40)
    features = {"text": workdir / "raw" / "text_feat.npy", "audio": workdir / "raw" / "audio_feat.npy"}
    import_mmrec(raw["inter"], features, "odd", out_root=workdir / "dataset", properties_dir=workdir / "properties",
                 log=lambda *_: None)
    assert main(["--dataset", "odd", "--seed", "1"]) == 0
    return "odd-cold"


@pytest.mark.parametrize("model_name", ["MAMEX", "RLMultimodalRec", "LightGCN"])
def test_two_cpu_processes_train_and_evaluate_like_one(odd_cold, workdir, model_name):
    result = run(RunSpec(model_name, odd_cold, settings=DDP), nproc=2, port=free_port())
    assert result["config"]["world_size"] == 2 and not result["config"]["single_spec"]
    assert str(result["config"]["device"]) == "cpu"
    by_candidates = result["test_result_by_candidates"]
    assert set(by_candidates) == {"cold", "warm", "all"}
    # The checkpoint loads here, outside any process group (it holds a one-process config), and this one
    # process evaluating it on every candidate set gives the metrics the two processes computed on their
    # halves of the users: they held the same weights (DDP kept them in step), no user counted twice (the
    # sampler's padding is dropped), and the halves were weighted by their evaluated users (RecBole
    # weights by batches).
    config, model, _, _, _, test = load_data_and_model(result["model_file"])
    assert config["single_spec"] and config["local_rank"] == 0
    trainer = get_trainer(config["MODEL_TYPE"], model_name, config)(config, model)
    for kind, metrics in by_candidates.items():
        single = trainer.evaluate(test, load_best_model=False, candidates=kind)
        assert dict(single) == pytest.approx(dict(metrics), abs=1e-9), kind
    assert all(0 <= value <= 1 for value in by_candidates["all"].values())
    # the last checkpoint (for resuming) loads the same way
    last_config, *_ = load_data_and_model(last_checkpoint_path(result["model_file"]))
    assert last_config["single_spec"]


def test_command_line_process_counts_are_checked(capsys):
    assert main(["--model=BPR", "--dataset=tiny", "--nproc=2", "--world_size=3", "--group_offset=2"]) == 2
    assert "expected 1 <= nproc and nproc + group_offset <= world_size, found nproc=2, group_offset=2, " \
        "world_size=3" in capsys.readouterr().err
    assert main(["--model=BPR", "--dataset=tiny", "--nproc=2", "--resume=x.pth"]) == 2
    assert "resuming is supported for one-process runs only" in capsys.readouterr().err


def test_padding_rows_are_counted_once():
    dataset = list(range(25))
    sampler = torch.utils.data.distributed.DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=False)
    loader = type("Loader", (), {"sampler": sampler})()
    assert len(list(sampler)) == 13 and own_rows(loader) == 12  # rank 1 gets user 0 again as padding
    sampler0 = torch.utils.data.distributed.DistributedSampler(dataset, num_replicas=2, rank=0, shuffle=False)
    assert own_rows(type("Loader", (), {"sampler": sampler0})()) == 13
    assert own_rows(type("Loader", (), {"sampler": None})()) is None


DDP_RUN = """
    from recbole_mamex import compat as _shims; _shims.apply_all()
    from recbole_mamex.distributed import free_port, run_distributed
    from recbole_mamex.quick_start import run_spec
    from recbole_mamex.runspec import RunSpec
    if __name__ == "__main__":
        run_distributed(run_spec, RunSpec("BPR", "odd-cold", settings={config}), nproc=2, port=free_port())
        print("two processes: ok")
"""


@pytest.mark.parametrize("gpu_id, failure", [("0", "AssertionError"), ("0,1", "NCCL")])
def test_recbole_ddp_path_needs_the_cpu_shim(odd_cold, workdir, gpu_id, failure):
    """Shim off: RecBole alone asserts one gpu_id per process, then asks for NCCL and a CUDA device. Shim on:
    the same run works (test_two_cpu_processes_train_and_evaluate_like_one, with the default gpu_id '0')."""
    config = {**DDP, "epochs": 1, "gpu_id": gpu_id}
    script = workdir / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_RUN.format(config=config)))
    env = {**os.environ, compat.DISABLE_ENV: "ddp_on_cpu"}
    off = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True,
                         timeout=300)
    assert off.returncode != 0 and failure in off.stderr, off.stderr[-2000:]
    assert "two processes: ok" not in off.stdout
