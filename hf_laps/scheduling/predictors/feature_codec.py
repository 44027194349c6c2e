"""Compact, checkable storage of a request's length-prediction features in a JSON log line.

    blob = encode_features(values, model)   # {"model": str, "dim": int, "fp16": base64 str}
    values = decode_features(blob, expected_model=model)   # tuple of floats, or None

The values (`hf_laps.engine.features`: 2 x 32 projected hidden-state floats, each about N(0, 1)) are
stored as IEEE half floats (struct format 'e', little-endian): 2 bytes each, relative error
<= 2^-11 ~ 0.05 %, far below what a length regressor can use, and base64 keeps the line JSON.
64 features take 172 characters.

`model` is the feature recipe's fingerprint (model class, hidden size, layer, projection, a hash
of weights). A blob made by another model describes another space: decoding it with
`expected_model` set warns and returns None, as does a damaged blob. Decoding never raises, so a
stray log line can only cost a request its features, never stop a job.
"""
from __future__ import annotations

import base64
import binascii
import math
import struct
import warnings
from typing import Any, Sequence

_FORMAT = "<{}e"


def encode_features(values: Sequence[float], model: str) -> dict:
    """The JSON-able blob of `values` (fp16) made by the model with fingerprint `model`."""
    values = [float(v) for v in values]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("features must be finite numbers")
    packed = struct.pack(_FORMAT.format(len(values)), *values)
    return {"model": str(model), "dim": len(values), "fp16": base64.b64encode(packed).decode("ascii")}


def decode_features(blob: Any, expected_model: str | None = None) -> tuple[float, ...] | None:
    """The features in `blob`, or None (with one warning) when it is damaged or from another
    model than `expected_model` (None: accept any model). `blob` None gives None silently."""
    if blob is None:
        return None
    problem = _problem(blob, expected_model)
    if problem is not None:
        warnings.warn(f"length-prediction features ignored: {problem}", stacklevel=2)
        return None
    raw = base64.b64decode(blob["fp16"], validate=True)
    values = struct.unpack(_FORMAT.format(blob["dim"]), raw)
    if not all(math.isfinite(v) for v in values):
        warnings.warn("length-prediction features ignored: non-finite values", stacklevel=2)
        return None
    return values


def _problem(blob: Any, expected_model: str | None) -> str | None:
    """Why `blob` cannot be decoded, or None when it can."""
    if not isinstance(blob, dict):
        return f"expected a dict, got {type(blob).__name__}"
    model, dim, data = blob.get("model"), blob.get("dim"), blob.get("fp16")
    if not isinstance(model, str) or not isinstance(data, str):
        return "missing 'model' or 'fp16'"
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        return f"bad dim {dim!r}"
    if expected_model is not None and model != expected_model:
        return f"made by model {model!r}, expected {expected_model!r}"
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return "not base64"
    if len(raw) != 2 * dim:
        return f"{len(raw)} bytes for dim {dim} (expected {2 * dim})"
    return None
