"""The end-of-job summary on hand-computed timing records."""
from __future__ import annotations

import json

import pytest

from hf_laps.jobs.summary import format_summary_table, summarize
from hf_laps.timing_log import RoundRecord, TimingRecord

pytestmark = pytest.mark.torchfree

R1 = {
    "custom_id": "a", "arrival": 0.0, "start": 0.0, "first_token": 0.5, "finish": 2.0,
    "latency": 2.0, "queue_wait": 0.0, "prompt_tokens": 10, "output_tokens": 20,
    "max_new_tokens": 32, "finish_reason": "eos",
    # [drafted, accepted, seconds, draft_seconds]; the last round drafted nothing
    "rounds": [[4, 3, 0.5, 0.1], [4, 1, 0.5, 0.1], [0, 0, 0.2, 0.0]],
    "preemptions": 1, "switch_seconds": 0.1, "busy_seconds": 1.2, "policy_events": [],
    "metrics": {"num_spec_steps": 99},  # ignored: rounds are there
}
R2 = {
    "custom_id": "b", "arrival": 1.0, "start": 2.0, "first_token": 2.5, "finish": 4.0,
    "latency": 3.0, "queue_wait": 1.0, "prompt_tokens": 5, "output_tokens": 10,
    "max_new_tokens": 10, "finish_reason": "length",
    "rounds": [[4, 4, 1.0, 0.2], [4, 0, 0.8, 0.2]],
    "preemptions": 0, "switch_seconds": 0.0, "busy_seconds": 1.8, "policy_events": [],
}


def typed(*lines: dict) -> list[TimingRecord]:
    return [TimingRecord.from_json(line) for line in lines]


def test_hand_computed_two_requests():
    s = summarize(typed(R1, R2), wall_seconds=5.0)
    assert summarize([R1, R2], wall_seconds=5.0) == s    # a log line's JSON is parsed the same way
    assert s["requests"] == 2
    # latency [2, 3]: linear interpolation like numpy
    assert s["latency_mean"] == pytest.approx(2.5)
    assert s["latency_p50"] == pytest.approx(2.5)
    assert s["latency_p90"] == pytest.approx(2.9)
    assert s["latency_p99"] == pytest.approx(2.99)
    # ttft = first_token - arrival = [0.5, 1.5]
    assert (s["ttft_mean"], s["ttft_p50"]) == pytest.approx((1.0, 1.0))
    assert (s["ttft_p90"], s["ttft_p99"]) == pytest.approx((1.4, 1.49))
    assert s["queue_wait_mean"] == pytest.approx(0.5)
    assert s["makespan"] == pytest.approx(4.0)  # max finish 4 - min arrival 0
    assert (s["prompt_tokens"], s["output_tokens"]) == (15, 30)
    assert s["tokens_per_second"] == pytest.approx(7.5)
    # 5 target forwards (the round that drafted nothing is one too), 16 drafted,
    # 3+1+0+4+0 = 8 accepted: tokens per target forward = 1 + 8 / 5
    assert (s["num_spec_steps"], s["num_draft_tokens"], s["num_accepted_draft_tokens"]) == (
        5, 16, 8)
    assert s["mean_acceptance_length"] == pytest.approx(1 + 8 / 5)
    assert s["draft_acceptance_rate"] == pytest.approx(0.5)
    assert s["acceptance_histogram"] == [2, 1, 0, 1, 1]
    assert s["preemptions"] == 1
    assert (s["busy_seconds"], s["switch_seconds"]) == pytest.approx((3.0, 0.1))
    assert s["preemption_overhead"] == pytest.approx(0.1 / 3.1)
    assert s["finish_reasons"] == {"eos": 1, "length": 1}
    assert (s["wall_seconds"], s["wall_tokens_per_second"]) == (5.0, pytest.approx(6.0))
    json.dumps(s, allow_nan=False)


def test_metrics_used_when_no_rounds_and_missing_fields():
    rec = TimingRecord(custom_id="m", prompt_tokens=0, output_tokens=4, max_new_tokens=4, arrival=2.0, finish=3.0,
                       metrics={"num_spec_steps": 2, "num_draft_tokens": 8,
                                "num_accepted_draft_tokens": 6, "acceptance_histogram": [0, 0, 1, 0, 1]})
    s = summarize([rec])
    assert s["latency_mean"] == pytest.approx(1.0)  # finish - arrival when latency is absent
    assert s["ttft_mean"] is None  # no token, no TTFT
    assert s["makespan"] == pytest.approx(1.0) and s["tokens_per_second"] == pytest.approx(4.0)
    assert s["mean_acceptance_length"] == pytest.approx(4.0)
    assert s["draft_acceptance_rate"] == pytest.approx(0.75)
    assert s["acceptance_histogram"] == [0, 0, 1, 0, 1]
    assert s["preemption_overhead"] is None and s["wall_tokens_per_second"] is None


def test_zero_records():
    s = summarize([])
    assert s["requests"] == 0 and s["output_tokens"] == 0 and s["acceptance_histogram"] == []
    for key in ("latency_mean", "latency_p99", "ttft_p50", "makespan", "tokens_per_second",
                "mean_acceptance_length", "draft_acceptance_rate", "preemption_overhead"):
        assert s[key] is None, key
    json.dumps(s, allow_nan=False)  # strict JSON
    table = format_summary_table(s)
    assert "requests" in table and "-" in table


def test_no_drafting_and_zero_makespan():
    rec = TimingRecord(custom_id="z", prompt_tokens=1, output_tokens=1, max_new_tokens=1, arrival=0.0, finish=0.0,
                       first_token=0.0, rounds=(RoundRecord(drafted=0, accepted=0, seconds=0.0, draft_seconds=0.0),))
    s = summarize([rec])
    # one target forward that emitted one token: 1 token per forward, no draft to rate
    assert s["tokens_per_second"] is None and s["mean_acceptance_length"] == 1.0
    assert s["num_spec_steps"] == 1 and s["draft_acceptance_rate"] is None


def test_table_shows_the_numbers():
    table = format_summary_table(summarize(typed(R1, R2), wall_seconds=5.0))
    for text in ("requests", "2", "makespan", "4.000 s", "tokens/s", "7.5", "2.60", "50.0 %",
                 "3.23 %", "latency", "2.500", "2.990", "TTFT", "1.490", "queue wait",
                 "accepted per step: 0:2  1:1  2:0  3:1  4:1", "wall tokens/s", "6.0"):
        assert text in table, text


def test_rerun_request_counts_once(tmp_path):
    # a crash between a request's timing record and its result reruns it: the one reader keeps
    # the last record, and the summary is computed from what it read
    from hf_laps.timing_log import read_timing_log
    stale = dict(R1, finish=100.0, output_tokens=999)
    log = tmp_path / "t.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in (stale, R2, R1)))
    s = summarize(read_timing_log(log))
    assert s["requests"] == 2 and s["output_tokens"] == 30
    assert s["latency_mean"] == pytest.approx(2.5)
