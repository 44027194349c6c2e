"""Measured forward times and the Sup_1 threshold they give (docs/design.md#sup1-measured,
#perceptible-srpt).

One `ForwardTimes` per policy sees every round of every request. Over the rounds that did NOT
prefill (a prefill round's time depends on the prompt, not on decoding speed) it keeps running
means of
    draft_seconds  = n * T_draft,   drafted = n,   verify_seconds = T_target,
so T_draft = mean(draft_seconds) / mean(drafted), T_target = mean(verify_seconds) and the time of
one round of a request drafting n tokens is n * T_draft + T_target.

Sup_1 ("the time of 8 rounds, measured at job start from the first rounds") is
    Sup_1 = sup1_rounds * mean(seconds of the first sup1_rounds non-prefill rounds),
provisional (re-estimated after each such round) until sup1_rounds rounds have been seen, then
frozen so that queue boundaries stop moving. Before the first measurement it is the config's
fallback. With attained_unit == "rounds" a round costs 1 and Sup_1 = sup1_rounds from the start.
"""
from __future__ import annotations

from hf_laps.scheduling.config import SchedulerConfig
from hf_laps.scheduling.types import RoundReport


class ForwardTimes:
    """Running means of round timings and the Sup_1 estimate."""

    __slots__ = ("config", "_count", "_drafted", "_draft_s", "_verify_s", "_all_count",
                 "_all_s", "_sup1_sum", "_sup1_count")

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self._count = 0          # non-prefill rounds
        self._drafted = 0
        self._draft_s = 0.0
        self._verify_s = 0.0
        self._all_count = 0      # every round, for a fallback before any non-prefill round
        self._all_s = 0.0
        self._sup1_sum = 0.0     # seconds of the first sup1_rounds non-prefill rounds
        self._sup1_count = 0

    def observe(self, report: RoundReport) -> bool:
        """Add one round; returns True when this changed Sup_1."""
        self._all_count += 1
        self._all_s += report.seconds
        if report.prefill:
            return False
        self._count += 1
        self._drafted += report.drafted
        self._draft_s += report.draft_seconds
        # The target part: the reported verify time, or (when the driver did not split the
        # round) whatever the draft did not take.
        verify = report.verify_seconds if report.verify_seconds > 0 else (
            report.seconds - report.draft_seconds)
        self._verify_s += max(verify, 0.0)
        if self.sup1_is_measured() and self._sup1_count < self.config.sup1_rounds:
            self._sup1_sum += report.seconds
            self._sup1_count += 1
            return True
        return False

    def sup1_is_measured(self) -> bool:
        """Whether Sup_1 comes from measured rounds (not fixed by the config)."""
        return self.config.sup1_seconds is None and self.config.attained_unit == "seconds"

    def sup1_frozen(self) -> bool:
        return not self.sup1_is_measured() or self._sup1_count >= self.config.sup1_rounds

    def sup1(self) -> float:
        """The current Sup_1 in the attained unit."""
        cfg = self.config
        if cfg.sup1_seconds is not None:
            return cfg.sup1_seconds
        if cfg.attained_unit == "rounds":
            return float(cfg.sup1_rounds)
        if self._sup1_count == 0:
            return cfg.sup1_fallback_seconds
        return cfg.sup1_rounds * self._sup1_sum / self._sup1_count

    def t_draft(self) -> float:
        """Seconds per draft forward (0 before any drafted non-prefill round)."""
        return self._draft_s / self._drafted if self._drafted else 0.0

    def t_target(self) -> float:
        """Seconds per verification forward (incl. accept); falls back to the mean round."""
        if self._count:
            return self._verify_s / self._count
        return self._all_s / self._all_count if self._all_count else 0.0

    def round_seconds(self, n: float) -> float:
        """Estimated seconds of one round drafting n tokens: n * T_draft + T_target."""
        return n * self.t_draft() + self.t_target()

    def as_dict(self) -> dict:
        sup1 = self.sup1()
        return {"t_draft": self.t_draft(), "t_target": self.t_target(),
                "sup1": sup1 if sup1 != float("inf") else None,
                "sup1_frozen": self.sup1_frozen(), "rounds_measured": self._count}
