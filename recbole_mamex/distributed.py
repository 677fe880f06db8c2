"""Multi-process training (one machine or several) through RecBole's own DDP path.

RecBole 1.2.1 spawns one process per device (``recbole.quick_start.run``): every process builds the same
Config with its ``local_rank``, joins a process group on ``tcp://ip:port``, reads the same dataset, trains
its share of each batch (a ``DistributedSampler`` per dataloader, batch size divided by ``world_size``)
inside ``DistributedDataParallel`` and evaluates its share of the users; the metrics are then averaged
over processes. :func:`run_distributed` does the same for :func:`recbole_mamex.quick_start.run_recbole_mamex`
(so for our models and RecBole's). On CPU the ``ddp_on_cpu`` shim in :mod:`recbole_mamex.compat` makes it
use gloo.

:class:`recbole_mamex.trainer.distributed.DistributedTrainerMixin`, put in front of RecBole's trainer by
:func:`recbole_mamex.trainer.get_trainer` for a distributed config, makes RecBole's path exact where it is not:

- metrics: RecBole weights each process's mean by ``4 x`` its number of batches (``len`` of the batch
  tuple); here each process's mean is weighted by the users it actually evaluated (after candidate
  filtering), so user-averaged metrics (Recall, NDCG, Hit, Precision, MRR, MAP) equal the one-process
  value. Metrics that are not user averages (AUC, GAUC, ItemCoverage, GiniIndex, ...) keep RecBole's
  approximation;
- ``DistributedSampler`` pads each evaluated split by repeating its first users so every process gets
  as many; in full-ranking evaluation those repeats are dropped before scoring, so no user counts twice;
- the checkpoint name holds the local time, read once per process: the first process's name is used by
  all, and every process waits for it to finish writing before the best model is loaded for test;
- checkpoints hold a one-process copy of the config (``single_spec`` True, ``local_rank`` 0), so
  ``load_data_and_model``, serving and ``interpret`` read them outside a process group;
- the model's non-persistent buffers (our item features, modality mask, graph adjacency: data rebuilt
  from the same dataset by every process) are not broadcast by DDP before every step.

What stays different from one process: each process draws its own negatives and shuffles its own share,
so training sees other (equally distributed) batches, and MAMEX's batch-scope auxiliary losses
(``tower_scope: batch``) are estimated per process on its half of the batch's items, then averaged
through the gradients (``tower_scope: catalogue`` computes them identically on every process).

The addresses other processes are reached at (a process group's ``ip:port``; a Ray cluster's, for
:mod:`recbole_mamex.parallel` and :mod:`recbole_mamex.tuning`) are checked here, before any process
starts and in bounded time (:func:`check_rendezvous`, :func:`check_ray_address`): a malformed one, one
nothing answers at, one where something answers that is not a Ray cluster's head (a web server, the
dashboard's port, SSH, Redis: Ray's health check, as ``ray status`` makes it, says so), or a port already
taken is one :class:`AddressError`, not a wait of minutes and a traceback from deep inside torch or Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import socket
from logging import getLogger

import torch.distributed as dist
from recbole_mamex.errors import RecboleMamexError
from recbole_mamex.paths import make_log_dir

class DistributedConfigError(RecboleMamexError, ValueError):
    """Process counts and ranks that cannot make one process group."""


class AddressError(RecboleMamexError, ValueError):
    """An address of other processes (a process group's, a Ray cluster's) that is malformed, that nothing
    answers at, or whose port is taken."""


CONNECT_TIMEOUT_S = 5.0  # how long a check waits for an address to answer
RAY_HEAD_TIMEOUT_S = 10.0  # how long a check waits for a Ray head to answer Ray's health check (a head takes
# milliseconds; whatever else answers is told apart at once; ray.init alone retried ~145 s)


def _port(value) -> int | None:
    """``value`` (an int or its text) as a TCP port, 1..65535; None when it is not one."""
    text = str(value).strip()
    return int(text) if text.isascii() and text.isdigit() and 1 <= int(text) <= 65535 else None


def port_number(value, what: str) -> int:
    """``value`` as a TCP port; ``what`` names it in the error."""
    port = _port(value)
    if port is None:
        raise AddressError(f"{what}: expected a TCP port, an integer 1..65535, found {value!r}")
    return port


def host_and_port(address: str, what: str) -> tuple[str, int]:
    """``host:port`` (an IPv6 host in brackets: ``[::1]:6379``) as ``(host, port)``."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # an IPv6 host without brackets: where its port starts is a guess
        host = ""
    if not host or _port(port) is None:
        raise AddressError(f"{what}: expected an address host:port, the port an integer 1..65535, found {address!r}")
    return host, _port(port)


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def check_answers(host: str, port: int, what: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Something accepts a TCP connection at ``host:port`` within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:  # refused, unreachable, timed out, a name that does not resolve
        raise AddressError(f"{what}, found nothing answering at {host}:{port} within {timeout:g} s ({_reason(err)})") from None


def ray_address_given(address: str | None, what: str = "--ray") -> tuple[str | None, str]:
    """The address ``ray.init(address=address)`` joins and what names it: ``RAY_ADDRESS`` where it is set and
    ``address`` is none or ``auto``, else ``address`` and ``what``."""
    env = os.environ.get("RAY_ADDRESS")
    return (env, "RAY_ADDRESS") if address in (None, "", "auto") and env else (address, what)


def check_ray_address(address: str | None, what: str = "--ray") -> None:
    """The Ray cluster ``ray.init(address=address)`` joins (``address``; when it is none or ``auto``,
    ``RAY_ADDRESS`` where set), checked in bounded time: a ``host:port`` or ``ray://host:port`` must
    answer, and at a ``host:port`` a Ray head must (:func:`check_ray_head`; a Ray Client server's ``ray://``
    address is left to Ray, which gives up after about 30 s); none and ``local`` (a new local instance) and
    ``auto`` (Ray's own lookup) pass."""
    address, what = ray_address_given(address, what)
    if address in (None, "", "local", "auto"):
        return
    client = address.startswith("ray://")  # a Ray Client server (its own port, 10001), not the head's GCS
    host, port = host_and_port(address[len("ray://"):] if client else address, what)
    expected = (f"{what}: expected the address of a running Ray cluster (its head node's host:port, as `ray start --head` "
                "prints it)")
    check_answers(host, port, expected)
    if not client:
        check_ray_head(host, port, expected)


def check_ray_head(host: str, port: int, what: str, timeout: float | None = None) -> None:
    """What answers at ``host:port`` is a Ray cluster's head (its GCS) of this Ray version, by Ray's own health
    check (``ray._raylet.check_health``, which ``ray status`` makes), within ``timeout`` seconds (default
    :data:`RAY_HEAD_TIMEOUT_S`). Without it, ``ray.init`` at a web server's, an SSH or a Redis port retries
    for about 145 s and logs 40 lines before its ``ConnectionError``. Nothing is checked where ray is not
    installed (the backend says so)."""
    try:
        from ray._raylet import check_health
    except ImportError:
        return
    timeout = RAY_HEAD_TIMEOUT_S if timeout is None else timeout
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):  # where it fails, Ray prints its RpcError's traceback
            healthy = check_health(address, timeout=timeout)
    except RuntimeError as err:  # a head of another Ray version: "Ray cluster at ... has version ..."
        raise AddressError(f"{what}, found at {host}:{port} a Ray head this process cannot join ({_one_line(err)})") from None
    if not healthy:
        lines = [line.strip() for line in said.getvalue().splitlines() if line.strip()]
        ray_said = lines[-1].rpartition("RpcError: ")[2] if lines else "no answer"
        raise AddressError(
            f"{what}, found something answering at {host}:{port} that is not a Ray head (Ray's health check within "
            f"{timeout:g} s: {ray_said}; a dashboard's or a Ray Client server's port is not the head's)"
        )


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def check_rendezvous(ip: str, port, group_offset: int) -> int:
    """A process group's address (``ip``, ``port``), checked before any process starts; returns the port.

    ``ip`` must resolve; where this machine holds rank 0 (``group_offset`` 0), the port must be free here:
    rank 0 listens on it, on every interface, as torch's TCPStore does (a port in use would fail there
    only after torch's retries, 40 s later). Elsewhere the port is not tried: rank 0 may start later."""
    port = port_number(port, "distributed run: --port")
    try:
        socket.getaddrinfo(ip, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise AddressError(
            f"distributed run: expected --ip the address of the machine with rank 0, found {ip!r}, which does not resolve "
            f"({_reason(err) if isinstance(err, OSError) else err})"
        ) from None
    if group_offset == 0:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as TCPStore: a port in TIME_WAIT is free
            try:
                sock.bind(("", port))
            except OSError as err:
                raise AddressError(
                    f"distributed run: expected --port a TCP port free on this machine (it holds rank 0: group_offset 0), "
                    f"found {port} taken ({_reason(err)}); choose another --port"
                ) from None
    return port


def free_port() -> int:
    """A TCP port nothing listens on right now (for a one-machine run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(local_rank, train, spec, queue):
    result = train(spec.with_settings(local_rank=local_rank))
    dist.destroy_process_group()
    if local_rank == 0:
        queue.put(result)


def run_distributed(
    train,
    spec,
    nproc: int = 1,
    world_size: int = -1,
    ip: str = "localhost",
    port=5678,
    group_offset: int = 0,
):
    """Train and test with ``nproc`` processes on this machine, as RecBole's ``run`` does.

    Args:
        train: what each process runs with its copy of ``spec`` (:func:`recbole_mamex.quick_start.run_spec`;
            it is passed, not imported, because the launcher sits below the assembly that calls it).
        spec: the run (:class:`~recbole_mamex.runspec.RunSpec`); each process adds its ``local_rank``.
        nproc: processes started here (one per GPU; on CPU, each gets ``torch`` threads of its own).
        world_size: processes over all machines (``-1``: ``nproc``, a one-machine run).
        ip, port: address of the machine whose processes have the first ranks (``group_offset`` 0).
        group_offset: rank of this machine's first process (the number of processes on the machines
            before it).

    Returns:
        the result dict of the process with local rank 0 (its ``config`` is that process's config).
    """
    import torch.multiprocessing as mp

    from recbole_mamex.config import Config
    from dataset_prep.prepare import ensure_dataset_files

    world_size = nproc if world_size == -1 else world_size
    if nproc < 1 or world_size < nproc + group_offset:
        raise DistributedConfigError(
            f"distributed run: expected 1 <= nproc and nproc + group_offset <= world_size, found nproc={nproc}, "
            f"group_offset={group_offset}, world_size={world_size}"
        )
    port = check_rendezvous(ip, port, group_offset)
    if spec.cmd_args is None:  # the processes do not read this command line again
        spec = dataclasses.replace(spec, cmd_args=())
    spec = spec.with_settings(world_size=world_size, ip=ip, port=str(port), nproc=nproc, offset=group_offset)
    # Done once here rather than by every process at the same time: preparing a bundled dataset, and the
    # directories RecBole's processes would each create (its exists-then-makedirs races: "File exists").
    config = Config(**spec.config_arguments())
    ensure_dataset_files(config)
    make_log_dir(config["model"])
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    getLogger().info(f"starting {nproc} processes (ranks {group_offset}..{group_offset + nproc - 1} of {world_size})")
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(
        _worker,
        args=(train, spec, queue),
        nprocs=nproc,
        join=True,
    )
    return None if queue.empty() else queue.get()
