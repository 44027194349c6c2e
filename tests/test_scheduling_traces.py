"""Timing-log JSONL traces: round trip, extra keys, errors, synthetic generators."""
import json

import pytest

from hf_laps.replay.traces import dump_traces, load_traces
from hf_laps.scheduling.predictors.base import load_length_examples

from hf_laps.replay.synthetic import synthetic_traces
from hf_laps.replay.synthetic import ACCEPTANCE

pytestmark = pytest.mark.torchfree


def write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_round_trip_and_extra_keys(tmp_path):
    traces = synthetic_traces(5, tail="heavy", arrivals="poisson", utilisation=0.5, seed=1)
    path = tmp_path / "t.jsonl"
    dump_traces(traces, path)
    assert load_traces(path) == traces
    record = dict(traces[0].to_json(), response={"body": "..."}, policy="fcfs", queue=3)
    record["rounds"] = [[4, 2, 0.1], [3, 3, 0.09, 0.01]]
    write(path, [record, "", {"custom_id": "bad", "error": {"message": "oom"}}])
    (loaded,) = load_traces([path])
    assert loaded.rounds[0].draft_seconds is None and loaded.rounds[1].draft_seconds == 0.01
    assert loaded.service_seconds == pytest.approx(0.19)
    spec = loaded.to_request()
    assert spec.true_service_seconds == pytest.approx(0.19)
    assert spec.true_output_tokens == traces[0].output_tokens
    ((example, out),) = load_length_examples(path)
    assert out == traces[0].output_tokens and example.prompt == traces[0].prompt


def test_a_rerun_request_counts_once_with_its_last_record(tmp_path):
    a, b = synthetic_traces(2, seed=1)
    rerun = a.to_json()
    rerun["output_tokens"] += 1
    path = write(tmp_path / "t.jsonl", [a.to_json(), b.to_json(), rerun])
    loaded = load_traces(path)
    assert [t.custom_id for t in loaded] == [b.custom_id, a.custom_id]
    assert loaded[1].output_tokens == a.output_tokens + 1
    assert sorted(out for _, out in load_length_examples(path)) == sorted(
        [b.output_tokens, a.output_tokens + 1])


@pytest.mark.parametrize("record, message", [
    ({"arrival": 0, "prompt_tokens": 1, "max_new_tokens": 2, "output_tokens": 1,
      "rounds": [[1, 0, 0.1]]}, "missing key 'custom_id'"),
    ({"custom_id": "a", "prompt_tokens": 1, "max_new_tokens": 2, "output_tokens": 1,
      "rounds": []}, "'rounds' must be a non-empty list"),
    ({"custom_id": "a", "prompt_tokens": 1, "max_new_tokens": 2, "output_tokens": 1,
      "rounds": [[1, 2, 0.1]]}, "needs 0 <= accepted <= drafted"),
    ({"custom_id": "a", "prompt_tokens": "x", "max_new_tokens": 2, "output_tokens": 1,
      "rounds": [[1, 0, 0.1]]}, "'prompt_tokens' must be int"),
    ("not json", "not a JSON object"),
])
def test_malformed_records_name_file_and_line(tmp_path, record, message):
    path = write(tmp_path / "bad.jsonl", [record])
    with pytest.raises(ValueError, match=message) as info:
        load_traces(path)
    assert "bad.jsonl:1" in str(info.value)


def test_synthetic_generators_are_seeded_and_shaped():
    a = synthetic_traces(200, tail="heavy", seed=9)
    assert a == synthetic_traces(200, tail="heavy", seed=9) != synthetic_traces(200, tail="heavy", seed=8)
    light = sorted(t.output_tokens for t in synthetic_traces(400, tail="light", seed=1))
    heavy = sorted(t.output_tokens for t in synthetic_traces(400, tail="heavy", seed=1))
    # Heavy tail: the top 1% is much further from the median.
    assert heavy[-4] / heavy[200] > 3 * light[-4] / light[200]
    for trace in a:
        emitted = sum(r.accepted + 1 for r in trace.rounds)
        assert emitted == trace.output_tokens and all(0 <= r.accepted <= r.drafted for r in trace.rounds)
    poisson = synthetic_traces(300, tail="light", arrivals="poisson", utilisation=0.7, seed=2)
    offered = sum(t.service_seconds for t in poisson) / poisson[-1].arrival
    assert offered == pytest.approx(0.7, rel=0.15)
    assert all(t.arrival == 0 for t in a)
    rates = {}
    for mode in ACCEPTANCE:
        traces = synthetic_traces(3, acceptance=mode, seed=0)
        assert len(traces) == 3
        for trace in traces:
            assert sum(r.accepted + 1 for r in trace.rounds) == trace.output_tokens
        rates[mode] = tuple(r.accepted for t in traces for r in t.rounds)
    assert len(set(rates.values())) == len(ACCEPTANCE)   # each mode draws its own acceptances
    with pytest.raises(ValueError, match="utilisation"):
        synthetic_traces(3, arrivals="poisson")
