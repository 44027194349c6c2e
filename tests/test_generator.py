"""LapsGenerator on tiny models: input order, chat messages, datasets, error results."""
from __future__ import annotations

import pytest

from hf_laps import EngineConfig, LapsGenerator
import hf_reference as ref
from tiny_models import noisy_draft, prompts


@pytest.mark.parametrize("policy", ["fcfs", "las", "lp-sjf", "laps-sd"])
def test_results_in_input_order_and_exact(target, policy):
    gen = LapsGenerator(target, noisy_draft(target, 0.3), policy=policy, engine_config=EngineConfig(draft_length=3), progress=False)
    prompt_list = prompts(4)
    budgets = 30
    results = gen.generate(prompt_list, max_new_tokens=budgets, do_sample=False)
    assert [r.request_id for r in results] == ["0", "1", "2", "3"]
    for prompt, result in zip(prompt_list, results):
        assert result.error is None
        assert result.token_ids == ref.plain_greedy(target, prompt, max_new_tokens=budgets)
        assert result.latency >= result.ttft > 0
        assert result.metrics["num_spec_steps"] >= 1


def test_dataset_input_and_arrivals(target):
    datasets = pytest.importorskip("datasets", reason="needs the datasets package: pip install datasets")
    data = datasets.Dataset.from_dict({"prompt": prompts(3)})
    gen = LapsGenerator(target, policy="fcfs", progress=False)
    results = gen.generate(data, arrivals=[0.0, 0.05, 0.1], max_new_tokens=5, do_sample=False)
    assert [len(r.token_ids) for r in results] == [5, 5, 5]
    assert results[2].timing.arrival == 0.1 and results[2].timing.start >= 0.1
    with pytest.raises(ValueError, match="column"):
        gen.generate(datasets.Dataset.from_dict({"q": ["x"]}))


def test_bad_prompt_gives_an_error_result(target):
    gen = LapsGenerator(target, policy="laps-sd", progress=False)
    results = gen.generate([prompts(1)[0], list(range(1, 100)) * 3], max_new_tokens=4, do_sample=False)
    assert results[0].error is None and len(results[0].token_ids) == 4
    assert "context window" in results[1].error and results[1].text is None


def test_unknown_policy_is_rejected_up_front(target):
    with pytest.raises(ValueError, match="unknown policy"):
        LapsGenerator(target, policy="round-robin")
