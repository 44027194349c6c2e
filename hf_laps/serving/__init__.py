"""Serving: the one loop that drives every run (`loop.ServingLoop`), its executors and clocks, and
the Python API on top of it (`generator.LapsGenerator`)."""

# The engine's names the job layer needs (torch-free): jobs/ and cli/ talk to serving, never to the engine.
from hf_laps.engine.config import ContextWindowExceeded, EngineConfig  # noqa: E402,F401

__all__ = ["ContextWindowExceeded", "EngineConfig"]
