"""`model.generate(custom_generate=laps_generate, assistant_model=draft)`: hf-laps' batched,
scheduled speculative decoding as transformers' own generate (docs/python-api.md)."""
from __future__ import annotations

import pytest
import torch

from hf_laps import laps_generate
from tiny_models import prompts


def left_padded(rows):
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def batch():
    return left_padded(prompts(4))


class Counting:
    """Counts the draft model's forwards, so the test sees the assistant was used."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_hook(self.hook)

    def hook(self, *args):
        self.calls += 1


@pytest.mark.parametrize("max_batch_size", [None, 2])
def test_padded_output_ids_equal_greedy_generate_without_an_assistant(target, draft, batch, max_batch_size):
    expected = target.generate(**batch, max_new_tokens=24, do_sample=False)
    counter = Counting(draft)
    extra = {} if max_batch_size is None else {"max_batch_size": max_batch_size}
    out = target.generate(**batch, max_new_tokens=24, do_sample=False, custom_generate=laps_generate,
                          assistant_model=draft, **extra)
    assert out.shape == expected.shape and torch.equal(out, expected)
    assert counter.calls > 0  # the assistant drafted (transformers does not forward it: read from the call)


def test_rows_that_stop_early_are_padded_as_generate_pads_them(target, batch):
    plain = target.generate(**batch, max_new_tokens=24, do_sample=False)
    width = batch["input_ids"].shape[1]
    stop = int(plain[0, width + 3])  # row 0's fourth new token ends it
    expected = target.generate(**batch, max_new_tokens=24, do_sample=False, eos_token_id=stop)
    out = target.generate(**batch, max_new_tokens=24, do_sample=False, eos_token_id=stop,
                          custom_generate=laps_generate)  # prompt lookup drafting
    assert torch.equal(out, expected)


def test_an_unpadded_batch_and_sampling(target, draft):
    ids = torch.tensor(prompts(2)[:1] * 2)  # no padding: generate drops the all-ones mask
    torch.manual_seed(3)
    first = target.generate(ids, max_new_tokens=8, do_sample=True, custom_generate=laps_generate, assistant_model=draft)
    torch.manual_seed(3)
    again = target.generate(ids, max_new_tokens=8, do_sample=True, custom_generate=laps_generate, assistant_model=draft)
    assert first.shape == (2, ids.shape[1] + 8) and torch.equal(first, again)


@pytest.mark.parametrize("options", [{"num_beams": 2}, {"return_dict_in_generate": True, "output_scores": True}])
def test_what_it_cannot_honour_is_refused(target, batch, options):
    with pytest.raises(ValueError, match=next(iter(options))):
        target.generate(**batch, max_new_tokens=4, custom_generate=laps_generate, **options)


def test_each_drafting_takes_its_own_draft_length_name(target, batch, monkeypatch):
    from hf_laps.engine.speculative import SpeculativeEngine

    lengths = []
    original = SpeculativeEngine.start

    def spy(self, *args, **kwargs):
        state = original(self, *args, **kwargs)
        lengths.append(state.draft_length)
        return state

    monkeypatch.setattr(SpeculativeEngine, "start", spy)
    target.generate(**batch, max_new_tokens=4, do_sample=False, custom_generate=laps_generate)
    assert set(lengths) == {10}  # prompt lookup: hf-laps' 10, not the config's num_assistant_tokens
    lengths.clear()
    target.generate(**batch, max_new_tokens=4, do_sample=False, custom_generate=laps_generate, prompt_lookup_num_tokens=3)
    assert set(lengths) == {3}
