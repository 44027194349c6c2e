"""The JSONL batch job: validate every line, schedule every request, stream durable outputs.

    outcome = run_job(JobConfig(input="prompts.jsonl", results="results.jsonl"))

Outputs (each record fsynced as it is written, see docs/guarantees.md):
- results JSONL: one OpenAI-batch-shaped record per input line (success or error);
- timing log JSONL: one line per finished request (arrival, start, first token, finish, rounds,
  preemptions, switch seconds, policy events, speculative metrics): the simulator's trace format;
- summary JSON at the end (latency percentiles, TTFT, makespan, tokens/s, acceptance, overhead).
A request's timing line is written before its result: the result is the commit point that
`--resume` trusts.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hf_laps.jobs.records import error_record, line_error_record, record_key, success_record
from hf_laps.jobs.requests import JobRequest, LineError, parse_line, read_requests
from hf_laps.jobs.sink import JsonlSink, SinkError, completed_keys
from hf_laps.jobs.stopping import graceful_stop
from hf_laps.jobs.summary import format_summary_table, summarize
from hf_laps.workloads import poisson_arrivals

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
    prompt_lookup: int = 10
    num_assistant_tokens: int = 5
    max_new_tokens: int = 128
    temperature: float = 0.0
    device: str = "cpu"
    dtype: str = "auto"
    resume: bool = False
    seed: int | None = None
    trust_remote_code: bool = False
    kv_budget_bytes: int | None = None
    predictor: str = "learned"
    predictor_sigma: float | None = None
    history: tuple[str, ...] = ()  # timing logs of earlier jobs for the learned predictor
    truth: str | None = None  # timing log of an earlier run of this job (oracles)
    ignore_arrivals: bool = False
    arrival_rate: float | None = None  # requests/s: Poisson arrivals in input order (seeded)
    progress: bool = True
    threads: int | None = None  # torch CPU threads; None: hf_laps.runtime.default_cpu_threads()

    def __post_init__(self) -> None:
        stem = str(Path(self.results).with_suffix(""))
        self.timing_log = self.timing_log or f"{stem}.timing.jsonl"
        self.summary = self.summary or f"{stem}.summary.json"
        if self.arrival_rate is not None and not self.arrival_rate > 0:
            raise ValueError(f"arrival_rate must be > 0 requests/s, got {self.arrival_rate}")
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {self.max_new_tokens}")
        if len({Path(p).resolve() for p in (self.results, self.timing_log, self.summary)}) < 3:
            raise ValueError("results, timing log and summary must be three different files")


@dataclass
class JobOutcome:
    exit_code: int
    summary: dict | None = None
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0  # already in the results file (resume)
    message: str = ""
    counts: dict = field(default_factory=dict)


def run_job(config: JobConfig, generator=None) -> JobOutcome:
    """Run the job; never raises for bad requests or output errors (see the exit codes)."""
    try:
        requests, line_errors = load_requests(config.input)
    except (OSError, ValueError) as exc:
        return JobOutcome(EXIT_USAGE, message=f"cannot read {config.input}: {exc}")
    # SIGINT / SIGTERM stop the job gracefully from here on, model loading included
    with graceful_stop() as stop:
        try:
            if not config.resume:
                # open both files before truncating either: an unwritable timing log must not
                # cost the previous results file
                for path in (config.results, config.timing_log):
                    JsonlSink(path, resume=True).close()
            with JsonlSink(config.results, resume=config.resume) as results, JsonlSink(
                config.timing_log, resume=config.resume
            ) as timing:
                return _run(config, requests, line_errors, results, timing, generator, stop)
        except SinkError as exc:
            return JobOutcome(EXIT_OUTPUT_ERROR, message=f"output error: {exc}")


def load_requests(path: str) -> tuple[list[JobRequest], list[LineError]]:
    """A JSONL file, or a `datasets` dataset saved with `save_to_disk` (one request per row)."""
    if Path(path).is_dir():
        import datasets

        rows = datasets.load_from_disk(path)
        parsed = [parse_line(index + 1, json.dumps(_row_request(index, row))) for index, row in enumerate(rows)]
        return [p for p in parsed if isinstance(p, JobRequest)], [p for p in parsed if isinstance(p, LineError)]
    return read_requests(path)


def _row_request(index: int, row: dict) -> dict:
    row = {k: v for k, v in row.items() if v is not None}
    row.setdefault("custom_id", f"row-{index}")
    if "prompt" not in row and "messages" not in row and "text" in row:
        row["prompt"] = row.pop("text")
    return row


def _run(config, requests, line_errors, results, timing, generator, stop) -> JobOutcome:
    done = completed_keys(config.results) if config.resume else set()
    outcome = JobOutcome(EXIT_OK)
    for error in line_errors:
        record = line_error_record(error)
        if record_key(record) not in done:
            results.write(record)
        outcome.failed += 1
    todo = [r for r in requests if r.custom_id not in done]
    outcome.skipped = len(requests) - len(todo)
    if todo:
        if generator is None and not stop.requested:
            generator = build_generator(config)
        interrupted = stop.requested or _serve(config, todo, generator, results, timing, outcome, stop)
        if interrupted:
            outcome.exit_code = EXIT_INTERRUPTED
            outcome.message = "interrupted at a round boundary; rerun with --resume to finish"
            return outcome
    # errors of requests skipped as already done (this run's are counted above already)
    outcome.failed += _previous_errors(config, {r.custom_id for r in requests} & done)
    outcome.summary = _write_summary(config)
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
    from hf_laps.engine import EngineConfig
    from hf_laps.generator import LapsGenerator

    options = {}
    if config.predictor == "noisy-oracle":
        options = {"sigma": config.predictor_sigma if config.predictor_sigma is not None else 0.5, "seed": config.seed or 0}
    elif config.predictor == "learned" and config.history:
        options = {"history": list(config.history)}
    return LapsGenerator.from_pretrained(
        config.model,
        config.assistant,
        device=config.device,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        threads=config.threads,
        policy=config.policy,
        engine_config=EngineConfig(
            num_assistant_tokens=config.num_assistant_tokens, prompt_lookup_num_tokens=config.prompt_lookup
        ),
        predictor=config.predictor,
        predictor_options=options,
        kv_budget_bytes=config.kv_budget_bytes,
        progress=config.progress,
    )


def _serve(config, todo, generator, results, timing, outcome, stop) -> bool:
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
            errors.append(error_record(custom_id=request.custom_id, line_no=request.line_no, field=_field(request), message=str(exc)))
    for record in errors:
        results.write(record)
        outcome.failed += 1
    model_name = config.model or "SmolLM2-135M-Instruct (embedded)"
    finished = 0
    for completion in generator.stream(submissions, loop_hook=stop.attach):
        request = by_id[completion.submission.request_id]
        if completion.ok:
            timing.write(completion.timing)  # before the result: the result is the commit
            results.write(_success(request, completion, model_name))
            outcome.succeeded += 1
        else:
            results.write(_run_error(request, completion))
            outcome.failed += 1
        finished += 1
    return finished < len(submissions)  # a signal after the last request changes nothing


def _submission(config, generator, request: JobRequest, truth: dict):
    kwargs = request.generation_kwargs(config.max_new_tokens, config.temperature)
    if "seed" not in kwargs and config.seed is not None:
        kwargs["seed"] = config.seed + request.line_no  # reproducible, distinct per request
    if request.stop:
        kwargs["stop_strings"] = list(request.stop)
    prompt = request.prompt if request.messages is None else list(request.messages)
    arrival = 0.0 if config.ignore_arrivals or request.arrival_time is None else request.arrival_time
    submission = generator.submission(request.custom_id, prompt, kwargs, arrival)
    known = truth.get(request.custom_id)
    if known is not None:
        submission.true_output_tokens = known["output_tokens"]
        submission.true_service_seconds = known["busy_seconds"]
    elif config.policy == "srpt-oracle":
        raise ValueError("srpt-oracle needs the true execution time: pass --truth with the timing log of an earlier run of this job")
    return submission


def _field(request: JobRequest) -> str:
    return "messages" if request.messages is not None else "prompt"


def _success(request: JobRequest, completion, model_name: str) -> dict:
    state = completion.state
    return success_record(
        request,
        text=state.text or "",
        finish_reason=state.finish_reason,
        prompt_tokens=state.prompt_len,
        completion_tokens=state.num_generated,
        model=model_name,
        extra={"hf_laps": {"latency": completion.timing["latency"], "metrics": state.metrics.to_dict()}},
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


def load_truth(path: str) -> dict[str, dict]:
    """custom_id -> timing record of an earlier run (output_tokens, busy_seconds)."""
    truth = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)
                truth[record["custom_id"]] = record
    return truth


def _read_timing(path: str) -> list[dict]:
    records = []
    if not os.path.exists(path):
        return records
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
    return records


def _write_summary(config: JobConfig) -> dict:
    summary = summarize(_read_timing(config.timing_log))
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


def print_summary(summary: dict) -> str:
    return format_summary_table(summary)


__all__ = ["JobConfig", "JobOutcome", "run_job", "load_truth", "EXIT_OK", "EXIT_USAGE", "EXIT_REQUEST_ERRORS", "EXIT_OUTPUT_ERROR", "EXIT_INTERRUPTED"]
