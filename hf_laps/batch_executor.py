"""The loop's executor for batched rounds: `EngineExecutor` plus `run_batch` on a `BatchedRound`.

Everything per request (admission, parking, release) is the batch-1 executor's; `run_batch` runs
one round of several started requests with ONE target verify forward. A request whose own part
of the round raised (its processors, its criteria, its prefill) fails alone: its report is
replaced by the exception, which the loop turns into that request's error.
"""
from __future__ import annotations

from hf_laps.batched import BatchedRound
from hf_laps.engine import SpeculativeEngine
from hf_laps.engine_executor import EngineExecutor
from hf_laps.executor import BatchRan


class BatchEngineExecutor(EngineExecutor):
    """Runs submissions on `engine`, up to a whole batch per round (see `hf_laps.executor.BatchExecutor`)."""

    def __init__(self, engine: SpeculativeEngine, layout: str = "packed") -> None:
        super().__init__(engine)
        self.batched = BatchedRound(engine, layout)

    def run_batch(self, request_ids: list[str]) -> BatchRan:
        outcome = self.batched.step([self.states[rid] for rid in request_ids])
        return BatchRan(reports=[r.to_report() for r in outcome.results], seconds=outcome.seconds,
                        errors={rid: f"{type(exc).__name__}: {exc}" for rid, exc in outcome.errors.items()})
