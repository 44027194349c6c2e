"""SchedulerConfig: every knob of the K-queue policies (LAS and LAPS-SD), validated on construction.

Each default is the value fixed in ../shared/design/laps-sd-spec.md; the comment on each field
names the spec line (D1..D7 = its DECISIONS list). Fields map one to one onto CLI flags
(`num_queues` -> `--num-queues`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

ATTAINED_UNITS = ("seconds", "rounds")


@dataclass(frozen=True)
class SchedulerConfig:
    """Knobs of the LAS / LAPS-SD queues.

    Queue j (1-based) holds the requests whose attained service (non-perceptible) or estimated
    remaining time (perceptible) lies in [Sup_{j-1}, Sup_j), with Sup_0 = 0 and
    Sup_j = Sup_1 * M**(j-1); queue K has no upper bound.
    """

    # D1: attained service is measured in SECONDS of execution (prefill and rounds), so attained
    # and perceived (T_rem) service share one scale. "rounds" counts rounds instead (ablation).
    attained_unit: str = "seconds"
    # D2: K = 4 queues ("K=6 best at 10 requests, K=4 at 30" in the paper's figures).
    num_queues: int = 4
    # D2: M = 2, Sup_j = Sup_1 * M**(j-1).
    threshold_multiplier: float = 2.0
    # D2: Sup_1 = the time of 8 rounds, measured at job start from the first rounds.
    sup1_rounds: int = 8
    # D2 override: a fixed Sup_1 in `attained_unit`s; None = measure it as above.
    sup1_seconds: float | None = None
    # D2: before the first round is measured there is no threshold yet ("measured ... from the
    # first rounds"), so Sup_1 = +inf: nobody is demoted until the first measurement.
    sup1_fallback_seconds: float = math.inf
    # D3: a running non-perceptible request is not preempted by its queue-mates before it
    # reaches its threshold (avoids switch overhead). False = FCFS head always wins.
    run_to_threshold: bool = True
    # D4: stability test window W (rounds), at least W rounds before a request can be stable.
    stability_window: int = 4
    # D4: the running mean of the acceptance rate moved by at most delta over the last W rounds.
    stability_delta: float = 0.05
    # D4: the per-round acceptance rates of the last W rounds have std <= gamma.
    stability_gamma: float = 0.25
    # D4/D7: False never makes a request perceptible: LAPS-SD becomes LAS (the ablation).
    perceptible: bool = True
    # The paper's probe: a request stays non-perceptible (LAS) until its acceptance passes the
    # stability test. False (ablation, not the paper) makes it perceptible at admission, its
    # T_rem priced with the job's acceptance rate and draft length until it has drafted itself;
    # replaying the recordings, the probe is the largest part of laps-sd's excess latency.
    probe: bool = True

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
