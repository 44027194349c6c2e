"""The stability test of LAPS-SD (Algorithm 1 line 11; docs/design.md#stability-test).

A request is STABLE once, after at least W rounds that drafted something,
  (1) its running acceptance mean moved by at most delta over the last W rounds:
        max(m_{t-W+1..t}) - min(m_{t-W+1..t}) <= delta,
      where m_t = (accepted_1 + ... + accepted_t) / (drafted_1 + ... + drafted_t), and
  (2) the per-round rates r_i = accepted_i / drafted_i of those W rounds have a (population)
      standard deviation <= gamma.
(1) says the estimate A_hat has settled, (2) that single rounds are not too noisy for it to mean
anything. Rounds that drafted nothing carry no acceptance information and are skipped.
"""
from __future__ import annotations

import math
from collections import deque


class StabilityTest:
    """Per-request sliding window over the last W acceptance observations."""

    __slots__ = ("window", "delta", "gamma", "_rates", "_means", "_drafted", "_accepted")

    def __init__(self, window: int, delta: float, gamma: float) -> None:
        self.window = window
        self.delta = delta
        self.gamma = gamma
        self._rates: deque[float] = deque(maxlen=window)
        self._means: deque[float] = deque(maxlen=window)
        self._drafted = 0
        self._accepted = 0

    def update(self, drafted: int, accepted: int) -> bool:
        """Add one round; returns whether the request is stable now."""
        if drafted <= 0:
            return False
        self._drafted += drafted
        self._accepted += accepted
        self._rates.append(accepted / drafted)
        self._means.append(self._accepted / self._drafted)
        return self.is_stable()

    def is_stable(self) -> bool:
        if len(self._rates) < self.window:
            return False
        if max(self._means) - min(self._means) > self.delta:
            return False
        return self.spread() <= self.gamma

    def spread(self) -> float:
        """Population std of the per-round rates in the window (0 for fewer than 2)."""
        count = len(self._rates)
        if count < 2:
            return 0.0
        mu = sum(self._rates) / count
        return math.sqrt(sum((r - mu) ** 2 for r in self._rates) / count)

    def drift(self) -> float:
        """max - min of the running mean over the window (0 when empty)."""
        return max(self._means) - min(self._means) if self._means else 0.0
