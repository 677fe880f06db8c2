"""Processes that end the wrong way, and addresses of other processes that cannot work: the workers of
``compare --jobs N`` (and, through torch, of a multi-process run) end with the process that started them;
Ctrl-C of a comparison is one line and exit status 130; a Ray or process-group address that is malformed,
that nothing answers at, where something that is not a Ray head answers, or whose port is taken is one
``error:`` line within seconds."""

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import recbole_mamex
from recbole_mamex.cli import main as cli_main
from recbole_mamex.compare import main as compare_main
from recbole_mamex.distributed import AddressError, check_ray_address, check_rendezvous, free_port

PACKAGE_ROOT = Path(recbole_mamex.__file__).resolve().parents[1]  # the checkout under test

# A run that writes "started-<seed>-<pid>" in its working directory, then trains for a minute (seed 1: at once).
SLOW_JOB = '''
import os, time

def run_one(spec, on_epoch):
    seed = spec.settings["seed"]
    open(f"started-{seed}-{os.getpid()}", "w").close()
    if seed != 1:
        time.sleep(60)
    return {"model": spec.model, "seed": seed, "dataset": spec.dataset, "wall_s": 0.01,
            "results": {"cold": {"recall@10": 0.5}}}

def train(spec):  # a process of run_distributed
    open(f"started-rank{spec.settings['local_rank']}-{os.getpid()}", "w").close()
    time.sleep(60)
'''


def start(workdir: Path, code: str) -> subprocess.Popen:
    """``python -c code`` in ``workdir`` (in its own process group, Ctrl-C as a terminal has it), the
    package under test and ``slowjob`` importable (also by its spawned workers)."""
    (workdir / "slowjob.py").write_text(SLOW_JOB)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(workdir), str(PACKAGE_ROOT)])}
    # SIGINT as a terminal's process has it: a shell that started the tests in the background (`make test &`)
    # hands its children SIGINT ignored
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=workdir, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def started_workers(workdir: Path, proc: subprocess.Popen, count: int, timeout: float = 90) -> list[int]:
    """The pids of the first ``count`` slow workers, once they are all training."""
    until = time.time() + timeout
    while time.time() < until:
        pids = [int(p.name.rsplit("-", 1)[1]) for p in workdir.glob("started-*") if not p.name.startswith("started-1-")]
        if len(pids) >= count:
            return pids
        if proc.poll() is not None:
            pytest.fail(f"the command ended before its workers started: {proc.communicate()}")
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"no {count} workers within {timeout} s: {proc.communicate()}")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def still_alive_after(pids, seconds: float) -> list[int]:
    """The ``pids`` still running ``seconds`` from now (killed then, so a failing test leaves none behind)."""
    until = time.time() + seconds
    while time.time() < until and any(alive(pid) for pid in pids):
        time.sleep(0.05)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")

WORKER_POOL = """
    from concurrent.futures import ThreadPoolExecutor
    from recbole_mamex.parallel import LocalProcesses
    from recbole_mamex.runspec import RunSpec
    import slowjob

    backend = LocalProcesses(slowjob.run_one, 2)
    with ThreadPoolExecutor(2) as threads:  # as a comparison: the runs are handed to the pool from threads
        list(threads.map(lambda seed: backend.run_one(RunSpec("A", "d", settings={"seed": seed}), None), [2, 3]))
"""


@needs_proc
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_when_their_comparison_is_killed(workdir, how):
    proc = start(workdir, WORKER_POOL)
    workers = started_workers(workdir, proc, 2)
    os.kill(proc.pid, how)  # an OOM kill, a `kill PID`: nothing of the comparison runs any more
    proc.wait(timeout=30)
    assert still_alive_after(workers, 15) == []


@needs_proc
def test_ctrl_c_of_compare_jobs_ends_the_workers_and_prints_one_line(cold_tiny, workdir):
    out = workdir / "res"
    proc = start(workdir, f"""
        import sys
        import recbole_mamex.compare as compare
        import recbole_mamex.compare.running as running
        import slowjob

        running.run_one = slowjob.run_one  # the workers train this
        sys.exit(compare.main(["--dataset", "tiny-cold", "--models", "Pop", "--seeds", "1", "2", "3", "--jobs", "2",
                               "--out", {str(out)!r}]))
    """)
    workers = started_workers(workdir, proc, 2)  # seed 1 finished, seeds 2 and 3 training
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: every process of the group gets it
    stdout, stderr = proc.communicate(timeout=120)
    assert still_alive_after(workers, 15) == []
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stdout + stderr and stderr.count("interrupted") == 1
    assert stderr.strip().splitlines()[-1] == (
        f"interrupted: 1 finished run(s) kept in {out}; run the same command again to go on"
    )
    assert [p.name for p in (out / "runs").glob("*.json")] == ["Pop-seed1.json"]


@needs_proc
def test_the_processes_of_a_distributed_run_end_with_their_launcher(cold_tiny, workdir):
    proc = start(workdir, f"""
        from recbole_mamex import compat; compat.apply_all()
        from recbole_mamex.distributed import free_port, run_distributed
        from recbole_mamex.runspec import RunSpec
        import slowjob

        if __name__ == "__main__":
            run_distributed(slowjob.train, RunSpec("Pop", "tiny-cold", settings={{"use_gpu": False}}), nproc=2,
                            port=free_port())
    """)
    workers = started_workers(workdir, proc, 2)  # ranks 0 and 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert still_alive_after(workers, 15) == []


# ----------------------------------------------------------------------------- addresses
@pytest.fixture
def taken_port():
    """A port something listens on (as another program's server, or a process group's store left running)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("port", ["xyz", "0", "70000", "-1", "5678.0", ""])
def test_a_port_that_is_not_one_is_refused(port):
    with pytest.raises(AddressError, match=re.escape(f"--port: expected a TCP port, an integer 1..65535, found {port!r}")):
        check_rendezvous("localhost", port, 0)


def test_run_command_refuses_a_taken_or_malformed_rendezvous_at_once(workdir, taken_port, capsys):
    base = ["--model=BPR", "--dataset=tiny", "--nproc=2"]
    started = time.time()
    assert cli_main([*base, f"--port={taken_port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert f"expected --port a TCP port free on this machine (it holds rank 0: group_offset 0), found {taken_port} taken" in err
    assert cli_main([*base, "--port=xyz"]) == 2
    assert "found 'xyz'" in capsys.readouterr().err
    assert cli_main([*base, "--ip=no-such-host.invalid", f"--port={free_port()}"]) == 2
    assert "expected --ip the address of the machine with rank 0, found 'no-such-host.invalid'" in capsys.readouterr().err
    assert time.time() - started < 15  # torch gives up on a taken port after ~40 s, on a bad host later still
    # a machine without rank 0 does not listen: its port is the other machine's, not tried here
    assert check_rendezvous("localhost", taken_port, 2) == taken_port
    assert check_rendezvous("localhost", str(free_port()), 0) > 0


@pytest.mark.parametrize("address", ["host:xyz", "host", "host:", ":6379", "host:0", "host:65536", "ray://host", "::1:6379"])
def test_a_malformed_ray_address_is_refused(address):
    with pytest.raises(AddressError, match=re.escape(f"--ray: expected an address host:port, the port an integer "
                                                     f"1..65535, found {address.removeprefix('ray://')!r}")):
        check_ray_address(address)


def test_a_ray_address_nothing_answers_at_is_refused_in_seconds(monkeypatch):
    dead = free_port()  # nothing listens there
    started = time.time()
    for address in (f"127.0.0.1:{dead}", f"ray://127.0.0.1:{dead}", f"[::1]:{dead}"):
        with pytest.raises(AddressError, match=rf"--ray: expected the address of a running Ray cluster .*found nothing "
                                               rf"answering at .*:{dead} within 5 s"):
            check_ray_address(address)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{dead}")  # what ray.init joins when given no address
    for address in (None, "auto"):
        with pytest.raises(AddressError, match="RAY_ADDRESS: expected the address of a running Ray cluster"):
            check_ray_address(address)
    assert time.time() - started < 10
    check_ray_address("local")  # a new local instance: nothing to reach
    monkeypatch.delenv("RAY_ADDRESS")
    check_ray_address(None)


@pytest.fixture
def web_server():
    """The port of an HTTP server answering on every interface (a web server, as Ray's dashboard is one)."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def short_ray_head_timeout(monkeypatch):
    """Ray's health check bounded by 3 s (RAY_HEAD_TIMEOUT_S), so a test shows that bound holds."""
    import recbole_mamex.distributed

    pytest.importorskip("ray")
    monkeypatch.setattr(recbole_mamex.distributed, "RAY_HEAD_TIMEOUT_S", 3.0)
    return 3.0


NOT_A_RAY_HEAD = (r"{what}: expected the address of a running Ray cluster \(its head node's host:port, as `ray start --head` "
                  r"prints it\), found something answering at 127\.0\.0\.1:{port} that is not a Ray head \(Ray's health check "
                  r"within 3 s: [^()]+\)$")


def test_a_ray_address_where_something_else_answers_is_refused_in_seconds(monkeypatch, short_ray_head_timeout, web_server,
                                                                         taken_port):
    # ray.init alone: about 145 s of retries (20 x 7 s) and 40 log lines, then a ConnectionError
    for port in (web_server, taken_port):  # a web server; a port that accepts and never answers
        started = time.time()
        with pytest.raises(AddressError, match=NOT_A_RAY_HEAD.format(what="--ray", port=port)) as raised:
            check_ray_address(f"127.0.0.1:{port}")
        assert time.time() - started < short_ray_head_timeout + 5
        assert len(str(raised.value).splitlines()) == 1
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{web_server}")
    with pytest.raises(AddressError, match=NOT_A_RAY_HEAD.format(what="RAY_ADDRESS", port=web_server)):
        check_ray_address(None)


def test_the_ray_backend_refuses_what_is_not_a_ray_head_in_seconds(short_ray_head_timeout, web_server):
    import ray

    from recbole_mamex.parallel import backend_for

    started = time.time()
    with pytest.raises(AddressError, match=NOT_A_RAY_HEAD.format(what="--ray", port=web_server)):
        backend_for(print, ray_address=f"127.0.0.1:{web_server}", use_ray=True)
    assert time.time() - started < short_ray_head_timeout + 5
    assert not ray.is_initialized()


def test_compare_refuses_a_ray_address_that_is_not_a_ray_head_first(workdir, capsys, short_ray_head_timeout, web_server):
    started = time.time()
    assert compare_main(["--dataset", "tiny-cold", "--models", "Pop", "--seeds", "1", "--out", str(workdir / "res"),
                         "--ray", f"127.0.0.1:{web_server}"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch("error: " + NOT_A_RAY_HEAD.format(what="--ray", port=web_server), err.strip().splitlines()[-1])
    assert "Traceback" not in err and "GCS" not in err  # neither Ray's retries' log lines nor its RpcError's traceback
    assert time.time() - started < short_ray_head_timeout + 10
    assert not (workdir / "res").exists()


def test_compare_refuses_a_bad_ray_address_first(workdir, capsys):
    base = ["--dataset", "tiny-cold", "--models", "Pop", "--seeds", "1", "--out", str(workdir / "res")]  # no dataset yet
    started = time.time()
    assert compare_main([*base, "--ray", "host:xyz"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --ray: expected an address host:port, the port an integer 1..65535, found 'host:xyz'"
    )
    assert compare_main([*base, "--ray", f"127.0.0.1:{free_port()}"]) == 2
    assert "error: --ray: expected the address of a running Ray cluster" in capsys.readouterr().err
    assert time.time() - started < 15  # Ray alone: 145 s, then a ConnectionError traceback
    assert not (workdir / "res").exists()


def test_compare_refuses_process_group_settings_its_runs_would_ignore(workdir, capsys):
    base = ["--dataset", "tiny-cold", "--models", "Pop", "--seeds", "1", "--out", str(workdir / "res")]  # no dataset yet
    assert compare_main([*base, "--nproc=2", "--port=xyz"]) == 2  # before: one process each, nproc: 2 in the records
    assert capsys.readouterr().err.strip() == (
        "error: config overrides: expected no process-group settings (each run of a comparison trains in one process; "
        "--jobs N or --ray train several at once), found --nproc, --port"
    )
    assert compare_main([*base, "--set", "world_size=2"]) == 2
    assert "found --world_size" in capsys.readouterr().err


def test_ray_tune_refuses_a_ray_address_nothing_answers_at(tiny_dataset, workdir, monkeypatch):
    pytest.importorskip("ray", reason="ray is not installed (the [ray] extra)")
    pytest.importorskip("pyarrow", reason="Ray Tune's results need pyarrow (the [ray] extra)")
    from recbole_mamex.runspec import RunSpec
    from recbole_mamex.tuning import tune_with_ray

    (workdir / "space.hyper").write_text("learning_rate choice [0.01,0.001]\n")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    started = time.time()
    with pytest.raises(AddressError, match="RAY_ADDRESS: expected the address of a running Ray cluster"):
        tune_with_ray(RunSpec("BPR", "tiny"), workdir / "space.hyper", num_samples=1, local_mode=False)
    assert time.time() - started < 30
