"""FCFS, LP-SJF, SRPT-oracle and the shared Policy contract, driven by hand (no model)."""
import json

import pytest

from hf_laps.scheduling import (POLICY_NAMES, RequestSpec, RoundReport, make_policy,
                                make_predictor)

pytestmark = pytest.mark.torchfree


def spec(rid, arrival=0.0, out=10, service=1.0, max_new=100):
    return RequestSpec(rid, arrival, prompt_tokens=20, max_new_tokens=max_new, prompt=f"say {rid}",
                       true_output_tokens=out, true_service_seconds=service)


def rep(rid, seconds=0.1, drafted=4, accepted=2, finished=False, prefill=False):
    return RoundReport(request_id=rid, drafted=drafted, accepted=accepted, emitted=accepted + 1, seconds=seconds,
                       draft_seconds=0.02 * drafted, verify_seconds=seconds - 0.02 * drafted,
                       finished=finished, prefill=prefill)


def fresh(name):
    needs = name in ("lp-sjf", "laps-sd")
    return make_policy(name, predictor=make_predictor("oracle") if needs else None)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_contract(name):
    policy = fresh(name)
    assert policy.name == name and len(policy) == 0 and policy.pick(0.0) is None
    policy.admit(spec("a", out=30, service=3.0), 0.0)
    policy.admit(spec("b", out=10, service=1.0), 0.0)
    with pytest.raises(ValueError, match="already admitted"):
        policy.admit(spec("a"), 0.0)
    assert len(policy) == 2
    first = policy.pick(0.0)
    assert first in ("a", "b") and policy.pick(0.0) == first      # pick has no side effects
    policy.on_round(rep(first, prefill=True), 0.1)
    info = policy.explain(first)
    assert info["request_id"] == first and info["state"] in ("running", "waiting")
    assert info["attained_seconds"] == pytest.approx(0.1) and info["rounds"] == 1
    json.dumps(info, allow_nan=False)
    policy.on_round(rep(first, finished=True), 0.2)
    assert len(policy) == 1 and policy.explain(first)["state"] == "finished"
    with pytest.raises(KeyError, match="already finished"):
        policy.on_round(rep(first), 0.3)
    with pytest.raises(KeyError, match="never admitted"):
        policy.on_round(rep("zzz"), 0.3)
    with pytest.raises(KeyError):
        policy.explain("zzz")
    events = policy.drain_events()
    assert [e["event"] for e in events[:2]] == ["admit", "admit"]
    assert all({"request_id", "time", "event", "queue"} <= set(e) for e in events)
    assert policy.drain_events() == []
    other = "b" if first == "a" else "a"
    assert policy.pick(0.3) == other


def test_fcfs_runs_to_completion_in_arrival_order():
    policy = fresh("fcfs")
    policy.admit(spec("late", arrival=1.0), 1.0)
    policy.admit(spec("early", arrival=0.5), 1.0)   # admitted later, arrived earlier
    assert policy.pick(1.0) == "early"
    policy.on_round(rep("early"), 1.1)
    policy.admit(spec("earliest", arrival=0.0), 1.1)
    assert policy.pick(1.1) == "early"               # non-preemptive
    policy.on_round(rep("early", finished=True), 1.2)
    assert policy.pick(1.2) == "earliest"


def test_lp_sjf_shortest_prediction_first_and_non_preemptive():
    policy = fresh("lp-sjf")
    policy.admit(spec("long", out=90), 0.0)
    policy.admit(spec("mid", out=50), 0.0)
    assert policy.pick(0.0) == "mid"
    policy.on_round(rep("mid"), 0.1)
    policy.admit(spec("short", out=5), 0.1)
    assert policy.pick(0.1) == "mid"                 # keeps running until it finishes
    assert policy.explain("short")["l_hat"] == 5
    policy.on_round(rep("mid", finished=True), 0.2)
    assert policy.pick(0.2) == "short"


def test_srpt_oracle_preempts_on_true_remaining_time():
    policy = fresh("srpt-oracle")
    policy.admit(spec("a", service=1.0), 0.0)
    policy.admit(spec("b", service=0.95), 0.0)
    assert policy.pick(0.0) == "b"
    policy.on_round(rep("b", seconds=0.1), 0.1)       # b: 0.85 left
    policy.admit(spec("c", service=0.5), 0.1)
    assert policy.pick(0.1) == "c"                   # b is preempted
    assert policy.explain("b")["remaining_seconds"] == pytest.approx(0.85)


def test_srpt_oracle_needs_the_truth():
    policy = fresh("srpt-oracle")
    with pytest.raises(ValueError, match="needs RequestSpec.true_service_seconds"):
        policy.admit(RequestSpec("x", 0.0, 10, 10), 0.0)


def test_predictor_policies_feed_finished_lengths_back():
    predictor = make_predictor("learned")
    policy = make_policy("lp-sjf", predictor=predictor)
    policy.admit(spec("a"), 0.0)
    policy.on_round(rep("a", seconds=0.1, drafted=4, accepted=3, prefill=True), 0.1)
    policy.on_round(rep("a", seconds=0.1, drafted=4, accepted=3, finished=True), 0.2)
    assert predictor.observations == 1


def test_default_predictor_is_a_cold_learned_one():
    policy = make_policy("laps-sd")
    assert policy.predictor.name == "learned" and policy.predictor.observations == 0
    assert make_policy("las").predictor is None
