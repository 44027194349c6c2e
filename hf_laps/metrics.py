"""Per-request speculative-decoding counters, named as vLLM's spec-decode metrics.

vLLM definitions (v1 `spec_decode/metrics.py`):
  mean acceptance length = 1 + num_accepted_draft_tokens / num_spec_steps
      (tokens emitted per target forward: the accepted drafts plus the target's own token)
  draft acceptance rate  = num_accepted_draft_tokens / num_draft_tokens
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


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

    @property
    def mean_acceptance_length(self) -> float:
        if self.num_spec_steps == 0:
            return math.nan
        return 1.0 + self.num_accepted_draft_tokens / self.num_spec_steps

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
    def from_dict(cls, data: dict) -> "SpecMetrics":
        return cls(
            num_spec_steps=int(data["num_spec_steps"]),
            num_draft_tokens=int(data["num_draft_tokens"]),
            num_accepted_draft_tokens=int(data["num_accepted_draft_tokens"]),
            acceptance_histogram=[int(x) for x in data["acceptance_histogram"]],
        )
