"""The three sides of the batched benchmark, each run on the same requests (the same token ids,
the same per-request max_new_tokens, greedy):

- ours: the real serving loop (`ServingLoop` + `BatchEngineExecutor`, prompt-lookup drafting)
  under a scheduling policy, up to B requests per round, on the real clock;
- transformers' padded batched `generate`: the requests in arrival order in chunks of B,
  left-padded, one `generate(do_sample=False)` per chunk; a chunk runs until its longest row is
  done, so every request of a chunk finishes when the chunk does;
- transformers' continuous batching (the engine behind `model.generate_batch`): at most B
  requests per forward (`max_requests_per_batch`), a finished request's slot refilled at once.
  `generate_batch` itself takes one max_new_tokens for all prompts, so this side drives the same
  manager directly (`continuous_batching_context_manager` + `add_request` with each request's own
  cap), which is what `generate_batch` does inside.

Neither transformers side speculates. Every request arrives at t = 0 unless `arrivals` is given.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import torch

from hf_laps.serving.batch_executor import BatchEngineExecutor
from hf_laps.serving.engine_executor import EngineExecutor
from hf_laps.serving.executor import Submission
from hf_laps.serving.loop import ServingLoop
from hf_laps.scheduling import make_policy, policy_entry
from hf_laps.scheduling.predictors.learned import LearnedPredictor

from benchmarks.batched.workload import BenchRequest


@dataclass
class RunResult:
    """One run of one side: wall seconds, tokens generated, each request's latency (finish -
    arrival) and, for our side, each request's service seconds (the sum of its rounds)."""

    wall: float
    tokens: int
    latencies: list[float]
    service: list[float] = field(default_factory=list)
    copy_share: float = 0.0
    prefill_share: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall

    @property
    def mean_latency(self) -> float:
        return statistics.fmean(self.latencies)


class CopyMeter:
    """Sums the timings of every batched round an executor runs (gather + scatter = KV copies;
    prefill = the batch-1 first rounds of new requests)."""

    def __init__(self, executor: BatchEngineExecutor) -> None:
        self.copy = self.total = self.prefill = 0.0
        step = executor.batched.step

        def measured(states):
            outcome = step(states)
            self.copy += outcome.timings.gather_seconds + outcome.timings.scatter_seconds
            self.prefill += outcome.timings.prefill_seconds
            self.total += outcome.seconds - outcome.timings.prefill_seconds
            return outcome

        executor.batched.step = measured


# ---- ours --------------------------------------------------------------------------------------
def fresh_policy(name: str, history: list | None = None):
    """A fresh policy; those that order by predicted length get a learned predictor fitted on
    `history` ((RequestSpec, output_tokens) pairs), each its own instance."""
    if not policy_entry(name).needs_predictor:
        return make_policy(name)
    return make_policy(name, predictor=LearnedPredictor().fit(history or []))


def submissions(requests: list[BenchRequest], arrivals: list[float] | None = None,
                seconds_per_token: float | None = None) -> list[Submission]:
    """Loop submissions; `seconds_per_token` turns each true length into the true service seconds
    srpt-oracle reads (true_output_tokens x the measured seconds per token at B = 1)."""
    out = []
    for index, request in enumerate(requests):
        service = request.true_output_tokens * seconds_per_token if seconds_per_token else None
        out.append(Submission(request.custom_id, list(request.prompt_ids),
                              {"max_new_tokens": request.max_new_tokens, "do_sample": False},
                              arrival=arrivals[index] if arrivals else 0.0, prompt_text=request.text,
                              true_output_tokens=request.true_output_tokens, true_service_seconds=service,
                              is_chat=request.is_chat))
    return out


def run_ours(engine, requests: list[BenchRequest], size: int, policy: str = "fcfs", *,
             arrivals: list[float] | None = None, seconds_per_token: float | None = None,
             history: list | None = None, token_budget: int | None = None) -> RunResult:
    executor = BatchEngineExecutor(engine, token_budget) if size > 1 else EngineExecutor(engine)
    meter = CopyMeter(executor) if size > 1 else None
    loop = ServingLoop(executor, fresh_policy(policy, history), max_batch_size=size)
    started = time.perf_counter()
    completions = list(loop.run(submissions(requests, arrivals, seconds_per_token)))
    wall = time.perf_counter() - started
    failed = [c for c in completions if c.record is None]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, first: {failed[0].error}")
    records = [c.record for c in completions]
    return RunResult(wall=wall, tokens=sum(r.output_tokens for r in records),
                     latencies=[r.finish - r.arrival for r in records],
                     service=[r.busy_seconds for r in records],
                     copy_share=meter.copy / meter.total if meter and meter.total else 0.0,
                     prefill_share=meter.prefill / wall if meter else 0.0)


# ---- transformers ------------------------------------------------------------------------------
def eos_ids(model) -> set[int]:
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def counted_tokens(row: list[int], eos: set[int], cap: int) -> int:
    """Tokens a request generated in a padded batch row: up to and including its first EOS, at
    most its own cap (the row may run on, padded, for the chunk's longest request)."""
    for index, token in enumerate(row[:cap]):
        if token in eos:
            return index + 1
    return min(len(row), cap)


def run_hf_padded(model, tokenizer, requests: list[BenchRequest], size: int) -> RunResult:
    """Chunks of `size` requests, left-padded, one greedy `generate` each (max_new_tokens = the
    chunk's largest cap)."""
    eos = eos_ids(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos))
    started = time.perf_counter()
    tokens, latencies = 0, []
    for first in range(0, len(requests), size):
        chunk = requests[first : first + size]
        width = max(len(r.prompt_ids) for r in chunk)
        ids = torch.tensor([[pad] * (width - len(r.prompt_ids)) + list(r.prompt_ids) for r in chunk], device=model.device)
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in chunk],
                            device=model.device)
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=pad,
                             max_new_tokens=max(r.max_new_tokens for r in chunk))
        for request, row in zip(chunk, out[:, width:].tolist()):
            tokens += counted_tokens(row, eos, request.max_new_tokens)
        latencies += [time.perf_counter() - started] * len(chunk)
    return RunResult(wall=time.perf_counter() - started, tokens=tokens, latencies=latencies)


def continuous_batching_config(requests: list[BenchRequest], size: int, page_size: int = 256):
    """At most `size` requests per forward, and enough cache pages for every request at once (so
    the comparison measures batching, not cache eviction)."""
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    pages = sum(math.ceil((len(r.prompt_ids) + r.max_new_tokens) / page_size) for r in requests)
    return ContinuousBatchingConfig(page_size=page_size, num_blocks=pages + 2, max_requests_per_batch=size)


def run_hf_continuous(model, tokenizer, requests: list[BenchRequest], size: int) -> RunResult:
    """transformers' continuous batching on the requests, each with its own max_new_tokens."""
    from transformers import GenerationConfig

    config = GenerationConfig(do_sample=False, eos_token_id=sorted(eos_ids(model)),
                              pad_token_id=tokenizer.pad_token_id, max_new_tokens=max(r.max_new_tokens for r in requests))
    results = {}
    with model.continuous_batching_context_manager(generation_config=config, block=True, timeout=30, warmup=False,
                                                   continuous_batching_config=continuous_batching_config(requests, size)
                                                   ) as manager:
        started = time.perf_counter()  # the manager's timestamps are perf_counter() too
        for request in requests:
            manager.add_request(list(request.prompt_ids), request_id=request.custom_id,
                                max_new_tokens=request.max_new_tokens, record_timestamps=True)
        while len(results) < len(requests):
            result = manager.get_result(timeout=1)
            if result is not None and result.is_finished():
                if result.error is not None:
                    raise RuntimeError(f"continuous batching failed {result.request_id}: {result.error}")
                results[result.request_id] = result
            elif result is None and not manager.is_running():
                raise RuntimeError("continuous batching: the generation thread stopped "
                                   f"with {len(requests) - len(results)} requests unfinished")
        wall = time.perf_counter() - started
    finished = [results[r.custom_id] for r in requests]
    return RunResult(wall=wall, tokens=sum(len(r.generated_tokens) for r in finished),
                     latencies=[(r.timestamps[-1] if r.timestamps else started + wall) - started for r in finished])
