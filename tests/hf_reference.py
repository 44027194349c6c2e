"""transformers' own generation, pinned so it can serve as the test oracle.

`generate(assistant_model=...)` adapts the draft length and writes it back into the assistant's
generation_config, and ends drafts early below a confidence threshold (0.4 by default,
auto-tuned when scikit-learn is installed); pin both before every call so each reference run
drafts exactly n tokens per round (docs/design.md#heuristic-schedule-per-request).
"""
from __future__ import annotations

import contextlib

import torch
from transformers.generation import candidate_generator as cg


def plain_greedy(model, prompt: list[int], **kwargs) -> list[int]:
    out = model.generate(torch.tensor([prompt]), do_sample=False, **kwargs)
    return out[0, len(prompt) :].tolist()


def assisted_greedy(model, prompt, draft=None, n: int = 4, prompt_lookup: int | None = None, **kwargs):
    """(tokens, rounds) where rounds = [(drafted, accepted), ...] as transformers saw them."""
    rounds: list[tuple[int, int]] = []
    if draft is not None:
        draft.generation_config.num_assistant_tokens = n
        draft.generation_config.num_assistant_tokens_schedule = kwargs.pop("schedule", "constant")
        draft.generation_config.assistant_confidence_threshold = 0.0
        kwargs["assistant_model"] = draft
    else:
        kwargs["prompt_lookup_num_tokens"] = prompt_lookup
    with record_rounds(rounds):
        out = model.generate(torch.tensor([prompt]), do_sample=False, **kwargs)
    return out[0, len(prompt) :].tolist(), rounds


@contextlib.contextmanager
def record_rounds(rounds: list):
    """Record (drafted, accepted) from every `update_candidate_strategy` call."""
    originals = {}
    for cls in (cg.AssistedCandidateGenerator, cg.PromptLookupCandidateGenerator):
        original = cls.__dict__.get("update_candidate_strategy") or cls.update_candidate_strategy
        originals[cls] = cls.__dict__.get("update_candidate_strategy")

        def patched(self, input_ids, scores, num_matches, _original=original):
            rounds.append((int(scores.shape[1]) - 1, int(num_matches)))
            try:
                return _original(self, input_ids, scores, num_matches)
            except NotImplementedError:  # 5.17's base class raises
                return None

        cls.update_candidate_strategy = patched
    try:
        yield rounds
    finally:
        for cls, original in originals.items():
            if original is None:
                del cls.update_candidate_strategy
            else:
                cls.update_candidate_strategy = original
