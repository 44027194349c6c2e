"""SRPT-oracle: shortest true remaining execution time first, preemptive (docs/design.md#baselines).

remaining = true_service_seconds - attained_seconds. With the truth and no switch cost this is
the optimal single-server policy for mean latency (Schrage 1968), so it is the lower bound every
other policy is measured against. Needs `RequestSpec.true_service_seconds`.
"""
from __future__ import annotations

from hf_laps.scheduling.heap import LazyHeap
from hf_laps.scheduling.policies.base import BasePolicy
from hf_laps.scheduling.progress import RequestProgress
from hf_laps.scheduling.types import RoundReport


class SRPTOraclePolicy(BasePolicy):
    """Key (true remaining seconds, admission order); re-keyed after every round."""

    name = "srpt-oracle"

    def __init__(self) -> None:
        super().__init__()
        self._heap = LazyHeap()

    def ranked(self, count: int) -> list[str]:
        return self._heap.smallest(count)

    def pick(self, now: float) -> str | None:
        return self._heap.peek()

    def _admitted(self, state: RequestProgress, now: float) -> None:
        spec = state.spec
        if spec.true_service_seconds is None:
            raise ValueError(f"srpt-oracle needs RequestSpec.true_service_seconds (the request's "
                             f"total execution seconds); request {spec.request_id!r} has none")
        self._push(state)
        self._event("admit", state, now, queue=None, remaining_seconds=self._remaining(state))

    def _progressed(self, state: RequestProgress, report: RoundReport, now: float) -> None:
        self._push(state)

    def _finished(self, state: RequestProgress, report: RoundReport, now: float) -> None:
        self._heap.remove(state.spec.request_id)

    def _push(self, state: RequestProgress) -> None:
        self._heap.push(state.spec.request_id, (self._remaining(state), state.admit_seq))

    @staticmethod
    def _remaining(state: RequestProgress) -> float:
        return max(state.spec.true_service_seconds - state.attained_seconds, 0.0)

    def _explain(self, state: RequestProgress) -> dict:
        out = super()._explain(state)
        out["remaining_seconds"] = self._remaining(state)
        return out
