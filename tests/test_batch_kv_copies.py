"""The batch layouts' copies (`hf_laps.engine.batch_kv`): a request's K/V grow in place inside a buffer
with slack, the batch cache takes the forward's K/V in the room the gather left for them, and
neither changes a value.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from hf_laps import EngineConfig, SpeculativeEngine
from hf_laps.engine.batch_kv import SLACK, FilledLayer, append_in_place
from hf_laps.engine.batched_round import BatchedRound
from hf_laps.compat import cache_layers
from tiny_models import prompts, tiny_target


def new_layer(tokens: int) -> DynamicLayer:
    layer = DynamicLayer()
    keys = torch.randn(1, 2, tokens, 4)
    layer.lazy_initialization(keys, keys)
    layer.keys, layer.values = keys, keys.clone()
    return layer


def test_append_in_place_is_concatenation_and_copies_only_new_tokens():
    layer = new_layer(5)
    expected_k, expected_v = layer.keys.clone(), layer.values.clone()
    storage = None
    for step in range(6):
        k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
        append_in_place(layer, k, v)
        expected_k, expected_v = torch.cat([expected_k, k], dim=-2), torch.cat([expected_v, v], dim=-2)
        assert torch.equal(layer.keys, expected_k) and torch.equal(layer.values, expected_v)
        if step == 0:
            storage = layer.keys.data_ptr()
        assert layer.keys.data_ptr() == storage  # 5 + 18 tokens fit the first buffer's slack
        # a rollback (DynamicLayer.crop) keeps a prefix view; the next append overwrites the rest
        layer.crop(-1)
        expected_k, expected_v = expected_k[..., :-1, :], expected_v[..., :-1, :]
    assert layer.keys.shape[-2] == 5 + 6 * 2 <= 5 + 3 + SLACK


def test_append_after_the_tensors_were_replaced_starts_a_new_buffer():
    """A state moved or parked holds new tensors: the old buffer must never be written again."""
    layer = new_layer(4)
    append_in_place(layer, torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    old = layer.keys
    layer.keys, layer.values = layer.keys.clone(), layer.values.clone()  # what state.to(copy=True) does
    old_before = old.clone()
    append_in_place(layer, torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 4))
    assert layer.keys.shape[-2] == 7
    assert torch.equal(old, old_before)
    assert torch.equal(layer.keys[..., :5, :], old_before)


def test_filled_layer_writes_the_forward_into_its_room():
    keys = torch.zeros(1, 2, 6, 4)
    layer = FilledLayer(keys, keys.clone(), filled=4)
    assert layer.get_seq_length() == 4
    new = torch.ones(1, 2, 2, 4)
    k, v = layer.update(new, new)
    assert k.shape[-2] == 6 and layer.keys.data_ptr() == keys.data_ptr()
    assert torch.equal(k[..., 4:, :], new) and layer.get_seq_length() == 6


def test_a_batched_round_appends_each_row_in_place():
    """Between two decode rounds every row's cache keeps its storage: no per-row re-copy."""
    engine = SpeculativeEngine(tiny_target(), config=EngineConfig(draft_length=4), features=False)
    states = [engine.start(p, max_new_tokens=40, do_sample=False) for p in prompts(3)]
    batcher = BatchedRound(engine)
    batcher.step(states)
    batcher.step(states)
    before = [cache_layers(s.target_cache)[0].keys.data_ptr() for s in states]
    lengths = [s.kv_len for s in states]
    batcher.step(states)
    assert all(s.kv_len > length for s, length in zip(states, lengths))
    assert [cache_layers(s.target_cache)[0].keys.data_ptr() for s in states] == before
