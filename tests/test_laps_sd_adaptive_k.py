"""Adaptive K (SchedulerConfig.adaptive_queues_cv2): one queue while predicted lengths are alike,
num_queues for good once their squared coefficient of variation reaches the threshold."""
import pytest

from hf_laps.scheduling import RequestSpec, RoundReport, SchedulerConfig, make_policy, make_predictor

pytestmark = pytest.mark.torchfree


def spec(rid, out=100, max_new=1000):
    return RequestSpec(rid, 0.0, 10, max_new, true_output_tokens=out)


def feed(policy, rid, rounds, now=0.0):
    """Rounds of 0.5 s that never pass the stability test (acceptance alternates 0 / 1)."""
    for i in range(rounds):
        now += 0.5
        accepted = 4 * (i % 2)
        policy.on_round(RoundReport(request_id=rid, drafted=4, accepted=accepted, emitted=accepted + 1,
                                    seconds=0.5, draft_seconds=0.04, verify_seconds=0.46,
                                    finished=False, prefill=False), now)
    return now


def laps(policy="laps-sd", **cfg):
    config = SchedulerConfig(sup1_seconds=1.0, num_queues=4, adaptive_queues_cv2=0.2, **cfg)
    return make_policy(policy, config, make_predictor("oracle") if policy == "laps-sd" else None)


def admit_alike(policy):
    """a (100 tokens), b (110) and five more of 100: 7 alike lengths."""
    policy.admit(spec("a", out=100), 0.0)
    policy.admit(spec("b", out=110), 0.0)
    for i in range(5):
        policy.admit(spec(f"x{i}", out=100), 0.0)


def test_alike_lengths_keep_one_queue_so_no_demotion():
    policy = laps()
    admit_alike(policy)
    policy.admit(spec("y", out=105), 0.0)                # 8 lengths, C^2 = 0.0008 < 0.2
    feed(policy, "a", 5)                                 # 2.5 s attained, past Sup_1 = 1 and Sup_2 = 2
    assert policy.active_queues == 1 and policy.thresholds == []
    assert policy.explain("a")["queue"] == 1
    assert policy.pick(3.0) == "a"                       # one queue: a keeps running (run to threshold)


def test_spread_lengths_switch_to_all_queues_and_replace_everyone():
    policy = laps()
    admit_alike(policy)
    now = feed(policy, "a", 5)
    assert policy.active_queues == 1
    policy.admit(spec("c", out=400), now)                # 100, 110, 5 x 100, 400: C^2 = 0.507
    assert policy.active_queues == 4 and policy.thresholds == [1.0, 2.0, 4.0]
    assert policy.explain("a")["queue"] == 3             # 2.5 s attained: Sup_2 = 2 <= 2.5 < Sup_3 = 4
    assert policy.pick(now) == "b"                       # queue 1 (b, c unstarted) before a
    switch = [e for e in policy.drain_events() if e["event"] == "queues"]
    assert len(switch) == 1 and switch[0]["active_queues"] == 4
    assert switch[0]["length_cv2"] == pytest.approx(0.5070, abs=1e-3)
    policy.admit(spec("d", out=100), now)                # for good: no switch back
    assert policy.active_queues == 4


def test_fixed_k_is_the_default():
    policy = make_policy("laps-sd", SchedulerConfig(sup1_seconds=1.0), make_predictor("oracle"))
    assert policy.active_queues == 4 and policy.thresholds == [1.0, 2.0, 4.0]


def test_las_measures_the_spread_of_the_caps():
    policy = laps("las")
    for i, cap in enumerate((128, 16) * 4):
        assert policy.active_queues == 1                 # fewer than 8 lengths: no decision yet
        policy.admit(spec(f"r{i}", max_new=cap), 0.0)
    assert policy.active_queues == 4                     # 4 x 128, 4 x 16: C^2 = 0.60


def test_a_spread_among_the_first_few_requests_is_not_enough():
    policy = laps()
    policy.admit(spec("a", out=100), 0.0)
    policy.admit(spec("b", out=10), 0.0)                 # C^2 = 0.67 on 2 lengths: noise
    assert policy.active_queues == 1


@pytest.mark.parametrize("value", [-0.1, float("inf"), "big", True])
def test_threshold_is_validated(value):
    with pytest.raises(ValueError, match="adaptive_queues_cv2"):
        SchedulerConfig(adaptive_queues_cv2=value)
