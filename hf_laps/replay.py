"""Replays: recorded traces played back through the serving loop on a virtual clock.

Under greedy decoding a request's rounds (drafted, accepted) do not depend on the schedule, so
replaying them in the order a policy chooses reproduces what the loop would have done on the
real models. The loop is the real one (`hf_laps.loop.ServingLoop`); only the executor differs:
`TraceReplayer` plays the k-th recorded round of a request when the loop runs it, and a cost
model says how many seconds each step takes:

- `RecordedCost`: the seconds the recording measured (admission, every round); moving a KV cache
  costs what a `switch_cost` says (a constant or a function of the context tokens).
- `ParametricCost`: T_round = T_target(context, query tokens) + drafted * T_draft, and moving a
  KV cache costs bytes * seconds-per-byte each way; `ParametricCost.paper_pair_gpu()` is the
  paper's LLaMA-7B / LLaMA-68M pair on one H200 (measured figures in its docstring).

    result = simulate(load_traces("job.timing.jsonl"), "laps-sd")
    print(result.summary())
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, Union

from hf_laps.clock import VirtualClock
from hf_laps.executor import Finished, Started, Submission
from hf_laps.loop import ServingLoop
from hf_laps.scheduling import (LengthPredictor, Policy, RoundReport, SchedulerConfig, Trace,
                                make_policy)
from hf_laps.scheduling.feature_codec import decode_features
from hf_laps.scheduling.records import TimingRecord
from hf_laps.stats import latency_summary, mean

SwitchCost = Union[float, Callable[[int], float]]


# ---- cost models --------------------------------------------------------------------------
class CostModel(Protocol):
    def admit_seconds(self, trace: Trace) -> float: ...

    def round_seconds(self, trace: Trace, k: int, context_tokens: int) -> tuple[float, float]:
        """(seconds, draft_seconds) of the k-th round of `trace` at `context_tokens` of context."""

    def kv_bytes(self, context_tokens: int) -> int: ...

    def park_seconds(self, context_tokens: int) -> float: ...

    def unpark_seconds(self, context_tokens: int) -> float: ...


def linear_switch_cost(seconds_per_token: float, fixed_seconds: float = 0.0) -> Callable[[int], float]:
    """Switch cost of moving a KV cache back: fixed + seconds_per_token * context tokens."""
    if seconds_per_token < 0 or fixed_seconds < 0:
        raise ValueError("switch costs must be >= 0")
    return lambda context_tokens: fixed_seconds + seconds_per_token * context_tokens


@dataclass(frozen=True)
class RecordedCost:
    """The recording's own seconds; a resume after another request costs `switch_cost`.

    `switch_cost` (seconds, or a function of the context tokens) is charged when a parked
    request's KV cache comes back; parking itself is free. `simulate` parks every paused
    request when the switch cost is not zero, so a request pays it each time it resumes after
    another one ran. KV "bytes" count tokens here (a recording does not say the cache's size).
    """

    switch_cost: SwitchCost = 0.0

    def admit_seconds(self, trace: Trace) -> float:
        return trace.admit_seconds

    def round_seconds(self, trace: Trace, k: int, context_tokens: int) -> tuple[float, float]:
        r = trace.rounds[k]
        return r.seconds, r.draft_seconds if r.draft_seconds is not None else 0.0

    def kv_bytes(self, context_tokens: int) -> int:
        return context_tokens

    def park_seconds(self, context_tokens: int) -> float:
        return 0.0

    def unpark_seconds(self, context_tokens: int) -> float:
        cost = self.switch_cost
        return cost(context_tokens) if callable(cost) else float(cost)


@dataclass(frozen=True)
class ParametricCost:
    """T_round = T_target(context, query) + drafted * t_draft; moves cost bytes * seconds_per_byte.

    T_target is bilinear between the measured corners: `target_base` seconds for 1 query token at
    `context_base` tokens of context, plus `target_per_query` per extra query token and
    `target_per_context` per extra context token. The first round also prefills: its query is the
    prompt plus the drafts, at the prompt's context. KV bytes = `kv_bytes_per_token` * context
    (both models' caches; the draft's is ~1 % of a 7B target's and is ignored).
    """

    target_base: float
    target_per_query: float
    target_per_context: float
    t_draft: float
    kv_bytes_per_token: int
    seconds_per_byte: float
    context_base: int = 128

    @classmethod
    def paper_pair_gpu(cls) -> "ParametricCost":
        """LLaMA-7B target + LLaMA-68M draft, fp16, one H200, transformers eager, measured:
        target verify 21 ms (1 query token, 128 context) to 25 ms (11 query tokens, 2048
        context); draft 1.9 ms per token; a 7B KV cache of 512 tokens is 268 MB (32 layers x 2 x
        4096 x 2 bytes = 524,288 bytes per token) and moves in 4.9 ms each way from pinned memory."""
        return cls(target_base=0.021, target_per_query=0.002 / 10, target_per_context=0.002 / 1920,
                   t_draft=0.0019, kv_bytes_per_token=524_288, seconds_per_byte=0.0049 / 268_435_456)

    def t_target(self, context_tokens: int, query_tokens: int) -> float:
        return (self.target_base + self.target_per_query * max(query_tokens - 1, 0)
                + self.target_per_context * max(context_tokens - self.context_base, 0))

    def admit_seconds(self, trace: Trace) -> float:
        return 0.0

    def round_seconds(self, trace: Trace, k: int, context_tokens: int) -> tuple[float, float]:
        drafted = trace.rounds[k].drafted
        query = drafted + 1 + (trace.prompt_tokens if k == 0 else 0)
        draft = drafted * self.t_draft
        return self.t_target(context_tokens + drafted + 1, query) + draft, draft

    def kv_bytes(self, context_tokens: int) -> int:
        return self.kv_bytes_per_token * context_tokens

    def park_seconds(self, context_tokens: int) -> float:
        return self.kv_bytes(context_tokens) * self.seconds_per_byte

    def unpark_seconds(self, context_tokens: int) -> float:
        return self.park_seconds(context_tokens)


# ---- the executor -------------------------------------------------------------------------
@dataclass
class _Replay:
    trace: Trace
    next_round: int = 0
    generated: int = 0

    @property
    def context(self) -> int:
        return self.trace.prompt_tokens + self.generated


class TraceReplayer:
    """Executor playing recorded traces (see `hf_laps.executor.Executor`); submissions are matched
    to traces by request_id and admitted at the submission's arrival."""

    def __init__(self, traces: Sequence[Trace], cost: CostModel | None = None) -> None:
        self.traces = {t.custom_id: t for t in traces}
        if len(self.traces) != len(traces):
            raise ValueError("replay: traces must have unique custom_id")
        self.cost = cost or RecordedCost()
        self.live: dict[str, _Replay] = {}

    def start(self, submission: Submission) -> Started:
        trace = self.traces[submission.request_id]
        self.live[trace.custom_id] = _Replay(trace)
        spec = trace.with_arrival(submission.arrival).to_request()
        return Started(spec=spec, seconds=self.cost.admit_seconds(trace))

    def run_round(self, request_id: str) -> RoundReport:
        replay = self.live[request_id]
        trace, k = replay.trace, replay.next_round
        record = trace.rounds[k]
        last = k == len(trace.rounds) - 1
        emitted = record.accepted + 1
        if last and trace.output_tokens > replay.generated:
            emitted = trace.output_tokens - replay.generated   # the log's total is the truth
        seconds, draft = self.cost.round_seconds(trace, k, replay.context)
        replay.next_round += 1
        replay.generated += emitted
        features = decode_features(trace.features) if k == 0 and trace.features else None
        return RoundReport(request_id=request_id, drafted=record.drafted, accepted=record.accepted,
                           emitted=emitted, seconds=seconds, draft_seconds=draft,
                           verify_seconds=max(seconds - draft, 0.0), finished=last, prefill=k == 0,
                           features=features)

    def has_cache(self, request_id: str) -> bool:
        return self.live[request_id].next_round > 0

    def kv_bytes(self, request_id: str) -> int:
        return self.cost.kv_bytes(self.live[request_id].context)

    def park(self, request_id: str) -> float:
        return self.cost.park_seconds(self.live[request_id].context)

    def unpark(self, request_id: str) -> float:
        return self.cost.unpark_seconds(self.live[request_id].context)

    def release(self, request_id: str) -> Finished:
        replay = self.live.pop(request_id)
        trace = replay.trace
        return Finished(prompt_tokens=trace.prompt_tokens, output_tokens=replay.generated,
                        max_new_tokens=trace.max_new_tokens, finish_reason=trace.finish_reason,
                        features=trace.features)


# ---- simulate -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestOutcome:
    """One request's timeline in a replay (seconds on the virtual clock)."""

    custom_id: str
    arrival: float
    first_token: float        # end of its first round (prefill + first tokens)
    finish: float
    latency: float            # finish - arrival
    ttft: float               # first_token - arrival
    preemptions: int          # times another request ran while it was unfinished and running
    switch_seconds: float     # moving its KV cache (parking)
    service_seconds: float    # its execution time under the cost model
    output_tokens: int

    @classmethod
    def from_record(cls, r: TimingRecord) -> "RequestOutcome":
        return cls(custom_id=r.custom_id, arrival=r.arrival, first_token=r.first_token, finish=r.finish,
                   latency=r.latency, ttft=r.ttft, preemptions=r.preemptions, switch_seconds=r.switch_seconds,
                   service_seconds=r.busy_seconds, output_tokens=r.output_tokens)


@dataclass
class SimulationResult:
    """Outcomes in input order, the round-by-round schedule and aggregate metrics."""

    policy: str
    requests: list[RequestOutcome]
    records: list[TimingRecord] = field(repr=False)
    schedule: list[str] = field(repr=False)
    events: list[dict] = field(repr=False)

    @property
    def latencies(self) -> list[float]:
        return [r.latency for r in self.requests]

    @property
    def mean_latency(self) -> float:
        return mean(self.latencies)

    @property
    def preemptions(self) -> int:
        return sum(r.preemptions for r in self.requests)

    @property
    def makespan(self) -> float:
        """Last finish - first arrival."""
        if not self.requests:
            return 0.0
        return max(r.finish for r in self.requests) - min(r.arrival for r in self.requests)

    @property
    def busy_seconds(self) -> float:
        return sum(r.service_seconds for r in self.requests)

    @property
    def switch_seconds(self) -> float:
        return sum(r.switch_seconds for r in self.requests)

    @property
    def idle_seconds(self) -> float:
        """Makespan not spent admitting, running or switching (waiting for arrivals)."""
        admit = sum(r.admit_seconds for r in self.records)
        return max(self.makespan - self.busy_seconds - self.switch_seconds - admit, 0.0)

    def completion_order(self) -> list[str]:
        """Request ids by finish time (ties by input order)."""
        return [r.custom_id for r in sorted(self.requests, key=lambda r: r.finish)]

    def summary(self) -> dict:
        """mean / p50 / p90 / p99 latency, mean TTFT, makespan, tokens/s, preemptions, switches."""
        out = {"policy": self.policy, "requests": len(self.requests)}
        out.update(latency_summary(self.latencies))
        tokens = sum(r.output_tokens for r in self.requests)
        out.update({
            "ttft_mean": mean(r.ttft for r in self.requests),
            "makespan": self.makespan,
            "tokens_per_second": tokens / self.makespan if self.makespan > 0 else float("nan"),
            "preemptions": self.preemptions,
            "switch_seconds": self.switch_seconds,
        })
        return out


def _admitted_or_inf(trace: Trace) -> float:
    return trace.admitted if trace.admitted is not None else math.inf


def simulate(traces: Sequence[Trace], policy: Policy | str, switch_cost: SwitchCost = 0.0, *,
             config: SchedulerConfig | None = None, predictor: LengthPredictor | None = None,
             cost: CostModel | None = None, kv_budget_bytes: int | None = None,
             record_events: bool = True) -> SimulationResult:
    """Replay `traces` under `policy` through the serving loop on a virtual clock.

    Args:
        traces: one Trace per request (unique custom_id); admitted at their arrival.
        policy: a fresh Policy, or a name for make_policy(name, config, predictor).
        switch_cost: with the default `RecordedCost`: seconds charged when a request resumes
            after another one ran (a constant, or a function of its context tokens); every
            paused request counts as parked.
        cost: a cost model instead of the recorded seconds (then `switch_cost` must be 0 and
            the KV budget decides what is parked).
        kv_budget_bytes: as ServingLoop (in the cost model's bytes).
        record_events: keep the policy's events in the result.

    Raises:
        RuntimeError: the policy picked nothing while holding requests (not work-conserving),
            or picked a request that is not waiting.
    """
    if isinstance(policy, str):
        policy = make_policy(policy, config, predictor)
    if cost is not None and switch_cost:
        raise ValueError("simulate: give a switch_cost or a cost model, not both")
    if cost is None:
        cost = RecordedCost(switch_cost)
        if callable(switch_cost) or switch_cost:
            kv_budget_bytes = 0          # every paused request is parked: each resume pays
    schedule: list[str] = []
    loop = ServingLoop(TraceReplayer(traces, cost), policy, clock=VirtualClock(),
                       kv_budget_bytes=kv_budget_bytes, on_round=lambda report: schedule.append(report.request_id))
    # admission order = the recording's (a log lists requests in the order they FINISHED, and
    # policies break ties in arrival by admission order); logs without admission times keep
    # the input order
    order = sorted(range(len(traces)), key=lambda i: (traces[i].arrival, _admitted_or_inf(traces[i]), i))
    submissions = [Submission(traces[i].custom_id, traces[i].prompt, arrival=traces[i].arrival,
                              prompt_text=traces[i].prompt) for i in order]
    records = {c.submission.request_id: c.record for c in loop.run(submissions)}
    ordered = [records[t.custom_id] for t in traces]
    events = sorted((e for r in ordered for e in r.policy_events), key=lambda e: e.get("time", 0.0)) \
        if record_events else []
    return SimulationResult(policy=policy.name, requests=[RequestOutcome.from_record(r) for r in ordered],
                            records=ordered, schedule=schedule, events=events)
