"""The serving loop on tiny models: every request finishes once, and under greedy decoding each
request's tokens are identical whatever the policy, the preemptions and the KV parking."""
from __future__ import annotations

import pytest

from hf_laps import EngineConfig, SpeculativeEngine
from hf_laps.scheduling import POLICY_NAMES, SchedulerConfig, make_policy, make_predictor
from hf_laps.serving.engine_executor import EngineExecutor
from hf_laps.serving.executor import Submission
from hf_laps.serving.loop import ServingLoop
import hf_reference as ref
from tiny_models import noisy_draft, prompts


@pytest.fixture(scope="module")
def engine(target):
    return SpeculativeEngine(target, assistant_model=noisy_draft(target, 0.3), config=EngineConfig(draft_length=3))


def submissions(truth=None):
    budgets = [40, 6, 25, 12, 33, 3]
    subs = []
    for i, (prompt, budget) in enumerate(zip(prompts(6), budgets)):
        sub = Submission(f"r{i}", prompt, dict(max_new_tokens=budget, do_sample=False), arrival=0.0, prompt_text=f"prompt {i}")
        if truth:
            sub.true_output_tokens = truth[sub.request_id].output_tokens
            sub.true_service_seconds = truth[sub.request_id].busy_seconds
        subs.append(sub)
    return subs


def run(engine, policy_name, truth=None, kv_budget_bytes=None):
    predictor = make_predictor("oracle") if policy_name in ("lp-sjf", "laps-sd") else None
    # small Sup_1 so the tiny requests actually cross queue thresholds and get preempted
    config = SchedulerConfig()
    policy = make_policy(policy_name, config, predictor)
    loop = ServingLoop(EngineExecutor(engine), policy, kv_budget_bytes=kv_budget_bytes)
    return list(loop.run(submissions(truth))), loop


@pytest.fixture(scope="module")
def truth(engine):
    completions, _ = run(engine, "fcfs")
    return {c.submission.request_id: c.record for c in completions}


@pytest.mark.parametrize("policy_name", POLICY_NAMES)
@pytest.mark.parametrize("kv_budget_bytes", [None, 0])
def test_outputs_identical_across_policies_and_parking(target, engine, truth, policy_name, kv_budget_bytes):
    completions, loop = run(engine, policy_name, truth, kv_budget_bytes)
    assert sorted(c.submission.request_id for c in completions) == [f"r{i}" for i in range(6)]
    for c in completions:
        assert c.ok, c.error
        expected = ref.plain_greedy(target, c.submission.prompt, max_new_tokens=c.submission.generation_kwargs["max_new_tokens"])
        assert c.state.output_ids == expected
        t = c.record
        assert t.arrival <= t.start <= t.first_token <= t.finish
        assert sum(r.accepted + 1 for r in t.rounds) == t.output_tokens == len(expected)
        assert t.latency == pytest.approx(t.finish - t.arrival)
    assert not loop.live


def test_preemptions_happen_and_are_counted(engine, truth):
    completions, _ = run(engine, "las", truth, kv_budget_bytes=0)
    total = sum(c.record.preemptions for c in completions)
    assert total > 0
    parked = [c for c in completions if c.record.preemptions]
    assert all(c.record.switch_seconds > 0 for c in parked)


def test_a_bad_request_does_not_stop_the_others(engine):
    subs = submissions()
    subs[2].prompt = list(range(1, 100)) * 3  # over the 256-token context window
    loop = ServingLoop(EngineExecutor(engine), make_policy("fcfs"))
    completions = {c.submission.request_id: c for c in loop.run(subs)}
    assert len(completions) == 6
    assert "context window" in completions["r2"].error
    assert all(c.ok for rid, c in completions.items() if rid != "r2")


def test_stop_returns_at_a_round_boundary(engine):
    loop = ServingLoop(EngineExecutor(engine), make_policy("fcfs"))
    done = []
    for completion in loop.run(submissions()):
        done.append(completion)
        loop.stop()
    assert len(done) == 1
