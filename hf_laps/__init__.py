"""hf-laps: LAPS-SD scheduling of many prompts through speculative decoding.

The heavy parts (torch, transformers) load lazily so that `hf_laps.scheduling` stays a pure
Python core that imports in milliseconds.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "SpeculativeEngine": "hf_laps.engine.speculative",
    "EngineConfig": "hf_laps.engine.config",
    "GenerationState": "hf_laps.engine.state",
    "RoundResult": "hf_laps.engine.state",
    "LapsGenerator": "hf_laps.serving.generator",
    "laps_generate": "hf_laps.serving.custom_generate",
    "make_policy": "hf_laps.scheduling",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_laps' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
