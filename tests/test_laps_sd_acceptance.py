"""LAPS-SD's acceptance-blind ablation (SchedulerConfig.per_request_acceptance=False): T_rem
priced with the job's acceptance and draft length instead of the request's own."""
import pytest

from hf_laps.scheduling import RequestSpec, RoundReport, SchedulerConfig, make_policy, make_predictor

pytestmark = pytest.mark.torchfree


def spec(rid, out=100):
    return RequestSpec(rid, 0.0, 10, 1000, true_output_tokens=out)


def feed(policy, rid, rounds, accepted, drafted=4, now=0.0):
    """`rounds` identical rounds of 0.1 s (draft 0.04 s, verify 0.06 s); returns the clock."""
    for _ in range(rounds):
        now += 0.1
        policy.on_round(RoundReport(request_id=rid, drafted=drafted, accepted=accepted,
                                    emitted=accepted + 1, seconds=0.1, draft_seconds=0.04,
                                    verify_seconds=0.06, finished=False, prefill=False), now)
    return now


def two_requests(**cfg):
    """a accepts nothing, b everything; both stable after 4 rounds, 100 tokens long."""
    policy = make_policy("laps-sd", SchedulerConfig(sup1_seconds=1.0, **cfg), make_predictor("oracle"))
    policy.admit(spec("a"), 0.0)
    policy.admit(spec("b"), 0.0)
    now = feed(policy, "a", 4, accepted=0)
    feed(policy, "b", 4, accepted=4, now=now)
    return policy


def test_aware_prices_each_request_with_its_own_acceptance():
    policy = two_requests()
    a, b = policy.explain("a"), policy.explain("b")
    assert a["perceptible"] and b["perceptible"]
    # one round = 4 * 0.01 + 0.06 = 0.1 s; a emits 1 token a round, b 5
    assert a["t_rem"] == pytest.approx((100 - 4) * 0.1 / 1)
    assert b["t_rem"] == pytest.approx((100 - 20) * 0.1 / 5)
    assert policy.pick(1.0) == "b"


def test_blind_prices_every_request_with_the_jobs_acceptance():
    policy = two_requests(per_request_acceptance=False)
    a, b = policy.explain("a"), policy.explain("b")
    assert a["perceptible"] and b["perceptible"]
    # a was priced after its own 4 rounds (job A = 0/16); b after all 8 (job A = 16/32 = 0.5)
    assert a["t_rem"] == pytest.approx((100 - 4) * 0.1 / 1)
    assert b["t_rem"] == pytest.approx((100 - 20) * 0.1 / (4 * 0.5 + 1))
    feed(policy, "a", 1, accepted=0, now=1.0)         # re-priced with the job's A = 16/36
    assert policy.explain("a")["t_rem"] == pytest.approx((100 - 5) * 0.1 / (4 * 16 / 36 + 1))


def test_blind_is_a_validated_switch():
    with pytest.raises(ValueError, match="per_request_acceptance"):
        SchedulerConfig(per_request_acceptance="no")
