"""SchedulerConfig: every knob of the K-queue policies (LAS and LAPS-SD), validated on construction.

The LAPS-SD paper leaves these choices open; each default, its reason and the measurement behind
it are in docs/design.md, whose anchor the comment on each field names. Fields map one to one onto
CLI flags (`num_queues` -> `--num-queues`), generated from the dataclass with each field's help.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

ATTAINED_UNITS = ("seconds", "rounds")


def _knob(default, help: str):
    """A config field with its help text (the CLI flag generated from the field shows it)."""
    return field(default=default, metadata={"help": help})


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

    def __post_init__(self) -> None:
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
        if not _is_number(self.sup1_fallback_seconds) or not self.sup1_fallback_seconds > 0:
            raise ValueError("sup1_fallback_seconds must be > 0 (math.inf = no demotion before "
                             f"the first measured round), got {self.sup1_fallback_seconds!r}")
        for name in ("stability_delta", "stability_gamma"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("run_to_threshold", "perceptible", "probe"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def thresholds(self, sup1: float) -> list[float]:
        """[Sup_1, ..., Sup_{K-1}] for a given Sup_1: the upper bounds of queues 1..K-1."""
        return [sup1 * self.threshold_multiplier ** j for j in range(self.num_queues - 1)]

    def as_dict(self) -> dict:
        """JSON-able copy (for the timing log header)."""
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
