"""FCFS: arrival order, each request runs to completion (docs/design.md#baselines)."""
from __future__ import annotations

from hf_laps.scheduling.heap import LazyHeap
from hf_laps.scheduling.policies.base import BasePolicy
from hf_laps.scheduling.progress import RequestProgress
from hf_laps.scheduling.types import RoundReport


class FCFSPolicy(BasePolicy):
    """First come, first served, non-preemptive: key (arrival, admission order)."""

    name = "fcfs"

    def __init__(self) -> None:
        super().__init__()
        self._heap = LazyHeap()

    def ranked(self, count: int) -> list[str]:
        return self._heap.smallest(count)

    def pick(self, now: float) -> str | None:
        # Non-preemptive: the request that ran last round keeps the GPU until it finishes.
        if self._running is not None:
            return self._running
        return self._heap.peek()

    def _admitted(self, state: RequestProgress, now: float) -> None:
        self._heap.push(state.spec.request_id, (state.spec.arrival, state.admit_seq))
        self._event("admit", state, now, queue=None)

    def _finished(self, state: RequestProgress, report: RoundReport, now: float) -> None:
        self._heap.remove(state.spec.request_id)
