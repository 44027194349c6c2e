"""The serving loop: the one driver of every run, real or replayed.

    loop = ServingLoop(EngineExecutor(engine), policy)                 # real models, real clock
    loop = ServingLoop(TraceReplayer(traces, cost), policy, clock=VirtualClock())   # a replay
    for completion in loop.run(submissions):
        ...   # one Completion per request, in the order requests finish

At every round boundary the loop admits the requests whose arrival the clock has reached, asks
the policy for its ranked candidates (`Policy.pick_batch(now, B)`, B = `max_batch_size`, a cap),
lets the batch planner choose which of them share the round (`hf_laps.scheduling.batch_planner`:
add a row in the policy's order while its marginal cost is below the waiting it saves, priced by
the round-cost model `hf_laps.scheduling.round_cost`, which the loop feeds every round's rows,
tokens and seconds), starts or resumes them, runs exactly one speculative round of each, and
reports every round to the policy. B = 1 is not a separate path: it is a batch of one
(`pick_batch(now, 1)` is `[pick(now)]` for every policy, and the planner keeps the head), run
through `run_round`, or `run_batch` where the executor has it. A request that ran last round
and is left out of this one is preempted. Every round gets a round id (0, 1, 2, ... per loop),
logged with each of its rows, so a replay finds the rows of one batched round again. KV caches of paused
requests stay on the device while their bytes fit `kv_budget_bytes`; beyond it the least
recently run ones are parked in CPU memory and moved back when they run again: the seconds spent
moving are the request's switch cost.

`kv_capacity_bytes` bounds the device bytes of all KV caches by admission: every admitted
request reserves its worst case, (prompt + max_new_tokens) tokens x the executor's
`kv_bytes_per_token()`, and an arrived request is admitted to the policy only while the
reservations of the admitted ones plus its own fit the capacity. Until then it waits, after the
requests that arrived before it (first come, first admitted); a finishing request frees its
reservation. A request whose worst case exceeds the capacity alone can never run: it leaves at
once as a rejected Completion naming both figures.

What a request costs comes from the executor (`Executor`): the engine executor measures it, the
trace replayer takes it from a cost model. The loop charges every cost to its clock: a
`RealClock` ignores the charge (the time really passed), a `VirtualClock` advances by it. So a
real run and its replay differ only by the cost model, never by the rules.

A batched round (`run_batch`: one shared verify forward) charges the clock its seconds once.
If it raises, the cause is logged (logging.warning), counted (`batched_round_failures`, which the
job summary reports) and each of its requests runs its round alone, so only the faulty one fails.

Under greedy decoding a request's tokens do not depend on the schedule (tests check it): the
policy changes only WHEN rounds run, never what a round computes.
"""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from hf_laps.serving.clock import RealClock, VirtualClock
from hf_laps.serving.executor import Completion, Executor, Finished, RequestRejected, Started, Submission
from hf_laps.scheduling import Policy, RoundReport
from hf_laps.scheduling.batch_planner import BatchPlanner, Candidate, resolve_max_batch_size
from hf_laps.scheduling.round_cost import RoundCostModel
from hf_laps.timing_log import RoundRecord, TimingRecord

log = logging.getLogger(__name__)


@dataclass
class _Live:
    """Loop-side timeline of an admitted request."""

    submission: Submission
    admitted: float
    admit_seconds: float
    start: float | None = None
    first_token: float | None = None
    last_run: float = 0.0
    preemptions: int = 0
    switch_seconds: float = 0.0
    parked: bool = False
    kv_bytes: int = 0  # refreshed after each of its rounds (only they change it)
    reserved_bytes: int = 0  # its worst-case KV bytes, held against kv_capacity_bytes
    prompt_tokens: int = 0   # what its first round feeds (the planner's estimate of a prefill row)
    last_drafted: int | None = None  # drafts of its last round (the planner's estimate of the next)
    budget: int = 0          # max_new_tokens; with `generated` and `per_round`, its remaining rounds
    generated: int = 0
    per_round: float = 1.0   # tokens emitted per round, smoothed
    has_stop: bool = False   # length-predictor flags of its spec, logged so replays see them too
    is_chat: bool = False
    rounds: list[RoundRecord] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)


class ServingLoop:
    """Drive `executor` under `policy` until every submission finished (or `stop()` was called).

    Args:
        executor: runs the requests (`EngineExecutor` for real models, `TraceReplayer` for
            recorded traces).
        policy: a fresh scheduling policy (hf_laps.scheduling.make_policy).
        clock: `RealClock()` (default) or `VirtualClock()` for replays.
        kv_budget_bytes: device bytes allowed for the KV caches of paused requests; None keeps
            every cache on the device.
        max_batch_size: the most requests per round (B, a cap); B > 1 needs an executor with
            `run_batch`, and the batch planner chooses how many of the policy's B ranked
            candidates run; "auto" = `AUTO_MAX_BATCH` where the executor batches, else 1.
        round_cost: the round-cost model the planner prices rounds with and the loop teaches
            (default: the prior of `executor.device_kind`, "cpu" when it has none).
        batch_plan: "cost" (the planner) or "fill" (every ranked candidate up to the cap, as
            the loop did before the planner: replays of logs recorded then).
        kv_capacity_bytes: device bytes all admitted requests' KV caches may reach at worst;
            admission waits while they would not fit (needs `executor.kv_bytes_per_token`).
            None admits every request on arrival.
        on_round: called with every RoundReport after the policy saw it (progress bars, the
            replay's schedule).
    """

    def __init__(self, executor: Executor, policy: Policy, *, clock: RealClock | VirtualClock | None = None,
                 kv_budget_bytes: int | None = None, on_round: Callable[[RoundReport], None] | None = None,
                 max_batch_size: int | str = 1, kv_capacity_bytes: int | None = None,
                 round_cost: RoundCostModel | None = None, batch_plan: str = "cost"):
        if kv_budget_bytes is not None and kv_budget_bytes < 0:
            raise ValueError(f"kv_budget_bytes must be >= 0, got {kv_budget_bytes}")
        if kv_capacity_bytes is not None and kv_capacity_bytes < 0:
            raise ValueError(f"kv_capacity_bytes must be >= 0, got {kv_capacity_bytes}")
        if kv_capacity_bytes is not None and not callable(getattr(executor, "kv_bytes_per_token", None)):
            raise ValueError(f"kv_capacity_bytes needs an executor with kv_bytes_per_token; "
                             f"{type(executor).__name__} has none")
        if max_batch_size is None or max_batch_size == "auto":  # the cap the executor allows
            batches = callable(getattr(executor, "run_batch", None))
            max_batch_size = resolve_max_batch_size("auto") if batches else 1
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_batch_size > 1 and not callable(getattr(executor, "run_batch", None)):
            raise ValueError(f"max_batch_size {max_batch_size} needs an executor with run_batch; "
                             f"{type(executor).__name__} runs one request per round")
        if len(policy):
            raise ValueError(f"the loop needs a fresh policy; {policy.name} already holds {len(policy)}")
        self.executor = executor
        self.policy = policy
        self.clock = clock or RealClock()
        self.kv_budget_bytes = kv_budget_bytes
        self.on_round = on_round
        self.max_batch_size = max_batch_size
        self.batches = callable(getattr(executor, "run_batch", None))  # else every round runs alone (run_round)
        self.kv_capacity_bytes = kv_capacity_bytes
        self.round_cost = round_cost or RoundCostModel.for_device(getattr(executor, "device_kind", "cpu"))
        self.planner = BatchPlanner(self.round_cost, max_batch_size, batch_plan)
        self.rounds_run = 0              # round ids handed out so far
        self.batched_round_failures = 0  # batched rounds that raised and were rerun row by row
        self._mean_drafted = 0.0         # drafts per row, smoothed: a first round's estimate
        self.stop_requested = False
        self.live: dict[str, _Live] = {}
        # started by the executor, waiting for KV capacity before the policy sees them (FIFO)
        self.held: deque[tuple[Submission, Started]] = deque()

    def stop(self) -> None:
        """Finish the current round, then return (Ctrl-C); unfinished requests are dropped."""
        self.stop_requested = True

    def now(self) -> float:
        return self.clock.now()

    # ---- the loop --------------------------------------------------------------------------
    def run(self, submissions: Iterable[Submission]) -> Iterator[Completion]:
        pending = sorted(submissions, key=lambda s: s.arrival)
        pending.reverse()  # pop() from the end = earliest arrival
        self.clock.reset()
        running: set[str] = set()  # the requests of the last round (B = 1: at most one)
        while (pending or self.held or self.live) and not self.stop_requested:
            yield from self._admit_arrived(pending)
            # B = 1 is a batch of one: pick_batch(now, 1) == [pick(now)] for every policy
            request_ids = self.policy.pick_batch(self.now(), self.max_batch_size)
            if not request_ids:
                if self.live:
                    raise RuntimeError(f"{self.policy.name} picked nothing while {len(self.live)} requests wait")
                if pending:
                    self.clock.wait_until(pending[-1].arrival, lambda: self.stop_requested)
                continue
            if len(set(request_ids)) != len(request_ids) or not set(request_ids) <= self.live.keys():
                self._refuse_pick(request_ids)
            if len(request_ids) > 1:  # the planner: how many of the ranked candidates share the round
                request_ids = self.planner.plan([self._candidate(self.live[rid]) for rid in request_ids])
            picked = set(request_ids)
            for rid in running - picked:  # ran last round, left out of this one
                if rid in self.live:
                    self.live[rid].preemptions += 1
            running = picked
            for completion in self._run_batch([self.live[rid] for rid in request_ids]):
                running.discard(completion.submission.request_id)
                yield completion
            self._enforce_kv_budget(running)

    def _candidate(self, live: _Live) -> Candidate:
        """A request as the batch planner sees it.

        Tokens it would feed this round: its prompt on its first round, else its bonus token;
        plus its drafts (as many as its last round's, or the smoothed mean on a first). Rounds
        left: its remaining token budget over the tokens it emits per round (an upper bound:
        EOS or a stop string may end it sooner)."""
        if live.last_drafted is None:
            tokens = live.prompt_tokens + round(self._mean_drafted)
        else:
            tokens = 1 + live.last_drafted
        remaining = math.ceil(max(live.budget - live.generated, 1) / max(live.per_round, 1.0))
        return Candidate(live.submission.request_id, tokens, remaining)

    def _observe(self, reports: list[RoundReport], seconds: float) -> None:
        """Teach the round-cost model one round: its rows, the tokens they fed, its seconds."""
        tokens = 0
        for report in reports:
            live = self.live.get(report.request_id)
            prompt = live.prompt_tokens if live is not None else 0
            tokens += (prompt if report.prefill else 1) + report.drafted
            self._mean_drafted = 0.9 * self._mean_drafted + 0.1 * report.drafted
        if reports:
            self.round_cost.observe(len(reports), tokens, seconds)

    def _refuse_pick(self, request_ids: list[str]) -> None:
        unknown = [rid for rid in request_ids if rid not in self.live]
        raise RuntimeError(f"{self.policy.name} picked {request_ids!r}; not waiting: {unknown!r}")

    def _admit_arrived(self, pending: list[Submission]) -> Iterator[Completion]:
        """Start every arrived submission, then admit the held ones that fit the KV capacity."""
        while pending and pending[-1].arrival <= self.now():
            submission = pending.pop()
            try:
                started = self.executor.start(submission)
            except RequestRejected as exc:
                yield Completion(submission, error=str(exc), rejected=True)
                continue
            self.clock.charge(started.seconds)
            self.held.append((submission, started))
        if self.held:
            yield from self._admit_held()

    def _admit_held(self) -> Iterator[Completion]:
        """Admit held requests in arrival order while their worst-case KV bytes fit."""
        while self.held:
            submission, started = self.held[0]
            need = self._worst_case_bytes(started)
            capacity = self.kv_capacity_bytes
            if capacity is not None and need > capacity:  # cannot fit even alone
                self.held.popleft()
                yield self._reject_too_big(submission, started, need)
                continue
            if capacity is not None and self._reserved_bytes() + need > capacity:
                return  # wait for a running request to finish and free its reservation
            self.held.popleft()
            live = _Live(submission, admitted=self.now(), admit_seconds=started.seconds, reserved_bytes=need,
                         prompt_tokens=started.spec.prompt_tokens, budget=started.spec.max_new_tokens, has_stop=started.spec.has_stop, is_chat=started.spec.is_chat)
            if started.done:  # nothing to generate (budget 0)
                live.start = live.first_token = self.now()
                yield self._finish(live)
                continue
            self.live[submission.request_id] = live
            self.policy.admit(started.spec, self.now())

    def _worst_case_bytes(self, started: Started) -> int:
        """KV bytes the request may reach: its prompt and its whole token budget, cached."""
        if self.kv_capacity_bytes is None or started.done:
            return 0
        tokens = started.spec.prompt_tokens + started.spec.max_new_tokens
        return tokens * self.executor.kv_bytes_per_token()

    def _reserved_bytes(self) -> int:
        # a cache measured above its estimate (a model the per-token figure misjudges) counts as measured
        return sum(max(live.reserved_bytes, live.kv_bytes) for live in self.live.values())

    def _reject_too_big(self, submission: Submission, started: Started, need: int) -> Completion:
        finished = self.executor.release(submission.request_id)
        spec = started.spec
        message = (f"the request needs up to {need} bytes of KV cache (prompt {spec.prompt_tokens} + max_new_tokens "
                   f"{spec.max_new_tokens} tokens x {self.executor.kv_bytes_per_token()} bytes per token), more than "
                   f"the KV capacity of {self.kv_capacity_bytes} bytes")
        return Completion(submission, finished.payload, error=message, rejected=True)

    def _run_round(self, live: _Live) -> Completion | None:
        """One round of `live`; returns its Completion when it left the loop."""
        request_id = live.submission.request_id
        self._prepare(live)
        try:
            report = self.executor.run_round(request_id)
        except Exception as exc:  # one bad request must not take the batch down
            return self._fail(live, f"{type(exc).__name__}: {exc}")
        self.clock.charge(report.seconds)
        self._observe([report], report.seconds)
        return self._account(live, report, self._next_round_id())

    def _next_round_id(self) -> int:
        self.rounds_run += 1
        return self.rounds_run - 1

    def _run_batch(self, lives: list[_Live]) -> list[Completion]:
        """One batched round of `lives`; returns the Completions of those that left the loop."""
        if not self.batches:  # a batch of one (B > 1 is refused at init)
            completion = self._run_round(lives[0])
            return [] if completion is None else [completion]
        for live in lives:
            self._prepare(live)
        ids = [live.submission.request_id for live in lives]
        try:
            ran = self.executor.run_batch(ids)
        except Exception as exc:
            # the executor left every state as before the round: find the faulty request alone
            self.batched_round_failures += 1
            log.warning("batched round of %d requests (%s) raised %s: %s; rerunning each request alone",
                        len(ids), ", ".join(ids), type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return [c for c in (self._run_round(live) for live in lives) if c is not None]
        self.clock.charge(ran.seconds)
        self._observe(ran.reports, ran.seconds)
        round_id = self._next_round_id()
        by_id = {live.submission.request_id: live for live in lives}
        completions = [self._account(by_id[report.request_id], report, round_id) for report in ran.reports]
        completions += [self._fail(by_id[rid], message) for rid, message in ran.errors.items()]
        return [c for c in completions if c is not None]

    def _prepare(self, live: _Live) -> None:
        """Bring a parked cache back and stamp the first start."""
        if live.parked:
            self._charge_switch(live, self.executor.unpark(live.submission.request_id))
            live.parked = False
        if live.start is None:
            live.start = self.now()

    def _account(self, live: _Live, report: RoundReport, round_id: int) -> Completion | None:
        """Record a round that ran (its seconds already charged) and tell the policy."""
        request_id = live.submission.request_id
        now = live.last_run = self.now()
        if live.first_token is None and report.emitted:
            live.first_token = now
        live.last_drafted = report.drafted
        live.generated += report.emitted
        live.per_round = report.emitted if len(live.rounds) == 0 else 0.7 * live.per_round + 0.3 * report.emitted
        live.rounds.append(report.to_record(round_id))
        if self.kv_budget_bytes is not None or self.kv_capacity_bytes is not None:
            live.kv_bytes = self.executor.kv_bytes(request_id)
        self.policy.on_round(report, now)
        if self.on_round is not None:
            self.on_round(report)
        self._collect_events()
        return self._finish(live) if report.finished else None

    def _fail(self, live: _Live, message: str) -> Completion:
        """Drop a request whose round raised; the policy is told it finished."""
        request_id = live.submission.request_id
        self.policy.on_round(RoundReport(request_id=request_id, drafted=0, accepted=0, emitted=0, seconds=0.0,
                                         draft_seconds=0.0, verify_seconds=0.0, finished=True), self.now())
        self._collect_events()
        self.live.pop(request_id, None)
        finished = self.executor.release(request_id)
        return Completion(live.submission, finished.payload, error=message)

    def _finish(self, live: _Live) -> Completion:
        self.live.pop(live.submission.request_id, None)
        finished = self.executor.release(live.submission.request_id)
        return Completion(live.submission, finished.payload, self._record(live, finished))

    def _collect_events(self) -> None:
        for event in self.policy.drain_events():
            live = self.live.get(event.get("request_id"))
            if live is not None:
                live.events.append(event)

    # ---- KV parking ------------------------------------------------------------------------
    def _enforce_kv_budget(self, running: set[str]) -> None:
        """Park least-recently-run paused caches on the CPU until the rest fit the budget."""
        if self.kv_budget_bytes is None:
            return
        resident = [(rid, l) for rid, l in self.live.items()
                    if rid not in running and not l.parked and self.executor.has_cache(rid)]
        total = sum(l.kv_bytes for _, l in resident)
        for rid, live in sorted(resident, key=lambda item: item[1].last_run):
            if total <= self.kv_budget_bytes:
                break
            total -= live.kv_bytes
            self._charge_switch(live, self.executor.park(rid))
            live.parked = True

    def _charge_switch(self, live: _Live, seconds: float) -> None:
        live.switch_seconds += seconds
        self.clock.charge(seconds)

    # ---- the timing record -----------------------------------------------------------------
    def _record(self, live: _Live, finished: Finished) -> TimingRecord:
        sub = live.submission
        request_id = sub.request_id
        final = self.policy.explain(request_id) if live.rounds else {}
        return TimingRecord(
            custom_id=request_id, arrival=sub.arrival, admitted=live.admitted, start=live.start,
            first_token=live.first_token,
            finish=self.now(), prompt_tokens=finished.prompt_tokens, output_tokens=finished.output_tokens,
            max_new_tokens=finished.max_new_tokens, finish_reason=finished.finish_reason,
            rounds=tuple(live.rounds), preemptions=live.preemptions, switch_seconds=live.switch_seconds,
            admit_seconds=live.admit_seconds, policy=self.policy.name, policy_final=final,
            policy_events=tuple(live.events), metrics=finished.metrics, prompt=sub.text,
            features=finished.features, has_stop=live.has_stop, is_chat=live.is_chat)
