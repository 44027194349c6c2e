"""benchmarks/acceptance_study.py: the GPU re-costing is exact, and its own pieces do what they say."""
import importlib.util
import sys
from pathlib import Path

import pytest

from hf_laps.replay.replayer import ParametricCost, simulate
from hf_laps.replay.traces import load_traces
from helpers import completion_order

pytestmark = pytest.mark.torchfree

REPO = Path(__file__).resolve().parents[1]
LOG = REPO / "benchmarks" / "data" / "code-30.fcfs.timing.jsonl"


@pytest.fixture(scope="module")
def study():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("acceptance_study", REPO / "benchmarks" / "acceptance_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def burst():
    return [t.with_arrival(0.0) for t in load_traces(LOG)[:12]]


@pytest.mark.parametrize("policy", ["fcfs", "laps-sd", "gittins"])
def test_recosted_traces_replay_exactly_like_the_cost_model(study, burst, policy):
    cost = ParametricCost.paper_pair_gpu()
    direct = simulate(burst, study.build(policy, "learned"), cost=cost, record_events=False)
    recosted = simulate(study.recost(burst, cost), study.build(policy, "learned"), record_events=False)
    assert recosted.latencies == pytest.approx(direct.latencies, rel=1e-12)
    assert recosted.schedule == direct.schedule


def test_recosted_service_is_the_gpu_round_formula(study, burst):
    trace = study.recost(burst)[0]
    second = trace.rounds[1]                         # a decode round: T_target + n * 1.9 ms
    assert second.draft_seconds == pytest.approx(second.drafted * 0.0019)
    assert 0.021 <= second.seconds - second.draft_seconds <= 0.025
    assert trace.service_seconds == pytest.approx(sum(r.seconds for r in trace.rounds))


def test_srpt_tokens_orders_by_remaining_tokens_not_seconds(study, burst):
    gpu = study.recost(burst)
    order = completion_order(simulate(gpu, study.build("srpt-tokens", "oracle"), record_events=False))
    by_tokens = [t.custom_id for _, t in sorted(enumerate(gpu), key=lambda it: (it[1].output_tokens, it[0]))]
    assert order == by_tokens                        # ties (capped requests) in admission order
    seconds = completion_order(simulate(gpu, study.build("srpt-oracle", "oracle"), record_events=False))
    assert seconds == [t.custom_id for t in sorted(gpu, key=lambda t: t.service_seconds)]
    assert seconds != order                          # acceptance makes the two orders differ here


def test_stability_pass_round_and_estimate(study, burst):
    trace = study.recost(burst)[0]
    k = study.pass_round(trace, 1, 1.0, 1.0)         # W=1 with no limits: the first drafting round
    assert k == next(i for i, r in enumerate(trace.rounds) if r.drafted > 0)
    assert study.pass_round(trace, len(trace.rounds) + 1, 1.0, 1.0) is None
    a, n = study.own_acceptance(trace, k)
    assert a == trace.rounds[k].accepted / trace.rounds[k].drafted and n == trace.rounds[k].drafted
