"""Fuzzed jobs through the whole runner at one request per round and at batched rounds.

tests/test_jobs_fuzz.py fuzzes the JSONL reader alone; here hypothesis-built files (valid lines in
both shapes and endpoints with random options, mixed with garbage lines) run end to end through
`run_job` on the tiny model dir, at --max-batch-size 1, 4 and the default "auto", under a drawn policy. Checked on
each: the job completes (exit 0 or 3), every non-blank line has exactly one record, and the B = 4
records equal the B = 1 ones (greedy lines: the same text; sampled lines: the same outcome).
Examples: a tenth of the fuzz profile's ("ci" by default, derandomised; HF_LAPS_FUZZ_PROFILE=nightly
draws fresh ones).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import BAD_LINE, dumps, fuzz, valid_request
from hf_laps import LapsGenerator
from hf_laps.jobs.runner import EXIT_OK, EXIT_REQUEST_ERRORS, JobConfig, run_job
from helpers import counted_lines


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    """(model, tokenizer) of the tiny model dir, shared by every generator of the module."""
    generator = LapsGenerator.from_pretrained(str(tiny_model_dir), progress=False)
    return generator.engine.model, generator.tokenizer


@st.composite
def short_request(draw, custom_id: str) -> dict:
    """A valid line with a small token budget (the reader fuzz allows up to 4096)."""
    line = draw(valid_request(custom_id))
    body = line.get("body", line)
    body["max_tokens"] = draw(st.integers(0, 12))
    return line


@st.composite
def job_lines(draw) -> list[bytes]:
    count = draw(st.integers(2, 8))
    lines = [dumps(draw(short_request(f"f{i}"))) for i in range(count)]
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(BAD_LINE))
    return lines


def key(record: dict) -> str:
    return record["custom_id"] if record.get("custom_id") is not None else f"line:{record['error']['line']}"


def outcome(record: dict, greedy: bool) -> dict:
    """What must not depend on the batch size: everything but timings (the text only if greedy)."""
    response = record["response"]
    body = dict(response["body"])
    body.pop("created", None)
    body.pop("hf_laps", None)
    if not greedy and record["error"] is None:
        body = {"usage": {"prompt_tokens": body["usage"]["prompt_tokens"]}}
    return {"status": response["status_code"], "body": body, "error": record["error"]}


def run(loaded, lines: list[bytes], batch: int | str, policy: str) -> tuple[int, dict[str, dict]]:
    model, tokenizer = loaded
    generator = LapsGenerator(model, tokenizer=tokenizer, policy=policy, max_batch_size=batch, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        source.write_bytes(b"\n".join(lines) + b"\n")
        config = JobConfig(input=str(source), results=str(Path(tmp) / "out.jsonl"), policy=policy,
                           max_batch_size=batch, ignore_arrivals=True, progress=False, max_new_tokens=8)
        done = run_job(config, generator=generator)
        records = [json.loads(line) for line in Path(config.results).read_text(encoding="utf-8").splitlines()]
    by_key = {}
    for record in records:
        assert key(record) not in by_key, f"{key(record)} twice"
        by_key[key(record)] = record
    return done.exit_code, by_key


def greedy_ids(lines: list[bytes]) -> set[str]:
    ids = set()
    for line in lines:
        try:
            parsed = json.loads(line)
            body = parsed.get("body", parsed)
            if not body.get("temperature"):
                ids.add(parsed["custom_id"])
        except (ValueError, AttributeError, KeyError, TypeError):
            continue
    return ids


@fuzz(0.1)
@given(job_lines(), st.sampled_from(["fcfs", "las", "laps-sd"]))
def test_fuzzed_jobs_complete_alike_at_batch_1_and_4(loaded, lines, policy):
    single_exit, single = run(loaded, lines, 1, policy)
    assert single_exit in (EXIT_OK, EXIT_REQUEST_ERRORS)
    # every line exactly once (the reader drops a BOM on line 1 and skips the lines left blank)
    assert len(single) == counted_lines(lines)
    greedy = greedy_ids(lines)
    for batch in (4, "auto"):  # a fixed B, and the default: the batch planner decides
        batched_exit, batched = run(loaded, lines, batch, policy)
        assert batched_exit == single_exit
        assert set(batched) == set(single)   # every line exactly once
        for k, record in single.items():
            assert outcome(batched[k], k in greedy) == outcome(record, k in greedy), (batch, k)
