"""Checks that a run can start at all, done before any model loads or any output file is opened.

A run that cannot start must fail in a second with one line, not after a 30 s model load with a
traceback, and must leave the outputs of an earlier run as they were. Two things are checked
cheaply up front:

- the device: `torch.device` parses the string and the backend is present
  (`torch.cuda.is_available()`, the GPU index exists, `torch.backends.mps.is_available()`, ...);
- the model location: a model named like a path must exist. A name is path-like when it starts
  with `/`, `.` or `~`, ends in `.gguf`, contains a backslash, or has a `/` but is not shaped
  like a hub id (`namespace/name`, one slash, letters, digits, `-`, `_`, `.`). A hub id must be
  in the local cache when HF_HUB_OFFLINE is set or the hub cannot be reached (one connection
  attempt, `hf_laps.models.hub_check`); whether it can be downloaded is the loader's call.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from hf_laps.models.hub_check import HubUnavailable, check_hub_id
from hf_laps.models.loading import EMBEDDED_NAME, ModelLoadError, embedded_source

# huggingface_hub's repo-id rule, loosely: one optional namespace, then the name
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


class PreflightError(ValueError):
    """The run cannot start; the message is one line that says why."""


def check_device(device: str) -> None:
    """Raise PreflightError unless `device` names a device torch can use here.

    Examples of what fails: "gpu" (not a torch device type), "cuda" on a machine without CUDA,
    "cuda:3" with two GPUs, "mps" off Apple silicon, "meta" (holds no data).
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise PreflightError(f"device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "meta":
        raise PreflightError("device 'meta' holds no weights; use cpu, cuda, cuda:N or mps")
    if parsed.type == "cuda":
        _check_cuda(device, parsed.index)
        return
    if parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise PreflightError(f"device {device!r}: MPS is not available on this machine")
        return
    backend = getattr(torch, parsed.type, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise PreflightError(f"device {device!r}: the {parsed.type} backend is not available in this torch build")


def _check_cuda(device: str, index: int | None) -> None:
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise PreflightError(f"device {device!r}: CUDA is not available ({why}); use --device cpu")
    count = torch.cuda.device_count()
    if index is not None and index >= count:
        raise PreflightError(f"device {device!r}: only {count} CUDA device(s) visible (cuda:0 .. cuda:{count - 1})")


def looks_like_path(name: str) -> bool:
    """True when `name` can only mean a local file or folder (never a hub id)."""
    if name.startswith(("/", ".", "~")) or name.endswith(".gguf") or "\\" in name:
        return True
    return "/" in name and not _HUB_ID.match(name)


def check_model_location(name: str | None) -> None:
    """Raise PreflightError when the model cannot be where `name` says.

    None, "" and "embedded" mean the embedded default, which must be installed; a path-like
    name must exist (a `.gguf` name must be a file); an existing local path is always fine; a hub
    id passes (the loader reports download or cache problems).
    """
    if name in (None, "", EMBEDDED_NAME):
        try:
            embedded_source()
        except ModelLoadError as exc:
            raise PreflightError(str(exc)) from None
        return
    path = Path(name).expanduser()
    if path.exists():
        if name.endswith(".gguf") and not path.is_file():
            raise PreflightError(f"model {name!r} is not a file (a .gguf model is one file)")
        return
    if looks_like_path(name):
        raise PreflightError(f"model path {name!r} does not exist")
    if not _HUB_ID.match(name):
        return  # not a hub id either: the loader says it could not load it
    try:
        check_hub_id(name)  # offline or unreachable: in the cache, or fail now (no retry storm)
    except HubUnavailable as exc:
        raise PreflightError(str(exc)) from None
