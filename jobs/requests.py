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
import os
import unicodedata
from dataclasses import dataclass
from typing import Any

from hf_laps.jobs import fields
from hf_laps.jobs.fields import INVALID_REQUEST, FieldInvalid

COMPLETIONS = "/v1/completions"
CHAT = "/v1/chat/completions"

MAX_CUSTOM_ID_CHARS = 512
MAX_TOKENS_LIMIT = 2**31 - 1  # fits an int32 tensor; past the context window is a 400 at run time
MAX_SEED = 2**63 - 1  # OpenAI's seed is an int64; torch.manual_seed accepts it

# Fields read from the request body (batch shape) or the top level (short form).
OPTION_FIELDS = frozenset({
    "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "top_k", "seed", "stop", "n",
})
BATCH_FIELDS = frozenset({"custom_id", "method", "url", "body", "arrival_time"})
SHORT_FIELDS = OPTION_FIELDS | {"custom_id", "arrival_time"}

# Error codes (LineError.code).
INVALID_JSON = "invalid_json"  # not UTF-8, not JSON, not an object, nested too deep
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
    except FieldInvalid as e:
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
                                   f"duplicate custom_id {fields.show(cid)}, first used on line "
                                   f"{owner[cid]}", DUPLICATE_CUSTOM_ID)
            elif cid is not None:
                owner[cid] = line_no
            (errors if isinstance(parsed, LineError) else requests).append(parsed)
    return requests, errors


# ---------------------------------------------------------------------------------------------
# validators: each raises FieldInvalid(field, reason)


def _decode(raw: bytes | str) -> dict:
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FieldInvalid("json", f"not valid UTF-8 (byte {e.start})", INVALID_JSON) from None
    try:
        obj = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise FieldInvalid("json", "JSON nested too deeply", INVALID_JSON) from None
    except ValueError as e:  # JSONDecodeError, duplicate keys, int over the digit limit
        raise FieldInvalid("json", f"not valid JSON: {str(e)[:120]}", INVALID_JSON) from None
    if not isinstance(obj, dict):
        raise FieldInvalid("json", f"must be a JSON object, got {fields.show(obj)}", INVALID_JSON)
    return obj


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"duplicate key {fields.show(dup)}")
    return obj


def _custom_id(obj: dict) -> str:
    if "custom_id" not in obj:
        raise FieldInvalid("custom_id", "missing")
    cid = obj["custom_id"]
    if not isinstance(cid, str) or not cid:
        raise FieldInvalid("custom_id", f"must be a non-empty string, got {fields.show(cid)}")
    if len(cid) > MAX_CUSTOM_ID_CHARS:
        raise FieldInvalid("custom_id", f"must be at most {MAX_CUSTOM_ID_CHARS} characters, "
                                    f"got {len(cid)}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in cid):
        raise FieldInvalid("custom_id", f"must not contain control characters or unpaired "
                                    f"surrogates, got {fields.show(cid)}")
    if cid.startswith("line:") and cid[5:].isdigit():
        raise FieldInvalid("custom_id", f"{fields.show(cid)} is reserved for error records of lines "
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
        arrival_time=fields.number(obj, "arrival_time", "", lo=0.0),
        ignored=tuple(ignored),
    )


def _batch_envelope(obj: dict) -> str:
    method = obj.get("method", "POST")
    if method != "POST":
        raise FieldInvalid("method", f"must be \"POST\", got {fields.show(method)}")
    if "url" not in obj:
        raise FieldInvalid("url", f"missing; must be \"{COMPLETIONS}\" or \"{CHAT}\"")
    url = obj["url"]
    if url not in (COMPLETIONS, CHAT):
        raise FieldInvalid("url", f"must be \"{COMPLETIONS}\" or \"{CHAT}\", got {fields.show(url)}")
    if not isinstance(obj.get("body"), dict):
        raise FieldInvalid("body", f"must be an object, got {fields.show(obj.get('body'))}")
    return url


def _prompt_or_messages(src: dict, prefix: str, endpoint: str | None):
    has_prompt = src.get("prompt") is not None
    has_messages = src.get("messages") is not None
    if has_prompt and has_messages:
        raise FieldInvalid(prefix + "messages", "give either prompt or messages, not both")
    if endpoint == COMPLETIONS and has_messages:
        raise FieldInvalid(prefix + "messages", f"not accepted by {COMPLETIONS}; use {CHAT}")
    if endpoint == CHAT and has_prompt:
        raise FieldInvalid(prefix + "prompt", f"not accepted by {CHAT}; use messages")
    if has_messages:
        return None, fields.messages(src["messages"], prefix + "messages")
    if has_prompt:
        return fields.text(src["prompt"], prefix + "prompt", what="prompt"), None
    want = "messages" if endpoint == CHAT else "prompt" if endpoint else "prompt or messages"
    raise FieldInvalid(prefix + ("messages" if endpoint == CHAT else "prompt"), f"missing {want}")


def _options(src: dict, prefix: str) -> dict[str, Any]:
    """Sampling options shared by both shapes and endpoints; JSON null means "not given"."""
    max_tokens = fields.integer(src, "max_tokens", prefix, lo=0, hi=MAX_TOKENS_LIMIT)
    max_completion = fields.integer(src, "max_completion_tokens", prefix, lo=0, hi=MAX_TOKENS_LIMIT)
    if None not in (max_tokens, max_completion) and max_tokens != max_completion:
        raise FieldInvalid(prefix + "max_completion_tokens",
                       f"conflicts with max_tokens ({max_completion} != {max_tokens})")
    n = fields.integer(src, "n", prefix, lo=1)
    if n is not None and n != 1:
        raise FieldInvalid(prefix + "n", f"only n=1 is supported, got {n}")
    top_k = fields.integer(src, "top_k", prefix, lo=-1)
    return {
        "max_tokens": max_tokens if max_tokens is not None else max_completion,
        "temperature": fields.number(src, "temperature", prefix, lo=0.0, hi=2.0),
        "top_p": fields.number(src, "top_p", prefix, lo=0.0, hi=1.0, lo_open=True),
        "top_k": top_k if top_k and top_k > 0 else None,
        "seed": fields.integer(src, "seed", prefix, lo=0, hi=MAX_SEED),
        "stop": fields.stop(src.get("stop"), prefix + "stop"),
        "model": fields.model(src.get("model"), prefix + "model"),
    }


def load_requests(path: str) -> tuple[list[JobRequest], list[LineError]]:
    """A JSONL file, or a `datasets` dataset saved with `save_to_disk` (one request per row)."""
    if os.path.isdir(path):
        import datasets

        rows = datasets.load_from_disk(path)
        parsed = [parse_line(index + 1, json.dumps(_row_request(index, row))) for index, row in enumerate(rows)]
        return [p for p in parsed if isinstance(p, JobRequest)], [p for p in parsed if isinstance(p, LineError)]
    return read_requests(path)


def _row_request(index: int, row: dict) -> dict:
    row = {k: v for k, v in row.items() if v is not None}
    row.setdefault("custom_id", f"row-{index}")
    if "prompt" not in row and "messages" not in row and "text" in row:
        row["prompt"] = row.pop("text")
    return row
