"""Robust SRPT: shortest predicted remaining seconds, calibrated online, with an aging term.

Why this policy. Replaying a recording nobody tuned on, the Gittins policy lost
30-40 % to lp-sjf in a burst: its index prices the whole predicted distribution, so when the
predictor's quantiles are not calibrated on the job the index is wrong in shape, not just in
scale. SRPT on a point estimate only needs the ORDER of the predictions to be right, and it
degrades gracefully as that order gets worse. Two things make it robust:

* calibration learned online (LengthCalibration): log L = alpha + beta log L_hat, fitted on
  this job's finished requests on top of an identity prior. A biased predictor (the cap of 64
  for questions whose median is 28) is rescaled; an uninformative one drives beta toward 0, so
  every request gets the same calibrated length and the order falls back to the cheap signals
  (prefill cost, measured speed) and arrival: the policy stops trusting what does not predict.
* an aging term: key = remaining seconds + aging x arrival. A request's key falls by `aging`
  seconds for every second it waits relative to later arrivals, so a request of S remaining
  seconds can be overtaken by newcomers for at most S / aging seconds: starvation is bounded,
  unlike pure SRPT (the goal: p99 within 2x fcfs's).

The rank of request i (seconds):

    L_cal   = clip(exp(alpha + beta log L_hat_i), 1, cap_i)
    rem_i   = min(cap_i - g_i, max(L_cal - g_i, overrun x g_i, 1))    tokens still to come
    spt_i   = (S_i + kappa popS/popG) / (G_i + kappa)                 shrunk to the job's speed
    pre_i   = prefill seconds per prompt token x P_i, until i has run its first round
    key_i   = pre_i + spt_i x rem_i + aging x arrival_i

`overrun`: once a request has outrun its calibrated length it is, as far as we know, a long
one; its remaining estimate grows with what it has already generated (the LAS intuition for
heavy tails) instead of staying near zero and monopolising the server.

Preemption with hysteresis: the running request keeps running unless the best waiting key is
smaller by more than `hysteresis` x the running request's remaining service.

Decision cost. Keys live in a LazyHeap: pick() is a peek. After every round the running request
is re-keyed (one prediction at most), and `sweep_per_round` waiting requests are re-predicted
and re-keyed round-robin, so online refits of the predictor and the calibration reach every
waiting request within N / sweep_per_round rounds. A stale key was computed with an earlier
calibration; the error is bounded by how far alpha, beta moved since (a few % per finish once
there are tens of pairs). O(log N + sweep x predict) per round.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hf_laps.scheduling.predictors.calibration import LengthCalibration
from hf_laps.scheduling.heap import LazyHeap
from hf_laps.scheduling.policies.base import BasePolicy
from hf_laps.scheduling.predictors.base import LengthPredictor
from hf_laps.scheduling.progress import RequestProgress
from hf_laps.scheduling.types import RequestSpec, RoundReport


@dataclass(frozen=True)
class RobustSRPTConfig:
    """Knobs of robust-srpt (defaults chosen by leave-one-recording-out:
    docs/studies/cross-workload.md).

    aging: seconds of key credited per second of earlier arrival (0 = pure SRPT; large = fcfs).
    overrun: remaining tokens = overrun x generated once past the calibrated length.
    hysteresis: fraction of the running request's remaining service a newcomer must beat by.
    kappa: tokens of the job's mean speed mixed into each request's own (shrinkage).
    sweep_per_round: waiting requests re-predicted and re-keyed per round.
    pseudo_weight: weight of each identity pseudo-pair of the calibration's prior.
    """

    aging: float = 0.1
    overrun: float = 0.5
    hysteresis: float = 0.3
    kappa: float = 256.0
    sweep_per_round: int = 2
    pseudo_weight: float = 5.0

    def __post_init__(self) -> None:
        if self.aging < 0 or self.overrun < 0 or not 0 <= self.hysteresis < 1:
            raise ValueError("aging and overrun must be >= 0 and hysteresis in [0, 1)")
        if self.kappa < 0 or self.sweep_per_round < 0 or self.pseudo_weight <= 0:
            raise ValueError("kappa and sweep_per_round must be >= 0, pseudo_weight > 0")


class RobustProgress(RequestProgress):
    """RequestProgress plus one request's prediction, key and decode speed."""

    __slots__ = ("l_hat", "predicted_at", "service", "key", "decode_seconds", "decode_tokens")

    def __init__(self, spec: RequestSpec, admit_seq: int) -> None:
        super().__init__(spec, admit_seq)
        self.l_hat = float(spec.max_new_tokens)
        self.predicted_at = -1
        self.service = 0.0
        self.key = 0.0
        self.decode_seconds = 0.0
        self.decode_tokens = 0


class RobustSRPTPolicy(BasePolicy):
    """See the module docstring."""

    name = "robust-srpt"

    def __init__(self, config: RobustSRPTConfig | None = None,
                 predictor: LengthPredictor | None = None) -> None:
        super().__init__()
        if predictor is None:
            raise ValueError(f"{self.name} needs a length predictor")
        self.config = config if config is not None else RobustSRPTConfig()
        self.predictor = predictor
        self.calibration = LengthCalibration(pseudo_weight=self.config.pseudo_weight)
        self._heap = LazyHeap()
        self._sweep: deque[str] = deque()
        self._observed = 0                 # finished requests the predictor learned from
        self._decode_s, self._decode_g = 0.0, 0
        self._first_s, self._first_g, self._first_p = 0.0, 0, 0

    # --- measured speeds -----------------------------------------------------------------
    def job_seconds_per_token(self) -> float:
        """popS / popG (first rounds' mean before any decode round; 1 before anything)."""
        if self._decode_g:
            return self._decode_s / self._decode_g
        return self._first_s / self._first_g if self._first_g else 1.0

    def prefill_per_token(self) -> float:
        """Seconds per prompt token of a first round beyond its decoding part (0 unmeasured)."""
        if not self._first_p:
            return 0.0
        extra = self._first_s - self.job_seconds_per_token() * self._first_g
        return max(extra, 0.0) / self._first_p

    # --- keys ----------------------------------------------------------------------------
    def calibrated_length(self, state: RobustProgress) -> float:
        cap = float(state.spec.max_new_tokens)
        return min(max(self.calibration.median_scale(state.l_hat), 1.0), cap)

    def remaining_tokens(self, state: RobustProgress) -> float:
        g = state.generated
        left = max(state.spec.max_new_tokens - g, 1)
        return min(left, max(self.calibrated_length(state) - g, self.config.overrun * g, 1.0))

    def remaining_seconds(self, state: RobustProgress) -> float:
        pop, kappa = self.job_seconds_per_token(), self.config.kappa
        spt = (state.decode_seconds + kappa * pop) / (state.decode_tokens + kappa) if state.decode_tokens + kappa > 0 else pop
        prefill = self.prefill_per_token() * state.spec.prompt_tokens if state.rounds == 0 else 0.0
        return prefill + spt * self.remaining_tokens(state)

    def _rekey(self, state: RobustProgress, repredict: bool) -> None:
        if repredict or state.predicted_at < 0:
            state.l_hat = float(self.predictor.predict(state.spec))
            state.predicted_at = self._observed
        state.service = self.remaining_seconds(state)
        state.key = state.service + self.config.aging * state.spec.arrival
        self._heap.push(state.spec.request_id, (state.key, state.spec.arrival, state.admit_seq))

    # --- decisions -----------------------------------------------------------------------
    def ranked(self, count: int) -> list[str]:
        return self._heap.smallest(count)

    def pick(self, now: float) -> str | None:
        top, running = self._heap.peek(), self._running
        if top is None or running is None or top == running:
            return top
        run = self._states[running]
        if self._states[top].key < run.key - self.config.hysteresis * run.service:
            return top
        return running

    # --- hooks ---------------------------------------------------------------------------
    def _new_state(self, request: RequestSpec) -> RobustProgress:
        return RobustProgress(request, self._admit_seq)

    def _admitted(self, state: RobustProgress, now: float) -> None:
        self._rekey(state, repredict=True)
        self._sweep.append(state.spec.request_id)
        self._event("admit", state, now, queue=None, l_hat=state.l_hat, key=state.key)

    def _features_arrived(self, state: RobustProgress, now: float) -> None:
        self._rekey(state, repredict=True)
        self._event("repredict", state, now, l_hat=state.l_hat)

    def _measured(self, report: RoundReport, now: float) -> None:
        state = self._states[report.request_id]
        if report.prefill:
            self._first_s += report.seconds
            self._first_g += report.emitted
            self._first_p += state.spec.prompt_tokens
        else:
            self._decode_s += report.seconds
            self._decode_g += report.emitted
            state.decode_seconds += report.seconds
            state.decode_tokens += report.emitted

    def _progressed(self, state: RobustProgress, report: RoundReport, now: float) -> None:
        self._rekey(state, repredict=state.predicted_at != self._observed)
        self._sweep_some()

    def _finished(self, state: RobustProgress, report: RoundReport, now: float) -> None:
        self._observed += 1
        self.calibration.observe(state.l_hat, state.generated)
        self.predictor.observe(state.spec, state.generated)
        self._sweep_some()
        self._heap.remove(state.spec.request_id)   # after the sweep, which may re-key it

    def _sweep_some(self) -> None:
        """Re-key a few waiting requests round-robin (finished ones drop out of the ring)."""
        budget = min(self.config.sweep_per_round, len(self._sweep))
        while budget > 0 and self._sweep:
            rid = self._sweep.popleft()
            state = self._states.get(rid)
            if state is None:
                continue
            budget -= 1
            self._rekey(state, repredict=state.predicted_at != self._observed)
            self._sweep.append(rid)

    def _explain(self, state: RobustProgress) -> dict:
        out = super()._explain(state)
        out.update(l_hat=state.l_hat, l_cal=self.calibrated_length(state),
                   remaining_seconds=state.service, key=state.key)
        return out
