"""Where the runs and tuning trials of a comparison train (``python -m recbole_mamex.compare``).

- :class:`InProcess` (the default, ``--jobs 1``): one after the other, in this process.
- :class:`LocalProcesses` (``--jobs N``): N at once, each in a worker process of this machine, the CPU
  threads divided between them (``torch.set_num_threads``: the CPUs this process may use // N, at least 1).
- :class:`RayTasks` (``--ray [ADDRESS]``): each run or trial is a task of Ray's core API on a Ray cluster
  (``ray.init(address=...)``; none: a local instance). A task whose worker dies (a lost node, a killed
  process) is run again by Ray, up to ``max_retries`` times; an error raised by the run itself is not retried.

Every backend trains a :class:`~recbole_mamex.runspec.RunSpec` with the function it is given
(:func:`recbole_mamex.compare.run_one`) and hands the run record back to this
process, which writes it (atomically, as each finishes): what a comparison stores, its resumption and its
stale-run checks are the same whichever backend trained the runs. A run elsewhere prints its epochs to its
own standard output (a worker process: this terminal; a Ray task: Ray's worker logs, which Ray forwards to
the driver).

A task runs in the directory the comparison was started in (``cwd``, passed as an absolute path): relative
paths of the config (``data_path``, ``checkpoint_dir``, ``./properties``) mean the same there. On a Ray
cluster of several machines that directory, with the datasets and the checkpoints under it, must be on a
filesystem every node mounts at the same path.

The worker processes of :class:`LocalProcesses` live no longer than the comparison, however it ends (an
error, Ctrl-C, SIGKILL, an OOM kill), and ignore Ctrl-C: a terminal sends it to every process of the
group, and the comparison ends its workers itself and prints one line.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from recbole_mamex.errors import RecboleMamexError


class ParallelError(RecboleMamexError, ValueError):
    """A backend that cannot run as asked (found before any training)."""


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def flushed_print(*args, **kwargs):
    print(*args, **kwargs, flush=True)


@dataclass(frozen=True)
class EpochLog:
    """``on_epoch`` of a comparison run: ``log``s ``<label>: epoch E, valid score S``. A backend that trains
    elsewhere passes a copy with the default ``log`` (its own standard output, flushed)."""

    label: str
    log: object = flushed_print
    monitor: object = None  # a tuning trial's pruner callback (recbole_mamex.search.PruningMonitor): plain data

    def __call__(self, epoch, valid_score):
        self.log(f"    {self.label}: epoch {epoch}, valid score {valid_score:.4f}")
        if self.monitor is not None:
            self.monitor(epoch, valid_score)  # raises TrialPruned to stop the trial


def _worker_start(lifeline) -> None:
    """The first thing a worker process does: ignore Ctrl-C, and exit as soon as ``lifeline`` (the reading
    end of a pipe whose writing end only the comparison holds, and never writes to) ends: when the
    comparison closes it, or the kernel does as the comparison ends in any way. A thread waiting on a pipe
    rather than Linux's ``PR_SET_PDEATHSIG``: that fires when the *thread* that started the worker ends,
    and a process pool starts its workers from whichever thread submits work (here the comparison's
    short-lived run threads)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_when_ended, args=(lifeline,), name="lifeline", daemon=True).start()


def _exit_when_ended(lifeline) -> None:
    try:
        lifeline.recv_bytes()  # nothing is ever sent: returns only at the end of the pipe
    except (EOFError, OSError):
        pass
    os._exit(1)


def _run_elsewhere(run_one, cwd: str, threads: int, spec, label: str, monitor=None) -> dict:
    """``run_one(spec, on_epoch)`` in a worker process or Ray task (``monitor``: the caller's
    ``on_epoch.monitor``, sent along)."""
    import torch

    os.chdir(cwd)
    torch.set_num_threads(threads)
    print(f"    {label}: training in process {os.getpid()} with {threads} thread(s)", flush=True)
    record = run_one(spec, EpochLog(label, monitor=monitor))
    record["torch_threads"] = threads
    return record


class InProcess:
    """Runs train here, one at a time."""

    jobs = 1
    name = "this process"

    def __init__(self, run_one):
        self._run = run_one

    def run_one(self, spec, on_epoch) -> dict:
        import torch

        record = self._run(spec, on_epoch)
        record["torch_threads"] = torch.get_num_threads()
        return record

    def close(self, cancel: bool = False) -> None:
        pass


def _label(on_epoch, spec) -> str:
    return getattr(on_epoch, "label", None) or f"{spec.model} seed {spec.settings.get('seed')}"


class LocalProcesses:
    """``jobs`` runs at once, each in a worker process (started with ``spawn``: no state of this process,
    such as torch's threads, is inherited) with ``threads`` CPU threads."""

    def __init__(self, run_one, jobs: int, threads: int | None = None):
        if jobs < 1:
            raise ParallelError(f"--jobs: expected a number of runs at once >= 1, found {jobs}")
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self._run, self.jobs = run_one, jobs
        self.threads = threads or max(1, available_cpus() // jobs)
        self.name = f"{jobs} worker processes, {self.threads} thread(s) each"
        context = multiprocessing.get_context("spawn")
        reader, self._lifeline = context.Pipe(duplex=False)
        self._pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker_start,
                                         initargs=(reader,))
        self._closed = False

    def run_one(self, spec, on_epoch) -> dict:
        future = self._pool.submit(_run_elsewhere, self._run, os.getcwd(), self.threads, spec, _label(on_epoch, spec),
                                   getattr(on_epoch, "monitor", None))
        return future.result()

    def close(self, cancel: bool = False) -> None:
        """Shut the workers down (the first call; later ones do nothing); ``cancel``: stop the runs in
        progress too (their processes are ended)."""
        if self._closed:
            return
        self._closed = True
        if cancel:  # no public API ends running work; a pool already shut down holds None
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        self._lifeline.close()  # a worker still there exits now (see _worker_start)


class RayTasks:
    """Each run a Ray task with ``cpus`` CPUs (and as many torch threads), re-run by Ray up to ``max_retries``
    times when its worker dies; at most ``jobs`` submitted at once (default: the cluster's CPUs // cpus)."""

    def __init__(self, run_one, address: str | None = None, cpus: int = 1, max_retries: int = 3, jobs: int | None = None,
                 init_kwargs: dict | None = None):
        try:
            import ray
        except ImportError:
            raise ParallelError(
                "--ray: expected the ray package, found none installed; install the extra: pip install 'recbole-mamex[ray]'"
            ) from None
        if cpus < 1:
            raise ParallelError(f"--ray-cpus: expected CPUs per run >= 1, found {cpus}")
        self._ray, self._run = ray, run_one
        self._started = not ray.is_initialized()
        if self._started:
            import warnings

            from recbole_mamex.distributed import AddressError, check_ray_address, ray_address_given

            check_ray_address(address, "--ray")  # a head's host:port: one answers as one, in seconds
            joined, what = ray_address_given(address, "--ray")
            try:
                with warnings.catch_warnings():  # said again by the error below
                    warnings.filterwarnings("ignore", message="Ray Client connection timed out")
                    ray.init(address=address, **(init_kwargs or {}))
            except ConnectionError as err:  # 'auto' with no cluster running here; no Ray Client server at ray://
                if str(joined).startswith("ray://"):
                    raise AddressError(f"{what}: expected a running Ray cluster's Ray Client server at {joined} (the head's "
                                       f"port 10001 unless set otherwise), found none answering as one ({err})") from None
                raise AddressError(f"{what}: expected a running Ray cluster, found none ({err})") from None
        self.cpus, self.max_retries = cpus, max_retries
        total = int(ray.cluster_resources().get("CPU", cpus))
        self.jobs = jobs or max(1, total // cpus)
        self.name = f"Ray tasks ({total} CPUs in the cluster, {cpus} per run, up to {self.jobs} at once)"
        self._remote = ray.remote(num_cpus=cpus, max_retries=max_retries, retry_exceptions=False)(_run_elsewhere)

    def run_one(self, spec, on_epoch) -> dict:
        ref = self._remote.remote(self._run, os.getcwd(), self.cpus, spec, _label(on_epoch, spec),
                                  getattr(on_epoch, "monitor", None))
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError as err:  # the run's own error, as it would be raised here
            raise err.as_instanceof_cause() from None

    def close(self, cancel: bool = False) -> None:
        if self._started:
            self._started = False
            self._ray.shutdown()


def backend_for(run_one, jobs: int = 1, ray_address: str | None = None, use_ray: bool = False, ray_cpus: int = 1):
    """The backend a command line asks for; ``run_one``: the function that trains one run (a module-level
    function, as it is sent to the worker processes by reference)."""
    if use_ray:
        return RayTasks(run_one, address=ray_address, cpus=ray_cpus, jobs=jobs if jobs > 1 else None)
    if jobs == 1:
        return InProcess(run_one)
    return LocalProcesses(run_one, jobs)


def run_concurrently(tasks, jobs: int, on_interrupt=None):
    """Call every ``task()`` of ``tasks`` (an iterable of callables), at most ``jobs`` at once in threads
    of this process, and yield ``(index, result)`` as each finishes.

    A task's error cancels the tasks not started yet; the ones running finish and are yielded, then the
    first error is raised (nothing that trained is lost). An interrupt (or the caller closing the
    generator) cancels the tasks not started, calls ``on_interrupt()`` (which ends the running ones) and
    is raised at once."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    tasks = list(tasks)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="compare-run")
    futures, pending, first_error, next_task = {}, set(), None, 0

    def start_more():  # a task starts only from here, so none starts after an error
        nonlocal next_task
        while first_error is None and next_task < len(tasks) and len(pending) < max(1, jobs):
            future = pool.submit(tasks[next_task])
            futures[future] = next_task
            pending.add(future)
            next_task += 1

    try:
        start_more()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=futures.get):
                error = future.exception()
                if error is not None and not isinstance(error, Exception):
                    raise error  # an interrupt inside a task: as one here
                if error is None:
                    yield futures[future], future.result()
                elif first_error is None:
                    first_error = error
            start_more()
        if first_error is not None:
            raise first_error
    except (KeyboardInterrupt, GeneratorExit):
        if on_interrupt is not None:
            on_interrupt()
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


_print_lock = threading.Lock()


def locked_log(log):
    """``log`` made safe to call from several threads (lines do not interleave)."""

    def logged(*args, **kwargs):
        with _print_lock:
            log(*args, **kwargs)

    return logged
