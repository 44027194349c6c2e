"""Trace-driven simulator: replay recorded rounds under any policy on a virtual clock.

Under greedy decoding a request's rounds (drafted, accepted, seconds) do not depend on the
schedule, so replaying them in the order a policy chooses reproduces what the serving loop would
have done, minus the switch costs, which a model supplies:

    result = simulate(load_traces("job.timing.jsonl"), "laps-sd",
                      switch_cost=linear_switch_cost(2e-6))
    print(result.summary())

The loop is the serving loop's: at every round boundary admit the requests whose arrival the clock
has reached, ask the policy which request runs, charge a switch cost if that request is resumed
after another one ran, run its next recorded round, report it. The clock only jumps forward
(idles) when the policy holds no request.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

from ..stats import latency_summary, mean
from .config import SchedulerConfig
from .factory import make_policy
from .policy import Policy
from .predictors import LengthPredictor
from .traces import Trace
from .types import RoundReport

SwitchCost = Union[float, Callable[[int], float]]


def linear_switch_cost(seconds_per_token: float, fixed_seconds: float = 0.0
                       ) -> Callable[[int], float]:
    """Switch cost of moving a KV cache back: fixed + seconds_per_token * context tokens."""
    if seconds_per_token < 0 or fixed_seconds < 0:
        raise ValueError("switch costs must be >= 0")
    return lambda context_tokens: fixed_seconds + seconds_per_token * context_tokens


@dataclass(frozen=True)
class RequestOutcome:
    """One request's timeline in a simulation (seconds on the virtual clock)."""

    custom_id: str
    arrival: float
    first_token: float        # end of its first round (prefill + first tokens)
    finish: float
    latency: float            # finish - arrival
    ttft: float               # first_token - arrival
    preemptions: int          # times another request ran while it was unfinished and running
    switch_seconds: float     # switch costs charged when it was resumed
    service_seconds: float    # its recorded execution time
    output_tokens: int


@dataclass
class SimulationResult:
    """Outcomes in input order, the round-by-round schedule and aggregate metrics."""

    policy: str
    requests: list[RequestOutcome]
    schedule: list[str] = field(repr=False)
    events: list[dict] = field(repr=False)
    makespan: float               # last finish - first arrival
    busy_seconds: float           # rounds executed
    switch_seconds: float         # switch costs charged
    idle_seconds: float           # clock jumps with nothing admitted

    @property
    def latencies(self) -> list[float]:
        return [r.latency for r in self.requests]

    @property
    def mean_latency(self) -> float:
        return mean(self.latencies)

    @property
    def preemptions(self) -> int:
        return sum(r.preemptions for r in self.requests)

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
            "tokens_per_s": tokens / self.makespan if self.makespan > 0 else float("nan"),
            "preemptions": self.preemptions,
            "switch_seconds": self.switch_seconds,
        })
        return out


def simulate(traces: Sequence[Trace], policy: Policy | str, switch_cost: SwitchCost = 0.0, *,
             config: SchedulerConfig | None = None, predictor: LengthPredictor | None = None,
             record_events: bool = True) -> SimulationResult:
    """Replay `traces` under `policy`.

    Args:
        traces: one Trace per request (unique custom_id); admitted at their arrival.
        policy: a fresh Policy, or a name for make_policy(name, config, predictor).
        switch_cost: seconds charged when the loop changes request and the new one had already
            run (a resume): a constant, or a function of its context tokens (prompt + generated).
        record_events: keep the policy's drained events in the result.

    Returns:
        SimulationResult with outcomes in the input order of `traces`.

    Raises:
        RuntimeError: the policy picked nothing while holding requests (not work-conserving),
            or picked a request that is not waiting.
    """
    if isinstance(policy, str):
        policy = make_policy(policy, config, predictor)
    if len(policy):
        raise ValueError(f"simulate needs a fresh policy; {policy.name} already holds {len(policy)}")
    cost_of = switch_cost if callable(switch_cost) else (lambda _tokens, c=float(switch_cost): c)
    n = len(traces)
    index = {t.custom_id: i for i, t in enumerate(traces)}
    if len(index) != n:
        raise ValueError("simulate: traces must have unique custom_id")
    order = sorted(range(n), key=lambda i: (traces[i].arrival, i))
    specs = [t.to_request() for t in traces]
    next_round, generated = [0] * n, [0] * n
    first_token: list[float | None] = [None] * n
    finish: list[float | None] = [None] * n
    preemptions, switched = [0] * n, [0.0] * n
    schedule: list[str] = []
    events: list[dict] = []
    clock = traces[order[0]].arrival if n else 0.0
    busy = idle = 0.0
    arrived = done = 0
    last: int | None = None
    while done < n:
        while arrived < n and traces[order[arrived]].arrival <= clock:
            policy.admit(specs[order[arrived]], clock)
            arrived += 1
        rid = policy.pick(clock)
        if rid is None:
            if len(policy):
                raise RuntimeError(f"{policy.name} picked nothing while {len(policy)} "
                                   f"requests wait at t={clock:.6f}")
            idle += traces[order[arrived]].arrival - clock
            clock = traces[order[arrived]].arrival
            continue
        i = index.get(rid)
        if i is None or finish[i] is not None or next_round[i] >= len(traces[i].rounds):
            raise RuntimeError(f"{policy.name} picked {rid!r}, which is not waiting")
        if i != last:
            if last is not None and finish[last] is None:
                preemptions[last] += 1
            if next_round[i] > 0:   # a resume: its KV cache comes back
                cost = cost_of(traces[i].prompt_tokens + generated[i])
                clock += cost
                switched[i] += cost
        report = _replay_round(traces[i], next_round[i], generated[i])
        clock += report.seconds
        busy += report.seconds
        next_round[i] += 1
        generated[i] += report.emitted
        policy.on_round(report, clock)
        if first_token[i] is None:
            first_token[i] = clock
        if report.finished:
            finish[i] = clock
            done += 1
        last = i
        schedule.append(rid)
        if record_events:
            events.extend(policy.drain_events())
    outcomes = [RequestOutcome(
        custom_id=t.custom_id, arrival=t.arrival, first_token=first_token[i], finish=finish[i],
        latency=finish[i] - t.arrival, ttft=first_token[i] - t.arrival,
        preemptions=preemptions[i], switch_seconds=switched[i],
        service_seconds=t.service_seconds, output_tokens=generated[i])
        for i, t in enumerate(traces)]
    start = traces[order[0]].arrival if n else 0.0
    return SimulationResult(policy=policy.name, requests=outcomes, schedule=schedule,
                            events=events, makespan=(max(finish) - start) if n else 0.0,
                            busy_seconds=busy, switch_seconds=sum(switched), idle_seconds=idle)


def _replay_round(trace: Trace, k: int, generated: int) -> RoundReport:
    """The k-th recorded round of `trace` as the serving loop would report it."""
    r = trace.rounds[k]
    last = k == len(trace.rounds) - 1
    emitted = r.accepted + 1
    if last and trace.output_tokens > generated:
        emitted = trace.output_tokens - generated   # the log's total is the truth
    draft_s = r.draft_seconds if r.draft_seconds is not None else 0.0
    return RoundReport(request_id=trace.custom_id, drafted=r.drafted, accepted=r.accepted,
                       emitted=emitted, seconds=r.seconds, draft_seconds=draft_s,
                       verify_seconds=max(r.seconds - draft_s, 0.0), finished=last,
                       prefill=k == 0)
