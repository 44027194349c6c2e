"""Edge cases of one round: EOS or a stop criterion inside an accepted block, budgets that are not
a multiple of n + 1, prompts that do not fit, configuration errors."""
from __future__ import annotations

import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from hf_laps import EngineConfig, SpeculativeEngine
from hf_laps.engine.config import ContextWindowExceeded
import hf_reference as ref
from tiny_models import noisy_draft, prompts

N = 4


@pytest.fixture(scope="module")
def engines(target):
    draft = noisy_draft(target, noise=0.05)  # accepts whole blocks most of the time
    return {
        "draft-model": SpeculativeEngine(target, assistant_model=draft, config=EngineConfig(draft_length=N)),
        "prompt-lookup": SpeculativeEngine(target, config=EngineConfig(draft_length=N)),
    }


@pytest.mark.parametrize("kind", ["draft-model", "prompt-lookup"])
def test_eos_inside_an_accepted_block(target, engines, kind):
    """Make a token the target emits mid-stream the EOS (the transformers #47912 trick)."""
    engine = engines[kind]
    hit_mid_block = False
    for prompt in prompts(3):
        free = ref.plain_greedy(target, prompt, max_new_tokens=30)
        eos = free[12]
        expected = ref.plain_greedy(target, prompt, max_new_tokens=30, eos_token_id=eos)
        state = engine.start(prompt, max_new_tokens=30, do_sample=False, eos_token_id=eos)
        results = []
        while not state.finished:
            results.append(engine.step(state))
        assert state.output_ids == expected
        assert state.finish_reason == "eos" and state.output_ids[-1] == eos
        # the final round stopped inside what it had accepted at least once over the prompts
        hit_mid_block |= results[-1].drafted > results[-1].accepted or results[-1].emitted < N + 1
    assert hit_mid_block


@pytest.mark.parametrize("kind", ["draft-model", "prompt-lookup"])
@pytest.mark.parametrize("max_new_tokens", [1, 2, 3, 7, 13])
def test_budgets_not_multiple_of_block(target, engines, kind, max_new_tokens):
    engine = engines[kind]
    for prompt in prompts(2):
        state = engine.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False)
        assert state.output_ids == ref.plain_greedy(target, prompt, max_new_tokens=max_new_tokens)
        assert state.num_generated == max_new_tokens and state.finish_reason == "length"


class BigramStop(StoppingCriteria):
    """Stops when the last two tokens equal a given pair (looks only at the sequence's end)."""

    def __init__(self, pair):
        self.pair = list(pair)

    def __call__(self, input_ids, scores, **kwargs):
        return torch.tensor([input_ids[0, -2:].tolist() == self.pair])


@pytest.mark.parametrize("kind", ["draft-model", "prompt-lookup"])
def test_custom_stopping_criterion_inside_a_block_matches_plain_generate(target, engines, kind):
    engine = engines[kind]
    prompt = prompts(1)[0]
    free = ref.plain_greedy(target, prompt, max_new_tokens=30)
    pair = free[9:11]
    expected = ref.plain_greedy(
        target, prompt, max_new_tokens=30, stopping_criteria=StoppingCriteriaList([BigramStop(pair)])
    )
    state = engine.generate(
        prompt, max_new_tokens=30, do_sample=False, stopping_criteria=StoppingCriteriaList([BigramStop(pair)])
    )
    assert state.output_ids == expected
    assert state.finish_reason == "stop"
    assert len(expected) < 30


def test_prompt_over_context_window_is_a_clear_error(engines):
    with pytest.raises(ValueError, match="context window is 256"):
        engines["prompt-lookup"].start(list(range(1, 100)) * 3, max_new_tokens=4)


def test_explicit_cap_past_the_context_window_is_refused(engines):
    prompt = prompts(1)[0] * 20  # 240 tokens of a 256-token window
    with pytest.raises(ContextWindowExceeded, match="use max_new_tokens <= 16") as info:
        engines["draft-model"].start(prompt, max_new_tokens=100, do_sample=False)
    assert (info.value.prompt_tokens, info.value.room) == (240, 16)
    with pytest.raises(ContextWindowExceeded):
        engines["draft-model"].start(prompt, max_length=257, do_sample=False)


def test_default_cap_is_fitted_to_the_context_window(engines):
    prompt = prompts(1)[0] * 20
    state = engines["draft-model"].generate(prompt, default_max_new_tokens=100, do_sample=False)
    assert state.input_ids.shape[1] == 256 and state.finish_reason == "length"
    state = engines["draft-model"].generate(prompt, do_sample=False)  # the engine's own default, 128
    assert state.input_ids.shape[1] == 256 and state.finish_reason == "length"


def test_empty_prompt_and_bad_config(engines):
    with pytest.raises(ValueError, match="empty"):
        engines["draft-model"].start([], max_new_tokens=4)
    with pytest.raises(ValueError, match="draft_length"):
        EngineConfig(draft_length=0)
    with pytest.raises(ValueError, match="schedule"):
        EngineConfig(draft_schedule="adaptive")
    with pytest.raises(ValueError, match="needs a tokenizer"):
        engines["draft-model"].start("text without tokenizer")


def test_step_after_finish_raises(engines):
    engine = engines["draft-model"]
    state = engine.generate(prompts(1)[0], max_new_tokens=3, do_sample=False)
    with pytest.raises(ValueError, match="already finished"):
        engine.step(state)
