"""One process of a job sharded over N processes by accelerate; the main process also merges.

    accelerate launch --num_processes 2 -m hf_laps.cli run prompts.jsonl -o out/results.jsonl

Every process, started by `accelerate launch` (torchrun underneath):
1. reads its rank and N from `accelerate.PartialState()` (gloo on CPU, NCCL on GPUs) and picks
   its device: `--device cuda` becomes `cuda:<local rank>`, one GPU per process;
2. reads the input, computes the same plan as every other process (hf_laps.jobs.shard) and the
   manifest; with --resume, refuses shard files of another job, version or N;
3. removes its stale status file; the main process writes the manifest; one barrier
   (`wait_for_everyone`) so that no process can see another's status file of an earlier run;
4. runs its shard as a normal job into `<results stem>.shard-K-of-N.*` (durable, resumable);
5. writes its status file and exits 0 whatever its shard's outcome, because the launcher stops
   every other process as soon as one exits non-zero, and a failed shard must not interrupt
   the others;
6. the main process polls until every status file is there, merges when all shards completed
   (hf_laps.jobs.merge) and exits with the run's code, naming each shard that failed.

Why poll files instead of a second barrier at the end: shards can finish hours apart, and a
collective waits at most its process-group timeout (30 minutes for gloo, 10 for NCCL by
default); the status files also carry each shard's exit code and message to the main process,
which needs the shard files on its file system anyway to merge them. A process that is killed
(SIGKILL, a segfault) writes no status; the launcher then stops the others (SIGTERM: they stop
at a round boundary, their records intact) and `--resume` finishes the job.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import replace
from typing import Callable

from hf_laps.jobs import manifest as files
from hf_laps.jobs.manifest import Manifest, ManifestMismatch, ShardStatus
from hf_laps.jobs.merge import merge_shards
from hf_laps.jobs.requests import load_requests
from hf_laps.jobs.runner import EXIT_INTERRUPTED, EXIT_USAGE, JobConfig, JobOutcome, run_job
from hf_laps.jobs.shard import ShardSpec, manifest_path, plan_digest, plan_shards
from hf_laps.jobs.stopping import graceful_stop

WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
POLL_SECONDS = 0.2
STOPPING_SECONDS = 10.0  # a stopped process finishes its round and writes its status well within this


def launched_processes() -> int:
    """N when this process was started by a distributed launcher (torchrun, mpirun), else 1."""
    for name in WORLD_SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def run_sharded(config: JobConfig, on_warning: Callable[[str], None] | None = None) -> JobOutcome:
    """This process's shard; on the main process, the merged run's outcome."""
    from accelerate import PartialState

    started = time.monotonic()
    state = PartialState(cpu=config.device == "cpu")
    spec = ShardSpec(state.process_index, state.num_processes)
    manifest = _expected_manifest(config, spec.count)
    if config.resume:
        _check_resumable(config, manifest)
    files.remove(spec.status_path(config.results))
    if state.is_main_process:
        files.write_manifest(manifest_path(config.results), manifest)  # exit_code null: under way
    state.wait_for_everyone()
    status = _run_shard(_shard_config(config, spec, state), spec, on_warning if state.is_main_process else None)
    files.write_status(spec.status_path(config.results), status)
    if not state.is_main_process:
        # the main process reports the run (its tally, Ctrl-C, ...); another one speaks only of
        # its own failure, so a run prints each line once
        quiet = status.completed or status.exit_code == EXIT_INTERRUPTED
        return JobOutcome(0, message="" if quiet else status.describe() + " (the main process reports the run)")
    # interrupted itself: the launcher is stopping every process, wait only for their last words
    patience = STOPPING_SECONDS if status.exit_code == EXIT_INTERRUPTED else None
    return _finish(config, _wait_for_statuses(config.results, spec.count, patience), started)


def check_resumable(config: JobConfig, count: int) -> None:
    """Refuse, before anything starts, a --resume that the shard files cannot serve."""
    if config.resume:
        _check_resumable(config, _expected_manifest(config, count))


def run_unsharded(config: JobConfig, on_warning: Callable[[str], None] | None = None) -> JobOutcome:
    """`run_job`, refusing to --resume a sharded run in one process (its results are in the
    shard files, which this run would ignore); a fresh run forgets an earlier sharded one."""
    earlier = files.read_manifest(manifest_path(config.results))
    if config.resume and earlier is not None and earlier.num_processes > 1:
        raise ManifestMismatch(f"{config.results} was started with {earlier.num_processes} processes; "
                               f"resume it with --num-processes {earlier.num_processes}")
    outcome = run_job(config, on_warning=on_warning)
    if outcome.outputs_opened and not config.resume:
        files.remove(manifest_path(config.results))
    return outcome


def _expected_manifest(config: JobConfig, count: int) -> Manifest:
    from hf_laps import __version__

    try:
        requests, _ = load_requests(config.input)
        job_sha256 = files.file_sha256(config.input)
    except OSError as exc:
        raise ValueError(f"cannot read {config.input}: {exc}") from None
    plan = plan_shards(requests, count, config.max_new_tokens)
    return Manifest(__version__, job_sha256, count, plan_digest(plan), str(config.input))


def _check_resumable(config: JobConfig, manifest: Manifest) -> None:
    path = manifest_path(config.results)
    earlier = files.read_manifest(path)
    if earlier is not None:
        manifest.check_resumable(earlier, path)
    elif os.path.exists(config.results) and os.path.getsize(config.results) > 0:
        raise ManifestMismatch(f"{config.results} was written by a single process; resume it without "
                               "--num-processes (or start over without --resume)")


def _shard_config(config: JobConfig, spec: ShardSpec, state) -> JobConfig:
    """The shard's own files, device, threads and progress bar; everything else as given."""
    from hf_laps.runtime import usable_cores

    device = config.device
    if device in ("cuda", "xpu", "npu", "mlu", "musa"):  # no index: this process's own device
        device = str(state.device)
    threads = config.threads
    if threads is None and device == "cpu":  # share the cores instead of each taking them all
        local = int(os.environ.get("LOCAL_WORLD_SIZE", spec.count))
        threads = max(1, usable_cores() // max(1, local))
    results = spec.results_path(config.results)
    return replace(config, results=results, timing_log=spec.timing_path(config.results),
                   summary=spec.summary_path(config.results), device=device, threads=threads,
                   shard=spec, progress=config.progress and state.is_main_process)


def _run_shard(config: JobConfig, spec: ShardSpec, on_warning) -> ShardStatus:
    """Run the shard; any failure becomes its status instead of ending the process."""
    from hf_laps.serving.generator import ModelLoadError

    where = {"shard": spec.index, "processes": spec.count, "host": socket.gethostname(),
             "device": config.device, "pid": os.getpid()}
    try:
        outcome = run_job(config, on_warning=on_warning)
    except (ValueError, ModelLoadError) as exc:  # a bad device, a model that does not load
        return ShardStatus(exit_code=EXIT_USAGE, message=f"error: {exc}", **where)
    except Exception as exc:  # noqa: BLE001 - a crash of one shard must not stop the others
        return ShardStatus(exit_code=1, message=f"crashed: {exc!r}", **where)
    return ShardStatus(exit_code=outcome.exit_code, message=outcome.message, succeeded=outcome.succeeded,
                       failed=outcome.failed, skipped=outcome.skipped, outputs_opened=outcome.outputs_opened,
                       **where)


def _wait_for_statuses(results: str, count: int, patience: float | None) -> list[ShardStatus]:
    """Every shard's status; stops waiting at SIGINT / SIGTERM (the launcher stops the run
    when a process died) or after `patience` seconds: a missing status then reads as killed."""
    paths = [ShardSpec(k, count).status_path(results) for k in range(count)]
    deadline = None if patience is None else time.monotonic() + patience
    with graceful_stop() as stop:
        while True:
            statuses = [files.read_status(path) for path in paths]
            if all(statuses) or stop.requested or (deadline is not None and time.monotonic() > deadline):
                break
            time.sleep(POLL_SECONDS)
    return [status or ShardStatus(shard=k, processes=count, exit_code=EXIT_INTERRUPTED,
                                  message="no status: the process was killed (or is still stopping)")
            for k, status in enumerate(statuses)]


def _finish(config: JobConfig, statuses: list[ShardStatus], started: float) -> JobOutcome:
    """Merge when every shard completed; otherwise name the shards that did not."""
    outcome = JobOutcome(0, succeeded=sum(s.succeeded for s in statuses), failed=sum(s.failed for s in statuses),
                         skipped=sum(s.skipped for s in statuses))
    unfinished = [s for s in statuses if not s.completed]
    if unfinished:
        real_failures = [s for s in unfinished if s.exit_code != EXIT_INTERRUPTED] or unfinished
        outcome.exit_code = real_failures[0].exit_code
        outcome.message = "\n".join(s.describe() for s in unfinished) + "\nthe other shards' records are intact; " \
                          "fix the cause and rerun with --resume to finish"
        if any(s.outputs_opened for s in statuses):  # the merged files no longer describe the shards
            for path in (config.results, config.timing_log, config.summary):
                files.remove(path)
    else:
        outcome.summary = merge_shards(results=config.results, timing_log=config.timing_log,
                                       summary=config.summary, count=len(statuses), policy=config.policy,
                                       wall_seconds=time.monotonic() - started)
        outcome.outputs_opened = True
        outcome.exit_code = 3 if outcome.failed else 0
    files.record_exit_code(manifest_path(config.results), outcome.exit_code)
    return outcome
