"""Which of the policy's ranked requests share the next round: the batch planner.

The policy orders the waiting requests (`Policy.pick_batch(now, cap)`: its pick first, then its
own ranking); the planner decides how many of them, and which, share the round, by the
round-cost model (`hf_laps.scheduling.round_cost`): seconds = a + b * tokens + c * rows.

Adding row r (feeding t_r tokens this round) to the set S already chosen (feeding T_S) makes the
round longer by the marginal cost m_r = b * t_r + c. Left out, r waits at least one whole round,
L(S) = a + b * T_S + c * |S|. Who pays m_r? r's work has to be done some round, and whoever is in
the batch then waits m_r; so deferring r saves m_r only for the rows of S that would have left
before r joins: those that finish this round (predicted remaining rounds <= 1). So r joins while

    n_soon(S) * m_r  <  L(S),      n_soon(S) = |{s in S : remaining_rounds(s) <= 1}|

taken in the policy's order; a candidate that fails the test is skipped (a long prompt does not
block the short rows ranked after it) and the planner goes on to the next, up to `cap` rows. The
head (the policy's pick) always runs, so `cap` = 1 is exactly the policy's pick. Sharing a round
saves the fixed part a for every row after the first, so the rule batches wide (all rows while
no row of S is about to finish, on a CPU and a GPU alike) and holds back only a row whose tokens
would delay requests in their last round by more than a round of waiting: a long prefill next
to rows that are about to finish. docs/design.md#round-cost-planner derives the rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hf_laps.scheduling.round_cost import RoundCostModel

# `max_batch_size="auto"` (the default): up to this many rows when nothing else bounds the batch;
# a KV capacity bounds it further through admission (only admitted requests can run).
AUTO_MAX_BATCH = 32


def resolve_max_batch_size(value: int | str | None) -> int:
    """The cap a `max_batch_size` setting means: an int >= 1 as given; "auto" / None =
    `AUTO_MAX_BATCH`. Raises ValueError for anything else."""
    if value is None or value == "auto":
        return AUTO_MAX_BATCH
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError(f"max_batch_size must be an integer >= 1 or 'auto', got {value!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_batch_size must be an integer >= 1 or 'auto', got {value!r}")
    return value


@dataclass(frozen=True)
class Candidate:
    """A waiting request as the planner sees it: the tokens it would feed this round and the
    rounds it is predicted to have left (this one included; inf when unknown)."""

    request_id: str
    tokens: int
    remaining_rounds: float = float("inf")


PLANS = ("cost", "fill")


@dataclass
class BatchPlanner:
    """Chooses each round's batch from the policy's ranked candidates (see the module docstring).

    `plan`: "cost" (the rule above) or "fill" (every candidate up to the cap: what the loop did
    before the planner existed, for replaying logs recorded then)."""

    cost: RoundCostModel
    cap: int
    mode: str = "cost"

    def __post_init__(self) -> None:
        if self.mode not in PLANS:
            raise ValueError(f"batch plan must be one of {PLANS}, got {self.mode!r}")

    def plan(self, candidates: Sequence[Candidate]) -> list[str]:
        """The request ids of the round, in the policy's order; the head always runs."""
        if not candidates:
            return []
        if self.mode == "fill":
            return [c.request_id for c in candidates[: self.cap]]
        head = candidates[0]
        chosen, tokens, soon = [head.request_id], head.tokens, int(head.remaining_rounds <= 1)
        for candidate in candidates[1:]:
            if len(chosen) >= self.cap:
                break
            if soon * self.cost.marginal(candidate.tokens) < self.cost.seconds(len(chosen), tokens):
                chosen.append(candidate.request_id)
                tokens += candidate.tokens
                soon += candidate.remaining_rounds <= 1
        return chosen
