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


# ---- near-ties: where a batched forward may legitimately differ from batch 1 -----------------
# A batch changes the order of floating-point sums, so a greedy pick whose top-2 logits are within
# NEAR_TIE of each other may flip; any other divergence is a bug.
NEAR_TIE = 1e-3


def top2_gap(model, ids: list[int]) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    top = torch.topk(logits, 2).values
    return float(top[0] - top[1])


def divergences(model, prompt, got: list[int], expected: list[int]) -> list[tuple[int, float]]:
    """[(position, top-2 gap)] of the first divergence ([] when the tokens agree)."""
    for position, (a, b) in enumerate(zip(got, expected)):
        if a != b:
            return [(position, top2_gap(model, prompt + expected[:position]))]
    assert len(got) == len(expected) or got[-1] == model.config.eos_token_id
    return []


def check_near_ties(model, prompt_list, states, expected_list) -> int:
    """Assert every divergence starts at a near-tie; returns how many requests diverged."""
    count = 0
    for prompt, state, expected in zip(prompt_list, states, expected_list):
        for position, gap in divergences(model, prompt, state.output_ids, expected):
            assert gap < NEAR_TIE, f"{state.request_id} diverges at {position} with top-2 gap {gap}"
            count += 1
    return count
