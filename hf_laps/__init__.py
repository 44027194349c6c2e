"""hf-laps: LAPS-SD scheduling of many prompts through speculative decoding.

The heavy parts (torch, transformers) load lazily so that `hf_laps.scheduling` stays a pure
Python core that imports in milliseconds.
"""
from __future__ import annotations

import importlib
from pathlib import Path

# setup.cfg installs the top-level `jobs/` and `cli/` folders as `hf_laps.jobs` and `hf_laps.cli`
# (package_dir). When this package is imported straight from a source checkout (pytest or
# `python -m` run from the repository root), add the checkout's root to the package path so
# those two subpackages import the same way as from an installed copy.
_CHECKOUT = Path(__file__).resolve().parent.parent
if (_CHECKOUT / "setup.cfg").is_file() and (_CHECKOUT / "jobs" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # type: ignore[name-defined]  # noqa: F821

__version__ = "0.1.0"

_LAZY = {
    "SpeculativeEngine": "hf_laps.engine",
    "EngineConfig": "hf_laps.engine_config",
    "GenerationState": "hf_laps.state",
    "RoundResult": "hf_laps.state",
    "LapsGenerator": "hf_laps.generator",
    "laps_generate": "hf_laps.custom_generate",
    "make_policy": "hf_laps.scheduling",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_laps' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
