"""What a batched round costs in a replay, learnt from the recordings.

A batched round (`max_batch_size` B > 1) runs ONE target forward over the rows of up to B
requests. Its seconds grow with what the forward computes:

    seconds = a + b * batch_tokens + c * batch_kv

- `a`: the per-forward floor (reading the weights once, kernel launches, the loop's own work);
- `batch_tokens` = sum over rows of the query tokens a row feeds (its unseen committed tokens -
  the prompt on a first round, the last round's bonus token after it - plus its drafts): the
  matmul work, linear in tokens;
- `batch_kv` = sum over rows of the KV length the row attends over after the forward (cached +
  fed): the attention reads.

`fit_batch_cost` fits (a, b, c) by least squares on the batched rounds of a timing log (rounds
logged with batch_size > 1, docs/timing-log.md). Every row of one forward logs the same round id
(`RoundRecord.round_id`), so the rows of a round are found again by it; each round is one
observation. (Logs written before round ids existed fall back to the rows' identical measured
seconds, draft seconds, batch size and tokens.)
A log with no batched rounds (every recording at B = 1) cannot teach the batch's cost; then
`BatchFactor` prices a round from its rows' own batch-1 seconds: the slowest row's seconds times
a ratio measured side by side on the embedded model (BATCH_RATIOS).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from hf_laps.stats import solve_linear
from hf_laps.timing_log import RoundRecord

from hf_laps.replay.traces import Trace

# A batched round's seconds over its slowest row's batch-1 round, by rows in the forward: the
# embedded SmolLM2-135M with prompt lookup (10 drafts) on the first prompts of mixed-30, one CPU
# thread, medians of 30 trials per B, each row's next round run alone and the B rows together,
# alternating (benchmarks/batch_growth.py). The growth per extra row is not constant: ~0.08 at
# B = 2, ~0.12 at B = 4, ~0.25 at B = 8, so the ratio is interpolated, not fitted as a line.
BATCH_RATIOS = ((1, 1.0), (2, 1.081), (4, 1.370), (8, 2.751))


@dataclass(frozen=True)
class RowRound:
    """One request's part of a (batched) round: the k-th recorded round of `trace`, run with
    `context_tokens` committed tokens (prompt + generated before the round)."""

    trace: Trace
    k: int
    context_tokens: int

    @property
    def record(self) -> RoundRecord:
        return self.trace.rounds[self.k]

    @property
    def fed_tokens(self) -> int:
        """Query tokens the row feeds the target: unseen committed tokens + drafts."""
        return (self.trace.prompt_tokens if self.k == 0 else 1) + self.record.drafted

    @property
    def kv_tokens(self) -> int:
        """KV length the row attends over after the forward: committed + drafts."""
        return self.context_tokens + self.record.drafted

    @property
    def draft_share(self) -> float:
        """This row's part of its recorded drafting (a batched round logs all rows' drafting)."""
        draft = self.record.draft_seconds or 0.0
        return draft / self.record.batch_size


class BatchCost(Protocol):
    def seconds(self, rows: Sequence[RowRound]) -> float:
        """Seconds of one round sharing a forward over `rows` (drafting included)."""


@dataclass(frozen=True)
class LinearBatchCost:
    """seconds = intercept + per_token * sum(fed tokens) + per_kv * sum(KV tokens), fitted on
    `rounds` batched rounds (`rms` seconds of residual)."""

    intercept: float
    per_token: float
    per_kv: float
    rounds: int = 0
    rms: float = 0.0

    def predict(self, batch_tokens: int, batch_kv: int) -> float:
        return max(self.intercept + self.per_token * batch_tokens + self.per_kv * batch_kv, 0.0)

    def seconds(self, rows: Sequence[RowRound]) -> float:
        return self.predict(sum(r.fed_tokens for r in rows), sum(r.kv_tokens for r in rows))


@dataclass(frozen=True)
class BatchFactor:
    """The fallback without batched recordings: max(rows' batch-1 seconds) * ratio(B).

    The slowest row bounds the forward from below (it computes at least that row's work); `ratios`
    ((rows, ratio) pairs, from 1 row up) say how much more B rows cost, linear between the
    measured sizes and along the last segment beyond them. A row recorded in a batch of b (its
    seconds are a shared round's) counts with its seconds divided by ratio(b)."""

    ratios: tuple[tuple[int, float], ...] = BATCH_RATIOS

    def factor(self, batch_size: int) -> float:
        points = self.ratios
        for (b0, r0), (b1, r1) in zip(points, points[1:]):
            if batch_size <= b1 or (b1, r1) == points[-1]:
                return r0 + (r1 - r0) * (batch_size - b0) / (b1 - b0)
        return points[0][1]

    def seconds(self, rows: Sequence[RowRound]) -> float:
        solo = max(r.record.seconds / self.factor(r.record.batch_size) for r in rows)
        return solo * self.factor(len(rows))


@dataclass(frozen=True)
class RelativeBatchCost:
    """A fit learnt on one recording, applied at another recording's speed.

    A fit's absolute seconds hold only for the machine and load it was recorded on. Here each
    row's recorded batch-1 seconds over the fit's price of that row alone say how much slower
    this recording ran; the batch costs the fit's price times the mean of those speeds:

        seconds = fit(rows) * mean_i(recorded_i / fit(row_i alone))

    so one row costs its recorded seconds and the batch grows as the fit says (rows must be
    batch-1 rounds: their seconds are what one row costs)."""

    fit: LinearBatchCost

    def seconds(self, rows: Sequence[RowRound]) -> float:
        speeds = [r.record.seconds / alone for r in rows if (alone := self.fit.seconds([r])) > 0]
        if not speeds:
            return max(r.record.seconds for r in rows)
        return self.fit.seconds(rows) * sum(speeds) / len(speeds)


@dataclass(frozen=True)
class RecordedBatches:
    """A diagnostic: rows that are exactly one recorded batched round (the same rounds of the
    same requests) cost that round's recorded seconds; any other batch costs `otherwise`'s price.

    Replaying a log under its own policy and batch size with it re-enacts the recording, so any
    gap to the real run is the replayer's, not the cost model's. It is not a cost model to
    compare policies with: the batches a policy shares with the recording would pay the
    machine's load at recording time, the others the fit's average."""

    otherwise: BatchCost

    def seconds(self, rows: Sequence[RowRound]) -> float:
        first = rows[0].record
        if first.batch_size == len(rows) and all(_round_key(r.record) == _round_key(first) for r in rows):
            return first.seconds
        return self.otherwise.seconds(rows)


# ---- learning it from a log ---------------------------------------------------------------
def replay_rows(trace: Trace) -> list[RowRound]:
    """Every recorded round of `trace` with the context it ran at (emitted = accepted + 1 for
    every round but the last, which is where the context stops mattering)."""
    rows, context = [], trace.prompt_tokens
    for k, record in enumerate(trace.rounds):
        rows.append(RowRound(trace, k, context))
        context += record.accepted + 1
    return rows


def _round_key(r: RoundRecord) -> tuple:
    """What the rows of one recorded round share: its round id (with the round's size and tokens,
    so the same id in two runs of a resumed job stays apart: a group that mixes them has more
    rows than its batch size and is left out); in a log without round ids, the measured values
    (two rounds that measured the same seconds would merge)."""
    if r.round_id is not None:
        return ("id", r.round_id, r.batch_size, r.batch_tokens)
    return ("measured", r.seconds, r.draft_seconds, r.batch_size, r.batch_tokens)


def batched_rounds(traces: Iterable[Trace]) -> list[list[RowRound]]:
    """The recorded batched rounds, each as its rows.

    Rows of one forward log the same round id (`_round_key`); a group whose size is not its
    batch_size (a row whose request failed, or is missing from the log) is left out: its rows'
    contexts are not all known.
    """
    groups: dict[tuple, list[RowRound]] = defaultdict(list)
    for trace in traces:
        for row in replay_rows(trace):
            r = row.record
            if r.batch_size > 1:
                groups[_round_key(r)].append(row)
    return [rows for rows in groups.values() if len(rows) == rows[0].record.batch_size]


def fit_batch_cost(traces: Sequence[Trace], min_rounds: int = 8) -> LinearBatchCost | None:
    """Least-squares (a, b, c) on the batched rounds of `traces`; None with fewer than
    `min_rounds` of them (then use `BatchFactor`). A term whose column is degenerate (every
    round fed the same tokens, say) or whose slope comes out negative (more work cannot take
    less time: on a loaded machine noise can outweigh a small term) is dropped and the rest
    refitted."""
    rounds = batched_rounds(traces)
    if len(rounds) < min_rounds:
        return None
    xs = [(1.0, float(rows[0].record.batch_tokens), float(sum(r.kv_tokens for r in rows))) for rows in rounds]
    ys = [rows[0].record.seconds for rows in rounds]
    for columns in ((0, 1, 2), (0, 2), (0, 1), (0,)):
        coef = least_squares([[x[j] for j in columns] for x in xs], ys)
        if coef is not None and all(c >= 0 for c in coef[1:]):
            full = dict(zip(columns, coef))
            fit = LinearBatchCost(full.get(0, 0.0), full.get(1, 0.0), full.get(2, 0.0), rounds=len(rounds))
            residuals = [y - fit.predict(int(x[1]), int(x[2])) for x, y in zip(xs, ys)]
            rms = math.sqrt(sum(e * e for e in residuals) / len(residuals))
            return LinearBatchCost(fit.intercept, fit.per_token, fit.per_kv, rounds=len(rounds), rms=rms)
    return None


def least_squares(xs: list[list[float]], ys: list[float]) -> list[float] | None:
    """argmin_w |X w - y|^2 by the normal equations (X^T X) w = X^T y, solved by Gaussian
    elimination with partial pivoting on the column-scaled system; None when X^T X is singular
    (a column is constant or a combination of the others)."""
    n = len(xs[0])
    # scale columns to unit max so one pivot tolerance fits seconds, tokens and KV lengths alike
    scale = [max(abs(x[j]) for x in xs) or 1.0 for j in range(n)]
    rows = [[x[j] / scale[j] for j in range(n)] for x in xs]
    a = [[sum(r[i] * r[j] for r in rows) for j in range(n)] + [sum(r[i] * y for r, y in zip(rows, ys))]
         for i in range(n)]
    size = math.sqrt(sum(a[i][i] for i in range(n)))
    solution = solve_linear(a, 1e-9 * size * size)
    return None if solution is None else [w / scale[i] for i, w in enumerate(solution)]
