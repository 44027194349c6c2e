"""`kv_capacity_bytes`: admission stops while the admitted requests' worst-case KV bytes would not
fit; waiting requests are admitted in arrival order as capacity frees; a request that cannot fit
even alone leaves with an error and nothing else is lost.

Scheduling behaviour on replays (exact virtual times), the per-token figure and batched rounds on
tiny models, and the error line of `hf-laps run` in a subprocess.
"""
from __future__ import annotations

import json

import pytest

from hf_laps import EngineConfig, LapsGenerator, SpeculativeEngine
from hf_laps.serving.clock import VirtualClock
from hf_laps.serving.engine_executor import EngineExecutor, model_kv_bytes_per_token
from hf_laps.serving.executor import Submission
from hf_laps.serving.loop import ServingLoop
from hf_laps.replay.replayer import TraceReplayer
from hf_laps.timing_log import RoundRecord
from hf_laps.replay.traces import Trace
from hf_laps.scheduling import make_policy
import hf_reference as ref
from helpers import hf_laps
from tiny_models import noisy_draft, prompts

PROMPT, BUDGET = 10, 20          # every small request reserves 30 tokens (the recorded cost: 1 byte each)


class PerTokenlessReplayer(TraceReplayer):
    """An executor that cannot price a token of KV (a third-party executor without the method)."""

    kv_bytes_per_token = None


def trace(rid: str, rounds: int, arrival: float = 0.0, budget: int = BUDGET) -> Trace:
    return Trace(rid, arrival, PROMPT, budget, rounds * 2,
                 tuple(RoundRecord(drafted=2, accepted=1, seconds=1.0, draft_seconds=0.1) for _ in range(rounds)))


def replay(traces, policy="las", **options):
    loop = ServingLoop(TraceReplayer(traces), make_policy(policy), clock=VirtualClock(), **options)
    reserved = []
    loop.on_round = lambda report: reserved.append(sum(t.prompt_tokens + t.max_new_tokens for t in traces
                                                       if t.custom_id in loop.live))
    done = {c.submission.request_id: c for c in loop.run([Submission(t.custom_id, None, arrival=t.arrival)
                                                         for t in traces])}
    return done, reserved


def test_admission_waits_for_capacity_in_arrival_order():
    traces = [trace("a", 3), trace("b", 5), trace("c", 2), trace("d", 2)]
    free, _ = replay(traces)
    assert [free[r].record.admitted for r in "abcd"] == [0.0] * 4   # no capacity: all at once
    done, reserved = replay(traces, kv_capacity_bytes=2 * (PROMPT + BUDGET))   # room for two
    assert all(c.ok for c in done.values())
    records = {r: done[r].record for r in "abcd"}
    # c takes the place of the first of a, b to finish; d the place of the next one to finish
    finishes = sorted(records[r].finish for r in "abc")
    assert records["a"].admitted == records["b"].admitted == 0.0
    assert records["c"].admitted == min(records["a"].finish, records["b"].finish) == finishes[0]
    assert records["d"].admitted == finishes[1]
    assert all(records[r].start >= records[r].admitted for r in "abcd")
    assert max(reserved) <= 2 * (PROMPT + BUDGET)
    # the capacity changed when requests ran, never what they ran
    assert [r.rounds for r in records.values()] == [free[r].record.rounds for r in "abcd"]


def test_a_request_too_big_even_alone_fails_and_nothing_else_is_lost():
    traces = [trace("a", 2), trace("big", 50, budget=200), trace("b", 2, arrival=0.5)]
    done, _ = replay(traces, policy="fcfs", kv_capacity_bytes=40)
    big = done["big"]
    assert big.rejected and big.record is None
    assert "210 bytes" in big.error and "capacity of 40 bytes" in big.error
    assert done["a"].ok and done["b"].ok
    # the big request did not hold anything up: b ran as soon as a finished
    assert done["b"].record.start == done["a"].record.finish == 2.0


def test_capacity_needs_the_per_token_figure_and_a_sane_value():
    with pytest.raises(ValueError, match="kv_bytes_per_token"):
        ServingLoop(PerTokenlessReplayer([trace("a", 1)]), make_policy("fcfs"), kv_capacity_bytes=100)
    with pytest.raises(ValueError, match="kv_capacity_bytes"):
        ServingLoop(TraceReplayer([trace("a", 1)]), make_policy("fcfs"), kv_capacity_bytes=-1)


# ---- tiny models ----------------------------------------------------------------------------
def test_engine_bytes_per_token_match_the_caches(target):
    # 2 (K, V) x 2 layers x 2 KV heads x 16 head dim x 4 bytes (fp32)
    assert model_kv_bytes_per_token(target) == 512
    draft = noisy_draft(target, 0.3)
    for drafting, per_token in ((None, 512), (draft, 1024)):
        engine = SpeculativeEngine(target, assistant_model=drafting, config=EngineConfig(draft_length=3))
        executor = EngineExecutor(engine)
        assert executor.kv_bytes_per_token() == per_token
        executor.start(Submission("r", prompts(1)[0], {"max_new_tokens": 10, "do_sample": False}))
        state = executor.states["r"]
        while not state.finished:
            executor.run_round("r")
            assert state.kv_bytes <= per_token * state.max_length   # the worst case is an upper bound
        if drafting is None:
            assert state.kv_bytes == per_token * state.kv_len


@pytest.mark.parametrize("max_batch_size", [1, 4])
def test_batched_generation_under_a_capacity_is_exact_and_never_overlaps_more(target, max_batch_size):
    budget = 10
    prompt_list = prompts(5)
    worst = [512 * (len(p) + budget) for p in prompt_list]
    capacity = sorted(worst)[-1] + sorted(worst)[-2]         # any two fit, three never do
    gen = LapsGenerator(target, policy="fcfs", max_batch_size=max_batch_size, kv_capacity_bytes=capacity,
                        progress=False)
    submissions = [gen.submission(str(i), p, {"max_new_tokens": budget, "do_sample": False})
                   for i, p in enumerate(prompt_list)]
    big = gen.submission("big", prompts(1)[0], {"max_new_tokens": 200, "do_sample": False})
    completions = {c.submission.request_id: c for c in gen.stream(submissions + [big])}
    assert completions["big"].rejected and f"capacity of {capacity} bytes" in completions["big"].error
    records = []
    for i, prompt in enumerate(prompt_list):
        completion = completions[str(i)]
        assert completion.ok, completion.error
        assert completion.state.output_ids == ref.plain_greedy(target, prompt, max_new_tokens=budget)
        records.append(completion.record)
    # admitted in arrival order; never more than two admitted and unfinished at once
    assert [r.admitted for r in records] == sorted(r.admitted for r in records)
    assert max(sum(r.admitted <= t.admitted < r.finish for r in records) for t in records) <= 2


def test_cli_kv_capacity_gives_an_error_line_for_a_too_big_request(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    per_token = model_kv_bytes_per_token(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    capacity = 100 * per_token       # three short prompts of <= 8 new tokens fit; 300 new tokens never
    lines = [{"custom_id": f"s{i}", "prompt": f"Count to {i}", "max_tokens": 8} for i in range(3)]
    lines.insert(1, {"custom_id": "big", "prompt": "Write a long story", "max_tokens": 300})
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out.jsonl"
    proc = hf_laps("run", source, "-o", out, "--model", tiny_model_dir, "--no-progress", "--policy", "fcfs",
                   "--kv-capacity-bytes", capacity)
    assert proc.returncode == 3, proc.stderr          # the job completed; one request has an error
    rows = {r["custom_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(rows) == ["big", "s0", "s1", "s2"]
    error = rows["big"]["error"]
    assert rows["big"]["response"]["status_code"] == 400
    assert f"capacity of {capacity} bytes" in error["message"] and "bytes per token" in error["message"]
    assert all(rows[f"s{i}"]["response"]["status_code"] == 200 for i in range(3))
    assert "--kv-capacity-bytes" in hf_laps("run", "--help").stdout
