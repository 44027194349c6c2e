"""Read and validate the JSONL input of `hf-laps run`: one request per line, bad lines reported.

Two line shapes are accepted (see docs/guarantees.md for the full field list):

    {"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Hi", ...}}
    {"custom_id": "a", "prompt": "Hi", "max_tokens": 32}              # short form
    {"custom_id": "b", "messages": [{"role": "user", "content": "Hi"}]}  # short form, chat

`read_requests(path)` never raises on file content: every line becomes a `JobRequest` or a
`LineError` naming the line number, the field (a dotted path such as "body.max_tokens") and the
reason. Unknown fields are ignored and listed in `JobRequest.ignored`.
"""
from __future__ import annotations

import json
import math
import os
import unicodedata
from dataclasses import dataclass
from typing import Any

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"

MAX_CUSTOM_ID_CHARS = 512
MAX_STOP_SEQUENCES = 4  # as OpenAI
MAX_TOKENS_LIMIT = 2**31 - 1  # fits an int32 tensor; the runner clamps to the context window
MAX_SEED = 2**63 - 1  # OpenAI's seed is an int64; torch.manual_seed accepts it
CHAT_ROLES = ("system", "developer", "user", "assistant")

# Fields read from the request body (batch shape) or the top level (short form).
OPTION_FIELDS = frozenset({
    "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "top_k", "seed", "stop", "n",
})
BATCH_FIELDS = frozenset({"custom_id", "method", "url", "body", "arrival_time"})
SHORT_FIELDS = OPTION_FIELDS | {"custom_id", "arrival_time"}

# Error codes (LineError.code).
INVALID_JSON = "invalid_json"  # not UTF-8, not JSON, not an object, nested too deep
INVALID_REQUEST = "invalid_request"
DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
INTERNAL_ERROR = "internal_error"  # a validator bug; the fuzz tests assert it never happens


@dataclass(frozen=True)
class JobRequest:
    """One valid input line, normalised; `None` means "not given, use the runner's default"."""

    custom_id: str
    line_no: int  # 1-based line in the input file
    endpoint: str  # COMPLETIONS or CHAT
    prompt: str | None  # completions only
    messages: tuple[dict, ...] | None  # chat only: each {"role": str, "content": str}
    max_tokens: int | None  # max_tokens or max_completion_tokens
    temperature: float | None  # 0 -> greedy
    top_p: float | None
    top_k: int | None  # 0 and -1 (vLLM's "disabled") are stored as None
    seed: int | None
    stop: tuple[str, ...]
    arrival_time: float | None  # seconds after job start
    model: str | None
    ignored: tuple[str, ...] = ()  # dotted names of unknown fields that were ignored

    def generation_kwargs(
        self, default_max_new_tokens: int, default_temperature: float = 0.0
    ) -> dict[str, Any]:
        """Keyword arguments for transformers `generate` (plus `seed`, for the runner to pop).

        Args:
            default_max_new_tokens: used when the line gives no max_tokens.
            default_temperature: used when the line gives no temperature; 0 is greedy.

        Returns:
            `max_new_tokens` and `do_sample` always; `temperature`, and `top_p` / `top_k` when
            given, only when sampling (temperature > 0) so that greedy runs raise no transformers
            warnings; `seed` only when given; `stop_strings` (a list) only when stop is non-empty.
            Sampling knobs the line does not give are left to the model's GenerationConfig.
        """
        max_new = self.max_tokens if self.max_tokens is not None else default_max_new_tokens
        temperature = self.temperature if self.temperature is not None else default_temperature
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": temperature > 0}
        if temperature > 0:
            kwargs["temperature"] = temperature
            if self.top_p is not None:
                kwargs["top_p"] = self.top_p
            if self.top_k is not None:
                kwargs["top_k"] = self.top_k
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if self.stop:
            kwargs["stop_strings"] = list(self.stop)
        return kwargs


@dataclass(frozen=True)
class LineError:
    """One rejected input line. `custom_id` is set only when the line had a valid, unique one."""

    line_no: int
    custom_id: str | None
    field: str  # dotted path, e.g. "body.max_tokens", "custom_id", "json"
    reason: str
    code: str = INVALID_REQUEST

    def message(self) -> str:
        """E.g. "line 7, field 'body.max_tokens': must be an integer >= 0, got -3"."""
        return f"line {self.line_no}, field '{self.field}': {self.reason}"


class _Invalid(Exception):
    """Raised inside the validators; parse_line turns it into a LineError."""

    def __init__(self, field: str, reason: str, code: str = INVALID_REQUEST):
        super().__init__(reason)
        self.field, self.reason, self.code = field, reason, code


def parse_line(line_no: int, raw: bytes | str) -> JobRequest | LineError:
    """Validate one input line (without its newline). Never raises.

    Args:
        line_no: 1-based line number, reported in errors.
        raw: the line as bytes (decoded as strict UTF-8) or str.

    Returns:
        A JobRequest, or a LineError for the first problem found.
    """
    custom_id = None
    try:
        obj = _decode(raw)
        custom_id = _custom_id(obj)
        return _build(line_no, custom_id, obj)
    except _Invalid as e:
        return LineError(line_no, custom_id, e.field, e.reason, e.code)
    except Exception as e:  # a validator bug must not take the batch down
        return LineError(line_no, custom_id, "json", f"internal error: {e!r}"[:200], INTERNAL_ERROR)


def read_requests(path: str | os.PathLike) -> tuple[list[JobRequest], list[LineError]]:
    """Read a JSONL file of requests. Raises only OSError (e.g. the file does not exist).

    Lines are split on b"\\n" only; a trailing "\\r" and a UTF-8 BOM on line 1 are dropped;
    blank lines are skipped but counted. The first line with a given custom_id owns it; later
    lines with the same id become LineErrors (field "custom_id", code "duplicate_custom_id",
    `custom_id=None` so that the id stays attached to one record only).

    Returns:
        (requests, errors), each in input order.
    """
    requests: list[JobRequest] = []
    errors: list[LineError] = []
    owner: dict[str, int] = {}  # custom_id -> line that claimed it first (valid or not)
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            parsed = parse_line(line_no, raw)
            cid = parsed.custom_id
            if cid is not None and cid in owner:
                parsed = LineError(line_no, None, "custom_id",
                                   f"duplicate custom_id {_show(cid)}, first used on line "
                                   f"{owner[cid]}", DUPLICATE_CUSTOM_ID)
            elif cid is not None:
                owner[cid] = line_no
            (errors if isinstance(parsed, LineError) else requests).append(parsed)
    return requests, errors


# ---------------------------------------------------------------------------------------------
# validators: each raises _Invalid(field, reason)


def _decode(raw: bytes | str) -> dict:
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _Invalid("json", f"not valid UTF-8 (byte {e.start})", INVALID_JSON) from None
    try:
        obj = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise _Invalid("json", "JSON nested too deeply", INVALID_JSON) from None
    except ValueError as e:  # JSONDecodeError, duplicate keys, int over the digit limit
        raise _Invalid("json", f"not valid JSON: {str(e)[:120]}", INVALID_JSON) from None
    if not isinstance(obj, dict):
        raise _Invalid("json", f"must be a JSON object, got {_show(obj)}", INVALID_JSON)
    return obj


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {_show(dup)}")
    return obj


def _custom_id(obj: dict) -> str:
    if "custom_id" not in obj:
        raise _Invalid("custom_id", "missing")
    cid = obj["custom_id"]
    if not isinstance(cid, str) or not cid:
        raise _Invalid("custom_id", f"must be a non-empty string, got {_show(cid)}")
    if len(cid) > MAX_CUSTOM_ID_CHARS:
        raise _Invalid("custom_id", f"must be at most {MAX_CUSTOM_ID_CHARS} characters, "
                                    f"got {len(cid)}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in cid):
        raise _Invalid("custom_id", f"must not contain control characters or unpaired "
                                    f"surrogates, got {_show(cid)}")
    if cid.startswith("line:") and cid[5:].isdigit():
        raise _Invalid("custom_id", f"{_show(cid)} is reserved for error records of lines "
                                    f"without a custom_id")
    return cid


def _build(line_no: int, custom_id: str, obj: dict) -> JobRequest:
    batch = any(k in obj for k in ("url", "method", "body"))
    if batch:
        endpoint, src, prefix = _batch_envelope(obj), obj.get("body"), "body."
        ignored = [k for k in obj if k not in BATCH_FIELDS]
        ignored += [prefix + k for k in src if k not in OPTION_FIELDS]
    else:
        endpoint, src, prefix = None, obj, ""
        ignored = [k for k in obj if k not in SHORT_FIELDS]
    prompt, messages = _prompt_or_messages(src, prefix, endpoint)
    opts = _options(src, prefix)
    return JobRequest(
        custom_id=custom_id, line_no=line_no,
        endpoint=CHAT if messages is not None else COMPLETIONS,
        prompt=prompt, messages=messages, **opts,
        arrival_time=_number(obj, "arrival_time", "", lo=0.0),
        ignored=tuple(ignored),
    )


def _batch_envelope(obj: dict) -> str:
    method = obj.get("method", "POST")
    if method != "POST":
        raise _Invalid("method", f"must be \"POST\", got {_show(method)}")
    if "url" not in obj:
        raise _Invalid("url", f"missing; must be \"{COMPLETIONS}\" or \"{CHAT}\"")
    url = obj["url"]
    if url not in (COMPLETIONS, CHAT):
        raise _Invalid("url", f"must be \"{COMPLETIONS}\" or \"{CHAT}\", got {_show(url)}")
    if not isinstance(obj.get("body"), dict):
        raise _Invalid("body", f"must be an object, got {_show(obj.get('body'))}")
    return url


def _prompt_or_messages(src: dict, prefix: str, endpoint: str | None):
    has_prompt = src.get("prompt") is not None
    has_messages = src.get("messages") is not None
    if has_prompt and has_messages:
        raise _Invalid(prefix + "messages", "give either prompt or messages, not both")
    if endpoint == COMPLETIONS and has_messages:
        raise _Invalid(prefix + "messages", f"not accepted by {COMPLETIONS}; use {CHAT}")
    if endpoint == CHAT and has_prompt:
        raise _Invalid(prefix + "prompt", f"not accepted by {CHAT}; use messages")
    if has_messages:
        return None, _messages(src["messages"], prefix + "messages")
    if has_prompt:
        return _text(src["prompt"], prefix + "prompt", what="prompt"), None
    want = "messages" if endpoint == CHAT else "prompt" if endpoint else "prompt or messages"
    raise _Invalid(prefix + ("messages" if endpoint == CHAT else "prompt"), f"missing {want}")


def _text(value: Any, field: str, what: str = "value") -> str:
    if isinstance(value, list) and what == "prompt":
        raise _Invalid(field, f"must be a string; token-id and multi-prompt lists are not "
                              f"supported, got {_show(value)}")
    if not isinstance(value, str) or not value:
        raise _Invalid(field, f"must be a non-empty string, got {_show(value)}")
    _no_surrogates(value, field)
    return value


def _no_surrogates(value: str, field: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(field, "contains an unpaired UTF-16 surrogate") from None


def _messages(value: Any, field: str) -> tuple[dict, ...]:
    if not isinstance(value, list) or not value:
        raise _Invalid(field, f"must be a non-empty array of messages, got {_show(value)}")
    out = []
    for i, msg in enumerate(value):
        at = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise _Invalid(at, f"must be an object with role and content, got {_show(msg)}")
        role = msg.get("role")
        if role not in CHAT_ROLES:
            raise _Invalid(at + ".role", f"must be one of {', '.join(CHAT_ROLES)}, "
                                         f"got {_show(role)}")
        out.append({"role": role, "content": _content(msg.get("content"), at + ".content")})
    return tuple(out)


def _content(value: Any, field: str) -> str:
    """A string, or an array of {"type": "text", "text": str} parts joined with "\\n" (as vLLM)."""
    if isinstance(value, str):
        _no_surrogates(value, field)
        return value
    if not isinstance(value, list) or not value:
        raise _Invalid(field, f"must be a string or an array of text parts, got {_show(value)}")
    texts = []
    for i, part in enumerate(value):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise _Invalid(f"{field}[{i}]", f"only {{\"type\": \"text\"}} parts are supported, "
                                            f"got {_show(part)}")
        if not isinstance(part.get("text"), str):
            raise _Invalid(f"{field}[{i}].text", f"must be a string, got {_show(part.get('text'))}")
        _no_surrogates(part["text"], f"{field}[{i}].text")
        texts.append(part["text"])
    return "\n".join(texts)


def _options(src: dict, prefix: str) -> dict[str, Any]:
    """Sampling options shared by both shapes and endpoints; JSON null means "not given"."""
    max_tokens = _int(src, "max_tokens", prefix, lo=0, hi=MAX_TOKENS_LIMIT)
    max_completion = _int(src, "max_completion_tokens", prefix, lo=0, hi=MAX_TOKENS_LIMIT)
    if None not in (max_tokens, max_completion) and max_tokens != max_completion:
        raise _Invalid(prefix + "max_completion_tokens",
                       f"conflicts with max_tokens ({max_completion} != {max_tokens})")
    n = _int(src, "n", prefix, lo=1)
    if n is not None and n != 1:
        raise _Invalid(prefix + "n", f"only n=1 is supported, got {n}")
    top_k = _int(src, "top_k", prefix, lo=-1)
    return {
        "max_tokens": max_tokens if max_tokens is not None else max_completion,
        "temperature": _number(src, "temperature", prefix, lo=0.0, hi=2.0),
        "top_p": _number(src, "top_p", prefix, lo=0.0, hi=1.0, lo_open=True),
        "top_k": top_k if top_k and top_k > 0 else None,
        "seed": _int(src, "seed", prefix, lo=0, hi=MAX_SEED),
        "stop": _stop(src.get("stop"), prefix + "stop"),
        "model": _model(src.get("model"), prefix + "model"),
    }


def _int(src: dict, name: str, prefix: str, lo: int, hi: int | None = None) -> int | None:
    value = src.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise _Invalid(prefix + name, f"must be an integer >= {lo}, got {_show(value)}")
    if hi is not None and value > hi:
        raise _Invalid(prefix + name, f"must be an integer <= {hi}, got {_show(value)}")
    return value


def _number(src: dict, name: str, prefix: str, lo: float, hi: float | None = None,
            lo_open: bool = False) -> float | None:
    value = src.get(name)
    if value is None:
        return None
    rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(prefix + name, f"must be a number in {rng}, got {_show(value)}")
    number = float(value) if abs(value) < 1e300 else math.inf  # float(10**400) overflows
    if (not math.isfinite(number) or number < lo or (lo_open and number == lo)
            or (hi is not None and number > hi)):
        raise _Invalid(prefix + name, f"must be a finite number in {rng}, got {_show(value)}")
    return number


def _stop(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_STOP_SEQUENCES:
        raise _Invalid(field, f"must be a string or an array of at most {MAX_STOP_SEQUENCES} "
                              f"strings, got {_show(value)}")
    for i, item in enumerate(items):
        at = field if isinstance(value, str) else f"{field}[{i}]"
        _text(item, at)
    return tuple(items)


def _model(value: Any, field: str) -> str | None:
    if value is None:
        return None
    return _text(value, field)


def _show(value: Any, limit: int = 60) -> str:
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
