"""The policy interface every scheduler implements, and the bookkeeping they share.

The driver (serving loop or simulator) calls, at every round boundary:

    policy.admit(spec, now)            # for each request that arrived since the last call
    rid = policy.pick(now)             # the request to run the next round (None: nothing waits)
    ... run one round of rid ...
    policy.on_round(report, now)       # finished requests leave the policy

A batched driver asks `pick_batch(now, B)` instead and reports every request of the round. Its
head is always `pick(now)` (so B = 1 is exactly `pick`, hysteresis and run-to-threshold rules
included); the other B - 1 places go to the next requests in the policy's own order (`ranked`).

Preemption is the driver running a different request than last round: the policy preempts
`running_id` exactly when `pick(now) != running_id`. `pick` has no side effects beyond dropping
stale heap entries, so it may be called any number of times.
"""
from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from dataclasses import replace

from hf_laps.scheduling.progress import RequestProgress
from hf_laps.scheduling.types import RequestSpec, RoundReport


class Policy(ABC):
    """Which request runs the next speculative round."""

    name: str = "policy"

    @abstractmethod
    def admit(self, request: RequestSpec, now: float) -> None:
        """Make `request` eligible to run. Raises ValueError on a duplicate id."""

    @abstractmethod
    def pick(self, now: float) -> str | None:
        """The request to run the next round; None when nothing waits."""

    @abstractmethod
    def on_round(self, report: RoundReport, now: float) -> None:
        """Account one finished round; a finished request leaves the policy."""

    def pick_batch(self, now: float, size: int) -> list[str]:
        """Up to `size` distinct requests to run the next round together, `pick(now)` first."""
        if size < 1:
            raise ValueError(f"a batch holds at least one request, got size {size}")
        first = self.pick(now)
        if first is None:
            return []
        if size == 1:
            return [first]
        # one more than needed: `first` may or may not be among the ranked
        rest = [rid for rid in self.ranked(size) if rid != first]
        return [first] + rest[: size - 1]

    @abstractmethod
    def ranked(self, count: int) -> list[str]:
        """The `count` best waiting requests in the policy's own order, best first."""

    @abstractmethod
    def explain(self, request_id: str) -> dict:
        """JSON-able state behind the decisions about `request_id` (queue, estimates, ...)."""

    @abstractmethod
    def drain_events(self) -> list[dict]:
        """State changes since the last call, oldest first."""

    @abstractmethod
    def __len__(self) -> int:
        """Requests admitted and not finished."""


class BasePolicy(Policy):
    """Shared bookkeeping: per-request progress, the running request, events, finished snapshots.

    Subclasses implement `pick` and the hooks `_admitted`, `_progressed`, `_finished`, and may
    extend `_explain` and `_features_arrived`.
    """

    def __init__(self) -> None:
        self._states: dict[str, RequestProgress] = {}
        self._done: dict[str, dict] = {}       # finished id -> final explain() snapshot
        self._events: list[dict] = []
        self._running: str | None = None       # last reported, unfinished request
        self._admit_seq = 0

    # --- the interface -------------------------------------------------------------------
    def admit(self, request: RequestSpec, now: float) -> None:
        rid = request.request_id
        if rid in self._states or rid in self._done:
            raise ValueError(f"{self.name}: request {rid!r} was already admitted")
        state = self._new_state(request)
        self._admit_seq += 1
        self._states[rid] = state
        self._admitted(state, now)

    def on_round(self, report: RoundReport, now: float) -> None:
        rid = report.request_id
        state = self._states.get(rid)
        if state is None:
            why = "already finished" if rid in self._done else "never admitted"
            raise KeyError(f"{self.name}: round reported for request {rid!r}, which is {why}")
        state.record(report, self._cost(report))
        if report.features is not None:
            state.spec = replace(state.spec, features=report.features)
            self._features_arrived(state, now)
        self._measured(report, now)
        if report.finished:
            self._finished(state, report, now)
            snapshot = self._explain(state)
            snapshot["state"] = "finished"
            self._done[rid] = snapshot
            del self._states[rid]
            self._running = None
        else:
            self._running = rid
            self._progressed(state, report, now)

    def explain(self, request_id: str) -> dict:
        state = self._states.get(request_id)
        if state is None:
            if request_id in self._done:
                return dict(self._done[request_id])
            raise KeyError(f"{self.name}: unknown request {request_id!r}")
        out = self._explain(state)
        out["state"] = "running" if request_id == self._running else "waiting"
        return out

    def drain_events(self) -> list[dict]:
        events, self._events = self._events, []
        return events

    def __len__(self) -> int:
        return len(self._states)

    def ranked(self, count: int) -> list[str]:
        """Default order: admission (a policy with its own key overrides this)."""
        return [s.spec.request_id for s in heapq.nsmallest(count, self._states.values(), key=lambda s: s.admit_seq)]

    # --- hooks ---------------------------------------------------------------------------
    def _new_state(self, request: RequestSpec) -> RequestProgress:
        return RequestProgress(request, self._admit_seq)

    def _cost(self, report: RoundReport) -> float:
        """A round's attained service (seconds unless a policy counts rounds)."""
        return report.seconds

    @abstractmethod
    def _admitted(self, state: RequestProgress, now: float) -> None: ...

    def _features_arrived(self, state: RequestProgress, now: float) -> None:
        """The prefill round reported features; `state.spec` now carries them (default:
        nothing to update; predictor-driven policies re-predict here)."""

    def _measured(self, report: RoundReport, now: float) -> None:
        """Every round, before `_progressed` / `_finished` (default: nothing to measure)."""

    def _progressed(self, state: RequestProgress, report: RoundReport, now: float) -> None:
        """An unfinished request ran a round (default: nothing to update)."""

    @abstractmethod
    def _finished(self, state: RequestProgress, report: RoundReport, now: float) -> None: ...

    def _explain(self, state: RequestProgress) -> dict:
        out = state.summary()
        out["policy"] = self.name
        return out

    def _event(self, event: str, state: RequestProgress, now: float, **extra) -> None:
        record = {"request_id": state.spec.request_id, "time": now, "event": event}
        record.update(extra)
        self._events.append(record)
