"""The serving loop: one GPU, batch size 1, a scheduling policy choosing every round.

    for completion in ServingLoop(engine, policy).run(submissions):
        ...   # one Completion per request, in the order requests finish

At every round boundary the loop admits the requests that have arrived, asks the policy which
request runs next, starts or resumes it, runs exactly one speculative round, and reports the round
to the policy. Switching to another request is a preemption of the one that ran last. KV caches of
paused requests stay on the device while their bytes fit `kv_budget_bytes`; beyond it the least
recently run ones are parked in (pinned) CPU memory and copied back when they run again. The
seconds spent moving caches are the switch cost, logged per request.

Under greedy decoding a request's tokens do not depend on the schedule (tests check it): the
policy changes only WHEN rounds run, never what a round computes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from hf_laps.engine import SpeculativeEngine
from hf_laps.scheduling import Policy, RequestSpec, RoundReport
from hf_laps.state import GenerationState, RoundResult


@dataclass
class Submission:
    """One request handed to the loop.

    prompt: text or token ids; generation_kwargs: as `SpeculativeEngine.start`;
    arrival: seconds after the loop starts (0 for an offline batch);
    prompt_text: the text the length predictor sees (defaults to the prompt if it is text);
    true_output_tokens / true_service_seconds: ground truth from an earlier run of the same
        request, read only by the oracle predictors and srpt-oracle.
    """

    request_id: str
    prompt: Any
    generation_kwargs: dict = field(default_factory=dict)
    arrival: float = 0.0
    prompt_text: str | None = None
    true_output_tokens: int | None = None
    true_service_seconds: float | None = None


@dataclass
class Completion:
    """A request that left the loop: finished (`state`, `timing`) or failed (`error`).

    `rejected` marks a request refused at admission (the prompt or its options are invalid: the
    client's fault) as opposed to one whose round failed while it ran (the server's).
    """

    submission: Submission
    state: GenerationState | None = None
    timing: dict | None = None
    error: str | None = None
    rejected: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Live:
    """Loop-side bookkeeping of an admitted request."""

    submission: Submission
    state: GenerationState
    admitted: float
    start: float | None = None
    first_token: float | None = None
    last_run: float = 0.0
    preemptions: int = 0
    switch_seconds: float = 0.0
    parked: bool = False
    kv_bytes: int = 0  # of both caches, refreshed after each of its rounds (only they change it)
    rounds: list = field(default_factory=list)
    events: list = field(default_factory=list)


class ServingLoop:
    """Drive `engine` under `policy` until every submission finished (or `stop()` was called).

    Args:
        engine: the speculative engine (owns the models).
        policy: a scheduling policy from `hf_laps.scheduling.make_policy`.
        kv_budget_bytes: device bytes allowed for the KV caches of paused requests; None keeps
            every cache on the device.
        clock: seconds (monotonic); injectable for tests.
    """

    def __init__(
        self,
        engine: SpeculativeEngine,
        policy: Policy,
        kv_budget_bytes: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if kv_budget_bytes is not None and kv_budget_bytes < 0:
            raise ValueError(f"kv_budget_bytes must be >= 0, got {kv_budget_bytes}")
        self.engine = engine
        self.policy = policy
        self.kv_budget_bytes = kv_budget_bytes
        self.clock = clock
        self.stop_requested = False
        self.live: dict[str, _Live] = {}
        self.busy_seconds = 0.0
        self._t0 = 0.0
        self._on_round: Callable[[RoundResult], None] | None = None

    def stop(self) -> None:
        """Finish the current round, then return (Ctrl-C); unfinished requests are dropped."""
        self.stop_requested = True

    def now(self) -> float:
        return self.clock() - self._t0

    # ---- the loop --------------------------------------------------------------------------
    def run(
        self, submissions: Iterable[Submission], on_round: Callable[[RoundResult], None] | None = None
    ) -> Iterator[Completion]:
        """Yield each Completion as it leaves; `on_round(result)` after every round (progress)."""
        self._on_round = on_round
        pending = sorted(submissions, key=lambda s: s.arrival)
        pending.reverse()  # pop() from the end = earliest arrival
        self._t0 = self.clock()
        running: str | None = None
        while (pending or self.live) and not self.stop_requested:
            yield from self._admit_arrived(pending)
            request_id = self.policy.pick(self.now())
            if request_id is None:
                if not pending:
                    break  # nothing admitted can run: only possible if the policy lost requests
                self._wait_until(pending[-1].arrival)
                continue
            live = self.live[request_id]
            if running is not None and running != request_id and running in self.live:
                self.live[running].preemptions += 1
            running = request_id
            completion = self._run_round(live)
            if completion is not None:
                running = None
                yield completion
            self._enforce_kv_budget(running)
        if self.live and not self.stop_requested:
            raise RuntimeError(f"policy {self.policy.name} stopped picking with {len(self.live)} requests left")

    def _wait_until(self, arrival: float) -> None:
        while not self.stop_requested and self.now() < arrival:
            time.sleep(min(0.05, max(0.0, arrival - self.now())))

    def _admit_arrived(self, pending: list[Submission]) -> Iterator[Completion]:
        now = self.now()
        while pending and pending[-1].arrival <= now:
            submission = pending.pop()
            try:
                state = self.engine.start(
                    submission.prompt, request_id=submission.request_id, **submission.generation_kwargs
                )
            except (ValueError, TypeError) as exc:
                yield Completion(submission, error=str(exc), rejected=True)
                continue
            live = _Live(submission, state, admitted=now)
            if state.finished:  # nothing to generate (budget 0)
                live.start = live.first_token = now
                yield Completion(submission, state, self._timing(live, now))
                continue
            self.live[submission.request_id] = live
            self.policy.admit(self._spec(submission, state), now)

    @staticmethod
    def _spec(submission: Submission, state: GenerationState) -> RequestSpec:
        prompt_text = submission.prompt_text
        if prompt_text is None and isinstance(submission.prompt, str):
            prompt_text = submission.prompt
        return RequestSpec(
            request_id=submission.request_id,
            arrival=submission.arrival,
            prompt_tokens=state.prompt_len,
            max_new_tokens=max(1, state.max_length - state.prompt_len),
            prompt=prompt_text,
            true_output_tokens=submission.true_output_tokens,
            true_service_seconds=submission.true_service_seconds,
        )

    def _run_round(self, live: _Live) -> Completion | None:
        """One round of `live`; returns its Completion when it left the loop."""
        request_id = live.submission.request_id
        if live.parked:
            live.switch_seconds += self._move(live, self.engine.device)
            live.parked = False
        if live.start is None:
            live.start = self.now()
        try:
            result = self.engine.step(live.state)
        except Exception as exc:  # one bad request must not take the batch down
            return self._fail(live, f"{type(exc).__name__}: {exc}")
        now = self.now()
        live.last_run = now
        self.busy_seconds += result.seconds
        if live.first_token is None and result.emitted:
            live.first_token = now
        live.rounds.append([result.drafted, result.accepted, result.seconds, result.draft_seconds])
        if self.kv_budget_bytes is not None:
            live.kv_bytes = live.state.kv_bytes
        self.policy.on_round(_report(result), now)
        self._collect_events()
        if self._on_round is not None:
            self._on_round(result)
        if not result.finished:
            return None
        del self.live[request_id]
        return Completion(live.submission, live.state, self._timing(live, now))

    def _fail(self, live: _Live, message: str) -> Completion:
        """Drop a request whose round raised; the policy is told it finished."""
        request_id = live.submission.request_id
        self.policy.on_round(
            RoundReport(request_id, 0, 0, 0, 0.0, 0.0, 0.0, finished=True), self.now()
        )
        self._collect_events()
        del self.live[request_id]
        return Completion(live.submission, live.state, error=message)

    def _collect_events(self) -> None:
        for event in self.policy.drain_events():
            live = self.live.get(event.get("request_id"))
            if live is not None:
                live.events.append(event)

    # ---- KV parking ------------------------------------------------------------------------
    def _enforce_kv_budget(self, running: str | None) -> None:
        """Park least-recently-run paused caches on the CPU until the rest fit the budget."""
        if self.kv_budget_bytes is None:
            return
        resident = [l for rid, l in self.live.items() if rid != running and not l.parked and l.state.started]
        total = sum(l.kv_bytes for l in resident)
        for live in sorted(resident, key=lambda l: l.last_run):
            if total <= self.kv_budget_bytes:
                break
            total -= live.kv_bytes
            live.switch_seconds += self._move(live, "cpu")
            live.parked = True

    def _move(self, live: _Live, device) -> float:
        started = time.perf_counter()
        # on a CPU-only engine "parking" still copies, so the path is exercised and measured
        live.state.to(device, copy=self.engine.device.type == "cpu")
        return time.perf_counter() - started

    # ---- the timing record -----------------------------------------------------------------
    def _timing(self, live: _Live, finish: float) -> dict:
        """One timing-log line: also the trace format the simulator replays."""
        sub, state = live.submission, live.state
        return {
            "custom_id": sub.request_id,
            "arrival": sub.arrival,
            "start": live.start,
            "first_token": live.first_token,
            "finish": finish,
            "latency": finish - sub.arrival,
            "queue_wait": (live.start or finish) - sub.arrival,
            "prompt_tokens": state.prompt_len,
            "output_tokens": state.num_generated,
            "max_new_tokens": state.max_length - state.prompt_len,
            "finish_reason": state.finish_reason,
            "rounds": live.rounds,
            "preemptions": live.preemptions,
            "switch_seconds": live.switch_seconds,
            "busy_seconds": sum(r[2] for r in live.rounds),
            "policy": self.policy.name,
            "policy_final": self.policy.explain(sub.request_id),
            "policy_events": live.events,
            "metrics": state.metrics.to_dict(),
            "prompt": sub.prompt_text if sub.prompt_text is not None else (sub.prompt if isinstance(sub.prompt, str) else None),
        }


def _report(result: RoundResult) -> RoundReport:
    return RoundReport(
        request_id=result.request_id,
        drafted=result.drafted,
        accepted=result.accepted,
        emitted=result.emitted,
        seconds=result.seconds,
        draft_seconds=result.draft_seconds,
        verify_seconds=result.verify_seconds,
        finished=result.finished,
        prefill=result.prefill,
    )
