"""Batched rounds in the timing log and in replay: what a batched round was, what it costs, and
every policy replayed at max_batch_size > 1."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from hf_laps import EngineConfig, LapsGenerator
from hf_laps.scheduling import RoundRecord
from hf_laps.scheduling.records import TimingRecord, read_timing_log
from tests.tiny_models import prompts, tiny_target

B1_LOG = "benchmarks/data/mixed-30.fcfs.timing.jsonl"


# ---- step 1: the timing log keeps the batch of a round --------------------------------------
def test_a_batch_1_round_is_written_as_before():
    assert RoundRecord(drafted=3, accepted=1, seconds=0.5).to_json() == [3, 1, 0.5]
    assert RoundRecord(drafted=3, accepted=1, seconds=0.5, draft_seconds=0.1).to_json() == [3, 1, 0.5, 0.1]


def test_a_batched_round_round_trips():
    record = RoundRecord(drafted=3, accepted=1, seconds=0.5, batch_size=4, batch_tokens=19)
    assert record.to_json() == [3, 1, 0.5, None, 4, 19]
    assert RoundRecord.from_json(record.to_json()) == record
    assert RoundRecord.from_json([3, 1, 0.5, 0.1]).batch_size == 1
    with pytest.raises(ValueError):
        RoundRecord.from_json([3, 1, 0.5, 0.1, 4])
    with pytest.raises(ValueError):
        RoundRecord(drafted=3, accepted=1, seconds=0.5, batch_size=0)


def test_the_rounds_of_a_recorded_batch_1_log_are_rewritten_identically():
    with open(B1_LOG, encoding="utf-8") as handle:
        written = [json.dumps(json.loads(line)["rounds"]) for line in handle]
    assert [json.dumps(r.to_json()["rounds"]) for r in read_timing_log(B1_LOG)] == written


@pytest.fixture(scope="module")
def batched_records() -> list[TimingRecord]:
    """A real batched run on the tiny model: 5 requests, up to 3 per round, fcfs."""
    gen = LapsGenerator(tiny_target(), policy="fcfs", max_batch_size=3, progress=False,
                        engine_config=EngineConfig(draft_length=3))
    submissions = [gen.submission(str(i), p, {"max_new_tokens": 24, "do_sample": False})
                   for i, p in enumerate(prompts(5))]
    completions = list(gen.stream(submissions))
    assert all(c.ok for c in completions)
    return [c.record for c in completions]


def shared_rounds(records):
    """Rows of each batched round, keyed by the shared round's seconds (every row of one forward
    reports the same measured seconds), with the row's round index."""
    groups = defaultdict(list)
    for record in records:
        for k, r in enumerate(record.rounds):
            if r.batch_size > 1:
                groups[(r.seconds, r.draft_seconds)].append((k, r))
    return list(groups.values())


def test_the_engine_records_the_batch_of_every_shared_round(batched_records):
    groups = shared_rounds(batched_records)
    assert groups and any(len(rows) == 3 for rows in groups)
    for rows in groups:
        assert {r.batch_size for _, r in rows} == {len(rows)}
        # a row that ran before feeds its last bonus token plus its drafts
        assert {r.batch_tokens for _, r in rows} == {sum(1 + r.drafted for _, r in rows)}
        assert all(k > 0 for k, _ in rows)   # first rounds prefill alone (the features hook)
    # first rounds ran alone: written as batch-1 rounds
    assert all(not record.rounds[0].batched for record in batched_records)
