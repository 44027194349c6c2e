"""transformers habits in `LapsGenerator.generate`: tokenizer batches, GenerationConfig, typos."""
from __future__ import annotations

import pytest
import torch
from transformers import BatchEncoding, GenerationConfig

from hf_laps import LapsGenerator
from hf_laps.serving.inputs import generation_options, normalise_prompts
import hf_reference as ref
from tiny_models import prompts


@pytest.fixture(scope="module")
def gen(target):
    return LapsGenerator(target, policy="fcfs", progress=False)


def padded(rows: list[list[int]], side: str) -> BatchEncoding:
    width = max(len(r) for r in rows)
    ids, mask = [], []
    for row in rows:
        pad = [0] * (width - len(row))
        ids.append(pad + row if side == "left" else row + pad)
        mask.append([0] * len(pad) + [1] * len(row) if side == "left" else [1] * len(row) + [0] * len(pad))
    return BatchEncoding({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)})


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_padded_batch_encoding_gives_one_prompt_per_row(gen, target, side):
    rows = prompts(3)
    results = gen.generate(padded(rows, side), max_new_tokens=6, do_sample=False)
    assert len(results) == 3
    for row, result in zip(rows, results):
        assert result.error is None and result.prompt_tokens == len(row)
        assert result.token_ids == ref.plain_greedy(target, row, max_new_tokens=6)


def test_prompt_forms_normalise_to_rows():
    rows = prompts(2)
    assert normalise_prompts(padded(rows, "left")) == rows
    assert normalise_prompts({"input_ids": [[5, 6, 7]]}) == [[5, 6, 7]]  # no mask: whole rows
    assert normalise_prompts(torch.tensor([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="input_ids"):
        normalise_prompts({"prompt": ["hi"]})
    with pytest.raises(TypeError):
        normalise_prompts("one string")


def test_generation_config_is_honoured_and_kwargs_override_it(gen):
    rows = prompts(2)
    config = GenerationConfig(max_new_tokens=5, do_sample=False)
    assert [len(r.token_ids) for r in gen.generate(rows, generation_config=config)] == [5, 5]
    overridden = gen.generate(rows, generation_config=config, max_new_tokens=3)
    assert [len(r.token_ids) for r in overridden] == [3, 3]


def test_a_misspelt_kwarg_is_a_value_error_naming_it_before_anything_runs(gen):
    # before: one TypeError *result* per request ('NoneType' object is not subscriptable)
    with pytest.raises(ValueError, match=r"\['max_new_token'\]"):
        gen.generate(prompts(2), max_new_token=5)
    with pytest.raises(ValueError, match="temprature"):
        generation_options({"generation_config": GenerationConfig(max_new_tokens=2), "temprature": 0.5})
    with pytest.raises(TypeError, match="GenerationConfig"):
        generation_options({"generation_config": {"max_new_tokens": 2}})
    assert generation_options({"seed": 1, "stop_strings": ["x"], "tokenizer": object()}) == {
        "seed": 1, "stop_strings": ["x"]}
