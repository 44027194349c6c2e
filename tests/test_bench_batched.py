"""The batched benchmark's helpers (benchmarks.batched): the request subset and its true
lengths, the token counting of each side, the table's rules. Tiny models, no timing assertions."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from benchmarks.batched.poisson import interleaved
from benchmarks.batched.table import Row, default_candidates, ours_throughput, scheduling_gain, summarise
from benchmarks.batched.workload import (BenchRequest, eligible_lines, history_examples, load_requests,
                                            seeded_subset, true_length)
from hf_laps.engine.speculative import EngineConfig, SpeculativeEngine
from tiny_models import EOS, prompts, tiny_target


# ---- the requests ------------------------------------------------------------------------------
def test_seeded_subset_is_reproducible_ordered_and_seed_dependent():
    items = list(range(50))
    first = seeded_subset(items, 10, seed=0)
    assert first == seeded_subset(items, 10, seed=0) and first == sorted(first) and len(set(first)) == 10
    assert first != seeded_subset(items, 10, seed=1)
    assert seeded_subset(items, None, seed=0) == items and seeded_subset(items, 80, seed=0) == items


def test_eligible_lines_drop_stop_strings_unrecorded_and_failed_lines():
    job = [{"custom_id": "a", "messages": [], "max_tokens": 8}, {"custom_id": "b", "prompt": "x", "stop": ["\n"]},
           {"custom_id": "c", "prompt": "x", "stop": []}, {"custom_id": "d", "prompt": "x"},
           {"custom_id": "e", "prompt": "x"}]
    recording = [{"custom_id": "a", "output_tokens": 3}, {"custom_id": "b", "output_tokens": 3},
                 {"custom_id": "c", "output_tokens": 5}, {"custom_id": "e", "error": "boom"}]
    assert [line["custom_id"] for line, _ in eligible_lines(job, recording)] == ["a", "c"]


def test_true_length_under_a_lower_cap_is_the_greedy_prefix():
    assert true_length({"output_tokens": 40}, 32) == 32
    assert true_length({"output_tokens": 12}, 32) == 12


def recording_line(custom_id, prompt, output_tokens, max_tokens=64):
    return {"custom_id": custom_id, "arrival": 0.0, "prompt_tokens": 5, "max_new_tokens": max_tokens,
            "output_tokens": output_tokens, "finish_reason": "length", "prompt": prompt, "rounds": [[0, 0, 0.1]]}


def test_load_requests_and_history_keep_the_subset_out_of_the_history(tmp_path):
    from hf_laps.models.loading import embedded_source, load_tokenizer

    tokenizer = load_tokenizer(embedded_source())
    job = tmp_path / "job.jsonl"
    lines = [{"custom_id": f"q{i}", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 64}
             for i in range(6)]
    job.write_text("".join(json.dumps(line) + "\n" for line in lines))
    recording = tmp_path / "rec.jsonl"
    recording.write_text("".join(json.dumps(recording_line(f"q{i}", f"question {i}", 10 + 10 * i)) + "\n"
                                 for i in range(6)))
    requests = load_requests(job, recording, tokenizer, limit=3, seed=0, max_new_tokens=32)
    assert len(requests) == 3
    for request in requests:
        index = int(request.custom_id[1:])
        assert request.max_new_tokens == 32 and request.true_output_tokens == min(10 + 10 * index, 32)
        assert request.is_chat and "question" in request.text
        assert list(request.prompt_ids) == tokenizer(request.text).input_ids
    history = history_examples(recording, {r.custom_id for r in requests})
    assert sorted(spec.request_id for spec, _ in history) == sorted(
        f"q{i}" for i in range(6) if f"q{i}" not in {r.custom_id for r in requests})


# ---- the sides count the same tokens -------------------------------------------------------------
def test_counted_tokens_stops_at_eos_and_at_the_request_cap():
    from benchmarks.batched.sides import counted_tokens

    assert counted_tokens([5, 6, 2, 7], {2}, cap=4) == 3
    assert counted_tokens([5, 6, 7, 2], {2}, cap=2) == 2
    assert counted_tokens([5, 6], {2}, cap=4) == 2


@pytest.fixture(scope="module")
def tiny_bench():
    target = tiny_target()
    target.generation_config.eos_token_id = EOS
    requests = [BenchRequest(custom_id=str(i), prompt_ids=tuple(p), text="", max_new_tokens=cap,
                             true_output_tokens=cap, is_chat=False)
                for i, (p, cap) in enumerate(zip(prompts(4), [6, 14, 9, 11]))]
    return target, requests


@pytest.mark.parametrize("size", [1, 3])
def test_every_side_generates_the_same_tokens_on_a_tiny_model(tiny_bench, size):
    """Greedy, every side: ours under any policy, transformers padded and continuous batching
    generate the same number of tokens for the same requests (each request's own cap)."""
    from benchmarks.batched.sides import run_hf_continuous, run_hf_padded, run_ours

    target, requests = tiny_bench
    engine = SpeculativeEngine(target, None, config=EngineConfig(draft_length=3), features=False)
    tokenizer = SimpleNamespace(pad_token_id=0)
    ours = run_ours(engine, requests, size, "fcfs")
    srpt = run_ours(engine, requests, size, "srpt-oracle", seconds_per_token=0.01)
    padded = run_hf_padded(target, tokenizer, requests, size)
    continuous = run_hf_continuous(target, tokenizer, requests, size)
    assert ours.tokens == srpt.tokens == padded.tokens == continuous.tokens
    assert len(ours.latencies) == len(padded.latencies) == len(continuous.latencies) == len(requests)
    assert len(ours.service) == len(requests) and all(s > 0 for s in ours.service)


# ---- the table's rules -------------------------------------------------------------------------
def row(size, side, tps, lat_per_wall=0.5):
    return Row(size, side, tps, 1.0, lat_per_wall, 1)


def test_default_candidates_are_within_tolerance_of_the_best_smallest_first():
    assert default_candidates({1: 10.0, 2: 19.0, 4: 28.0, 8: 29.0}, 0.05) == [4, 8]
    assert default_candidates({1: 10.0, 2: 19.0, 4: 26.0, 8: 29.0}, 0.05) == [8]
    assert default_candidates({1: 10.0, 2: 9.0}, 0.05) == [1]


def test_ours_throughput_ignores_transformers_rows_and_takes_the_median_over_policies():
    rows = [row(1, "fcfs", 10), row(1, "las", 12), row(1, "laps-sd", 30), row(1, "hf generate (padded)", 100)]
    assert ours_throughput(rows) == {1: 12}


def test_scheduling_gain_compares_latency_per_wall_with_fcfs():
    rows = [row(2, "fcfs", 1, 0.6), row(2, "laps-sd", 1, 0.4)]
    assert scheduling_gain(rows, 2, "laps-sd") == pytest.approx(1.5)
    assert scheduling_gain(rows, 4, "laps-sd") is None


def test_summarise_takes_medians_and_latency_over_wall():
    runs = [SimpleNamespace(tokens_per_second=t, mean_latency=l, wall=w) for t, l, w in [(1, 2, 4), (3, 3, 6), (2, 9, 9)]]
    summary = summarise(4, "fcfs", runs)
    assert (summary.tokens_per_second, summary.mean_latency, summary.latency_per_wall, summary.runs) == (2, 3, 0.5, 3)


def test_interleaved_order_is_abba():
    assert interleaved([1, 4], 4) == [1, 4, 4, 1, 1, 4, 4, 1]


# ---- the GPU script's batched part, at toy shapes on the CPU -----------------------------------
def test_gpu_script_batched_part_runs_at_tiny_shapes_on_the_cpu(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, SCALE="tiny", ALLOW_CPU="1", PART="batched", BATCHED_LIMIT="3", BATCHED_SCALE="0.05",
               BATCHED_ARGS="--sizes 1,2 --policies fcfs,srpt-oracle --hf padded --utilisation 0 --threads 1",
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(repo / "benchmarks" / "gpu.sh"), str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=600, env=env, cwd=repo)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RANDOM weights, tiny shapes" in proc.stdout
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    rows = [(line.split("|")[1].strip(), line.split("|")[2].strip()) for line in table[1:]]  # (B, side)
    assert rows == [(b, side) for b in ("1", "2") for side in ("fcfs", "srpt-oracle", "hf generate (padded)")]
    saved = (tmp_path / "out" / "batched.txt").read_text()
    assert all(line in saved for line in table)
