"""Model-free, resumable state of one speculative-decoding request, and one round's result.

A `GenerationState` holds everything needed to continue a request later, on any engine that owns
the same models: token ids, both KV caches, the resolved generation config with its logits
processors and stopping criteria, a per-request RNG, the draft-length schedule and the counters.
It references no model, so a scheduler can park it (on CPU, or in a file) and resume it.

File format (`save` / `SpeculativeEngine.load_state`): one safetensors file. Tensors: the token
ids, every tensor of every cache layer and the RNG state; metadata: one JSON document. Loading it
never unpickles anything, so a state file from elsewhere cannot run code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import DynamicCache, GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from hf_laps.compat import cache_layers, cache_length, iter_layer_tensors
from hf_laps.metrics import SpecMetrics

FORMAT_VERSION = 1


@dataclass(frozen=True)
class RoundResult:
    """What one call of `SpeculativeEngine.step` did.

    `accepted` counts draft tokens the target agreed with; the round emits `accepted + 1`
    tokens (the target's own token after the accepted prefix), fewer only when the request
    finished inside the block (EOS, stop string, budget). `prefill` marks the first round, whose
    verify part also ran the prompt through the target.
    """

    request_id: str
    drafted: int
    accepted: int
    new_token_ids: tuple[int, ...]
    finished: bool
    finish_reason: str | None
    draft_seconds: float
    verify_seconds: float
    prefill: bool
    kv_len: int
    features: tuple[float, ...] | None = None  # prefill round only: see hf_laps.engine.features

    @property
    def emitted(self) -> int:
        return len(self.new_token_ids)

    @property
    def seconds(self) -> float:
        return self.draft_seconds + self.verify_seconds


@dataclass
class GenerationState:
    request_id: str
    input_ids: torch.Tensor  # [1, L]: prompt + every committed token
    prompt_len: int
    max_length: int  # prompt_len + max_new_tokens, never past the context window
    generation_kwargs: dict[str, Any]  # JSON-able kwargs; rebuild the processors on load
    generation_config: GenerationConfig
    logits_processor: LogitsProcessorList
    stopping_criteria: StoppingCriteriaList
    generator: torch.Generator
    draft_length: int  # current draft length n (the heuristic schedule moves it per request)
    target_cache: DynamicCache | None = None
    draft_cache: DynamicCache | None = None
    metrics: SpecMetrics = field(default_factory=SpecMetrics)
    finished: bool = False
    finish_reason: str | None = None
    text: str | None = None  # decoded output, set by the engine when the request finishes
    features: list[float] | None = None  # length-prediction features of the prefill (features.py)
    features_model: str | None = None  # PrefillFeatures.fingerprint of the model that made them
    # runtime-only helpers rebuilt from the config (never saved)
    runtime: dict[str, Any] = field(default_factory=dict, repr=False)

    # ---- read-only views -------------------------------------------------------------------
    @property
    def output_ids(self) -> list[int]:
        return self.input_ids[0, self.prompt_len :].tolist()

    @property
    def num_generated(self) -> int:
        return int(self.input_ids.shape[1]) - self.prompt_len

    @property
    def started(self) -> bool:
        return self.target_cache is not None

    @property
    def device(self) -> torch.device:
        return self.input_ids.device

    @property
    def kv_len(self) -> int:
        return cache_length(self.target_cache)

    @property
    def kv_bytes(self) -> int:
        """Bytes held by both KV caches (what parking this request on the CPU moves)."""
        return sum(t.numel() * t.element_size() for _, _, _, t in self._cache_tensors())

    # ---- moving --------------------------------------------------------------------------
    def to(self, device: str | torch.device, copy: bool = False) -> "GenerationState":
        """Move every tensor this state holds to `device` (in place; returns self).

        CUDA -> CPU uses pinned host buffers and non-blocking copies, then one stream
        synchronisation so the host never reads a buffer still in flight. `copy=True` forces
        fresh storage even when the device is unchanged (tests poison the old storage with it).
        """
        device = torch.device(device)
        to_host = device.type == "cpu" and self.device.type == "cuda"

        def move(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.device == device and not copy:
                return tensor
            if to_host:
                host = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=True)
                host.copy_(tensor, non_blocking=True)
                return host
            return tensor.to(device, non_blocking=True, copy=copy)

        self.input_ids = move(self.input_ids)
        for _, layer, name, tensor in self._cache_tensors():
            setattr(layer, name, move(tensor))
        if to_host or device.type == "cuda":
            torch.cuda.synchronize()
        return self

    def _cache_tensors(self):
        for which, cache in (("target", self.target_cache), ("draft", self.draft_cache)):
            if cache is None:
                continue
            for index, layer in enumerate(cache_layers(cache)):
                for name, tensor in iter_layer_tensors(layer):
                    yield f"{which}.{index}", layer, name, tensor

    # ---- files ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the state to a safetensors file (no pickle; see the module docstring)."""
        from safetensors.torch import save_file

        tensors = {"input_ids": self.input_ids.detach().cpu().contiguous()}
        tensors["rng_state"] = self.generator.get_state().cpu()
        for key, _, name, tensor in self._cache_tensors():
            tensors[f"{key}.{name}"] = tensor.detach().cpu().contiguous()
        meta = {
            "format_version": FORMAT_VERSION,
            "request_id": self.request_id,
            "prompt_len": self.prompt_len,
            "max_length": self.max_length,
            "generation_kwargs": self.generation_kwargs,
            "draft_length": self.draft_length,
            "metrics": self.metrics.to_dict(),
            "finished": self.finished,
            "finish_reason": self.finish_reason,
            "text": self.text,
            "features": self.features,
            "features_model": self.features_model,
            "caches": {
                which: _layer_scalars(cache)
                for which, cache in (("target", self.target_cache), ("draft", self.draft_cache))
                if cache is not None
            },
        }
        save_file(tensors, str(path), metadata={"hf_laps_state": json.dumps(meta)})


def _layer_scalars(cache: DynamicCache) -> list[dict]:
    """Plain (JSON-able) attributes of each cache layer, e.g. `is_initialized`."""
    scalars = []
    for layer in cache_layers(cache):
        scalars.append(
            {k: v for k, v in vars(layer).items() if isinstance(v, (bool, int, float, str, type(None)))}
        )
    return scalars


def read_state_file(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of a state file; raises ValueError on anything that is not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get("hf_laps_state")
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a hf-laps state file ({exc})") from exc
    if raw is None:
        raise ValueError(f"{path}: not a hf-laps state file (no hf_laps_state metadata)")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported state format {meta.get('format_version')}")
    return meta, tensors


def restore_cache(cache: DynamicCache, prefix: str, scalars: list[dict], tensors: dict, device) -> None:
    """Fill an empty cache built for the right model with the saved per-layer attributes."""
    layers = cache_layers(cache)
    if len(layers) != len(scalars):
        raise ValueError(f"state has {len(scalars)} {prefix} cache layers, model has {len(layers)}")
    for index, (layer, plain) in enumerate(zip(layers, scalars)):
        for name, value in plain.items():
            setattr(layer, name, value)
        head = f"{prefix}.{index}."
        for key, tensor in tensors.items():
            if key.startswith(head):
                setattr(layer, key[len(head) :], tensor.to(device))
        if hasattr(layer, "device") and getattr(layer, "is_initialized", False):
            layer.device = torch.device(device)


def jsonable_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs that survive a JSON round trip (objects are passed again on load)."""
    kept = {}
    for key, value in kwargs.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        kept[key] = value
    return kept
