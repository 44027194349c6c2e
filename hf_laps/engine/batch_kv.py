"""KV slots: each request's K/V live in ONE preallocated buffer that batched forwards write into.

The layout (docs/engine.md#the-kv-layout-slots-that-do-not-move):

    slot of request r, per layer:  keys / values [1, kv_heads, capacity_r, head_dim]
    r's DynamicLayer holds the PREFIX VIEWS  slot[..., :len_r, :]

The request's `DynamicCache` stays a plain cache of plain `DynamicLayer`s, so the state stays
model-free: `crop` (rolling back rejected drafts) narrows the view, a length change; moving,
parking or saving the state copies the view, i.e. only that request's tokens. A batched forward
(`hf_laps.engine.ragged`) writes each row's new K/V into its own slot after its view and lets
every row attend over its own view, so a row that stays in the batch copies no KV at all.

A slot is taken when a request first runs in a batch (or when its tensors are no longer views
of its slot: after a batch-1 `engine.step`, which concatenates, after `state.to(copy=True)` or
after loading a saved state): the request's own K/V are copied in once. Capacity is the
request's own maximum (`state.max_length`: prompt + max_new_tokens; drafts never pass it), at
most `RESERVE` tokens beyond what is needed now; a request that outgrows it gets a bigger slot
(one copy of its own K/V, doubling, so amortised O(1) per token).

The slots are found through a weak map from the layer to its buffers (never an attribute of the
layer: the state's file would otherwise hold the whole buffer), so a finished request's slot goes
with its cache. `COPIES` counts every byte written into slots, split into old K/V moved (joins
and growth) and the new tokens the forwards computed; tests and benchmarks read it.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicLayer

from hf_laps.compat import cache_layers, new_cache

RESERVE = 4096  # tokens a slot may hold beyond what is needed now (the rest comes by growth)


def supports_batching(model: PreTrainedModel) -> bool:
    """Whether every layer of the model's cache is a plain full-attention DynamicLayer."""
    layers = cache_layers(new_cache(model))
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@dataclass
class KVCopies:
    """Bytes written into KV slots since `reset`.

    moved: K/V that already existed, copied into a slot (a row joining, a slot growing);
    written: the new tokens' K/V, stored once where the forward computed them (batch 1's
    `DynamicLayer.update` writes them too, with a copy of the whole cache on top).
    """

    moved: int = 0
    written: int = 0
    joins: int = 0

    def reset(self) -> None:
        self.moved = self.written = self.joins = 0


COPIES = KVCopies()

_SLOTS: "weakref.WeakKeyDictionary[DynamicLayer, tuple[torch.Tensor, torch.Tensor]]" = weakref.WeakKeyDictionary()


def slot_of(layer: DynamicLayer) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The layer's slot buffers when its K/V are still prefix views of them, else None."""
    slot = _SLOTS.get(layer)
    if slot is None or not getattr(layer, "is_initialized", False) or layer.keys.dim() != 4:
        return None
    if all(_is_prefix(tensor, buffer) for tensor, buffer in zip((layer.keys, layer.values), slot)):
        return slot
    return None


def length_of(layer: DynamicLayer) -> int:
    return int(layer.get_seq_length()) if getattr(layer, "is_initialized", False) else 0


def reserve(layer: DynamicLayer, needed: int, capacity: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make `layer`'s K/V prefix views of a slot with room for `needed` tokens; returns the slot.

    `capacity`: the most tokens the request can ever hold (its max_length). `like` ([1, H, *, D])
    gives heads, head size, dtype and device for a request that has no K/V yet. A layer already
    in a big-enough slot costs nothing; otherwise its own K/V are copied into a new slot.
    """
    slot = slot_of(layer)
    if slot is not None and slot[0].shape[-2] >= needed:
        return slot
    length = length_of(layer)
    old = slot[0].shape[-2] if slot is not None else 0
    size = max(needed, min(max(capacity, needed), max(needed + RESERVE, 2 * old)))
    source = layer.keys if length else like
    shape = (1, source.shape[1], size, source.shape[3])
    slot = (source.new_empty(shape), source.new_empty(shape))
    if not getattr(layer, "is_initialized", False):
        layer.lazy_initialization(like, like)
    if length:
        slot[0][..., :length, :].copy_(layer.keys)
        slot[1][..., :length, :].copy_(layer.values)
        COPIES.moved += 2 * layer.keys.numel() * layer.keys.element_size()
        COPIES.joins += 1
    layer.keys, layer.values = slot[0][..., :length, :], slot[1][..., :length, :]
    _SLOTS[layer] = slot
    return slot


def write(layer: DynamicLayer, slot: tuple[torch.Tensor, torch.Tensor], start: int,
          keys: torch.Tensor, values: torch.Tensor) -> None:
    """Store new K/V ([1, H, n, D]) at [start, start + n) of the slot; the layer's views end there."""
    end = start + keys.shape[-2]
    slot[0][..., start:end, :].copy_(keys)
    slot[1][..., start:end, :].copy_(values)
    COPIES.written += 2 * keys.numel() * keys.element_size()
    layer.keys, layer.values = slot[0][..., :end, :], slot[1][..., :end, :]


def _is_prefix(tensor: torch.Tensor, buffer: torch.Tensor) -> bool:
    """Whether `tensor` is buffer[..., :L, :] (same storage start, strides and leading shape)."""
    return (tensor.data_ptr() == buffer.data_ptr() and tensor.stride() == buffer.stride()
            and tensor.shape[:-2] == buffer.shape[:-2] and tensor.shape[-1] == buffer.shape[-1]
            and tensor.shape[-2] <= buffer.shape[-2])
