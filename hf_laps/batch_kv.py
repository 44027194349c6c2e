"""The KV layout of a batched verify: per-request caches gathered into one padded batch cache.

Each request keeps its own `DynamicCache` (so its state stays model-free and resumable); for one
batched forward they are copied into a single DynamicCache of B rows, and after it each row's new
K/V are appended back to its own cache. Row i, with c_i cached tokens and a feed of f_i tokens
(the committed tokens its cache has not seen, then its drafts), is laid out as

    [ pad * (C - c_i) | its cache (c_i) | its feed (f_i) | pad * (F - f_i) ]
      `------------- batch cache, C = max c_i ------------'`-- input, F = max f_i --'

with a 2-D attention mask that is 0 on both kinds of padding and position ids that count the
row's own tokens (c_i, c_i + 1, ...). Left padding of the cache and right padding of the feed
are both invisible to the row's real tokens: the key mask hides cache pads, and causality hides
the trailing feed pads, which only produce logits nobody reads. Pad keys / values are zeros, so
no NaN can leak through a 0 attention weight; every pad query sees at least the row's own cache
(c_i >= 1 after the first round), so no softmax row is fully masked either.

Only full-attention `DynamicLayer`s are supported: a sliding-window layer keeps a ring of the last
W tokens whose alignment would need its own gather (`supports_batching` says so up front).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from hf_laps.compat import cache_layers, cache_length, new_cache


def supports_batching(model: PreTrainedModel) -> bool:
    """Whether every layer of the model's cache is a plain full-attention DynamicLayer."""
    layers = cache_layers(new_cache(model))
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


@dataclass
class PaddedBatch:
    """One batched forward's inputs, and what `scatter` needs to give each row its K/V back."""

    input_ids: torch.Tensor          # [B, F]
    position_ids: torch.Tensor       # [B, F]
    attention_mask: torch.Tensor | None  # [B, C + F]; None when no row is padded
    cache: DynamicCache              # B rows of C tokens
    cached: list[int]                # c_i
    fed: list[int]                   # f_i

    @property
    def past(self) -> int:
        return max(self.cached)

    def logits_rows(self, logits: torch.Tensor, row: int, keep: int) -> torch.Tensor:
        """The last `keep` logits of row `row`'s real feed (logits: [B, F, V])."""
        end = self.fed[row]
        return logits[row, end - keep : end]


def gather(model: PreTrainedModel, caches: list[DynamicCache], feeds: list[torch.Tensor],
           pad_token_id: int) -> PaddedBatch:
    """Lay `caches` (each [1, H, c_i, D] per layer) and `feeds` ([f_i] ids) out as one batch."""
    cached = [cache_length(cache) for cache in caches]
    fed = [int(feed.shape[0]) for feed in feeds]
    past, width = max(cached), max(fed)
    device = feeds[0].device
    input_ids = torch.full((len(feeds), width), pad_token_id, dtype=torch.long, device=device)
    position_ids = torch.zeros((len(feeds), width), dtype=torch.long, device=device)
    mask = torch.zeros((len(feeds), past + width), dtype=torch.long, device=device)
    for row, (feed, c, f) in enumerate(zip(feeds, cached, fed)):
        input_ids[row, :f] = feed
        # pads continue the row's positions; their outputs are never read
        position_ids[row] = torch.arange(c, c + width, device=device)
        mask[row, past - c : past + f] = 1
    padded = any(c != past for c in cached) or any(f != width for f in fed)
    batch_cache = new_cache(model)
    for index, layer in enumerate(cache_layers(batch_cache)):
        keys = _stack_left_padded([cache_layers(c)[index].keys for c in caches], cached, past)
        values = _stack_left_padded([cache_layers(c)[index].values for c in caches], cached, past)
        layer.lazy_initialization(keys, values)
        layer.keys, layer.values = keys, values
    return PaddedBatch(input_ids=input_ids, position_ids=position_ids,
                       attention_mask=mask if padded else None, cache=batch_cache, cached=cached, fed=fed)


def _stack_left_padded(tensors: list[torch.Tensor], lengths: list[int], past: int) -> torch.Tensor:
    """[B, H, past, D] with row i's [1, H, c_i, D] at its right end and zeros before it."""
    if len(tensors) == 1:
        return tensors[0]
    first = tensors[0]
    out = first.new_zeros((len(tensors), first.shape[1], past, first.shape[3]))
    for row, (tensor, length) in enumerate(zip(tensors, lengths)):
        out[row, :, past - length :] = tensor[0]
    return out


def scatter(batch: PaddedBatch, caches: list[DynamicCache]) -> None:
    """Append each row's f_i new K/V (written by the forward after the C padded ones) to its cache.

    The engine then crops every cache back to its committed length, as after a batch-1 verify.
    """
    past = batch.past
    for index, layer in enumerate(cache_layers(batch.cache)):
        for row, (cache, f) in enumerate(zip(caches, batch.fed)):
            own = cache_layers(cache)[index]
            new_keys = layer.keys[row : row + 1, :, past : past + f]
            new_values = layer.values[row : row + 1, :, past : past + f]
            own.keys = torch.cat([own.keys, new_keys], dim=-2)
            own.values = torch.cat([own.values, new_values], dim=-2)
