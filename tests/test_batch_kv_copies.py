"""KV slots (`hf_laps.engine.batch_kv`): a request's K/V stay in its own slot, so a row that stays
in the batch copies no KV bytes per round; joining copies only its own K/V in, leaving (moving,
parking, saving) only its own K/V out; rolling back drafts is a length change.
"""
from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from hf_laps import EngineConfig, SpeculativeEngine
from hf_laps.compat import cache_layers
from hf_laps.engine.batch_kv import COPIES, reserve, slot_of, write
from hf_laps.engine.batched_round import BatchedRound
from tiny_models import EOS, tiny_target


def new_layer(tokens: int) -> DynamicLayer:
    layer = DynamicLayer()
    keys = torch.randn(1, 2, tokens, 4)
    layer.lazy_initialization(keys, keys)
    layer.keys, layer.values = keys, keys.clone()
    return layer


def kv_bytes(layer: DynamicLayer) -> int:
    return 2 * layer.keys.numel() * layer.keys.element_size()


def test_a_slot_grows_in_place_and_a_crop_is_a_length_change():
    layer = new_layer(5)
    expected_k = layer.keys.clone()
    COPIES.reset()
    slot = reserve(layer, 5, capacity=40, like=layer.keys)
    assert COPIES.moved == kv_bytes(layer) and COPIES.joins == 1  # joining copies its own K/V once
    COPIES.reset()
    for _ in range(6):
        k = torch.randn(1, 2, 3, 4)
        length = layer.get_seq_length()
        assert reserve(layer, length + 3, capacity=40, like=k) is slot
        write(layer, slot, length, k, k)
        expected_k = torch.cat([expected_k, k], dim=-2)
        assert torch.equal(layer.keys, expected_k) and layer.keys.data_ptr() == slot[0].data_ptr()
        layer.crop(-1)  # a rejected draft: the view narrows, the next write overwrites the rest
        expected_k = expected_k[..., :-1, :]
        assert slot_of(layer) is slot
    assert COPIES.moved == 0 and COPIES.written == 6 * 2 * 2 * 3 * 4 * 4


def test_tensors_replaced_by_a_move_take_a_new_slot_and_the_old_one_is_never_written():
    layer = new_layer(4)
    slot = reserve(layer, 6, capacity=8, like=layer.keys)
    old = layer.keys
    layer.keys, layer.values = layer.keys.clone(), layer.values.clone()  # what state.to(copy=True) does
    assert slot_of(layer) is None
    before = slot[0].clone()
    COPIES.reset()
    new = reserve(layer, 6, capacity=8, like=layer.keys)
    assert new is not slot and COPIES.moved == kv_bytes(layer)
    write(layer, new, 4, torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 4))
    assert torch.equal(slot[0], before) and torch.equal(layer.keys[..., :4, :], old)


def test_a_slot_outgrowing_its_reserve_doubles():
    layer = new_layer(2)
    slot = reserve(layer, 3, capacity=10_000_000, like=layer.keys)
    size = slot[0].shape[-2]
    assert 3 <= size < 10_000_000
    bigger = reserve(layer, size + 1, capacity=10_000_000, like=layer.keys)
    assert bigger[0].shape[-2] >= 2 * size


def many_prompts(count: int, seed: int = 11) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1, EOS - 1, (8 + (5 * i) % 23,), generator=generator).tolist() for i in range(count)]


@pytest.mark.parametrize("rows", [8, 32])
def test_rows_that_stay_in_the_batch_copy_no_kv(rows):
    """After the first round (every request joins: its prompt's K/V are written, nothing moved),
    a round of rows that stay copies 0 bytes of existing K/V and each row keeps its storage;
    only the new tokens are written. A row that left (moved, i.e. parked) copies its own K/V in
    when it rejoins, and no other row copies anything."""
    engine = SpeculativeEngine(tiny_target(), config=EngineConfig(draft_length=4), features=False)
    states = [engine.start(p, max_new_tokens=40, do_sample=False) for p in many_prompts(rows)]
    batcher = BatchedRound(engine)
    COPIES.reset()
    batcher.step(states)
    assert COPIES.moved == 0 and COPIES.joins == 0
    storage = [cache_layers(s.target_cache)[0].keys.data_ptr() for s in states]
    for _ in range(3):
        COPIES.reset()
        batcher.step(states)
        assert COPIES.moved == 0 and COPIES.written > 0
        assert [cache_layers(s.target_cache)[0].keys.data_ptr() for s in states] == storage
    states[0].to("cpu", copy=True)  # parked and back: new tensors, only its own K/V
    own = sum(t.numel() * t.element_size() for _, _, _, t in states[0]._cache_tensors())
    COPIES.reset()
    batcher.step(states)
    assert COPIES.moved == own and COPIES.joins == len(cache_layers(states[0].target_cache))
