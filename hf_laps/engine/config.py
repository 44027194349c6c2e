"""`EngineConfig`: the knobs of one speculative round (draft length, drafting strategy).

The draft length has one name in every layer: `draft_length` here and on the command line
(`--draft-length`), `GenerationState.draft_length` for a request's current value (the heuristic
schedule moves it), `drafted` in the round records the scheduler sees.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SCHEDULES = ("constant", "heuristic")
# transformers' defaults: num_assistant_tokens = 20 with its heuristic schedule for a draft model
# (we default to the paper's constant n = 5), prompt_lookup_num_tokens = 10
DEFAULT_DRAFT_LENGTH = {"model": 5, "prompt_lookup": 10}


def _knob(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class EngineConfig:
    """Knobs of the speculative round (CLI flags map one to one, generated from the fields)."""

    draft_length: int | None = _knob(
        None, "n, tokens drafted per round. Default: 5 with a draft model (the paper's n), 10 with "
        "prompt lookup (transformers' default).")
    max_matching_ngram_size: int = _knob(2, "Longest n-gram prompt lookup matches on (transformers' default).")
    draft_schedule: str = _knob(
        "constant", "constant, or heuristic: n += 2 after a fully accepted round, else n = max(1, n - 1), "
        "kept per request (transformers keeps it in the shared model config).")
    draft_temperature: float | None = _knob(
        None, "Sampling temperature of the draft model. Default: the target's temperature.")

    def __post_init__(self) -> None:
        if self.draft_length is not None and self.draft_length < 1:
            raise ValueError(f"draft_length must be >= 1, got {self.draft_length}")
        if self.max_matching_ngram_size < 1:
            raise ValueError(f"max_matching_ngram_size must be >= 1, got {self.max_matching_ngram_size}")
        if self.draft_schedule not in SCHEDULES:
            raise ValueError(f"draft_schedule must be one of {SCHEDULES}, got {self.draft_schedule!r}")
        if self.draft_temperature is not None and self.draft_temperature <= 0:
            raise ValueError(f"draft_temperature must be > 0, got {self.draft_temperature}")

    def draft_length_for(self, kind: str) -> int:
        """The draft length n for a drafting strategy's `kind` ("model" or "prompt_lookup")."""
        if self.draft_length is not None:
            return self.draft_length
        return DEFAULT_DRAFT_LENGTH[kind]


class ContextWindowExceeded(ValueError):
    """An explicit token cap that does not fit: prompt + max_new_tokens > the context window.

    OpenAI and vLLM refuse such a request (400) rather than shorten it silently; so does the
    engine. Only a default cap (`default_max_new_tokens`) is fitted to the window.
    """

    def __init__(self, prompt_tokens: int, max_new_tokens: int, window: int):
        self.prompt_tokens, self.max_new_tokens, self.window = prompt_tokens, max_new_tokens, window
        super().__init__(
            f"prompt ({prompt_tokens} tokens) + max_new_tokens ({max_new_tokens}) = "
            f"{prompt_tokens + max_new_tokens} exceeds the model's context window of {window} tokens "
            f"(max_position_embeddings); use max_new_tokens <= {self.room}"
        )

    @property
    def room(self) -> int:
        """The largest cap that fits after this prompt."""
        return self.window - self.prompt_tokens
