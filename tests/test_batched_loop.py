"""The serving loop at max_batch_size > 1: LapsGenerator, faults, and `hf-laps run --max-batch-size`."""
from __future__ import annotations

import json

import pytest
from transformers import LogitsProcessor, LogitsProcessorList

from hf_laps import EngineConfig, LapsGenerator
from hf_laps.serving.engine_executor import EngineExecutor
from hf_laps.serving.loop import ServingLoop
from hf_laps.scheduling import make_policy, make_predictor
import hf_reference as ref
from helpers import EXAMPLES, hf_laps
from tiny_models import noisy_draft, prompts


def budgets(count):
    return [12 + 6 * i for i in range(count)]


@pytest.mark.parametrize("policy", ["fcfs", "las", "lp-sjf", "laps-sd", "gittins"])
@pytest.mark.parametrize("drafting", ["prompt-lookup", "draft-model"])
def test_batched_loop_is_exact_and_batches(target, policy, drafting):
    draft = noisy_draft(target, 0.3) if drafting == "draft-model" else None
    gen = LapsGenerator(target, draft, policy=policy, engine_config=EngineConfig(draft_length=3), max_batch_size=3, progress=False,
                        predictor=make_predictor("learned") if policy in ("lp-sjf", "laps-sd", "gittins") else None)
    prompt_list = prompts(6)
    submissions = [gen.submission(str(i), p, {"max_new_tokens": b, "do_sample": False})
                   for i, (p, b) in enumerate(zip(prompt_list, budgets(6)))]
    completions = {c.submission.request_id: c for c in gen.stream(submissions)}
    for i, (prompt, budget) in enumerate(zip(prompt_list, budgets(6))):
        completion = completions[str(i)]
        assert completion.ok, completion.error
        # the tiny model has no near-ties: a batched round reproduces plain greedy exactly
        assert completion.state.output_ids == ref.plain_greedy(target, prompt, max_new_tokens=budget)
    # requests really shared rounds: a timeline where 3 requests overlap in time
    records = [c.record for c in completions.values()]
    overlap = max(sum(r.start <= t.start < r.finish for r in records) for t in records)
    assert overlap >= 3


def test_batch_of_one_loop_runs_through_run_round(target):
    """max_batch_size=1 is a batch of one on the batch-1 executor (run_round)."""
    gen = LapsGenerator(target, policy="fcfs", max_batch_size=1, progress=False)
    submissions = [gen.submission(str(i), p, {"max_new_tokens": 8, "do_sample": False}) for i, p in enumerate(prompts(2))]
    completions = list(gen.stream(submissions))
    assert [c.submission.request_id for c in completions] == ["0", "1"]  # fcfs runs one to the end
    assert all(c.ok for c in completions)
    # today's B = 1 run, token for token: every round alone, plain greedy's tokens
    assert all(r.batch_size == 1 for c in completions for r in c.record.rounds)
    for c in completions:
        prompt = prompts(2)[int(c.submission.request_id)]
        assert c.state.output_ids == ref.plain_greedy(target, prompt, max_new_tokens=8)


@pytest.mark.parametrize("policy", ["fcfs", "las", "lp-sjf", "srpt-oracle", "laps-sd", "gittins"])
def test_the_default_batches_by_the_planner_and_stays_exact(target, policy):
    """`max_batch_size="auto"` (the default): the planner batches every policy's ranked requests;
    greedy tokens equal plain generate (the tiny model has no near-ties)."""
    gen = LapsGenerator(target, policy=policy, progress=False,
                        predictor=make_predictor("learned") if policy in ("lp-sjf", "laps-sd", "gittins") else None)
    assert gen.max_batch_size == "auto" and gen.batch_cap() == 32
    prompt_list = prompts(5)
    submissions = [gen.submission(str(i), p, {"max_new_tokens": b, "do_sample": False})
                   for i, (p, b) in enumerate(zip(prompt_list, budgets(5)))]
    for s, b in zip(submissions, budgets(5)):
        s.true_output_tokens, s.true_service_seconds = b, float(b)
    completions = {c.submission.request_id: c for c in gen.stream(submissions)}
    for i, (prompt, budget) in enumerate(zip(prompt_list, budgets(5))):
        assert completions[str(i)].ok, completions[str(i)].error
        assert completions[str(i)].state.output_ids == ref.plain_greedy(target, prompt, max_new_tokens=budget)
    assert max(r.batch_size for c in completions.values() for r in c.record.rounds) > 1


def test_batched_loop_needs_a_batch_executor(target):
    from hf_laps import SpeculativeEngine

    with pytest.raises(ValueError, match="run_batch"):
        ServingLoop(EngineExecutor(SpeculativeEngine(target)), make_policy("fcfs"), max_batch_size=2)
    with pytest.raises(ValueError, match="max_batch_size"):
        LapsGenerator(target, policy="fcfs", max_batch_size=0)


class Exploding(LogitsProcessor):
    """Raises on the request's third verify: a fault in one request's own part of a round."""

    def __init__(self):
        self.calls = 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("processor exploded")
        return scores


def test_a_faulty_request_fails_alone_in_a_batch(target):
    gen = LapsGenerator(target, policy="fcfs", max_batch_size=4, progress=False,
                        engine_config=EngineConfig(draft_length=1))
    prompt_list = prompts(4)
    submissions = [gen.submission(str(i), p, {"max_new_tokens": 20, "do_sample": False}) for i, p in enumerate(prompt_list)]
    submissions[1].generation_kwargs["logits_processor"] = LogitsProcessorList([Exploding()])
    completions = {c.submission.request_id: c for c in gen.stream(submissions)}
    assert "processor exploded" in completions["1"].error
    for i in (0, 2, 3):
        assert completions[str(i)].ok
        assert completions[str(i)].state.output_ids == ref.plain_greedy(target, prompt_list[i], max_new_tokens=20)


def test_a_failing_shared_forward_falls_back_to_single_rounds(target):
    """The batched forward raises once: every request is restored and runs its round alone."""
    gen = LapsGenerator(target, policy="fcfs", max_batch_size=3, progress=False)
    prompt_list = prompts(3)
    submissions = [gen.submission(str(i), p, {"max_new_tokens": 16, "do_sample": False}) for i, p in enumerate(prompt_list)]
    original = target.forward
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        # only a batched forward passes position ids (batch-1 verifies pass none)
        if kwargs.get("position_ids") is not None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("out of memory (simulated)")
        return original(*args, **kwargs)

    target.forward = flaky
    try:
        completions = {c.submission.request_id: c for c in gen.stream(submissions)}
    finally:
        del target.forward
    assert calls["n"] > 2
    for i, prompt in enumerate(prompt_list):
        assert completions[str(i)].ok, completions[str(i)].error
        assert completions[str(i)].state.output_ids == ref.plain_greedy(target, prompt, max_new_tokens=16)


def test_cli_max_batch_size_gives_the_same_results(tmp_path, tiny_model_dir):
    outputs = {}
    for size in (1, 4):
        out = tmp_path / f"results-{size}.jsonl"
        proc = hf_laps("run", EXAMPLES, "-o", out, "--model", tiny_model_dir, "--no-progress",
                       "--policy", "fcfs", "--max-batch-size", size)
        assert proc.returncode == 0, proc.stderr
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        outputs[size] = {r["custom_id"]: r["response"]["body"]["choices"][0] for r in rows}
    assert outputs[4] == outputs[1] and len(outputs[1]) == 8
    assert "--max-batch-size" in hf_laps("run", "--help").stdout
    bad = hf_laps("run", EXAMPLES, "-o", tmp_path / "x.jsonl", "--model", tiny_model_dir, "--max-batch-size", 0)
    assert bad.returncode == 2
