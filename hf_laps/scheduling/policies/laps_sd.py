"""LAPS-SD (arXiv 2505.17074, Algorithm 1), with the choices the paper leaves open fixed as in
docs/design.md (one anchor per choice, cited below).

K priority queues, queue 1 highest. Thresholds Sup_j = Sup_1 * M**(j-1) (#queues-and-thresholds,
#sup1-measured); queue j covers [Sup_{j-1}, Sup_j) with Sup_0 = 0, queue K is unbounded.

* Every request starts NON-PERCEPTIBLE in queue 1. A non-perceptible request sits in the queue of
  its attained service (#attained-seconds): once attained >= Sup_j it moves to queue j+1
  (demotion). Inside a queue non-perceptible requests are first come first served, and a running
  one is not preempted by its non-perceptible queue-mates before it reaches its threshold
  (#run-to-threshold).
* After each round the stability test (#stability-test, stability.py) runs; a stable request
  becomes PERCEPTIBLE for good. From then on, after every round it gets (#perceptible-srpt)
      A_hat = accepted / drafted so far,   L_hat = max(predictor(request), g + 1),
      T_rem = max(L_hat - g, 1) * (n * T_draft + T_target) / (n * A_hat + 1)
  (g = tokens generated, n = its mean draft length, T_draft / T_target measured, timing.py) and
  sits in the queue j with Sup_{j-1} <= T_rem < Sup_j, which may be a higher queue than before.
* pick(): the highest non-empty queue; inside it perceptible requests first, shortest T_rem first
  (SRPT on estimates), then non-perceptible FCFS. Preemption happens at round boundaries only.

A waiting request's T_rem is the one computed after its last round: its g, A_hat and L_hat only
change when it runs, and re-estimating all waiting requests whenever the global forward-time
means move would cost O(n) per round.

With `config.perceptible = False` no request ever becomes perceptible and this is LAS (las.py).
With `config.probe = False` (an ablation, not the paper) every request is perceptible from
admission: until it has drafted, its A_hat and n are the job's (accepted / drafted and drafted
per round over every round so far; 0 before any), then its own as above.
With `config.adaptive_queues_cv2 = c` (open question 2 of the paper, docs/studies/acceptance.md) the
policy starts with ONE queue (no thresholds: non-perceptible requests first come first served,
perceptible ones first by T_rem) and switches to num_queues for good once the predicted lengths
L_hat of the requests admitted so far (at least ADAPTIVE_MIN_REQUESTS) spread out:
      C^2 = Var(L_hat) / mean(L_hat)^2 >= c      (squared coefficient of variation)
Why: LAS-style demotion pays when lengths vary (short requests escape the probe phase behind
long ones) and only adds round-robin when they do not (replays: K = 1 best on equal-length jobs,
K >= 5 on the mixed-cap natural job). Running sums make it O(1) per admission; the switch
re-places every request once (O(n)).
With `config.per_request_acceptance = False` (the acceptance-blind ablation) A_hat and n are
always the job's, so perceptible requests are ordered by remaining tokens only; comparing the two
says what knowing each request's acceptance is worth (docs/studies/acceptance.md).
"""
from __future__ import annotations

from bisect import bisect_right

from hf_laps.scheduling.config import SchedulerConfig
from hf_laps.scheduling.heap import LazyHeap
from hf_laps.scheduling.policies.base import BasePolicy
from hf_laps.scheduling.predictors.base import LengthPredictor
from hf_laps.scheduling.progress import RequestProgress
from hf_laps.scheduling.policies.stability import StabilityTest
from hf_laps.scheduling.timing import ForwardTimes
from hf_laps.scheduling.types import RequestSpec, RoundReport


# Adaptive K decides on at least this many predicted lengths: the C^2 of 2-3 samples is noise
# (replayed chat-30: a learned predictor's first prediction is the cap, its second a refit after
# one finish, and 2 samples gave C^2 = 0.71 on a job whose lengths have C^2 = 0.11).
ADAPTIVE_MIN_REQUESTS = 8


class QueueProgress(RequestProgress):
    """RequestProgress plus the request's place in the K queues (queue is 0-based here)."""

    __slots__ = ("queue", "perceptible", "stability", "t_rem", "l_hat")

    def __init__(self, spec: RequestSpec, admit_seq: int, stability: StabilityTest) -> None:
        super().__init__(spec, admit_seq)
        self.queue = 0
        self.perceptible = False
        self.stability = stability
        self.t_rem: float | None = None
        self.l_hat: float | None = None


class LapsSDPolicy(BasePolicy):
    """Semi-clairvoyant multi-level feedback queues (LAPS-SD)."""

    name = "laps-sd"

    def __init__(self, config: SchedulerConfig | None = None,
                 predictor: LengthPredictor | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else SchedulerConfig()
        if self.config.perceptible and predictor is None:
            raise ValueError(f"{self.name} needs a length predictor (make_predictor(...))")
        self.predictor = predictor
        self._times = ForwardTimes(self.config)
        # adaptive K: queues in use (the heaps of all num_queues exist from the start)
        self._active_queues = 1 if self.config.adaptive_queues_cv2 is not None else self.config.num_queues
        self._spread = _LengthSpread()
        self._sup = self._thresholds()
        k = self.config.num_queues
        self._perc = [LazyHeap() for _ in range(k)]   # perceptible, key (T_rem, admission)
        self._nonp = [LazyHeap() for _ in range(k)]   # non-perceptible, key (arrival, admission)
        # Requests that have run, kept only until Sup_1 is frozen: when the provisional Sup_1
        # moves, they are re-placed (at most sup1_rounds times, at job start).
        self._started: set[str] | None = None if self._times.sup1_frozen() else set()
        self._job_drafted = 0          # job-wide acceptance, the prior of probe=False
        self._job_accepted = 0
        self._job_draft_rounds = 0
        # probe=False prices requests at admission; those admitted before the first measured
        # round got T_rem with no round time (0 s): they are re-priced once when it exists.
        self._unpriced = not self.config.probe

    @property
    def thresholds(self) -> list[float]:
        """[Sup_1, ..., Sup_{K-1}] now (in the attained unit; K = the queues in use)."""
        return list(self._sup)

    @property
    def active_queues(self) -> int:
        """K in use: num_queues, or 1 until adaptive K switches."""
        return self._active_queues

    def _thresholds(self) -> list[float]:
        return self.config.thresholds(self._times.sup1())[:self._active_queues - 1]

    # --- decisions -----------------------------------------------------------------------
    def pick(self, now: float) -> str | None:
        for j in range(self.config.num_queues):
            rid = self._perc[j].peek()
            if rid is not None:
                return rid
            rid = self._nonp[j].peek()
            if rid is not None:
                running = self._running
                if running is not None and running != rid and self.config.run_to_threshold:
                    current = self._states[running]
                    # a running non-perceptible request keeps the GPU against its non-perceptible
                    # queue-mates until it crosses its threshold (docs/design.md#run-to-threshold)
                    if not current.perceptible and current.queue == j:
                        return running
                return rid
        return None

    def ranked(self, count: int) -> list[str]:
        """Queue by queue, perceptible before non-perceptible, each heap in its own key order."""
        out: list[str] = []
        for j in range(self.config.num_queues):
            for heap in (self._perc[j], self._nonp[j]):
                if len(out) < count:
                    out.extend(heap.smallest(count - len(out)))
        return out

    # --- hooks ---------------------------------------------------------------------------
    def _new_state(self, request: RequestSpec) -> QueueProgress:
        cfg = self.config
        return QueueProgress(request, self._admit_seq, StabilityTest(
            cfg.stability_window, cfg.stability_delta, cfg.stability_gamma))

    def _cost(self, report: RoundReport) -> float:
        return 1.0 if self.config.attained_unit == "rounds" else report.seconds

    def _admitted(self, state: QueueProgress, now: float) -> None:
        self._nonp[0].push(state.spec.request_id, (state.spec.arrival, state.admit_seq))
        self._event("admit", state, now, queue=1)
        if self._active_queues < self.config.num_queues:
            self._spread.add(self._predicted(state.spec))
            if (self._spread.count >= ADAPTIVE_MIN_REQUESTS
                    and self._spread.cv2() >= self.config.adaptive_queues_cv2):
                self._use_all_queues(state, now)
        if self.config.perceptible and not self.config.probe:
            self._become_perceptible(state, now)

    def _measured(self, report: RoundReport, now: float) -> None:
        sup1_moved = self._times.observe(report)
        if report.drafted > 0:
            self._job_drafted += report.drafted
            self._job_accepted += report.accepted
            self._job_draft_rounds += 1
        if self._unpriced and self._times.t_target() > 0:
            self._unpriced = False
            for state in list(self._states.values()):
                if state.perceptible:
                    self._place_perceptible(state, now)
        if sup1_moved:
            self._sup = self._thresholds()
            for rid in self._started or ():
                self._place(self._states[rid], now)
            if self._times.sup1_frozen():
                self._started = None

    def _progressed(self, state: QueueProgress, report: RoundReport, now: float) -> None:
        if self._started is not None:
            self._started.add(state.spec.request_id)
        if (self.config.perceptible and not state.perceptible
                and state.stability.update(report.drafted, report.accepted)):
            self._become_perceptible(state, now)
        else:
            self._place(state, now)

    def _finished(self, state: QueueProgress, report: RoundReport, now: float) -> None:
        rid = state.spec.request_id
        (self._perc if state.perceptible else self._nonp)[state.queue].remove(rid)
        if self._started is not None:
            self._started.discard(rid)
        if self.config.perceptible and self.predictor is not None:
            self.predictor.observe(state.spec, state.generated)

    # --- adaptive K ----------------------------------------------------------------------
    def _predicted(self, spec: RequestSpec) -> float:
        """L_hat at admission (LAS has no predictor: the cap)."""
        return self.predictor.predict(spec) if self.predictor is not None else float(spec.max_new_tokens)

    def _use_all_queues(self, trigger: QueueProgress, now: float) -> None:
        """Switch to num_queues for good and re-place every request under the new thresholds."""
        self._active_queues = self.config.num_queues
        self._sup = self._thresholds()
        for state in list(self._states.values()):
            if state.perceptible:
                self._perc[state.queue].remove(state.spec.request_id)
                self._push_perceptible(state)
            else:
                self._place_by_attained(state, now)
        self._event("queues", trigger, now, queue=trigger.queue + 1, active_queues=self._active_queues,
                    length_cv2=self._spread.cv2())

    # --- placement -----------------------------------------------------------------------
    def _place(self, state: QueueProgress, now: float) -> None:
        if state.perceptible:
            self._place_perceptible(state, now)
        else:
            self._place_by_attained(state, now)

    def _place_by_attained(self, state: QueueProgress, now: float) -> None:
        # Queue j (0-based) = number of thresholds Sup_i <= attained.
        old, new = state.queue, bisect_right(self._sup, state.attained)
        if new == old:
            return
        rid = state.spec.request_id
        self._nonp[old].remove(rid)
        self._nonp[new].push(rid, (state.spec.arrival, state.admit_seq))
        state.queue = new
        self._event("demote" if new > old else "move", state, now, queue=new + 1,
                    from_queue=old + 1, attained=state.attained)

    def _become_perceptible(self, state: QueueProgress, now: float) -> None:
        self._nonp[state.queue].remove(state.spec.request_id)
        state.perceptible = True
        old = state.queue
        self._estimate(state)
        self._push_perceptible(state)
        self._event("perceptible", state, now, queue=state.queue + 1, from_queue=old + 1,
                    t_rem=state.t_rem, l_hat=state.l_hat, a_hat=state.a_hat)

    def _place_perceptible(self, state: QueueProgress, now: float) -> None:
        old = state.queue
        self._estimate(state)
        self._perc[old].remove(state.spec.request_id)
        self._push_perceptible(state)
        if state.queue != old:
            self._event("move", state, now, queue=state.queue + 1, from_queue=old + 1,
                        t_rem=state.t_rem, l_hat=state.l_hat, a_hat=state.a_hat)

    def _push_perceptible(self, state: QueueProgress) -> None:
        # Queue by T_rem: Sup_{j-1} <= T_rem < Sup_j (may promote); SRPT on T_rem inside it.
        state.queue = bisect_right(self._sup, state.t_rem)
        self._perc[state.queue].push(state.spec.request_id, (state.t_rem, state.admit_seq))

    def _estimate(self, state: QueueProgress) -> None:
        """L_hat and T_rem = max(L_hat - g, 1) * (n*T_draft + T_target) / (n*A_hat + 1)."""
        g = state.generated
        state.l_hat = max(self.predictor.predict(state.spec), g + 1.0)
        n, a_hat = state.n_hat, state.a_hat
        blind = not self.config.per_request_acceptance
        if self._job_drafted and (blind or (not state.draft_rounds and not self.config.probe)):
            # the job's acceptance: always when acceptance-blind (the ablation), and with
            # probe=False until the request has drafted itself
            n = self._job_drafted / self._job_draft_rounds
            a_hat = self._job_accepted / self._job_drafted
        if self.config.attained_unit == "rounds":
            round_time = 1.0
        else:
            round_time = self._times.round_seconds(n)
            if round_time <= 0:
                # probe=False before any measured round: a placeholder unit, so the order
                # among requests priced now is by L_hat; all are re-priced once times exist.
                round_time = 1.0
        state.t_rem = max(state.l_hat - g, 1.0) * round_time / (n * a_hat + 1.0)

    # --- explanation ---------------------------------------------------------------------
    def _explain(self, state: QueueProgress) -> dict:
        out = super()._explain(state)
        j = state.queue
        out.update({
            "queue": j + 1,
            # [Sup_{j-1}, Sup_j); None = unbounded (queue K, or Sup_1 not measured yet)
            "queue_bounds": [_finite(self._sup[j - 1]) if j > 0 else 0.0,
                             _finite(self._sup[j]) if j < len(self._sup) else None],
            "perceptible": state.perceptible,
            "attained": state.attained,
            "n_hat": state.n_hat,
            "l_hat": state.l_hat,
            "t_rem": state.t_rem,
            "acceptance_drift": state.stability.drift(),
            "acceptance_spread": state.stability.spread(),
        })
        out.update(self._times.as_dict())
        return out


class _LengthSpread:
    """Running count, sum and sum of squares of predicted lengths: C^2 = n S2 / S1^2 - 1."""

    __slots__ = ("count", "total", "squares")

    def __init__(self) -> None:
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, length: float) -> None:
        self.count += 1
        self.total += length
        self.squares += length * length

    def cv2(self) -> float:
        """Var / mean^2 (population variance); 0 for fewer than 2 lengths."""
        if self.count < 2 or self.total <= 0:
            return 0.0
        return max(self.count * self.squares / (self.total * self.total) - 1.0, 0.0)


def _finite(value: float) -> float | None:
    """JSON has no infinity: an unbounded threshold is reported as None."""
    return value if value != float("inf") else None
