"""RequestProgress: what a policy knows about one admitted request (attained service, tokens,
acceptance counts). Pure bookkeeping; the policies decide what to do with it.
"""
from __future__ import annotations

from hf_laps.scheduling.types import RequestSpec, RoundReport


class RequestProgress:
    """Running totals of one request, updated after each of its rounds.

    Attributes:
        spec: the admitted request.
        admit_seq: admission order (0, 1, 2, ...), the last tie-breaker of every policy.
        attained: attained service in the policy's unit (seconds, or rounds;
            docs/design.md#attained-seconds).
        attained_seconds: execution seconds spent on the request, prefill included.
        rounds: rounds run.
        generated: tokens emitted so far (g in T_rem).
        drafted_total, accepted_total: draft tokens proposed / accepted over all rounds.
        draft_rounds: rounds that proposed at least one draft token.
    """

    __slots__ = ("spec", "admit_seq", "attained", "attained_seconds", "rounds",
                 "generated", "drafted_total", "accepted_total", "draft_rounds")

    def __init__(self, spec: RequestSpec, admit_seq: int) -> None:
        self.spec = spec
        self.admit_seq = admit_seq
        self.attained = 0.0
        self.attained_seconds = 0.0
        self.rounds = 0
        self.generated = 0
        self.drafted_total = 0
        self.accepted_total = 0
        self.draft_rounds = 0

    def record(self, report: RoundReport, cost: float) -> None:
        """Add one round; `cost` is the round in the attained unit (seconds or 1 round)."""
        self.attained += cost
        self.attained_seconds += report.seconds
        self.rounds += 1
        self.generated += report.emitted
        if report.drafted > 0:
            self.drafted_total += report.drafted
            self.accepted_total += report.accepted
            self.draft_rounds += 1

    @property
    def a_hat(self) -> float:
        """A_hat = accepted / drafted over all rounds so far (0 before any draft)."""
        return self.accepted_total / self.drafted_total if self.drafted_total else 0.0

    @property
    def n_hat(self) -> float:
        """This request's mean draft length n (0 before any draft)."""
        return self.drafted_total / self.draft_rounds if self.draft_rounds else 0.0

    def summary(self) -> dict:
        """JSON-able totals, shared by every policy's explain()."""
        return {
            "request_id": self.spec.request_id,
            "arrival": self.spec.arrival,
            "attained_seconds": self.attained_seconds,
            "rounds": self.rounds,
            "generated_tokens": self.generated,
            "a_hat": self.a_hat,
        }
