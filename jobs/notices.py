"""Warnings about a job's input that are not errors: nothing to do, fields that are ignored.

An OpenAI batch file may carry fields hf-laps does not implement (`logprobs`, `metadata`,
`presence_penalty`, ...). Each line still runs, but silently dropping what a user asked for would
surprise them, so the job says once which fields it ignored and on how many lines.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from hf_laps.jobs.requests import JobRequest, LineError


def input_warnings(path: str, requests: Sequence[JobRequest], line_errors: Sequence[LineError]) -> list[str]:
    """One-line warnings about the input, in the order to print them (possibly none)."""
    if not requests and not line_errors:
        return [f"{path} has no requests (it is empty or has only blank lines); nothing to do"]
    ignored = ignored_fields(requests)
    if not ignored:
        return []
    listed = ", ".join(f"{name} ({count} line{'s' if count > 1 else ''})" for name, count in ignored.items())
    return [f"ignored fields that hf-laps does not implement: {listed}"]


def ignored_fields(requests: Sequence[JobRequest]) -> dict[str, int]:
    """Dotted field name -> number of requests that carried it, most frequent first."""
    counts = Counter(name for request in requests for name in set(request.ignored))
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
