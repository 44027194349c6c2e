"""The KV layouts of a batched verify: per-request caches copied into one batch cache and back.

Each request keeps its own `DynamicCache` (so its state stays model-free and resumable); for one
batched forward the caches are copied into a single DynamicCache, and after it each row's new
K/V are appended back to its own cache. Row i has c_i cached tokens and a feed of f_i tokens (the
committed tokens its cache has not seen, then its drafts). Two layouts:

packed (the default): every row in ONE sequence, no padding at all,

    keys:   [ cache_1 | cache_2 | ... | cache_B | feed_1 | feed_2 | ... | feed_B ]
    input:                                      [ feed_1 | feed_2 | ... | feed_B ]   (sum f_i)

    with a 4-D mask that lets a query of row i see cache_i and feed_i up to itself (causal), and
    position ids that count the row's own tokens (c_i, c_i + 1, ...). The linear layers (most of
    the work at these sizes) run on exactly sum f_i tokens; attention scores cost
    sum f_i x (sum c_i + sum f_i), i.e. they grow as B^2, which is cheap while B x context is
    small (CPU, short prompts) and is the price of needing no variable-length attention kernel.

padded: one row per request, the cache left-padded to C = max c_i and the feed right-padded to
F = max f_i,

    [ pad * (C - c_i) | cache_i (c_i) | feed_i (f_i) | pad * (F - f_i) ]

    with a 2-D attention mask that is 0 on both kinds of padding. Attention costs B x F x (C + F)
    (linear in B), but the linear layers run B x F tokens: with prompt lookup one row drafting
    10 tokens makes every row pay 11 positions.

In both, pads / foreign rows are invisible to a row's real tokens: the mask hides them, and
trailing feed pads are hidden by causality and only produce logits nobody reads. Pad keys and
values are zeros, so no NaN can leak through a 0 attention weight; every query sees at least its
own row's cache (c_i >= 1 after the first round), so no softmax row is fully masked either.

Copies. A batch-1 round copies a request's KV once (`DynamicLayer.update` concatenates the new
K/V to the old). Done naively a batched round copies it three times: the gather, the same
concatenation inside the forward, and one more per row to append its new K/V back. Here:
  - the gather concatenates the rows' caches AND room for the feeds in one `torch.cat`, and the
    batch cache's layers (`FilledLayer`) write the forward's new K/V into that room in place;
  - each request's layer keeps its K/V as a prefix view of a buffer with `SLACK` free tokens
    after it (`append_in_place`), so appending a row's new K/V copies only those tokens. The
    layer itself stays a plain DynamicLayer holding plain tensors (the views): crop keeps the
    prefix view, and moving, parking or saving the state copies just the view, after which the
    next append sees new storage and starts a new buffer.
So a batched round copies each row's cache once, like batch 1, plus the new tokens.

Only full-attention `DynamicLayer`s are supported: a sliding-window layer keeps a ring of the last
W tokens whose alignment would need its own gather (`supports_batching` says so up front).
"""
from __future__ import annotations

import weakref
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
    """The padded layout: one batched forward's inputs, and what `scatter` needs."""

    input_ids: torch.Tensor          # [B, F]
    position_ids: torch.Tensor       # [B, F]
    attention_mask: torch.Tensor | None  # [B, C + F]; None when no row is padded
    cache: DynamicCache              # B rows of C tokens
    cached: list[int]                # c_i
    fed: list[int]                   # f_i

    @property
    def past(self) -> int:
        return max(self.cached)

    def forward_kwargs(self) -> dict:
        return {"input_ids": self.input_ids, "position_ids": self.position_ids,
                "attention_mask": self.attention_mask}

    def logits_rows(self, logits: torch.Tensor, row: int, keep: int) -> torch.Tensor:
        """The last `keep` logits of row `row`'s real feed (logits: [B, F, V])."""
        end = self.fed[row]
        return logits[row, end - keep : end]

    def scatter(self, caches: list[DynamicCache]) -> None:
        """Append each row's f_i new K/V (written after the C padded ones) to its own cache.

        The engine then crops every cache back to its committed length, as after a batch-1 verify.
        """
        past = self.past
        for index, layer in enumerate(cache_layers(self.cache)):
            for row, (cache, f) in enumerate(zip(caches, self.fed)):
                _append(cache_layers(cache)[index], layer, row, past, past + f)


def gather_padded(model: PreTrainedModel, caches: list[DynamicCache], feeds: list[torch.Tensor],
                  pad_token_id: int, keeps: list[int] | None = None) -> PaddedBatch:
    """Lay `caches` (each [1, H, c_i, D] per layer) and `feeds` ([f_i] ids) out as one batch.

    `keeps` is accepted for the common signature; every row's logits are computed (rows share
    positions, so a per-row cut would not save the lm_head anything).
    """
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


def _append(own, batch_layer, row: int, start: int, end: int) -> None:
    append_in_place(own, batch_layer.keys[row : row + 1, :, start:end], batch_layer.values[row : row + 1, :, start:end])


SLACK = 32  # free tokens after a request's K/V: a reallocation (one copy) every ~SLACK tokens
# layer -> (keys buffer, values buffer) whose prefixes are the layer's K/V; weak, so a finished
# request's buffers go with its cache
_BUFFERS: "weakref.WeakKeyDictionary[DynamicLayer, tuple[torch.Tensor, torch.Tensor]]" = weakref.WeakKeyDictionary()


def append_in_place(own: DynamicLayer, keys: torch.Tensor, values: torch.Tensor) -> None:
    """own.keys / own.values += keys / values along the sequence, copying only the new tokens
    while the layer's tensors are still the prefix of the buffer made here (else a new buffer)."""
    if own.keys.dim() != keys.dim():  # a new request's layer holds `torch.tensor([])`
        own.keys, own.values = keys[..., :0, :], values[..., :0, :]
    length, new = own.keys.shape[-2], keys.shape[-2]
    buffers = _BUFFERS.get(own)
    if buffers is None or not all(_is_prefix(t, b, length + new) for t, b in zip((own.keys, own.values), buffers)):
        buffers = tuple(_with_room(t, length + new + SLACK) for t in (own.keys, own.values))
        _BUFFERS[own] = buffers
    buffers[0][..., length : length + new, :].copy_(keys)
    buffers[1][..., length : length + new, :].copy_(values)
    own.keys, own.values = buffers[0][..., : length + new, :], buffers[1][..., : length + new, :]


def _is_prefix(tensor: torch.Tensor, buffer: torch.Tensor, needed: int) -> bool:
    """Whether `tensor` is buffer[..., :L, :] (same storage start and strides) and the buffer
    holds `needed` tokens."""
    return (tensor.data_ptr() == buffer.data_ptr() and tensor.stride() == buffer.stride()
            and tensor.shape[:-2] == buffer.shape[:-2] and buffer.shape[-2] >= needed)


def _with_room(tensor: torch.Tensor, capacity: int) -> torch.Tensor:
    """A [..., capacity, D] buffer starting with a copy of `tensor` ([..., L, D])."""
    shape = (*tensor.shape[:-2], capacity, tensor.shape[-1])
    buffer = tensor.new_empty(shape)
    buffer[..., : tensor.shape[-2], :].copy_(tensor)
    return buffer


class FilledLayer(DynamicLayer):
    """A batch cache layer made with room for the forward's new K/V: `update` writes them into the
    room instead of concatenating (one copy of the batch's KV saved per round)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values, self.filled = keys, values, filled

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.filled + key_states.shape[-2]
        if end > self.keys.shape[-2]:
            raise ValueError(f"the batch cache has room for {self.keys.shape[-2]} tokens, {end} fed")
        self.keys[..., self.filled : end, :].copy_(key_states)
        self.values[..., self.filled : end, :].copy_(value_states)
        self.filled = end
        return self.keys[..., :end, :], self.values[..., :end, :]

    def get_seq_length(self) -> int:
        return self.filled


@dataclass
class PackedBatch:
    """The packed layout: every row in one sequence (batch dimension 1), no padding."""

    input_ids: torch.Tensor          # [1, sum f]
    position_ids: torch.Tensor       # [1, sum f]
    attention_mask: torch.Tensor | None  # [1, 1, sum f, sum c + sum f], additive; None for one row
    cache: DynamicCache              # 1 row of sum c tokens
    cached: list[int]
    fed: list[int]
    kept: list[int]                  # logits computed per row: its last kept[i] positions
    keep_index: torch.Tensor         # [sum kept] their positions in the packed sequence

    def forward_kwargs(self) -> dict:
        # the lm_head runs only where a row needs scores (a prefilling prompt needs m + 1 of them)
        return {"input_ids": self.input_ids, "position_ids": self.position_ids,
                "attention_mask": self.attention_mask, "logits_to_keep": self.keep_index}

    def _feed_start(self, row: int) -> int:
        return sum(self.fed[:row])

    def logits_rows(self, logits: torch.Tensor, row: int, keep: int) -> torch.Tensor:
        """The last `keep` logits of row `row`'s feed (logits: [1, sum kept, V])."""
        if keep > self.kept[row]:
            raise ValueError(f"row {row} kept {self.kept[row]} logits, {keep} asked")
        end = sum(self.kept[: row + 1])
        return logits[0, end - keep : end]

    def scatter(self, caches: list[DynamicCache]) -> None:
        """Append each row's f_i new K/V (its slice after the sum c cached ones) to its own cache
        (a new request's empty cache is initialised with them)."""
        base = sum(self.cached)
        starts = [base + self._feed_start(row) for row in range(len(caches))]
        for index, layer in enumerate(cache_layers(self.cache)):
            for cache, start, f in zip(caches, starts, self.fed):
                own = cache_layers(cache)[index]
                if not own.is_initialized:
                    own.lazy_initialization(layer.keys, layer.values)
                _append(own, layer, 0, start, start + f)


def gather_packed(model: PreTrainedModel, caches: list[DynamicCache], feeds: list[torch.Tensor],
                  pad_token_id: int | None = None, keeps: list[int] | None = None) -> PackedBatch:
    """Lay `caches` and `feeds` out as one sequence (`pad_token_id` is unused: nothing is padded).

    `keeps[i]`: how many of row i's last positions need logits (default: all of its feed).
    """
    cached = [cache_length(cache) for cache in caches]
    fed = [int(feed.shape[0]) for feed in feeds]
    kept = list(fed) if keeps is None else [min(k, f) for k, f in zip(keeps, fed)]
    ends = torch.tensor(fed).cumsum(0).tolist()
    keep_index = torch.cat([torch.arange(end - k, end) for end, k in zip(ends, kept)]).to(feeds[0].device)
    device = feeds[0].device
    total_cached, total_fed = sum(cached), sum(fed)
    positions = torch.cat([torch.arange(c, c + f, device=device) for c, f in zip(cached, fed)])
    dtype = model.dtype if model.dtype.is_floating_point else torch.float32
    allowed = torch.zeros((total_fed, total_cached + total_fed), dtype=torch.bool, device=device)
    cache_start = feed_start = 0
    # query j of row i sees cache_i and feed_i[: j + 1]; everything else gets dtype min
    for c, f in zip(cached, fed):
        rows = slice(feed_start, feed_start + f)
        allowed[rows, cache_start : cache_start + c] = True
        # causal inside the row's own feed
        block = torch.ones((f, f), dtype=torch.bool, device=device).tril()
        allowed[rows, total_cached + feed_start : total_cached + feed_start + f] = block
        cache_start += c
        feed_start += f
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    # rows with nothing cached (new requests: their prefill joins the batch) add no keys
    holding = [c for c, length in zip(caches, cached) if length > 0]
    if holding:
        # a bare DynamicCache given its layers (building one from the config costs ~ms per round)
        batch_cache = DynamicCache()
        batch_cache.layers = [_filled_layer([cache_layers(c)[index] for c in holding], total_fed)
                              for index in range(len(cache_layers(holding[0])))]
    else:  # every row is new: the forward initialises the batch cache itself
        batch_cache = new_cache(model)
    # one row is the batch-1 forward exactly: plain causal attention, no mask needed
    return PackedBatch(input_ids=torch.cat(feeds).unsqueeze(0), position_ids=positions.unsqueeze(0),
                       attention_mask=mask[None, None] if len(feeds) > 1 else None, cache=batch_cache,
                       cached=cached, fed=fed, kept=kept, keep_index=keep_index)


def _filled_layer(layers: list[DynamicLayer], room: int) -> FilledLayer:
    """The rows' K/V concatenated, then `room` empty tokens for the feed: one copy."""
    first = layers[0].keys
    blank = first.new_empty((*first.shape[:-2], room, first.shape[-1]))
    keys = torch.cat([layer.keys for layer in layers] + [blank], dim=-2)
    values = torch.cat([layer.values for layer in layers] + [blank], dim=-2)
    return FilledLayer(keys, values, keys.shape[-2] - room)


LAYOUTS = {"packed": gather_packed, "padded": gather_padded}
