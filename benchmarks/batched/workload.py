"""The benchmark's requests: a seeded subset of a job file, each with its recorded true length.

The job file holds short-form job lines (`messages` or `prompt`, `max_tokens`, optional `stop`);
the recording is a timing log of the same lines run one at a time with the same model (greedy),
so its `output_tokens` is each request's true length (what srpt-oracle is allowed to read).

Only lines WITHOUT stop strings are used: transformers' continuous batching has no stop strings,
and a side that stops early on a string would generate fewer tokens than the other for the same
request. Their true length is then exact: greedy output ends at EOS or at max_tokens.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

from hf_laps.scheduling import RequestSpec
from hf_laps.scheduling.predictors.base import load_length_examples


@dataclass(frozen=True)
class BenchRequest:
    """One request of the benchmark, as every side sees it (the same token ids, the same cap)."""

    custom_id: str
    prompt_ids: tuple[int, ...]
    text: str
    max_new_tokens: int
    true_output_tokens: int
    is_chat: bool


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def eligible_lines(job_lines: list[dict], recording: list[dict]) -> list[tuple[dict, dict]]:
    """(job line, its recorded record) for every line that has no stop strings and a recording
    without an error, in job-file order."""
    recorded = {r["custom_id"]: r for r in recording if "error" not in r and "output_tokens" in r}
    return [(line, recorded[line["custom_id"]]) for line in job_lines
            if not line.get("stop") and line.get("custom_id") in recorded]


def seeded_subset(items: list, limit: int | None, seed: int) -> list:
    """`limit` items drawn with `seed`, kept in their original order (all of them if limit is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    chosen = sorted(random.Random(f"bench-subset:{seed}").sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def true_length(record: dict, cap: int) -> int:
    """Recorded output length under a (possibly lower) cap: a greedy output cut at `cap` is the
    first `cap` tokens of the uncut one, so min() is exact."""
    return min(int(record["output_tokens"]), cap)


def prompt_text(line: dict, tokenizer) -> str:
    if line.get("messages"):
        return tokenizer.apply_chat_template(line["messages"], tokenize=False, add_generation_prompt=True)
    return line["prompt"]


def scaled_cap(max_tokens: int, scale: float = 1.0, max_new_tokens: int | None = None) -> int:
    """A line's max_tokens times `scale` (at least 1), at most `max_new_tokens`. Scaling keeps the
    workload's spread of lengths (what the policies order by), a flat cap would erase it."""
    cap = max(1, round(max_tokens * scale))
    return cap if max_new_tokens is None else min(cap, max_new_tokens)


def load_requests(job_path: str | Path, recording_path: str | Path, tokenizer, *, limit: int | None,
                  seed: int, max_new_tokens: int | None = None, scale: float = 1.0) -> list[BenchRequest]:
    """The benchmark's requests, each with the cap `scaled_cap` makes of its max_tokens."""
    pairs = seeded_subset(eligible_lines(read_jsonl(job_path), read_jsonl(recording_path)), limit, seed)
    requests = []
    for line, record in pairs:
        cap = scaled_cap(int(line["max_tokens"]), scale, max_new_tokens)
        text = prompt_text(line, tokenizer)
        requests.append(BenchRequest(custom_id=line["custom_id"], prompt_ids=tuple(tokenizer(text).input_ids),
                                     text=text, max_new_tokens=cap, true_output_tokens=true_length(record, cap),
                                     is_chat=bool(line.get("messages"))))
    return requests


def history_examples(recording_path: str | Path, exclude: set[str], scale: float = 1.0,
                     max_new_tokens: int | None = None) -> list[tuple[RequestSpec, int]]:
    """(request, output_tokens) of every recorded request outside the benchmark: the history a
    learned length predictor is fitted on, as a job would pass `--history` from earlier jobs.
    Caps and lengths are scaled as the benchmark's requests are (`scaled_cap`)."""
    examples = []
    for spec, tokens in load_length_examples(recording_path):
        if spec.request_id not in exclude:
            cap = scaled_cap(spec.max_new_tokens, scale, max_new_tokens)
            examples.append((replace(spec, max_new_tokens=cap), min(tokens, cap)))
    return examples
