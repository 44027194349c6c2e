"""One forward over ragged rows whose K/V stay in their own slots (`hf_laps.engine.batch_kv`).

Row i has c_i cached tokens (in its slot) and a feed of f_i tokens (the committed tokens its cache
has not seen, or a chunk of its prompt, then its drafts). The forward runs

    input:     [ feed_1 | feed_2 | ... | feed_B ]        one sequence, sum f_i tokens, no padding
    positions: c_i, c_i + 1, ... per row

so the linear layers (most of the work) see exactly sum f_i tokens. Attention is per row, like a
variable-length attention kernel: the batch cache's layer writes row i's f_i new K/V into its
slot after its c_i tokens, and the attention function (registered with transformers'
`AttentionInterface` as "hf_laps_rows", switched on for this forward only) runs transformers' own
`sdpa_attention_forward` for row i on its queries against its slot's view [0, c_i + f_i), with
the causal mask batch 1 would build (none for one query or for a row with nothing cached). So
attention costs sum f_i x (c_i + f_i), linear in B, no key of another row is ever read, and no
K/V of a row is copied: only the f_i new tokens are written, once.

Only full-attention `DynamicLayer` models (`batch_kv.supports_batching`); softcapping or eager-only
attention variants are not supported by this path.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from hf_laps.compat import cache_kwarg, cache_layers
from hf_laps.engine.batch_kv import length_of, reserve, write

ATTENTION = "hf_laps_rows"
_CURRENT: ContextVar["RaggedBatch | None"] = ContextVar("hf_laps_ragged_batch", default=None)


def rows_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask,
                   dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """Per-row sdpa over each row's own slot view; returns ([1, sum f, heads, D], None)."""
    batch = _CURRENT.get()
    if batch is None:
        raise RuntimeError(f"the {ATTENTION!r} attention runs only inside RaggedBatch.forward")
    index = module.layer_idx
    outputs = []
    for row, (layers, start, fed, mask) in enumerate(zip(batch.layers, batch.starts, batch.fed, batch.masks)):
        own = layers[index]
        out, _ = sdpa_attention_forward(module, query[:, :, start : start + fed], own.keys, own.values, mask,
                                        dropout=dropout, scaling=scaling)
        outputs.append(out)
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)), None


AttentionInterface.register(ATTENTION, rows_attention)


class SlotsLayer(DynamicLayer):
    """Layer `index` of a ragged forward's cache: writes each row's new K/V into its slot."""

    def __init__(self, batch: "RaggedBatch", index: int) -> None:
        super().__init__()
        self.batch, self.index = batch, index
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        batch = self.batch
        for layers, start, cached, fed, capacity in zip(batch.layers, batch.starts, batch.cached, batch.fed,
                                                        batch.capacities):
            own = layers[self.index]
            slot = reserve(own, cached + fed, capacity, key_states)
            write(own, slot, cached, key_states[:, :, start : start + fed], value_states[:, :, start : start + fed])
        # the attention function reads the rows' own views; these are returned only for the shape
        return key_states, value_states

    def get_seq_length(self) -> int:
        return max(self.batch.cached)


@dataclass
class RaggedBatch:
    """One forward's rows: their caches' layers, lengths, feeds and which logits to keep."""

    layers: list[list[DynamicLayer]]  # row -> that row's cache layers
    cached: list[int]                 # c_i
    fed: list[int]                    # f_i
    kept: list[int]                   # logits per row: its last kept[i] positions (0: none)
    capacities: list[int]             # the most tokens each row's cache will ever hold
    input_ids: torch.Tensor           # [1, sum f]
    position_ids: torch.Tensor        # [1, sum f]
    masks: list[torch.Tensor | None]  # per row [1, 1, f_i, c_i + f_i] bool, None where batch 1 has none

    @property
    def starts(self) -> list[int]:
        return self._starts

    def __post_init__(self) -> None:
        ends = torch.tensor(self.fed).cumsum(0).tolist()
        self._starts = [end - f for end, f in zip(ends, self.fed)]
        self._logit_ends = torch.tensor(self.kept).cumsum(0).tolist()

    @classmethod
    def of(cls, caches: list[DynamicCache], feeds: list[torch.Tensor], capacities: list[int],
           keeps: list[int] | None = None) -> "RaggedBatch":
        """Rows from per-request caches and feeds ([f_i] ids); keeps[i] <= f_i (default: all)."""
        layers = [cache_layers(cache) for cache in caches]
        cached = [length_of(row[0]) for row in layers]
        fed = [int(feed.shape[0]) for feed in feeds]
        kept = list(fed) if keeps is None else [min(k, f) for k, f in zip(keeps, fed)]
        device = feeds[0].device
        positions = torch.cat([torch.arange(c, c + f, device=device) for c, f in zip(cached, fed)])
        masks = [_causal(c, f, device) for c, f in zip(cached, fed)]
        return cls(layers=layers, cached=cached, fed=fed, kept=kept, capacities=list(capacities),
                   input_ids=torch.cat(feeds).unsqueeze(0), position_ids=positions.unsqueeze(0), masks=masks)

    def forward(self, model: PreTrainedModel):
        """Run `model` over the rows; returns its output (logits [1, sum kept, V])."""
        cache = DynamicCache()
        cache.layers = [SlotsLayer(self, index) for index in range(len(self.layers[0]))]
        keep_index = torch.cat([torch.arange(end - k, end) for end, k in
                                zip(torch.tensor(self.fed).cumsum(0).tolist(), self.kept)]).to(self.input_ids.device)
        with _rows_attention(model, self):
            return model(input_ids=self.input_ids, position_ids=self.position_ids,
                         **{cache_kwarg(model): cache}, use_cache=True, logits_to_keep=keep_index)

    def logits_rows(self, logits: torch.Tensor, row: int, keep: int) -> torch.Tensor:
        """The last `keep` logits of row `row`'s feed (logits: [1, sum kept, V])."""
        if keep > self.kept[row]:
            raise ValueError(f"row {row} kept {self.kept[row]} logits, {keep} asked")
        end = self._logit_ends[row]
        return logits[0, end - keep : end]


def _causal(cached: int, fed: int, device) -> torch.Tensor | None:
    """The mask batch 1's sdpa gets: none for one query or an empty cache (is_causal), else
    query j sees keys [0, cached + j]."""
    if fed == 1 or cached == 0:
        return None
    keys = torch.arange(cached + fed, device=device)
    queries = torch.arange(fed, device=device).unsqueeze(1) + cached
    return (keys.unsqueeze(0) <= queries)[None, None]


@contextmanager
def _rows_attention(model: PreTrainedModel, batch: RaggedBatch):
    """Switch `model`'s attention to the per-row function for one forward, then back."""
    config = model.config
    previous = config._attn_implementation
    token = _CURRENT.set(batch)
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = previous
        _CURRENT.reset(token)
