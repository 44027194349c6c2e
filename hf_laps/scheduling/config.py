"""SchedulerConfig: every scheduling knob (the K-queue policies LAS and LAPS-SD, and GittinsConfig
nested for the gittins policy), validated on construction.

The LAPS-SD paper leaves these choices open; each default, its reason and the measurement behind
it are in docs/design.md, whose anchor the comment on each field names. Fields map one to one onto
CLI flags (`num_queues` -> `--num-queues`), generated from the dataclass with each field's help.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

ATTAINED_UNITS = ("seconds", "rounds")


def _knob(default, help: str):
    """A config field with its help text (the CLI flag generated from the field shows it)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class GittinsConfig:
    """Knobs of the prior-informed Gittins-index policy (hf_laps.scheduling.policies.gittins); every
    default was tuned on replayed recordings (docs/scheduling.md), not a law."""

    kappa: float = _knob(
        256.0, "Shrinkage of a request's seconds per token toward the job's, in tokens (early acceptance "
        "predicts late acceptance poorly; the empirical-Bayes weight measured was ~135-220 tokens).")
    hysteresis: float = _knob(
        0.3, "Switch from the running request only to one ranked below (1 - h) times it (0.3 cut preemptions "
        "292 -> 83 in the replay study at the same mean latency).")
    quantiles: int = _knob(64, "Support points of each request's remaining-length distribution.")
    pseudo_weight: float = _knob(
        5.0, "Weight of each of the 10 identity pseudo-pairs of the calibration (prior: trust the prediction).")
    history_weight: float = _knob(50.0, "Cap on the total weight of earlier jobs' (prediction, length) pairs.")
    prior_residual_weight: float = _knob(
        10.0, "Total weight of the N(0, 1) residual prior (a factor-e spread until data says otherwise).")
    tail_fraction: float = _knob(
        0.1, "A request past every support point expects tail_fraction * generated + 1 more tokens.")
    speed_refresh: float = _knob(
        0.05, "Relative move of the job's seconds per token, the prefill cost or the calibrated support "
        "that starts a new ranking epoch (stale ranks are recomputed lazily).")
    sweep_per_round: int = _knob(
        1, "Waiting requests re-predicted per round by the round-robin sweep.")
    settle_per_round: int = _knob(
        8, "Stale ranks at the top of the heap recomputed per round after an epoch change.")
    starvation: float = _knob(
        0.0, "Serve the oldest request first once it has waited this many times the job's mean latency "
        "so far (0: never): a bound on the wait of long requests, i.e. on the p99 latency.")
    predictor_quantiles: bool = _knob(
        True, "Rank by the predictor's own length quantiles when it gives them (hidden: out-of-sample "
        "residuals per kind of request); off: calibrate its point prediction (calibration.py).")
    per_request_speed: bool = _knob(
        True, "Each request's own seconds per token (acceptance-aware); off: the job-wide value (ablation).")

    def __post_init__(self) -> None:
        _check_int("quantiles", self.quantiles, 1)
        _check_int("sweep_per_round", self.sweep_per_round, 0)
        _check_int("settle_per_round", self.settle_per_round, 0)
        for name in ("kappa", "pseudo_weight", "history_weight", "prior_residual_weight",
                     "tail_fraction", "speed_refresh", "starvation"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.prior_residual_weight == 0:
            raise ValueError("prior_residual_weight must be > 0: with no finished request the "
                             "residual distribution would be empty")
        if not _is_number(self.hysteresis) or not 0 <= self.hysteresis < 1:
            raise ValueError(f"hysteresis must be a number in [0, 1), got {self.hysteresis!r}")
        if not isinstance(self.predictor_quantiles, bool):
            raise ValueError(f"predictor_quantiles must be True or False, "
                             f"got {self.predictor_quantiles!r}")
        if not isinstance(self.per_request_speed, bool):
            raise ValueError(f"per_request_speed must be True or False, "
                             f"got {self.per_request_speed!r}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SchedulerConfig:
    """Knobs of the LAS / LAPS-SD queues.

    Queue j (1-based) holds the requests whose attained service (non-perceptible) or estimated
    remaining time (perceptible) lies in [Sup_{j-1}, Sup_j), with Sup_0 = 0 and
    Sup_j = Sup_1 * M**(j-1); queue K has no upper bound.
    """

    # docs/design.md#attained-seconds
    attained_unit: str = _knob(
        "seconds", "Unit of attained service: seconds of execution (prefill and rounds, so attained and "
        "estimated remaining service share one scale) or rounds (an ablation).")
    # docs/design.md#queues-and-thresholds
    num_queues: int = _knob(4, "K, the number of priority queues (the paper: K=6 best at 10 requests, K=4 at 30).")
    # docs/studies/acceptance.md (open question 2)
    adaptive_queues_cv2: float | None = _knob(
        None, "Adaptive K: one queue while the admitted requests' predicted lengths are alike (squared "
        "coefficient of variation below this), num_queues from the first time they are not (then for good); "
        "None: always num_queues.")
    # docs/design.md#queues-and-thresholds
    threshold_multiplier: float = _knob(2.0, "M: queue j's upper bound is Sup_1 * M**(j-1).")
    # docs/design.md#sup1-measured
    sup1_rounds: int = _knob(8, "Sup_1 is the time of this many rounds, measured from the job's first rounds.")
    sup1_seconds: float | None = _knob(None, "A fixed Sup_1 in attained units instead of measuring it.")
    sup1_fallback_seconds: float = _knob(
        math.inf, "Sup_1 before the first round is measured (inf: nobody is demoted before then).")
    # docs/design.md#run-to-threshold
    run_to_threshold: bool = _knob(
        True, "A running request that is not yet perceptible keeps running until it reaches its queue's "
        "threshold (avoids switch overhead); off: the queue's FCFS head always wins.")
    # docs/design.md#stability-test
    stability_window: int = _knob(4, "W: rounds of acceptance history the stability test looks at.")
    # docs/design.md#stability-test
    stability_delta: float = _knob(
        0.05, "Stable when the running mean acceptance rate moved by at most this over the last W rounds.")
    # docs/design.md#stability-test
    stability_gamma: float = _knob(
        0.25, "... and the per-round acceptance rates of the last W rounds have a std of at most this.")
    # docs/design.md#baselines
    perceptible: bool = _knob(
        True, "Requests whose acceptance is stable are ordered by estimated remaining time; off: LAPS-SD "
        "becomes LAS (the ablation).")
    # docs/design.md#baselines
    probe: bool = _knob(
        True, "The paper's probe: a request stays non-perceptible (LAS) until its acceptance passes the "
        "stability test. Off (an ablation, not the paper): perceptible at admission, its remaining time "
        "priced with the job's acceptance until it has drafted itself.")
    # docs/studies/acceptance.md
    per_request_acceptance: bool = _knob(
        True, "A perceptible request's remaining time uses its own acceptance rate and draft length; off "
        "(an acceptance-blind ablation): the job's, so requests differ only in their remaining tokens.")

    # the gittins policy's own knobs (flags --gittins-<name>)
    gittins: GittinsConfig = field(default_factory=GittinsConfig,
                                   metadata={"help": "Knobs of the gittins policy."})

    def __post_init__(self) -> None:
        if not isinstance(self.gittins, GittinsConfig):
            raise ValueError(f"gittins must be a GittinsConfig, got {type(self.gittins).__name__}")
        _check_int("num_queues", self.num_queues, 1)
        _check_int("sup1_rounds", self.sup1_rounds, 1)
        _check_int("stability_window", self.stability_window, 1)
        if self.attained_unit not in ATTAINED_UNITS:
            raise ValueError(f"attained_unit must be one of {ATTAINED_UNITS}, "
                             f"got {self.attained_unit!r}")
        if not _is_number(self.threshold_multiplier) or not self.threshold_multiplier > 1.0:
            raise ValueError("threshold_multiplier (M) must be a number > 1 so that "
                             f"Sup_j = Sup_1 * M**(j-1) grows with j, got {self.threshold_multiplier!r}")
        if self.sup1_seconds is not None and not (_is_number(self.sup1_seconds)
                                                  and 0 < self.sup1_seconds < math.inf):
            raise ValueError(f"sup1_seconds must be None (measure it) or a finite number > 0, "
                             f"got {self.sup1_seconds!r}")
        if self.adaptive_queues_cv2 is not None and not (_is_number(self.adaptive_queues_cv2)
                                                         and 0 <= self.adaptive_queues_cv2 < math.inf):
            raise ValueError(f"adaptive_queues_cv2 must be None (fixed K) or a finite number >= 0, "
                             f"got {self.adaptive_queues_cv2!r}")
        if not _is_number(self.sup1_fallback_seconds) or not self.sup1_fallback_seconds > 0:
            raise ValueError("sup1_fallback_seconds must be > 0 (math.inf = no demotion before "
                             f"the first measured round), got {self.sup1_fallback_seconds!r}")
        for name in ("stability_delta", "stability_gamma"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("run_to_threshold", "perceptible", "probe", "per_request_acceptance"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def thresholds(self, sup1: float) -> list[float]:
        """[Sup_1, ..., Sup_{K-1}] for a given Sup_1: the upper bounds of queues 1..K-1."""
        return [sup1 * self.threshold_multiplier ** j for j in range(self.num_queues - 1)]

    def as_dict(self) -> dict:
        """JSON-able copy (for the timing log header)."""
        return asdict(self)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
