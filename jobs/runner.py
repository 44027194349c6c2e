"""The JSONL batch job: validate every line, schedule every request, stream durable outputs.

    outcome = run_job(JobConfig(input="prompts.jsonl", results="results.jsonl"))

Outputs (each record fsynced as it is written, see docs/guarantees.md):
- results JSONL: one OpenAI-batch-shaped record per input line (success or error);
- timing log JSONL: one line per finished request (arrival, start, first token, finish, rounds,
  preemptions, switch seconds, policy events, speculative metrics): the simulator's trace format;
- summary JSON at the end (latency percentiles, TTFT, makespan, tokens/s, acceptance, overhead).
A request's timing line is written before its result: the result is the commit point that
`--resume` trusts.

Order of a run, so that a run that cannot start leaves an earlier run's files as they were:
options (JobConfig), device and model location (hf_laps.preflight), the input, a probe of every
output path, the model load; only then are the outputs opened (truncated unless resuming) and
the earlier summary removed (it is written again at the end).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hf_laps.jobs.records import error_record, line_error_record, record_key, success_record
from hf_laps.jobs.requests import JobRequest, load_requests
from hf_laps.jobs.notices import input_warnings
from hf_laps.jobs.shard import ShardSpec
from hf_laps.jobs.sink import JsonlSink, SinkError, completed_keys, probe_writable
from hf_laps.jobs.stopping import graceful_stop
from hf_laps.jobs.epochs import RunEpoch
from hf_laps.jobs.summary import summarize
from hf_laps.preflight import check_device, check_model_location
from hf_laps.scheduling import SchedulerConfig, policy_entry
from hf_laps.serving import ContextWindowExceeded, EngineConfig
from hf_laps.timing_log import TimingRecord, read_timing_log
from hf_laps.workloads import poisson_arrivals

ORACLE_PREDICTORS = ("oracle", "noisy-oracle")

# exit codes (documented in docs/guarantees.md)
EXIT_OK = 0  # every request has a success record
EXIT_USAGE = 2  # bad options, unreadable input, model not loadable
EXIT_REQUEST_ERRORS = 3  # the job completed; some requests have error records
EXIT_OUTPUT_ERROR = 4  # an output file could not be written (disk full, permissions)
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM: stopped at a round boundary; rerun with --resume


@dataclass
class JobConfig:
    """Everything `hf-laps run` can be told (the CLI flags map one to one)."""

    input: str
    results: str
    timing_log: str | None = None  # default: <results stem>.timing.jsonl
    summary: str | None = None  # default: <results stem>.summary.json
    policy: str = "laps-sd"
    model: str | None = None  # None: the embedded default (SmolLM2-135M-Instruct)
    assistant: str | None = None  # None: prompt-lookup drafting
    max_new_tokens: int = 128
    temperature: float = 0.0
    device: str = "cpu"
    dtype: str = "auto"
    resume: bool = False
    seed: int | None = None
    trust_remote_code: bool = False
    kv_budget_bytes: int | None = None
    kv_capacity_bytes: int | None = None  # device bytes all admitted requests' KV caches may reach
    predictor: str = "learned"
    predictor_sigma: float | None = None
    history: tuple[str, ...] = ()  # timing logs of earlier jobs for the learned predictor
    truth: str | None = None  # timing log of an earlier run of this job (oracles)
    ignore_arrivals: bool = False
    arrival_rate: float | None = None  # requests/s: Poisson arrivals in input order (seeded)
    progress: bool = True
    engine: EngineConfig = field(default_factory=EngineConfig)  # draft length and drafting knobs
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)  # queue / stability / gittins knobs
    threads: int | None = None  # torch CPU threads; None: hf_laps.runtime.default_cpu_threads()
    max_batch_size: int | str = "auto"  # the most requests per round sharing one verify forward ("auto": 32)
    shard: ShardSpec | None = None  # one process of a sharded run: only its requests (jobs/sharded.py)

    def __post_init__(self) -> None:
        stem = str(Path(self.results).with_suffix(""))
        self.timing_log = self.timing_log or f"{stem}.timing.jsonl"
        self.summary = self.summary or f"{stem}.summary.json"
        if self.arrival_rate is not None and not self.arrival_rate > 0:
            raise ValueError(f"arrival_rate must be > 0 requests/s, got {self.arrival_rate}")
        if self.max_batch_size != "auto":
            if isinstance(self.max_batch_size, bool) or not isinstance(self.max_batch_size, int) \
                    or self.max_batch_size < 1:
                raise ValueError(f"max_batch_size must be >= 1 or 'auto', got {self.max_batch_size!r}")
        if self.kv_capacity_bytes is not None and self.kv_capacity_bytes < 0:
            raise ValueError(f"kv_capacity_bytes must be >= 0, got {self.kv_capacity_bytes}")
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if len({Path(p).resolve() for p in (self.results, self.timing_log, self.summary)}) < 3:
            raise ValueError("results, timing log and summary must be three different files")
        self._check_conflicts()

    def _check_conflicts(self) -> None:
        """Option combinations that cannot mean anything: refused before anything runs."""
        if self.truth is None and policy_entry(self.policy).needs_truth:
            raise ValueError(f"--policy {self.policy} needs --truth: the timing log of an earlier run of this job")
        if self.truth is None and self.predictor in ORACLE_PREDICTORS:
            raise ValueError(f"--predictor {self.predictor} needs --truth: the timing log of an earlier run of this job")
        if self.predictor_sigma is not None and self.predictor != "noisy-oracle":
            raise ValueError("--predictor-sigma applies only to --predictor noisy-oracle")
        if self.arrival_rate is not None and self.ignore_arrivals:
            raise ValueError("--arrival-rate and --ignore-arrivals contradict each other; give one")


@dataclass
class JobOutcome:
    exit_code: int
    summary: dict | None = None
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0  # already in the results file (resume)
    message: str = ""
    counts: dict = field(default_factory=dict)
    outputs_opened: bool = False  # False: the run stopped before writing anything
    warnings: list[str] = field(default_factory=list)
    batched_round_failures: int = 0  # batched rounds that raised; their rows reran one by one


def run_job(config: JobConfig, generator=None, on_warning: Callable[[str], None] | None = None,
            policy=None) -> JobOutcome:
    """Run the job; never raises for bad requests or output errors (see the exit codes).

    Args:
        config: the job.
        generator: a ready LapsGenerator (tests, notebooks); None loads config.model.
        policy: a fresh Policy instance to schedule with (default: the generator's, built from
            config.policy, config.scheduler and the predictor options).
        on_warning: called with each warning as it arises (they are also in outcome.warnings).

    Raises:
        PreflightError (a ValueError): unusable device or model location; nothing was touched.
        ModelLoadError: the model could not be loaded; nothing was touched.
    """
    started = time.monotonic()
    if generator is None:
        check_device(config.device)
        check_model_location(config.model)  # None: the embedded default
        if config.assistant is not None:
            check_model_location(config.assistant)
    try:
        requests, line_errors = load_requests(config.input)
    except (OSError, ValueError) as exc:
        return JobOutcome(EXIT_USAGE, message=f"cannot read {config.input}: {exc}")
    if config.shard is not None:
        requests, line_errors = config.shard.select(requests, line_errors, config.max_new_tokens)
    warnings = input_warnings(config.input, requests, line_errors)
    for warning in warnings if on_warning is not None else ():
        on_warning(warning)
    # SIGINT / SIGTERM stop the job gracefully from here on, model loading included
    with graceful_stop() as stop:
        try:
            outcome = _start(config, requests, line_errors, generator, stop, started, policy)
        except SinkError as exc:
            outcome = JobOutcome(EXIT_OUTPUT_ERROR, message=f"output error: {exc}")
    outcome.warnings = warnings
    return outcome


def _start(config, requests, line_errors, generator, stop, started, policy) -> JobOutcome:
    """Probe the outputs, load the model, then open the outputs and run."""
    for path in (config.results, config.timing_log):
        probe_writable(path)  # fails before the (long) model load, changing nothing
    done = completed_keys(config.results) if config.resume else set()
    todo = [r for r in requests if r.custom_id not in done]
    if todo and generator is None and not stop.requested:
        generator = build_generator(config)
    if stop.requested:  # a signal while the model loaded: nothing was written
        return JobOutcome(EXIT_INTERRUPTED, message="interrupted before the job started; nothing was written")
    with JsonlSink(config.results, resume=config.resume) as results, JsonlSink(
        config.timing_log, resume=config.resume
    ) as timing:
        with contextlib.suppress(FileNotFoundError):
            os.remove(config.summary)  # it described the outputs as they were; rewritten at the end
        return _run(config, requests, line_errors, results, timing, generator, stop, started, policy)


def _run(config, requests, line_errors, results, timing, generator, stop, started, policy) -> JobOutcome:
    done = completed_keys(config.results) if config.resume else set()
    outcome = JobOutcome(EXIT_OK, outputs_opened=True)
    for error in line_errors:
        record = line_error_record(error)
        if record_key(record) not in done:
            results.write(record)
        outcome.failed += 1
    todo = [r for r in requests if r.custom_id not in done]
    outcome.skipped = len(requests) - len(todo)
    if todo:
        interrupted = stop.requested or _serve(config, todo, generator, results, timing, outcome, stop, policy)
        if interrupted:
            outcome.exit_code = EXIT_INTERRUPTED
            outcome.message = "interrupted at a round boundary; rerun with --resume to finish"
            return outcome
    # errors of requests skipped as already done (this run's are counted above already)
    outcome.failed += _previous_errors(config, {r.custom_id for r in requests} & done)
    outcome.summary = _write_summary(config, wall_seconds=time.monotonic() - started,
                                     batched_round_failures=outcome.batched_round_failures)
    if outcome.failed:
        outcome.exit_code = EXIT_REQUEST_ERRORS
    return outcome


def _previous_errors(config, skipped_ids: set[str]) -> int:
    """Error records that a previous run wrote for the valid requests this run skipped."""
    if not skipped_ids:
        return 0
    failed = 0
    with open(config.results, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            with contextlib.suppress(ValueError, AttributeError):
                record = json.loads(line)
                if record.get("error") and record.get("custom_id") in skipped_ids:
                    failed += 1
    return failed


def build_generator(config: JobConfig):
    from hf_laps.serving.generator import LapsGenerator

    # the predictor registry (hf_laps.scheduling.predictors.registry) owns the defaults and what
    # --history means; the generator adds the engine's feature fingerprint
    options = {"history": list(config.history), "sigma": config.predictor_sigma, "seed": config.seed or 0}
    return LapsGenerator.from_pretrained(
        config.model,
        config.assistant,
        device=config.device,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        threads=config.threads,
        policy=config.policy,
        scheduler_config=config.scheduler,
        engine_config=config.engine,
        predictor=config.predictor,
        predictor_options=options,
        kv_budget_bytes=config.kv_budget_bytes,
        kv_capacity_bytes=config.kv_capacity_bytes,
        max_batch_size=config.max_batch_size,
        progress=config.progress,
    )


def _serve(config, todo, generator, results, timing, outcome, stop, policy) -> bool:
    """Run the requests; True when interrupted (Ctrl-C / SIGTERM) before all were written."""
    truth = load_truth(config.truth) if config.truth else {}
    by_id = {r.custom_id: r for r in todo}
    arrivals = poisson_arrivals(len(todo), config.arrival_rate, config.seed or 0) if config.arrival_rate else None
    submissions, errors = [], []
    for index, request in enumerate(todo):
        try:
            submissions.append(_submission(config, generator, request, truth))
            if arrivals is not None:
                submissions[-1].arrival = arrivals[index]
        except ValueError as exc:
            field = exc.field if isinstance(exc, RequestRejected) else _field(request)
            errors.append(error_record(custom_id=request.custom_id, line_no=request.line_no, field=field, message=str(exc)))
    for record in errors:
        results.write(record)
        outcome.failed += 1
    model_name = config.model or "SmolLM2-135M-Instruct (embedded)"
    finished = 0
    epoch = RunEpoch(stop.attach)
    for completion in generator.stream(submissions, loop_hook=epoch.attach, policy=policy):
        request = by_id[completion.submission.request_id]
        if completion.ok:
            timing.write(epoch.stamp(completion.record))  # before the result: the result is the commit
            results.write(_success(request, completion, model_name))
            outcome.succeeded += 1
        else:
            results.write(_run_error(request, completion))
            outcome.failed += 1
        finished += 1
    if stop.loop is not None:
        outcome.batched_round_failures += getattr(stop.loop, "batched_round_failures", 0)
    return finished < len(submissions)  # a signal after the last request changes nothing


class RequestRejected(ValueError):
    """A request refused before it runs, because of the named field (a 400 error record)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _submission(config, generator, request: JobRequest, truth: dict):
    kwargs = request.generation_kwargs(config.max_new_tokens, config.temperature)
    if request.max_tokens is None:
        # the job's default cap is fitted to the context window; a line's own max_tokens that
        # does not fit is refused (below), as OpenAI and vLLM do, never shortened silently
        kwargs["default_max_new_tokens"] = kwargs.pop("max_new_tokens")
    if "seed" not in kwargs and config.seed is not None:
        kwargs["seed"] = config.seed + request.line_no  # reproducible, distinct per request
    if request.stop:
        kwargs["stop_strings"] = list(request.stop)
    prompt = request.prompt if request.messages is None else list(request.messages)
    arrival = 0.0 if config.ignore_arrivals or request.arrival_time is None else request.arrival_time
    submission = generator.submission(request.custom_id, prompt, kwargs, arrival)
    if request.max_tokens is not None:
        _check_fits(generator, submission.prompt, request.max_tokens)
    known = truth.get(request.custom_id)
    if known is not None:
        submission.true_output_tokens = known.output_tokens
        submission.true_service_seconds = known.busy_seconds
    elif policy_entry(config.policy).needs_truth:
        raise RequestRejected("custom_id", f"custom_id {request.custom_id!r} is not in the --truth timing log: "
                                           f"{config.policy} needs its true length and time")
    return submission


def _check_fits(generator, prompt, max_tokens: int) -> None:
    """A 400 on `max_tokens` when prompt + max_tokens exceeds the model's context window."""
    try:
        generator.check_fits(prompt, max_tokens)
    except ContextWindowExceeded as exc:
        raise RequestRejected("max_tokens", (
            f"prompt ({exc.prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the model's "
            f"context window of {exc.window} tokens; use max_tokens <= {exc.room}"
        )) from None


def _field(request: JobRequest) -> str:
    return "messages" if request.messages is not None else "prompt"


def _success(request: JobRequest, completion, model_name: str) -> dict:
    state = completion.state
    return success_record(
        request,
        text=state.text or "",
        stop=request.stop,
        finish_reason=state.finish_reason,
        prompt_tokens=state.prompt_len,
        completion_tokens=state.num_generated,
        model=model_name,
        extra={"hf_laps": {"latency": completion.record.latency, "metrics": state.metrics.to_dict()}},
    )


def _run_error(request: JobRequest, completion) -> dict:
    # refused at admission (prompt over the context window, bad options): the client's, 400;
    # a round that failed while running (out of memory, ...): the server's, 500
    client_side, message = completion.rejected, completion.error
    return error_record(
        custom_id=request.custom_id,
        line_no=request.line_no,
        field=_field(request) if client_side else None,
        message=message,
        code="invalid_request" if client_side else "server_error",
        status_code=400 if client_side else 500,
    )


def load_truth(path: str) -> dict[str, TimingRecord]:
    """custom_id -> timing record of an earlier run (its output_tokens and busy_seconds)."""
    return {record.custom_id: record for record in read_timing_log(path)}


def _read_timing(path: str) -> list[TimingRecord]:
    return read_timing_log(path) if os.path.exists(path) else []


def _write_summary(config: JobConfig, wall_seconds: float, batched_round_failures: int = 0) -> dict:
    summary = summarize(_read_timing(config.timing_log), wall_seconds=wall_seconds,
                        batched_round_failures=batched_round_failures)
    summary["policy"] = config.policy
    tmp = f"{config.summary}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, config.summary)  # atomic: a crash never leaves half a summary
    except OSError as exc:
        raise SinkError(config.summary, exc.strerror or str(exc), exc.errno) from exc
    return summary


__all__ = ["JobConfig", "JobOutcome", "run_job", "load_truth", "EXIT_OK", "EXIT_USAGE", "EXIT_REQUEST_ERRORS", "EXIT_OUTPUT_ERROR", "EXIT_INTERRUPTED"]
