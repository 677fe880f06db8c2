"""Running a comparison's (row, split, seed) runs: one run (:func:`run_one`), every run with resumption and
the stale-record checks (:func:`run_all`), and the backend (``--jobs`` / ``--ray``) they train on.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from recbole_mamex.parallel import EpochLog
from recbole_mamex.errors import CompareError
from recbole_mamex.records import RecordFileError, check_run_record, jsonable, read_record, setting_differences, versions, write_json_atomic
from recbole_mamex.compare.plan import Plan
from recbole_mamex.runspec import RunSpec


def run_file(out: Path, model: str, seed: int, split_seed: int | None = None) -> Path:
    split = f"-split{split_seed}" if split_seed is not None else ""
    return out / "runs" / f"{model}{split}-seed{seed}.json"


def run_one(spec: RunSpec, on_epoch) -> dict:
    """Train and test the run ``spec`` (a :class:`~recbole_mamex.runspec.RunSpec`); returns its record
    (the comparison adds its row's name and protocol, :meth:`~recbole_mamex.compare.plan.Plan.labelled`).
    ``on_epoch(epoch, valid_score)`` is called after each validation."""
    from recbole_mamex.quick_start import run_spec
    from recbole_mamex.search import TrialPruned

    measured = reset_peak_rss()
    start, cpu_start = time.time(), time.process_time()
    try:
        result = run_spec(spec, callback_fn=on_epoch)
    except TrialPruned as pruned:  # a tuning trial the pruner stopped: what it cost goes with it
        import torch

        pruned.info.update(wall_s=time.time() - start, cpu_s=time.process_time() - cpu_start,
                           torch_threads=torch.get_num_threads())
        raise
    results = result["test_result_by_candidates"] or {"full": result["test_result"]}
    return {
        "model": spec.model,
        "seed": result["config"]["seed"],
        "dataset": spec.dataset,
        "run": jsonable(spec.to_record()),
        "results": {kind: {k: float(v) for k, v in metrics.items()} for kind, metrics in results.items()},
        "best_valid": {k: float(v) for k, v in result["best_valid_result"].items()},
        "best_valid_score": float(result["best_valid_score"]),
        "valid_metric": result["config"]["valid_metric"],
        "valid_curve": result["valid_curve"],
        "best_epoch": result["best_epoch"],
        "epochs_trained": result["epochs_trained"],
        "checkpoint": result["model_file"],
        "wall_s": time.time() - start,
        "cpu_s": time.process_time() - cpu_start,  # this process's CPU time, all its threads
        "peak_rss_gb": peak_rss_gb() if measured else None,
        "config": jsonable(dict(result["config"].final_config_dict)),
        "versions": versions(),
    }


def reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (Linux: ``/proc/self/clear_refs``), so that
    :func:`peak_rss_gb` after a run is that run's peak; False where the platform cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gb() -> float | None:
    """Peak resident memory (GiB) of this process since :func:`reset_peak_rss` (``VmHWM``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def training_diverged(err: BaseException) -> bool:
    """Whether ``err`` ended a training whose loss became NaN: the loss check of every trainer this package
    builds (:meth:`~recbole_mamex.trainer.resume.LastCheckpointMixin._check_nan`, in place of RecBole's)
    raises :class:`~recbole_mamex.trainer.resume.TrainingDivergedError`. The one test of it, for tuning
    trials (a failed trial) and comparison runs (an error naming the run)."""
    from recbole_mamex.trainer.resume import TrainingDivergedError

    return isinstance(err, TrainingDivergedError)


def run_all(plan: Plan, out: Path, runner=run_one, log=print, rerun: bool = False, before_training=None,
            jobs_at_once: int = 1, on_interrupt=None, metrics=()) -> list[dict]:
    """Run every missing (row, split, seed) of ``plan`` (:class:`~recbole_mamex.compare.plan.Plan`), saving
    each as it finishes; returns all records.

    ``runner(spec, on_epoch)`` trains one run (:func:`run_one`, or a backend's ``run_one``). A run on a
    split records its ``split_seed``. A stored record is read with every field checked
    (:func:`check_run_record`: the run its file name says, metric types and ranges, ``metrics`` present);
    one that cannot be used is a :class:`RecordFileError` naming it (with ``rerun``: trained again). A
    finished run is reused only when it was made on its split's dataset and this protocol and (when the
    plan checks configs, :meth:`Plan.config`) with the same settings and versions
    (:func:`setting_differences`) and on the same data (:func:`data_identity` of the planned config, which
    every new record stores). Otherwise: a :class:`CompareError` naming the differences, checked for every
    job before the first one trains; with ``rerun``, those runs are trained again and their records
    replaced. A record without a data identity (written before records stored one) is reused and listed as
    unchecked. ``before_training()`` is called once, before the stored records are checked against the
    data when some run has no record (so that the data is there), else before the first run that has to be
    trained (none when every run is on disk). A run whose training diverges (its loss became NaN) is a
    :class:`CompareError` naming it; the records of the runs that finished are kept. ``jobs_at_once`` >
    1: that many ``runner`` calls at once, from threads (the runner hands each run to a backend of
    :mod:`recbole_mamex.parallel`); records are written as runs finish, in any order, and returned in job
    order; ``on_interrupt()`` ends the runs in progress when the comparison is interrupted.
    """
    from recbole_mamex.config import listed_differences
    from recbole_mamex.data.identity import data_identity, identity_differences
    from recbole_mamex.trainer.candidates import candidate_kinds_for_test

    protocol = plan.protocol
    jobs = plan.jobs()
    prepared = []

    def prepare():
        if before_training is not None and not prepared:
            before_training()
            prepared.append(True)

    def planned(job):
        row, split, seed = job
        return plan.config(plan.spec(row, seed, split.dataset))

    def identity_of(job):
        config = planned(job)
        return data_identity(config) if config is not None else None

    if any(not run_file(out, m, s, split.seed).exists() for m, split, s in jobs):
        prepare()
    finished = {}  # job -> its record, when it can be reused
    stale, unchecked, undated = [], [], []  # data changed / data not there / no data identity stored
    for job in jobs:
        model, split, seed = job
        path = run_file(out, model, seed, split.seed)
        if not path.exists():
            continue
        config = planned(job)
        kinds = None
        if config is not None:
            kinds = candidate_kinds_for_test({"test_candidates": config.get("test_candidates")}) or ["full"]
        try:
            record = check_run_record(path, read_record(path), model, seed, split.seed, kinds, metrics)
        except RecordFileError as err:
            if not rerun:
                raise
            log(f"{path}: cannot be used ({err.found.split(';')[0]}): trained again (--rerun)")
            continue
        if (record.get("dataset"), record.get("protocol")) != (split.dataset, protocol):
            raise CompareError(
                f"{path}: expected a run on dataset '{split.dataset}' with protocol '{protocol}', found "
                f"'{record.get('dataset')}' / '{record.get('protocol')}'; use another --out"
            )
        diffs = setting_differences(record, config) if config is not None else []
        if diffs and not rerun:
            raise CompareError(
                f"{path}: a finished run made with other settings than this command: {listed_differences(diffs)}"
                ". Use another --out to keep both, or --rerun to train the differing runs again (their records are replaced)"
            )
        if diffs:
            continue
        if config is not None:
            now = identity_of(job)
            if "data_identity" not in record:
                undated.append(path.name)
            elif not now:
                unchecked.append(path.name)
            else:
                changed = identity_differences(record["data_identity"], now, config.get("data_path"))
                if changed:
                    stale.append((path.name, changed))
                    continue
        finished[job] = record
    if stale:
        names = [name for name, _ in stale]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        what = listed_differences(sorted({c for _, changes in stale for c in changes}))
        text = (f"{out / 'runs'}: {len(stale)} finished run(s) were trained on data that has changed since ({what}): "
                f"{shown}")
        if not rerun:
            raise CompareError(
                f"{text}. Use --rerun to train them again on the data there now (their records are replaced), or "
                "another --out to keep them apart"
            )
        log(f"{text}: trained again (--rerun)")
    if undated:
        log(f"note: {len(undated)} finished run(s) in {out / 'runs'} were recorded before records stored their data's "
            f"identity ({', '.join(undated[:4])}{' ...' if len(undated) > 4 else ''}): reused without checking that the "
            "data is the same; move them away to train them again")
    if unchecked:
        log(f"note: the data of {len(unchecked)} finished run(s) is not there to check them against "
            f"({', '.join(unchecked[:4])}{' ...' if len(unchecked) > 4 else ''}): reused as recorded")
    records: dict[int, dict] = {}
    todo = []
    for index, job in enumerate(jobs, start=1):
        model, split, seed = job
        name = f"{model}{f' split {split.seed}' if split.seed is not None else ''} seed {seed}"
        if job in finished:
            log(f"[{index}/{len(jobs)}] {name}: done before, skipped (same settings)")
            records[index] = finished[job]
        else:
            todo.append((index, job, name))
    if todo:
        prepare()
    identities = {index: identity_of(job) for index, job, _ in todo}  # the data each run reads, before it trains
    durations = []

    def train(index, job, name):
        model, split, seed = job
        remaining = sum(1 for i, _, _ in todo if i >= index)
        eta = f", ETA {np.mean(durations) * remaining / max(1, jobs_at_once) / 60:.1f} min" if durations else ""
        log(f"[{index}/{len(jobs)}] {name}: training{eta}")
        try:
            record = runner(plan.spec(model, seed, split.dataset), EpochLog(name, log))
        except ValueError as err:
            if not training_diverged(err):
                raise
            raise CompareError(
                f"{name}: {str(err).splitlines()[0]}; then run the same command again (the runs that finished are kept in "
                f"{out / 'runs'})"
            ) from None
        record = plan.labelled(model, record)
        if split.seed is not None:
            record["split_seed"] = split.seed
        return record

    def keep(index, job, name, record):
        model, split, seed = job
        path = run_file(out, model, seed, split.seed)
        if identities[index] is not None:
            changed = identity_differences(identities[index], identity_of(job))
            if changed:
                raise CompareError(
                    f"{name}: the data changed while this run trained ({listed_differences(changed)}), so its record "
                    f"is not kept ({path}); run the command again once the data stays as it is"
                )
            record["data_identity"] = identities[index]
        write_json_atomic(path, record)
        durations.append(record["wall_s"])
        records[index] = record
        log(f"[{index}/{len(jobs)}] {name}: finished in {record['wall_s']:.0f} s")

    jobs_at_once = max(1, jobs_at_once)
    if jobs_at_once == 1:
        for index, job, name in todo:
            keep(index, job, name, train(index, job, name))
    else:
        from recbole_mamex.parallel import locked_log, run_concurrently

        log = locked_log(log)
        tasks = [lambda i=index, j=job, n=name: train(i, j, n) for index, job, name in todo]
        for position, record in run_concurrently(tasks, jobs_at_once, on_interrupt=on_interrupt):
            keep(*todo[position], record)
    return [records[index] for index in sorted(records)]


PROCESS_GROUP_KEYS = ("nproc", "world_size", "ip", "port", "offset", "local_rank")  # run_recbole_mamex.py's DDP


def check_backend_args(args) -> None:
    """``--jobs``, ``--ray-cpus`` and ``--ray``'s address (its syntax, and that a cluster answers there, in
    seconds), checked before any data is read or made; a process group's settings (``--nproc=2``), which
    a comparison's one-process runs would ignore, refused."""
    from recbole_mamex.distributed import check_ray_address

    given = [item.lstrip("-").split("=", 1)[0] for item in [*getattr(args, "overrides", []), *(args.set or [])]]
    grouped = [key for key in given if key in PROCESS_GROUP_KEYS]
    if grouped:
        raise CompareError(
            f"config overrides: expected no process-group settings (each run of a comparison trains in one process; --jobs N "
            f"or --ray train several at once), found {', '.join('--' + key for key in grouped)}"
        )
    if args.jobs < 1:
        raise CompareError(f"--jobs: expected a number of runs at once >= 1, found {args.jobs}")
    if args.ray is None and args.ray_cpus != 1:
        raise CompareError("--ray-cpus: expected together with --ray, found it alone")
    if args.ray is not None:
        check_ray_address(args.ray or None, "--ray")


def start_backend(args):
    """The :mod:`recbole_mamex.parallel` backend of ``--jobs`` / ``--ray`` (checked by :func:`check_backend_args`)."""
    from recbole_mamex.parallel import backend_for

    backend = backend_for(run_one, args.jobs, ray_address=args.ray or None, use_ray=args.ray is not None, ray_cpus=args.ray_cpus)
    if backend.jobs > 1:
        print(f"compare: training on {backend.name}")
    return backend

