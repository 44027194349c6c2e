"""The job runner end to end on tiny models, in process: bad lines, outputs identical across
policies, the OpenAI batch output shape, the timing log as a replayable trace, resume."""
from __future__ import annotations

import json

import pytest

from hf_laps.jobs.runner import EXIT_OK, EXIT_REQUEST_ERRORS, JobConfig, run_job
from hf_laps.scheduling import POLICY_NAMES
from hf_laps.replay.traces import load_traces

GOOD = [
    {"custom_id": "a", "prompt": "Repeat: one two three one two three", "max_tokens": 24},
    {"custom_id": "b", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 9},
    {"custom_id": "c", "method": "POST", "url": "/v1/completions", "body": {"prompt": "Count: 1 2 3 4", "max_tokens": 17}},
    {"custom_id": "d", "method": "POST", "url": "/v1/chat/completions",
     "body": {"messages": [{"role": "user", "content": "Say hi"}], "max_completion_tokens": 30}},
    {"custom_id": "e", "prompt": "Sampled text", "max_tokens": 12, "temperature": 0.8, "seed": 3},
]
BAD_LINES = [
    "this is not json",
    json.dumps({"prompt": "no id"}),
    json.dumps({"custom_id": "u", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}),
    json.dumps({"custom_id": "n2", "prompt": "x", "n": 2}),
    json.dumps({"custom_id": "neg", "prompt": "x", "max_tokens": -3}),
    json.dumps({"custom_id": "a", "prompt": "duplicate id"}),
    json.dumps({"custom_id": "long", "prompt": "word " * 600}),  # over the 512-token window
]


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    from hf_laps.serving.generator import LapsGenerator

    return LapsGenerator.from_pretrained(str(tiny_model_dir), progress=False)


def write_input(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def run(tmp_path, generator, policy, lines, name="out", truth=None, resume=False):
    generator.policy_name = policy
    config = JobConfig(
        input=write_input(tmp_path / "in.jsonl", lines), results=str(tmp_path / f"{name}.jsonl"),
        policy=policy, truth=truth, resume=resume, progress=False,
    )
    return config, run_job(config, generator=generator)


def test_bad_lines_become_error_records_and_the_rest_finish(tmp_path, generator):
    lines = [json.dumps(GOOD[0]), *BAD_LINES[:3], json.dumps(GOOD[1]), *BAD_LINES[3:]]
    config, outcome = run(tmp_path, generator, "laps-sd", lines)
    assert outcome.exit_code == EXIT_REQUEST_ERRORS
    records = read_jsonl(config.results)
    assert len(records) == len(lines)
    ok = {r["custom_id"] for r in records if r["error"] is None}
    assert ok == {"a", "b"}
    errors = [r["error"] for r in records if r["error"] is not None]
    messages = " | ".join(e["message"] for e in errors)
    for expected in ("line 2", "line 3", "custom_id", "url", "line 6", "n", "max_tokens", "duplicate", "context window"):
        assert expected in messages, expected
    long_error = next(r for r in records if r["custom_id"] == "long")
    assert long_error["response"]["status_code"] == 400 and long_error["error"]["field"] == "prompt"


def test_outputs_identical_across_policies(tmp_path, generator):
    lines = [json.dumps(g) for g in GOOD]
    base_config, base = run(tmp_path, generator, "fcfs", lines, name="fcfs")
    assert base.exit_code == EXIT_OK
    reference = {r["custom_id"]: r["response"]["body"]["choices"][0] for r in read_jsonl(base_config.results)}
    for policy in POLICY_NAMES:
        config, outcome = run(tmp_path, generator, policy, lines, name=policy, truth=base_config.timing_log)
        assert outcome.exit_code == EXIT_OK, outcome.message
        got = {r["custom_id"]: r["response"]["body"]["choices"][0] for r in read_jsonl(config.results)}
        assert got == reference, policy


def test_output_shapes_and_timing_log_replay(tmp_path, generator):
    config, outcome = run(tmp_path, generator, "laps-sd", [json.dumps(g) for g in GOOD])
    records = {r["custom_id"]: r for r in read_jsonl(config.results)}
    chat = records["b"]["response"]["body"]
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"
    completion = records["c"]["response"]["body"]
    assert completion["object"] == "text_completion" and "text" in completion["choices"][0]
    assert completion["usage"]["completion_tokens"] == 17
    timing = read_jsonl(config.timing_log)
    assert {t["custom_id"] for t in timing} == set(records)
    for t in timing:
        assert sum(r[1] + 1 for r in t["rounds"]) == t["output_tokens"]
        assert t["policy_final"]["policy"] == "laps-sd"
    traces = load_traces(config.timing_log)
    assert len(traces) == len(GOOD)
    summary = json.loads(open(config.summary).read())
    assert summary["requests"] == len(GOOD) and summary["latency_mean"] > 0


def test_resume_skips_finished_ids(tmp_path, generator):
    lines = [json.dumps(g) for g in GOOD]
    config, first = run(tmp_path, generator, "fcfs", lines[:2])
    assert first.succeeded == 2
    config, second = run(tmp_path, generator, "fcfs", lines, resume=True)
    assert second.skipped == 2 and second.succeeded == 3
    ids = [r["custom_id"] for r in read_jsonl(config.results)]
    assert sorted(ids) == sorted(g["custom_id"] for g in GOOD)


def test_srpt_oracle_without_truth_is_refused_before_anything_runs(tmp_path, generator):
    with pytest.raises(ValueError, match="srpt-oracle needs --truth"):
        run(tmp_path, generator, "srpt-oracle", [json.dumps(GOOD[0])])
    assert not (tmp_path / "out.jsonl").exists()


def test_srpt_oracle_request_missing_from_truth_is_an_error_on_custom_id(tmp_path, generator):
    truth = tmp_path / "truth.jsonl"
    truth.write_text(json.dumps({"custom_id": "other", "prompt_tokens": 4, "output_tokens": 3, "max_new_tokens": 8,
                                 "rounds": [[2, 1, 0.05], [2, 0, 0.05]]}) + "\n")
    config, outcome = run(tmp_path, generator, "srpt-oracle", [json.dumps(GOOD[0])], truth=str(truth))
    record = read_jsonl(config.results)[0]
    assert record["error"]["field"] == "custom_id" and "--truth" in record["error"]["message"]


def test_dataset_saved_to_disk_is_an_input(tmp_path, generator):
    datasets = pytest.importorskip("datasets", reason="needs the datasets package: pip install datasets")
    data = datasets.Dataset.from_dict({"prompt": ["one two one two", "three four"], "max_tokens": [5, 6]})
    data.save_to_disk(str(tmp_path / "ds"))
    generator.policy_name = "laps-sd"
    config = JobConfig(input=str(tmp_path / "ds"), results=str(tmp_path / "ds.jsonl"), progress=False)
    outcome = run_job(config, generator=generator)
    assert outcome.exit_code == EXIT_OK
    usage = {r["custom_id"]: r["response"]["body"]["usage"]["completion_tokens"] for r in read_jsonl(config.results)}
    assert usage == {"row-0": 5, "row-1": 6}


def test_poisson_arrival_rate(tmp_path, generator):
    from hf_laps.jobs.runner import poisson_arrivals

    times = poisson_arrivals(2000, rate=4.0, seed=1)
    assert times[0] == 0.0 and all(b >= a for a, b in zip(times, times[1:]))
    assert abs(times[-1] / 1999 - 0.25) < 0.02  # mean gap 1/rate
    generator.policy_name = "fcfs"
    config = JobConfig(
        input=write_input(tmp_path / "in.jsonl", [json.dumps(g) for g in GOOD[:3]]),
        results=str(tmp_path / "p.jsonl"), arrival_rate=20.0, seed=0, progress=False,
    )
    assert run_job(config, generator=generator).exit_code == EXIT_OK
    timing = sorted(read_jsonl(config.timing_log), key=lambda t: t["arrival"])
    assert [t["arrival"] for t in timing] == pytest.approx(poisson_arrivals(3, 20.0, 0))
    assert all(t["start"] >= t["arrival"] for t in timing)


def test_unwritable_timing_log_keeps_previous_results(tmp_path, generator):
    from hf_laps.jobs.runner import EXIT_OUTPUT_ERROR

    results = tmp_path / "keep.jsonl"
    results.write_text('{"custom_id": "old"}\n', encoding="utf-8")
    generator.policy_name = "fcfs"
    config = JobConfig(
        input=write_input(tmp_path / "in.jsonl", [json.dumps(GOOD[0])]), results=str(results),
        timing_log=str(tmp_path / "no-such-dir" / "t.jsonl"), progress=False,
    )
    outcome = run_job(config, generator=generator)
    assert outcome.exit_code == EXIT_OUTPUT_ERROR
    assert results.read_text(encoding="utf-8") == '{"custom_id": "old"}\n'
