"""Replays: recorded traces played back through the serving loop on a virtual clock.

Under greedy decoding a request's rounds (drafted, accepted) do not depend on the schedule, so
replaying them in the order a policy chooses reproduces what the loop would have done on the
real models. The loop is the real one (`hf_laps.serving.loop.ServingLoop`); only the executor differs:
`TraceReplayer` plays the k-th recorded round of a request when the loop runs it, and a cost
model (hf_laps/replay/cost.py: `RecordedCost`, `ParametricCost`) says how many seconds each step
takes.

With max_batch_size B > 1 the loop asks for batched rounds (`TraceReplayer.run_batch`): the
rows play their next recorded rounds together and the cost model prices the one shared forward
(hf_laps/replay/batch_cost.py). A request's first round joins the shared forward when the recording
shows it inside a batch (the engine's packed layout batches prefills); a first round recorded
alone (a B = 1 recording, or the padded layout) plays alone at its recorded seconds, because
nothing in the recording says what its prefill costs inside a batch.

    result = simulate(load_traces("job.timing.jsonl"), "laps-sd", max_batch_size=4)
    print(result.summary())
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from hf_laps.replay.batch_cost import RowRound
from hf_laps.serving.clock import VirtualClock
from hf_laps.serving.executor import BatchRan, Finished, Started, Submission
from hf_laps.serving.loop import ServingLoop
from hf_laps.replay.cost import (CostModel, ParametricCost, RecordedCost, SwitchCost,
                                 linear_switch_cost)
from hf_laps.scheduling import LengthPredictor, Policy, RoundReport, SchedulerConfig, make_policy
from hf_laps.scheduling.batch_planner import resolve_max_batch_size
from hf_laps.replay.traces import Trace
from hf_laps.scheduling.predictors.feature_codec import decode_features
from hf_laps.timing_log import TimingRecord
from hf_laps.stats import latency_summary, mean

__all__ = ["CostModel", "ParametricCost", "RecordedCost", "SwitchCost", "linear_switch_cost",
           "TraceReplayer", "RequestOutcome", "SimulationResult", "simulate"]


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
    """Executor playing recorded traces (see `hf_laps.serving.executor.BatchExecutor`); submissions are
    matched to traces by request_id and admitted at the submission's arrival. A `RecordedCost`
    learns its batched-round price from these traces (`RecordedCost.for_traces`)."""

    def __init__(self, traces: Sequence[Trace], cost: CostModel | None = None, device_kind: str | None = None) -> None:
        # the round-cost prior of the loop's batch planner: the cost model's device, else a CPU's
        self.device_kind = device_kind or getattr(cost, "device_kind", "cpu")
        self.traces = {t.custom_id: t for t in traces}
        if len(self.traces) != len(traces):
            raise ValueError("replay: traces must have unique custom_id")
        cost = cost or RecordedCost()
        self.cost = cost.for_traces(traces) if isinstance(cost, RecordedCost) else cost
        self.live: dict[str, _Replay] = {}

    def start(self, submission: Submission) -> Started:
        trace = self.traces[submission.request_id]
        self.live[trace.custom_id] = _Replay(trace)
        spec = trace.with_arrival(submission.arrival).to_request()
        return Started(spec=spec, seconds=self.cost.admit_seconds(trace))

    def run_round(self, request_id: str) -> RoundReport:
        replay = self.live[request_id]
        seconds, draft = self.cost.round_seconds(replay.trace, replay.next_round, replay.context)
        return self._play(replay, seconds, draft)

    def run_batch(self, request_ids: list[str]) -> BatchRan:
        """One round of each request: first rounds recorded alone run alone (their own seconds,
        one after the other), the rest share one forward priced by `cost.batch_seconds`."""
        alone = [rid for rid in request_ids if self._prefills_alone(self.live[rid])]
        shared = [self.live[rid] for rid in request_ids if rid not in alone]
        reports = {rid: self.run_round(rid) for rid in alone}
        seconds = sum(report.seconds for report in reports.values())
        if len(shared) == 1:
            report = self.run_round(shared[0].trace.custom_id)
            reports[report.request_id] = report
            seconds += report.seconds
        elif shared:
            rows = [RowRound(r.trace, r.next_round, r.context) for r in shared]
            shared_seconds, draft = self.cost.batch_seconds(rows)
            tokens = sum(row.fed_tokens for row in rows)
            for replay in shared:
                reports[replay.trace.custom_id] = self._play(replay, shared_seconds, draft, len(rows), tokens)
            seconds += shared_seconds
        return BatchRan(reports=[reports[rid] for rid in request_ids], seconds=seconds)

    @staticmethod
    def _prefills_alone(replay: _Replay) -> bool:
        """A first round runs alone unless the recording shows it inside a batch."""
        return replay.next_round == 0 and not replay.trace.rounds[0].batched

    def _play(self, replay: _Replay, seconds: float, draft: float, batch_size: int = 1,
              batch_tokens: int = 0) -> RoundReport:
        """Advance `replay` by its next recorded round, which took `seconds` (`draft` drafting)."""
        trace, k = replay.trace, replay.next_round
        record = trace.rounds[k]
        last = k == len(trace.rounds) - 1
        emitted = record.accepted + 1
        if last and trace.output_tokens > replay.generated:
            emitted = trace.output_tokens - replay.generated   # the log's total is the truth
        replay.next_round += 1
        replay.generated += emitted
        features = decode_features(trace.features) if k == 0 and trace.features else None
        return RoundReport(request_id=trace.custom_id, drafted=record.drafted, accepted=record.accepted,
                           emitted=emitted, seconds=seconds, draft_seconds=draft,
                           verify_seconds=max(seconds - draft, 0.0), finished=last, prefill=k == 0,
                           features=features, batch_size=batch_size, batch_tokens=batch_tokens)

    def has_cache(self, request_id: str) -> bool:
        return self.live[request_id].next_round > 0

    def kv_bytes(self, request_id: str) -> int:
        return self.cost.kv_bytes(self.live[request_id].context)

    def kv_bytes_per_token(self) -> int:
        return self.cost.kv_bytes(1)

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
             record_events: bool = True, max_batch_size: int | str = 1,
             kv_capacity_bytes: int | None = None, device_kind: str | None = None,
             batch_plan: str = "cost") -> SimulationResult:
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
        max_batch_size: the most requests per round (B, a cap; "auto" as the real runs'
            default); B > 1 plays batched rounds (`TraceReplayer.run_batch`), priced by the cost
            model's `batch_seconds`, and the loop's batch planner decides each round's batch as
            in a real run.
        device_kind: the prior of the planner's round-cost model ("cpu", "cuda"); default: the
            cost model's `device_kind`, else "cpu".
        batch_plan: "cost" (the loop's batch planner, as real runs now decide) or "fill" (every
            ranked candidate up to B: how logs recorded before the planner were batched).
        kv_capacity_bytes: as ServingLoop: admission waits while the admitted requests' worst-case
            KV bytes (prompt + max_new_tokens, at the cost model's bytes per token) would exceed it.

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
    max_batch_size = resolve_max_batch_size(max_batch_size)
    loop = ServingLoop(TraceReplayer(traces, cost, device_kind), policy, clock=VirtualClock(),
                       kv_budget_bytes=kv_budget_bytes, on_round=lambda report: schedule.append(report.request_id),
                       max_batch_size=max_batch_size, kv_capacity_bytes=kv_capacity_bytes,
                       batch_plan=batch_plan)
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
