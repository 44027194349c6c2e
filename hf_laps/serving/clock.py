"""The serving loop's clocks: wall time for real runs, simulated time for replays.

The loop charges every cost an executor reports to its clock: `RealClock` ignores the charge
(the time really passed on it), `VirtualClock` advances by it.
"""
from __future__ import annotations

import time
from typing import Callable


class RealClock:
    """Wall-clock seconds since `reset`; costs are not charged (the time really passed)."""

    def __init__(self, timer: Callable[[], float] = time.perf_counter) -> None:
        self.timer = timer
        self._t0 = timer()

    def reset(self) -> None:
        self._t0 = self.timer()

    def now(self) -> float:
        return self.timer() - self._t0

    def charge(self, seconds: float) -> None:
        """Nothing to do: the work took its time on this clock already."""

    def wait_until(self, moment: float, stopped: Callable[[], bool]) -> None:
        while not stopped() and self.now() < moment:
            time.sleep(min(0.05, max(0.0, moment - self.now())))


class VirtualClock:
    """Simulated seconds: advances only by the costs charged to it and by waiting."""

    def __init__(self) -> None:
        self.t = 0.0

    def reset(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def charge(self, seconds: float) -> None:
        self.t += seconds

    def wait_until(self, moment: float, stopped: Callable[[], bool]) -> None:
        self.t = max(self.t, moment)
