"""`EngineConfig`: the knobs of one speculative round (draft length, drafting strategy)."""
from __future__ import annotations

from dataclasses import dataclass

SCHEDULES = ("constant", "heuristic")


@dataclass
class EngineConfig:
    """Knobs of the speculative round (CLI flags map one to one).

    num_assistant_tokens: draft length n for a draft model (the paper's n; transformers' default
        is 20 with the heuristic schedule, which adapts per call and leaks across calls).
    prompt_lookup_num_tokens: draft length n for prompt-lookup drafting (transformers' default 10).
    max_matching_ngram_size: longest n-gram prompt lookup matches on (transformers' default 2).
    num_assistant_tokens_schedule: "constant", or "heuristic" (n += 2 after a fully accepted
        round, else n = max(1, n - 1)), kept per request rather than in the shared model config.
    draft_temperature: sampling temperature of the draft model; None = the target's temperature.
    """

    num_assistant_tokens: int = 5
    prompt_lookup_num_tokens: int = 10
    max_matching_ngram_size: int = 2
    num_assistant_tokens_schedule: str = "constant"
    draft_temperature: float | None = None

    def __post_init__(self) -> None:
        if self.num_assistant_tokens < 1:
            raise ValueError(f"num_assistant_tokens must be >= 1, got {self.num_assistant_tokens}")
        if self.prompt_lookup_num_tokens < 1:
            raise ValueError(f"prompt_lookup_num_tokens must be >= 1, got {self.prompt_lookup_num_tokens}")
        if self.max_matching_ngram_size < 1:
            raise ValueError(f"max_matching_ngram_size must be >= 1, got {self.max_matching_ngram_size}")
        if self.num_assistant_tokens_schedule not in SCHEDULES:
            raise ValueError(f"num_assistant_tokens_schedule must be one of {SCHEDULES}")
        if self.draft_temperature is not None and self.draft_temperature <= 0:
            raise ValueError(f"draft_temperature must be > 0, got {self.draft_temperature}")
