"""Each run of a job stamps its timing records with its clock's epoch (a resumed job has several runs)."""
from __future__ import annotations

import time

from hf_laps.timing_log import TimingRecord


class RunEpoch:
    """Stamps each timing record with its run's `run_epoch`: the Unix time of the loop clock's
    zero, so that the runs of a resumed job can be placed one after the other
    (hf_laps.runs)."""

    def __init__(self, loop_hook) -> None:
        self.loop_hook, self.loop, self.epoch = loop_hook, None, None

    def attach(self, loop) -> None:
        self.loop = loop
        self.loop_hook(loop)

    def stamp(self, record: TimingRecord) -> dict:
        if self.epoch is None:  # the loop's clock is running now (it is reset when the loop starts)
            self.epoch = time.time() - self.loop.now()
        return {**record.to_json(), "run_epoch": self.epoch}
