"""JSON value checks of the batch-job input: each returns the clean value or raises
`FieldInvalid(field, reason)` naming the dotted field path (`jobs.requests` turns it into a
LineError with the line number).
"""
from __future__ import annotations

import json
import math
from typing import Any

INVALID_REQUEST = "invalid_request"
MAX_STOP_SEQUENCES = 4  # as OpenAI
CHAT_ROLES = ("system", "developer", "user", "assistant")


class FieldInvalid(Exception):
    """Raised inside the validators; parse_line turns it into a LineError."""

    def __init__(self, field: str, reason: str, code: str = INVALID_REQUEST):
        super().__init__(reason)
        self.field, self.reason, self.code = field, reason, code


def text(value: Any, field: str, what: str = "value") -> str:
    if isinstance(value, list) and what == "prompt":
        raise FieldInvalid(field, f"must be a string; token-id and multi-prompt lists are not "
                              f"supported, got {show(value)}")
    if not isinstance(value, str) or not value:
        raise FieldInvalid(field, f"must be a non-empty string, got {show(value)}")
    no_surrogates(value, field)
    return value


def no_surrogates(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldInvalid(field, "contains an unpaired UTF-16 surrogate") from None


def messages(value: Any, field: str) -> tuple[dict, ...]:
    if not isinstance(value, list) or not value:
        raise FieldInvalid(field, f"must be a non-empty array of messages, got {show(value)}")
    out = []
    for i, msg in enumerate(value):
        at = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise FieldInvalid(at, f"must be an object with role and content, got {show(msg)}")
        role = msg.get("role")
        if role not in CHAT_ROLES:
            raise FieldInvalid(at + ".role", f"must be one of {', '.join(CHAT_ROLES)}, "
                                         f"got {show(role)}")
        out.append({"role": role, "content": content(msg.get("content"), at + ".content")})
    return tuple(out)


def content(value: Any, field: str) -> str:
    """A string, or an array of {"type": "text", "text": str} parts joined with "\\n" (as vLLM)."""
    if isinstance(value, str):
        no_surrogates(value, field)
        return value
    if not isinstance(value, list) or not value:
        raise FieldInvalid(field, f"must be a string or an array of text parts, got {show(value)}")
    texts = []
    for i, part in enumerate(value):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise FieldInvalid(f"{field}[{i}]", f"only {{\"type\": \"text\"}} parts are supported, "
                                            f"got {show(part)}")
        if not isinstance(part.get("text"), str):
            raise FieldInvalid(f"{field}[{i}].text", f"must be a string, got {show(part.get('text'))}")
        no_surrogates(part["text"], f"{field}[{i}].text")
        texts.append(part["text"])
    return "\n".join(texts)


def integer(src: dict, name: str, prefix: str, lo: int, hi: int | None = None) -> int | None:
    value = src.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise FieldInvalid(prefix + name, f"must be an integer >= {lo}, got {show(value)}")
    if hi is not None and value > hi:
        raise FieldInvalid(prefix + name, f"must be an integer <= {hi}, got {show(value)}")
    return value


def number(src: dict, name: str, prefix: str, lo: float, hi: float | None = None,
            lo_open: bool = False) -> float | None:
    value = src.get(name)
    if value is None:
        return None
    rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldInvalid(prefix + name, f"must be a number in {rng}, got {show(value)}")
    number = float(value) if abs(value) < 1e300 else math.inf  # float(10**400) overflows
    if (not math.isfinite(number) or number < lo or (lo_open and number == lo)
            or (hi is not None and number > hi)):
        raise FieldInvalid(prefix + name, f"must be a finite number in {rng}, got {show(value)}")
    return number


def stop(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_STOP_SEQUENCES:
        raise FieldInvalid(field, f"must be a string or an array of at most {MAX_STOP_SEQUENCES} "
                              f"strings, got {show(value)}")
    for i, item in enumerate(items):
        at = field if isinstance(value, str) else f"{field}[{i}]"
        text(item, at)
    return tuple(items)


def model(value: Any, field: str) -> str | None:
    if value is None:
        return None
    return text(value, field)


def show(value: Any, limit: int = 60) -> str:
    """A short JSON-like rendering of a value for error messages (never dumps a huge value)."""
    if isinstance(value, (dict, list)):
        kind, unit = ("an object", "key") if isinstance(value, dict) else ("an array", "item")
        return f"{kind} with {len(value)} {unit}{'' if len(value) == 1 else 's'}"
    if isinstance(value, str) and len(value) > limit:
        value = value[:limit] + "..."
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 100:
        return f"a {value.bit_length()}-bit integer"
    text = json.dumps(value, ensure_ascii=True)  # NaN / Infinity render as such
    return text if len(text) <= limit + 12 else text[: limit + 12] + "..."
