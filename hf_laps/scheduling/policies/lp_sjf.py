"""LP-SJF: non-preemptive shortest *predicted* output length first (docs/design.md#baselines).

The "existing work" LAPS-SD is compared against: a length predictor ranks requests once, at
admission, and the chosen request runs to completion. It shares its predictor with LAPS-SD in a
comparison (docs/design.md#length-predictor); finished requests are fed back to the predictor
(`observe`).
"""
from __future__ import annotations

from hf_laps.scheduling.heap import LazyHeap
from hf_laps.scheduling.policies.base import BasePolicy
from hf_laps.scheduling.predictors.base import LengthPredictor
from hf_laps.scheduling.progress import RequestProgress
from hf_laps.scheduling.types import RoundReport


class LPSJFPolicy(BasePolicy):
    """Key (L_hat at admission, arrival, admission order); runs the chosen request to the end."""

    name = "lp-sjf"

    def __init__(self, predictor: LengthPredictor) -> None:
        super().__init__()
        self.predictor = predictor
        self._heap = LazyHeap()
        self._l_hat: dict[str, float] = {}

    def ranked(self, count: int) -> list[str]:
        return self._heap.smallest(count)

    def pick(self, now: float) -> str | None:
        if self._running is not None:
            return self._running
        return self._heap.peek()

    def _admitted(self, state: RequestProgress, now: float) -> None:
        spec = state.spec
        l_hat = self.predictor.predict(spec)
        self._l_hat[spec.request_id] = l_hat
        self._heap.push(spec.request_id, (l_hat, spec.arrival, state.admit_seq))
        self._event("admit", state, now, queue=None, l_hat=l_hat)

    def _features_arrived(self, state: RequestProgress, now: float) -> None:
        """The prefill reported hidden-state features: predict again with them. The running
        request keeps running (the policy is non-preemptive, and in a live loop features arrive
        on the request's first round); the new key and L_hat show in explain() and the events,
        and count for any driver that reports features before the request runs."""
        spec = state.spec
        l_hat = self.predictor.predict(spec)
        self._l_hat[spec.request_id] = l_hat
        self._heap.push(spec.request_id, (l_hat, spec.arrival, state.admit_seq))
        self._event("repredict", state, now, l_hat=l_hat)

    def _finished(self, state: RequestProgress, report: RoundReport, now: float) -> None:
        rid = state.spec.request_id
        self._heap.remove(rid)
        self.predictor.observe(state.spec, state.generated)

    def _explain(self, state: RequestProgress) -> dict:
        out = super()._explain(state)
        out["l_hat"] = self._l_hat[state.spec.request_id]
        return out
