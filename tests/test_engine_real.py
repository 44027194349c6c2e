"""End to end on the real embedded default: SmolLM2-135M-Instruct (GGUF from PyPI) with prompt
lookup, fp32 CPU. Tokens must equal plain greedy generate; a stop string inside an accepted
block must stop exactly where plain generate stops."""
from __future__ import annotations

import pytest

from hf_laps import EngineConfig, SpeculativeEngine
from helpers import QUESTIONS, chat


@pytest.mark.slow
def test_smollm2_prompt_lookup_equals_plain_greedy(smollm2):
    model, tokenizer = smollm2
    engine = SpeculativeEngine(model, tokenizer, config=EngineConfig(draft_length=10))
    accepted_lengths = []
    for prompt in (chat(tokenizer, q) for q in QUESTIONS):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        expected = model.generate(ids, do_sample=False, max_new_tokens=24)[0, ids.shape[1]:].tolist()
        state = engine.generate(prompt, max_new_tokens=24, do_sample=False)
        assert state.output_ids == expected
        assert state.text == tokenizer.decode(expected, skip_special_tokens=True)
        accepted_lengths.append(state.metrics.mean_acceptance_length)
    # prompt lookup must actually be accepting drafts on the copy-heavy prompt
    assert max(accepted_lengths) > 2.0, accepted_lengths


@pytest.mark.slow
def test_smollm2_stop_string_matches_plain_generate(smollm2):
    model, tokenizer = smollm2
    engine = SpeculativeEngine(model, tokenizer, config=EngineConfig(draft_length=10))
    prompt = chat(tokenizer, QUESTIONS[1])
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    expected = model.generate(
        ids, do_sample=False, max_new_tokens=24, stop_strings=["Thursday"], tokenizer=tokenizer
    )[0, ids.shape[1]:].tolist()
    state = engine.generate(prompt, max_new_tokens=24, do_sample=False, stop_strings=["Thursday"])
    assert "Thursday" in tokenizer.decode(expected)
    assert state.output_ids == expected
    assert state.finish_reason == "stop"
