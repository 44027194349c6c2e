"""The loop's executor for batched rounds: `EngineExecutor` plus `run_batch` on a `BatchedRound`.

Everything per request (admission, parking, release) is the batch-1 executor's; `run_batch` runs
one round of several started requests with ONE target verify forward. A request whose own part
of the round raised (its processors, its criteria, its prefill) fails alone: its report is
replaced by the exception, which the loop turns into that request's error.

Each report says what the shared forward was (`RoundReport.batch_size`, `batch_tokens`), so the
timing log keeps what a replay needs to learn the batched round's cost (hf_laps/replay/batch_cost.py).
Every row, new requests' prefills included, shares the forward. A batch of one row runs the
batch-1 round itself (`engine.step`, no batch layout): its log line is exactly a batch-1 round's.
"""
from __future__ import annotations

from dataclasses import replace

from hf_laps.engine.batched_round import BatchedRound
from hf_laps.engine.speculative import SpeculativeEngine
from hf_laps.serving.engine_executor import EngineExecutor
from hf_laps.serving.executor import BatchRan, round_report
from hf_laps.scheduling import RoundReport


class BatchEngineExecutor(EngineExecutor):
    """Runs submissions on `engine`, up to a whole batch per round (see `hf_laps.serving.executor.BatchExecutor`)."""

    def __init__(self, engine: SpeculativeEngine, token_budget: int | None = None) -> None:
        super().__init__(engine)
        self.batched = BatchedRound(engine, token_budget)

    def run_batch(self, request_ids: list[str]) -> BatchRan:
        if len(request_ids) == 1:
            # a batch of one is the batch-1 round (`engine.step`): no batch layout to gather into
            # and scatter out of, which the planner's one-row rounds at light load would pay
            report = self.run_round(request_ids[0])
            return BatchRan(reports=[report], seconds=report.seconds)
        states = [self.states[rid] for rid in request_ids]
        # tokens each row feeds besides its drafts: the committed tokens its target cache has not
        # seen (the whole prompt on a first round, the last round's bonus token after it)
        unseen = {s.request_id: int(s.input_ids.shape[1]) - s.kv_len for s in states}
        before = {s.request_id: s.kv_len for s in states}
        shared = {s.request_id for s in states}
        outcome = self.batched.step(states)
        reports = [round_report(r) for r in outcome.results]
        # a row that fed only a chunk of its prompt fed what its cache grew by; rows whose own part
        # raised after the forward fed their unseen tokens too (drafts unknown)
        fed = {r.request_id: (r.kv_len - before[r.request_id] if r.prefill and r.emitted == 0
                              else unseen[r.request_id] + r.drafted) for r in outcome.results}
        batch_tokens = sum(fed.get(rid, unseen[rid]) for rid in shared)
        reports = [_with_batch(r, len(shared), batch_tokens) if r.request_id in shared else r for r in reports]
        return BatchRan(reports=reports, seconds=outcome.seconds,
                        errors={rid: f"{type(exc).__name__}: {exc}" for rid, exc in outcome.errors.items()})


def _with_batch(report: RoundReport, batch_size: int, batch_tokens: int) -> RoundReport:
    """The report of a row of a batched forward (a forward of one row keeps the batch-1 defaults)."""
    if batch_size == 1:
        return report
    return replace(report, batch_size=batch_size, batch_tokens=batch_tokens)
