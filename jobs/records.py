"""Result and error records in the OpenAI Batch output shape, one JSON object per request.

    {"id": "batch_req_...", "custom_id": "a", "response": {"status_code": 200, "request_id": ...,
     "body": {...completion or chat.completion...}}, "error": null}
    {"id": "batch_req_...", "custom_id": "b", "response": {"status_code": 400, ...},
     "error": {"code": "invalid_request", "message": "line 7, field ...", "line": 7,
               "field": "body.max_tokens"}}

Ids are stable hashes of the record key, so a resumed run writes byte-identical records for the
same outputs (except `created`). `record_key` is what resume matches on.
"""
from __future__ import annotations

import hashlib
import time
from typing import Any, Sequence

from hf_laps.jobs.requests import CHAT, LineError, JobRequest

# engine finish reason -> OpenAI finish_reason. The timing log and the summary keep the engine's
# three ("eos": end of sequence, "stop": a stop string, "length": the token cap); results say
# "stop" for both of the first two, as OpenAI does.
FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length"}


def _digest(key: str, salt: str, n: int = 24) -> str:
    # surrogatepass: a record key is hashed even if it could not be written as UTF-8
    return hashlib.sha256(f"{salt}\0{key}".encode("utf-8", "surrogatepass")).hexdigest()[:n]


def line_key(line_no: int) -> str:
    """The resume key of an error record that has no custom_id."""
    return f"line:{line_no}"


def success_record(
    request: JobRequest,
    *,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    model: str,
    created: int | None = None,
    extra: dict | None = None,
    stop: Sequence[str] = (),
) -> dict:
    """The output record of a finished request.

    Args:
        request: the request it answers; its endpoint picks completion or chat.completion.
        text: the generated text (without the prompt).
        finish_reason: the engine's "eos", "stop" (stop string) or "length".
        prompt_tokens, completion_tokens: token counts for `usage`.
        model: the model name to report.
        created: Unix seconds; now when None.
        extra: more keys for the response body (e.g. speculative metrics); must not collide
            with the standard ones.
        stop: the request's stop strings. When a stop string ended the request (finish_reason
            "stop"), the text is cut where it starts: the stop string and anything after it
            are not returned (OpenAI, vLLM).

    Returns:
        {"id", "custom_id", "response": {"status_code": 200, "request_id", "body"}, "error": None}

    Raises:
        ValueError: an unknown finish_reason or an `extra` key that collides.
    """
    if finish_reason not in FINISH_REASONS:
        raise ValueError(f"unknown finish_reason {finish_reason!r}; "
                         f"expected one of {sorted(FINISH_REASONS)}")
    reason = FINISH_REASONS[finish_reason]
    if finish_reason == "stop":
        text = cut_at_stop(text, stop)
    key = request.custom_id
    if request.endpoint == CHAT:
        obj, prefix = "chat.completion", "chatcmpl-"
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": reason}
    else:
        obj, prefix = "text_completion", "cmpl-"
        choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
    body: dict[str, Any] = {
        "id": prefix + _digest(key, "body"),
        "object": obj,
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }
    for name, value in (extra or {}).items():
        if name in body:
            raise ValueError(f"extra key {name!r} collides with a standard response key")
        body[name] = value
    return {
        "id": "batch_req_" + _digest(key, "id"),
        "custom_id": key,
        "response": {"status_code": 200, "request_id": _digest(key, "request", 32), "body": body},
        "error": None,
    }


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the earliest occurrence of any stop string (unchanged when none occurs).

    Generation stops at the first token that completes a stop string, so the earliest
    occurrence is the one that stopped it. A stop string that began inside the prompt does not
    occur whole in the text and leaves it unchanged.
    """
    starts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return text[: min(starts)] if starts else text


def error_record(
    *,
    custom_id: str | None,
    line_no: int | None,
    field: str | None,
    message: str,
    code: str = "invalid_request",
    status_code: int | None = 400,
) -> dict:
    """The output record of a request that failed validation (400) or at run time (500).

    Args:
        custom_id: the request's id, or None when the line had no valid (unique) one.
        line_no: the input line, or None when unknown; needed when custom_id is None.
        field: the offending field's dotted path, or None for run-time errors.
        message: a human-readable reason.
        code: a machine-readable reason ("invalid_request", "invalid_json",
            "duplicate_custom_id", "context_length_exceeded", "out_of_memory", ...).
        status_code: 400 for the client's fault, 500 for ours; None writes `"response": null`.

    Returns:
        {"id", "custom_id", "response": None | {"status_code", "request_id", "body": {"error":
        {"message", "type", "param", "code"}}}, "error": {"code", "message", "line", "field"}}
    """
    if custom_id is None and line_no is None:
        raise ValueError("an error record needs a custom_id or a line number")
    key = custom_id if custom_id is not None else line_key(line_no)
    response = None
    if status_code is not None:
        kind = "invalid_request_error" if 400 <= status_code < 500 else "server_error"
        response = {
            "status_code": status_code,
            "request_id": _digest(key, "request", 32),
            "body": {"error": {"message": message, "type": kind, "param": field, "code": code}},
        }
    return {
        "id": "batch_req_" + _digest(key, "id"),
        "custom_id": custom_id,
        "response": response,
        "error": {"code": code, "message": message, "line": line_no, "field": field},
    }


def line_error_record(err: LineError) -> dict:
    """The 400 error record of an input line that failed validation."""
    return error_record(custom_id=err.custom_id, line_no=err.line_no, field=err.field,
                        message=err.message(), code=err.code)


def record_key(record: dict) -> str:
    """The resume key: the custom_id, or "line:<n>" for an error record without one.

    Raises:
        ValueError: the record has neither (it is not one of ours).
    """
    custom_id = record.get("custom_id")
    if isinstance(custom_id, str) and custom_id:
        return custom_id
    error = record.get("error")
    line = error.get("line") if isinstance(error, dict) else None
    if isinstance(line, int) and not isinstance(line, bool):
        return line_key(line)
    raise ValueError("record has neither a custom_id nor error.line")
