"""transformers options in `LapsGenerator.generate`: what changes the result is honoured or
refused, never silently dropped (hf_laps.engine.generation_fields); the batch as `input_ids=` keywords."""
from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from hf_laps import LapsGenerator
from tests import hf_reference as ref
from tiny_models import prompts


@pytest.fixture(scope="module")
def lookup_gen(target):
    return LapsGenerator(target, policy="fcfs", progress=False)  # prompt lookup, n = 10


@pytest.fixture(scope="module")
def draft_gen(target, draft):
    return LapsGenerator(target, draft, policy="fcfs", progress=False)  # draft model, n = 5


def largest_draft(result) -> int:
    return max(r.drafted for r in result.timing.rounds)


@pytest.mark.parametrize("name", ["num_assistant_tokens", "prompt_lookup_num_tokens"])
def test_transformers_draft_length_names_set_this_calls_draft_length(draft_gen, lookup_gen, target, name):
    rows = prompts(2)
    for gen in (draft_gen, lookup_gen):
        results = gen.generate(rows, max_new_tokens=20, do_sample=False, **{name: 2})
        for row, result in zip(rows, results):
            assert result.error is None and largest_draft(result) <= 2
            assert result.token_ids == ref.plain_greedy(target, row, max_new_tokens=20)
    default = draft_gen.generate(rows, max_new_tokens=20, do_sample=False)
    assert max(largest_draft(r) for r in default) > 2  # the engine's own n is back next call


def test_both_draft_names_the_drafting_in_use_picks_its_own(draft_gen):
    [result] = draft_gen.generate(prompts(1), max_new_tokens=20, do_sample=False,
                                  num_assistant_tokens=1, prompt_lookup_num_tokens=4)
    assert largest_draft(result) == 1
    with pytest.raises(ValueError, match="num_assistant_tokens"):
        draft_gen.generate(prompts(1), num_assistant_tokens=0)


def test_num_return_sequences_gives_n_seeded_samples_per_prompt(lookup_gen):
    rows = prompts(2)
    results = lookup_gen.generate(rows, max_new_tokens=8, do_sample=True, seed=5, num_return_sequences=3)
    assert [r.request_id for r in results] == ["0-0", "0-1", "0-2", "1-0", "1-1", "1-2"]
    assert all(r.error is None and r.output_tokens > 0 for r in results)
    assert len({tuple(r.token_ids) for r in results[:3]}) > 1  # seed + j: different samples
    again = lookup_gen.generate(rows[:1], max_new_tokens=8, do_sample=True, seed=6, num_return_sequences=2)
    assert again[0].token_ids == results[1].token_ids  # copy j of seed s is seed s + j
    with pytest.raises(ValueError, match="do_sample"):
        lookup_gen.generate(rows, num_return_sequences=2)


@pytest.mark.parametrize("options, named", [
    ({"num_beams": 3}, "num_beams=3"),
    ({"output_scores": True, "return_dict_in_generate": True}, "output_scores=True"),
    ({"output_logits": True}, "output_logits=True"),
    ({"penalty_alpha": 0.6, "top_k": 4}, "penalty_alpha"),
    ({"generation_config": GenerationConfig(num_beams=2)}, "num_beams=2"),
    ({"streamer": object()}, "streamer"),
    ({"use_mtp": True}, "use_mtp"),
])
def test_options_that_would_change_the_result_are_refused_by_name(lookup_gen, options, named):
    with pytest.raises(ValueError, match=named):
        lookup_gen.generate(prompts(1), max_new_tokens=4, **options)


def test_off_values_and_neutral_options_pass(lookup_gen, target):
    row = prompts(1)
    config = GenerationConfig(num_beams=1, output_scores=False, use_cache=True, max_new_tokens=6)
    [result] = lookup_gen.generate(row, generation_config=config, do_sample=False, return_dict_in_generate=False)
    assert result.token_ids == ref.plain_greedy(target, row[0], max_new_tokens=6)


@pytest.mark.parametrize("keyword", ["input_ids", "inputs"])
def test_the_batch_as_input_ids_keywords(lookup_gen, target, keyword):
    # before: TypeError (missing `prompts`) for generate(**tokenizer(texts, padding=True))
    rows = prompts(2)
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    results = lookup_gen.generate(**{keyword: ids}, attention_mask=mask, max_new_tokens=5, do_sample=False)
    assert [r.token_ids for r in results] == [ref.plain_greedy(target, r, max_new_tokens=5) for r in rows]
    with pytest.raises(TypeError, match="once"):
        lookup_gen.generate(rows, input_ids=ids)
