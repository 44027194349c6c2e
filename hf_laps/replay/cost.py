"""Cost models of a replay: how many seconds each step of a replayed request takes.

- `RecordedCost`: the seconds the recording measured (admission, every round); moving a KV cache
  costs what a `switch_cost` says (a constant or a function of the context tokens). A batched
  round costs what the recordings' batched rounds teach (hf_laps/replay/batch_cost.py).
- `ParametricCost`: T_round = T_target(context, query tokens) + drafted * T_draft, and moving a
  KV cache costs bytes * seconds-per-byte each way; `ParametricCost.paper_pair_gpu()` is the
  paper's LLaMA-7B / LLaMA-68M pair on one H200 (measured figures in its docstring).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, Union

from hf_laps.replay.batch_cost import BatchCost, BatchFactor, RowRound, fit_batch_cost
from hf_laps.replay.traces import Trace

SwitchCost = Union[float, Callable[[int], float]]


class CostModel(Protocol):
    def admit_seconds(self, trace: Trace) -> float: ...

    def round_seconds(self, trace: Trace, k: int, context_tokens: int) -> tuple[float, float]:
        """(seconds, draft_seconds) of the k-th round of `trace` at `context_tokens` of context."""

    def batch_seconds(self, rows: Sequence[RowRound]) -> tuple[float, float]:
        """(seconds, draft_seconds) of one round sharing a target forward over `rows` (two or more)."""

    def kv_bytes(self, context_tokens: int) -> int: ...

    def park_seconds(self, context_tokens: int) -> float: ...

    def unpark_seconds(self, context_tokens: int) -> float: ...


def linear_switch_cost(seconds_per_token: float, fixed_seconds: float = 0.0) -> Callable[[int], float]:
    """Switch cost of moving a KV cache back: fixed + seconds_per_token * context tokens."""
    if seconds_per_token < 0 or fixed_seconds < 0:
        raise ValueError("switch costs must be >= 0")
    return lambda context_tokens: fixed_seconds + seconds_per_token * context_tokens


@dataclass(frozen=True)
class RecordedCost:
    """The recording's own seconds; a resume after another request costs `switch_cost`.

    `switch_cost` (seconds, or a function of the context tokens) is charged when a parked
    request's KV cache comes back; parking itself is free. `simulate` parks every paused
    request when the switch cost is not zero, so a request pays it each time it resumes after
    another one ran. KV "bytes" count tokens here (a recording does not say the cache's size).

    Batched rounds: `batch` prices a round shared by several rows. `for_traces` fills it from
    the traces: the least-squares fit on their batched rounds (`fit_batch_cost`), or, when they
    hold too few (recordings at B = 1), `BatchFactor`. A round recorded inside a batch that
    replays alone costs the batch model's price of one row (its recorded seconds were the
    shared round's); a round recorded alone replays alone at its recorded seconds.
    """

    switch_cost: SwitchCost = 0.0
    batch: BatchCost | None = None

    def for_traces(self, traces: Sequence[Trace]) -> "RecordedCost":
        """This cost with its batch model learnt from `traces` (kept when already given)."""
        if self.batch is not None:
            return self
        return RecordedCost(self.switch_cost, fit_batch_cost(traces) or BatchFactor())

    def admit_seconds(self, trace: Trace) -> float:
        return trace.admit_seconds

    def round_seconds(self, trace: Trace, k: int, context_tokens: int) -> tuple[float, float]:
        r = trace.rounds[k]
        if r.batched and self.batch is not None:
            return self.batch_seconds([RowRound(trace, k, context_tokens)])
        return r.seconds, r.draft_seconds if r.draft_seconds is not None else 0.0

    def batch_seconds(self, rows: Sequence[RowRound]) -> tuple[float, float]:
        batch = self.batch or BatchFactor()
        seconds = batch.seconds(rows)
        # drafting is per row (each drafts at batch 1): the sum of the rows' recorded shares
        return seconds, min(sum(r.draft_share for r in rows), seconds)

    def kv_bytes(self, context_tokens: int) -> int:
        return context_tokens

    def park_seconds(self, context_tokens: int) -> float:
        return 0.0

    def unpark_seconds(self, context_tokens: int) -> float:
        cost = self.switch_cost
        return cost(context_tokens) if callable(cost) else float(cost)


@dataclass(frozen=True)
class ParametricCost:
    """T_round = T_target(context, query) + drafted * t_draft; moves cost bytes * seconds_per_byte.

    T_target is bilinear between the measured corners: `target_base` seconds for 1 query token at
    `context_base` tokens of context, plus `target_per_query` per extra query token and
    `target_per_context` per extra context token. The first round also prefills: its query is the
    prompt plus the drafts, at the prompt's context. KV bytes = `kv_bytes_per_token` * context
    (both models' caches; the draft's is ~1 % of a 7B target's and is ignored).

    A batched round is ONE target forward over every row: T_target(sum of the rows' contexts,
    sum of their queries). On the GPU pair `target_base` is mostly reading the 7B weights, and a
    forward reads them once however many rows it holds, so the floor is paid once per batch and
    each row adds only its query and context terms. Drafting: hf-laps drafts every row on its
    own (batch 1), so the batch drafts sum(drafted) * t_draft; with `batched_draft` the draft
    model runs one forward per draft position for all rows, max(drafted) * t_draft (the 68M
    draft is weight-read bound too). One row costs exactly `round_seconds`.
    """

    target_base: float
    target_per_query: float
    target_per_context: float
    t_draft: float
    kv_bytes_per_token: int
    seconds_per_byte: float
    context_base: int = 128
    batched_draft: bool = False
    device_kind: str = "cpu"   # the prior of the batch planner's round-cost model in a replay

    @classmethod
    def paper_pair_gpu(cls) -> "ParametricCost":
        """LLaMA-7B target + LLaMA-68M draft, fp16, one H200, transformers eager, measured:
        target verify 21 ms (1 query token, 128 context) to 25 ms (11 query tokens, 2048
        context); draft 1.9 ms per token; a 7B KV cache of 512 tokens is 268 MB (32 layers x 2 x
        4096 x 2 bytes = 524,288 bytes per token) and moves in 4.9 ms each way from pinned memory."""
        return cls(target_base=0.021, target_per_query=0.002 / 10, target_per_context=0.002 / 1920,
                   t_draft=0.0019, kv_bytes_per_token=524_288, seconds_per_byte=0.0049 / 268_435_456,
                   device_kind="cuda")

    def t_target(self, context_tokens: int, query_tokens: int) -> float:
        return (self.target_base + self.target_per_query * max(query_tokens - 1, 0)
                + self.target_per_context * max(context_tokens - self.context_base, 0))

    def admit_seconds(self, trace: Trace) -> float:
        return 0.0

    @staticmethod
    def _query_and_context(row: RowRound) -> tuple[int, int]:
        """A row's query tokens (drafts + the bonus position, + the prompt on its first round)
        and the context it attends over after the forward."""
        drafted = row.record.drafted
        query = drafted + 1 + (row.trace.prompt_tokens if row.k == 0 else 0)
        return query, row.context_tokens + drafted + 1

    def round_seconds(self, trace: Trace, k: int, context_tokens: int) -> tuple[float, float]:
        return self.batch_seconds([RowRound(trace, k, context_tokens)])

    def batch_seconds(self, rows: Sequence[RowRound]) -> tuple[float, float]:
        shapes = [self._query_and_context(row) for row in rows]
        drafted = [row.record.drafted for row in rows]
        draft = (max(drafted) if self.batched_draft else sum(drafted)) * self.t_draft
        target = self.t_target(sum(c for _, c in shapes), sum(q for q, _ in shapes))
        return target + draft, draft

    def kv_bytes(self, context_tokens: int) -> int:
        return self.kv_bytes_per_token * context_tokens

    def park_seconds(self, context_tokens: int) -> float:
        return self.kv_bytes(context_tokens) * self.seconds_per_byte

    def unpark_seconds(self, context_tokens: int) -> float:
        return self.park_seconds(context_tokens)
