"""Speculative-decoding counters, named as vLLM's spec-decode metrics, and their one definition.

vLLM definitions (v1 `spec_decode/metrics.py`):
  mean acceptance length = 1 + num_accepted_draft_tokens / num_spec_steps
      (tokens emitted per target forward: the accepted drafts plus the target's own token)
  draft acceptance rate  = num_accepted_draft_tokens / num_draft_tokens

A spec step is one target verify forward, i.e. one round: the prefill round and rounds that
drafted nothing (prompt lookup found no match) count too, because each costs a target forward
and emits one token. Every round emits accepted + 1 tokens, so over any set of rounds
mean acceptance length = tokens emitted / target forwards. The per-request metrics, the job
summary and the progress bar all compute it with `mean_acceptance_length` below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


def mean_acceptance_length(num_accepted_draft_tokens: int, num_spec_steps: int) -> float:
    """Tokens per target forward = 1 + accepted / steps; NaN when nothing ran (no steps)."""
    if num_spec_steps == 0:
        return math.nan
    return 1.0 + num_accepted_draft_tokens / num_spec_steps


@dataclass
class SpecMetrics:
    num_spec_steps: int = 0
    num_draft_tokens: int = 0
    num_accepted_draft_tokens: int = 0
    # acceptance_histogram[a] = number of rounds that accepted exactly a draft tokens
    acceptance_histogram: list[int] = field(default_factory=list)

    def record(self, drafted: int, accepted: int) -> None:
        if not 0 <= accepted <= drafted:
            raise ValueError(f"accepted={accepted} must be in [0, drafted={drafted}]")
        self.num_spec_steps += 1
        self.num_draft_tokens += drafted
        self.num_accepted_draft_tokens += accepted
        if len(self.acceptance_histogram) <= accepted:
            self.acceptance_histogram.extend([0] * (accepted + 1 - len(self.acceptance_histogram)))
        self.acceptance_histogram[accepted] += 1

    def merge(self, other: "SpecMetrics") -> "SpecMetrics":
        """Add `other`'s counters to these (in place; returns self): a job's totals."""
        self.num_spec_steps += other.num_spec_steps
        self.num_draft_tokens += other.num_draft_tokens
        self.num_accepted_draft_tokens += other.num_accepted_draft_tokens
        mine, theirs = self.acceptance_histogram, other.acceptance_histogram
        mine.extend([0] * (len(theirs) - len(mine)))
        for accepted, count in enumerate(theirs):
            mine[accepted] += count
        return self

    @property
    def mean_acceptance_length(self) -> float:
        return mean_acceptance_length(self.num_accepted_draft_tokens, self.num_spec_steps)

    @property
    def draft_acceptance_rate(self) -> float:
        if self.num_draft_tokens == 0:
            return math.nan
        return self.num_accepted_draft_tokens / self.num_draft_tokens

    def to_dict(self) -> dict:
        """JSON-able (NaN becomes None)."""

        def finite(x: float):
            return None if math.isnan(x) else x

        return {
            "num_spec_steps": self.num_spec_steps,
            "num_draft_tokens": self.num_draft_tokens,
            "num_accepted_draft_tokens": self.num_accepted_draft_tokens,
            "acceptance_histogram": list(self.acceptance_histogram),
            "mean_acceptance_length": finite(self.mean_acceptance_length),
            "draft_acceptance_rate": finite(self.draft_acceptance_rate),
        }

    @classmethod
    def from_rounds(cls, rounds) -> "SpecMetrics":
        """From a timing record's rounds [drafted, accepted, seconds, draft_seconds, ...]."""
        metrics = cls()
        for round_ in rounds:
            metrics.record(int(round_[0]), int(round_[1]))
        return metrics

    @classmethod
    def from_dict(cls, data: dict) -> "SpecMetrics":
        return cls(
            num_spec_steps=int(data["num_spec_steps"]),
            num_draft_tokens=int(data["num_draft_tokens"]),
            num_accepted_draft_tokens=int(data["num_accepted_draft_tokens"]),
            acceptance_histogram=[int(x) for x in data["acceptance_histogram"]],
        )
