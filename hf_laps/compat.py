"""The few places where transformers 5.17 and the newest 5.x differ for us.

transformers renamed the cache keyword from `past_key_values` to `cache` after 5.17
(docs/design.md#cache-keyword). Everything else we touch is stable across 5.17-5.24:
`DynamicCache`, `Cache.crop(negative)`, `generate(custom_generate=callable)`.
"""
from __future__ import annotations

import inspect
from typing import Iterator

import torch
from transformers import DynamicCache, PreTrainedModel


def cache_kwarg(model: PreTrainedModel) -> str:
    """Name of the keyword that passes the KV cache into `model.forward`."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def new_cache(model: PreTrainedModel) -> DynamicCache:
    """An empty per-request DynamicCache laid out for `model` (sliding layers included)."""
    return DynamicCache(config=model.config)


def cache_length(cache: DynamicCache | None) -> int:
    return 0 if cache is None else int(cache.get_seq_length())


def crop_to(cache: DynamicCache, length: int) -> None:
    """Roll `cache` back so it holds exactly `length` tokens.

    Always crops with a NEGATIVE count: 5.24 raises on a positive one and 5.17 treats it as the
    deprecated absolute form. `crop(0)` is still called on purpose so sliding-window layers shrink.
    """
    current = cache_length(cache)
    if length > current:
        raise ValueError(f"cannot crop a cache of {current} tokens up to {length}")
    cache.crop(-(current - length))


def cache_layers(cache: DynamicCache) -> list:
    return list(getattr(cache, "layers", []))


def iter_layer_tensors(layer) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor attribute of a cache layer (keys, values, sliding/conv states...).

    A generic walk of `vars(layer)` so new layer types keep working without code here.
    """
    for name, value in vars(layer).items():
        if isinstance(value, torch.Tensor):
            yield name, value
