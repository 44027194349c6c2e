"""The prior-informed Gittins-index policy: no probe, priced in seconds, preemptive with hysteresis.

Why not LAPS-SD's probe: replaying the project's recordings, the non-perceptible LAS phase that
waits for acceptance to look stable is the largest part of laps-sd's excess over srpt-oracle,
and early acceptance predicts late acceptance poorly anyway. So every request is ranked from
admission, with the job's measurements as a prior that its own rounds gradually replace:

    the rank of a request: the Gittins index over its distribution of remaining length, priced
    in seconds (the formulas and why: hf_laps/scheduling/policies/gittins_index.py)

Decision cost. Computing one rank is O(n) = O(64). Recomputing every waiting request whenever
the calibration, popS/popG or a prediction moves would be O(N n) per finish (10,000 queued:
~150 ms). Instead:
  * the running request is re-ranked after each of its rounds (O(n));
  * ranks live in a LazyHeap; each remembers the parameter EPOCH it was computed in. A new epoch
    starts only when popS/popG or the prefill cost moved by more than `speed_refresh` (5 %), or
    the calibrated median or any residual quantile moved by more than that factor, since the
    epoch started. Before choosing, pick() recomputes the top of the heap until the top is of
    the current epoch (lazy refresh);
  * a round-robin sweep re-predicts `sweep_per_round` waiting requests per round and re-ranks
    those whose prediction moved by more than 5 % (or whose rank is of an old epoch), so a
    learned predictor's refits reach every waiting request within N / sweep_per_round rounds;
  * after an epoch change, on_round recomputes stale ranks at the top of the heap, at most
    `settle_per_round` per round, so pick() reads a current rank at the top and stays a pure
    read (calling it twice gives the same answer).
Why the approximation is safe: (1) the request chosen carries a rank computed with the current
epoch's parameters (unless more than settle_per_round ranks went stale at the top at once; the
rest follow in the next rounds); (2) a waiting request's
stale rank was computed with parameters within 5 % of those of its epoch, and all ranks of one
epoch share them, so within an epoch the order is exact up to that 5 % (of the same order as the
hysteresis band h = 30 % is generous against); (3) a stale entry that ranks too LOW is caught by
(1) when it reaches the top; one that ranks too HIGH waits at most until the sweep reaches it.
Amortised cost per round: one O(n) rank (the running request), sweep_per_round predictions,
O(log N) heap work, plus O(n) per re-ranked request (bounded by sweep_per_round +
settle_per_round per round).
"""
from __future__ import annotations

import math
from collections import deque

from hf_laps.scheduling.predictors.calibration import LengthCalibration
from hf_laps.scheduling.config import GittinsConfig
from hf_laps.scheduling.policies.gittins_index import gittins_index  # noqa: F401 (re-exported: the rank's formula)
from hf_laps.scheduling.heap import LazyHeap
from hf_laps.scheduling.policies.base import BasePolicy
from hf_laps.scheduling.predictors.base import LengthPredictor
from hf_laps.scheduling.progress import RequestProgress
from hf_laps.scheduling.types import RequestSpec, RoundReport


class GittinsProgress(RequestProgress):
    """RequestProgress plus the Gittins bookkeeping of one request."""

    __slots__ = ("l_hat", "support", "predicted_at", "rank", "epoch", "decode_seconds",
                 "decode_tokens")

    def __init__(self, spec: RequestSpec, admit_seq: int) -> None:
        super().__init__(spec, admit_seq)
        self.l_hat = float(spec.max_new_tokens)
        self.support: list[float] | None = None   # the predictor's own quantiles of L, if any
        self.predicted_at = -1                    # the policy's finish count at that prediction
        self.rank = math.inf
        self.epoch = -1
        self.decode_seconds = 0.0      # S_i: seconds of its non-prefill rounds
        self.decode_tokens = 0         # G_i: tokens of its non-prefill rounds


class GittinsPolicy(BasePolicy):
    """Prior-informed Gittins index; see the module docstring for the rule and its cost."""

    name = "gittins"

    def __init__(self, config: GittinsConfig | None = None,
                 predictor: LengthPredictor | None = None,
                 history: list[tuple[float, float]] | tuple = ()) -> None:
        super().__init__()
        self.config = config if config is not None else GittinsConfig()
        if not isinstance(self.config, GittinsConfig):
            raise TypeError(f"config must be a GittinsConfig, got {type(self.config).__name__}")
        if predictor is None:
            raise ValueError(f"{self.name} needs a length predictor (make_predictor(...))")
        self.predictor = predictor
        cfg = self.config
        self.calibration = LengthCalibration(
            history, quantiles=cfg.quantiles, pseudo_weight=cfg.pseudo_weight,
            history_weight=cfg.history_weight, prior_residual_weight=cfg.prior_residual_weight,
            refresh_fraction=cfg.speed_refresh)
        self._levels = [(k + 0.5) / cfg.quantiles for k in range(cfg.quantiles)]
        self._heap = LazyHeap()                # every unfinished request, key (rank, arrival, seq)
        self._sweep: deque[str] = deque()      # round-robin refresh order
        self._oldest = LazyHeap()              # every unfinished request, key (arrival, seq)
        self._latency_sum, self._latency_count = 0.0, 0   # finished requests' latencies
        self._observed = 0                     # finished requests the predictor learned from
        self._decode_s = 0.0                   # popS
        self._decode_g = 0                     # popG
        self._first_s = 0.0                    # seconds of first (prefill) rounds
        self._first_g = 0                      # tokens of first rounds
        self._first_p = 0                      # prompt tokens of started requests
        self._epoch = 0
        self._epoch_speeds = (self.job_seconds_per_token(), self.prefill_per_token())
        self._epoch_support = self._support_probe()

    # --- measured speeds -----------------------------------------------------------------
    def job_seconds_per_token(self) -> float:
        """popS / popG; before any decode round the first rounds' mean, else 1 (only ratios
        between requests matter until something is measured)."""
        if self._decode_g:
            return self._decode_s / self._decode_g
        if self._first_g:
            return self._first_s / self._first_g
        return 1.0

    def prefill_per_token(self) -> float:
        """Seconds per prompt token of a first round beyond its decoding part (0 unmeasured)."""
        if not self._first_p:
            return 0.0
        extra = self._first_s - self.job_seconds_per_token() * self._first_g
        return max(extra, 0.0) / self._first_p

    def seconds_per_token(self, state: GittinsProgress) -> float:
        """spt_i = (S_i + kappa popS/popG) / (G_i + kappa)."""
        pop = self.job_seconds_per_token()
        if not self.config.per_request_speed:
            return pop
        kappa = self.config.kappa
        if state.decode_tokens + kappa <= 0:
            return pop
        return (state.decode_seconds + kappa * pop) / (state.decode_tokens + kappa)

    # --- ranks ---------------------------------------------------------------------------
    def rank(self, state: GittinsProgress) -> float:
        """rank_i with the current parameters and the state's current prediction."""
        spec = state.spec
        cap, g = float(spec.max_new_tokens), state.generated
        spt = self.seconds_per_token(state)
        top = cap - g
        if state.support is not None:          # the predictor's quantiles, already <= cap
            remaining = [x - g for x in state.support if x > g]
        else:
            m = self.calibration.median_scale(state.l_hat)
            remaining = [] if top <= 0 else [d if d < top else top
                         for d in [m * u - g for u in self.calibration.exp_residuals] if d > 0]
        if not remaining:
            guess = min(max(self.config.tail_fraction * g + 1.0, 1.0), max(cap - g, 1.0))
            return spt * guess
        prefill = self.prefill_per_token() * spec.prompt_tokens if state.rounds == 0 else 0.0
        return gittins_index(prefill, spt, remaining)

    def _predict(self, state: GittinsProgress, l_hat: float | None = None) -> None:
        """L_hat (given, or asked of the predictor), and the support when the predictor has
        quantiles (and we are to use them)."""
        state.l_hat = float(self.predictor.predict(state.spec)) if l_hat is None else l_hat
        state.predicted_at = self._observed
        if self.config.predictor_quantiles:
            support = self.predictor.predict_quantiles(state.spec, self._levels)
            state.support = sorted(support) if support is not None else None

    def _refresh(self, state: GittinsProgress, repredict: bool) -> None:
        if repredict:
            self._predict(state)
        state.rank = self.rank(state)
        state.epoch = self._epoch
        self._heap.push(state.spec.request_id, (state.rank, state.spec.arrival, state.admit_seq))

    # --- decisions -----------------------------------------------------------------------
    def ranked(self, count: int) -> list[str]:
        return self._heap.smallest(count)

    def pick(self, now: float) -> str | None:
        starving = self._starving(now)
        if starving is not None:
            return starving
        top = self._heap.peek()
        running = self._running
        if top is None or running is None or top == running:
            return top
        if self._states[top].rank < (1.0 - self.config.hysteresis) * self._states[running].rank:
            return top
        return running

    def _starving(self, now: float) -> str | None:
        """The oldest request, if it has waited more than `starvation` times the job's mean
        latency so far (the job's own measure of a normal wait); else None."""
        factor = self.config.starvation
        if not factor or not self._latency_count:
            return None
        oldest = self._oldest.peek()
        if oldest is None:
            return None
        mean = self._latency_sum / self._latency_count
        return oldest if now - self._states[oldest].spec.arrival > factor * mean else None

    # --- hooks ---------------------------------------------------------------------------
    def _new_state(self, request: RequestSpec) -> GittinsProgress:
        return GittinsProgress(request, self._admit_seq)

    def _admitted(self, state: GittinsProgress, now: float) -> None:
        self._refresh(state, repredict=True)
        self._oldest.push(state.spec.request_id, (state.spec.arrival, state.admit_seq))
        self._sweep.append(state.spec.request_id)
        self._event("admit", state, now, queue=None, l_hat=state.l_hat, rank=state.rank)

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
        if self._speeds_moved():
            self._new_epoch()

    def _progressed(self, state: GittinsProgress, report: RoundReport, now: float) -> None:
        # a prediction changes only when the predictor learned (a finish) or the request's
        # features arrived; otherwise re-ranking (its speed moved) reuses it
        changed = report.features is not None or state.predicted_at != self._observed
        self._refresh(state, repredict=changed)
        self._sweep_some()
        self._settle()

    def _finished(self, state: GittinsProgress, report: RoundReport, now: float) -> None:
        self._heap.remove(state.spec.request_id)
        self._oldest.remove(state.spec.request_id)
        self._latency_sum += now - state.spec.arrival
        self._latency_count += 1
        self._observed += 1
        self.calibration.observe(state.l_hat, state.generated)
        self.predictor.observe(state.spec, state.generated)
        if self._support_moved():
            self._new_epoch()
        self._sweep_some()
        self._settle()

    # --- lazy refresh --------------------------------------------------------------------
    def _new_epoch(self) -> None:
        self._epoch += 1
        self._epoch_speeds = (self.job_seconds_per_token(), self.prefill_per_token())
        self._epoch_support = self._support_probe()

    def _speeds_moved(self) -> bool:
        """popS/popG moved by more than speed_refresh, or the prefill cost per prompt token by
        more than speed_refresh times the larger of the two per-token costs (a prompt token
        and an output token weigh alike in a rank; prefill per token is a small difference
        of large numbers, so judging it relative to itself would start an epoch on noise)."""
        spt, ppt = self.job_seconds_per_token(), self.prefill_per_token()
        old_spt, old_ppt = self._epoch_speeds
        threshold = self.config.speed_refresh
        return (_moved(spt, old_spt, threshold)
                or abs(ppt - old_ppt) > threshold * max(old_spt, old_ppt))

    def _support_probe(self) -> tuple[list[float], list[float]]:
        """(median log-length at L_hat = 4, 64, 1024; residual quantiles e_k)."""
        alpha, beta = self.calibration.coefficients()
        return ([alpha + beta * math.log(x) for x in (4.0, 64.0, 1024.0)],
                self.calibration.residuals)

    def _support_moved(self) -> bool:
        """The calibrated support moved by more than speed_refresh since the epoch began:
        largest shift of the median plus the mean shift of the residual quantiles (the
        extreme quantiles alone jump with every new pair and barely move an index)."""
        (medians, residuals), (old_medians, old_residuals) = (self._support_probe(),
                                                              self._epoch_support)
        shift = max(abs(a - b) for a, b in zip(medians, old_medians))
        shift += sum(abs(a - b) for a, b in zip(residuals, old_residuals)) / len(residuals)
        return shift > math.log1p(self.config.speed_refresh)

    def _settle(self) -> None:
        """Recompute stale ranks at the top of the heap (at most settle_per_round of them), so
        the next pick sees a current-epoch rank there; pick() itself only reads."""
        states, heap = self._states, self._heap
        for _ in range(self.config.settle_per_round):
            top = heap.peek()
            if top is None or states[top].epoch == self._epoch:
                return
            self._refresh(states[top], repredict=True)

    def _sweep_some(self) -> None:
        """Re-predict the next sweep_per_round waiting requests (round robin); re-rank those
        whose prediction moved by more than speed_refresh or whose rank is of an old epoch
        (a prediction is cheap, a rank is O(n): most sweep steps cost no rank)."""
        sweep, states, heap = self._sweep, self._states, self._heap
        threshold, done = self.config.speed_refresh, 0
        for _ in range(len(sweep)):
            if done >= self.config.sweep_per_round:
                return
            rid = sweep.popleft()
            state = states.get(rid)
            if state is None or rid not in heap:
                continue                          # finished (or finishing): leaves the sweep
            sweep.append(rid)
            if rid == self._running:
                continue
            done += 1
            l_hat = float(self.predictor.predict(state.spec))
            if state.epoch != self._epoch or _moved(l_hat, state.l_hat, threshold):
                self._predict(state, l_hat)
                self._refresh(state, repredict=False)

    # --- explanation ---------------------------------------------------------------------
    def _explain(self, state: GittinsProgress) -> dict:
        out = super()._explain(state)
        alpha, beta = self.calibration.coefficients()
        out.update({
            "queue": None,
            "l_hat": state.l_hat,
            "rank": _finite(state.rank),
            "seconds_per_token": self.seconds_per_token(state),
            "job_seconds_per_token": self.job_seconds_per_token(),
            "prefill_per_token": self.prefill_per_token(),
            "calibration_alpha": alpha,
            "calibration_beta": beta,
            "calibration_pairs": self.calibration.pairs,
        })
        return out


def _moved(new: float, old: float, fraction: float) -> bool:
    if old == 0.0:
        return new != 0.0
    return abs(new / old - 1.0) > fraction


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
