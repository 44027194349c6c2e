"""LAPS-SD and LAS driven round by round: thresholds, demotion, stability, T_rem, placement."""
import math

import pytest

from hf_laps.scheduling import RequestSpec, RoundReport, SchedulerConfig, make_policy, make_predictor
from hf_laps.scheduling.policies.stability import StabilityTest

pytestmark = pytest.mark.torchfree


def spec(rid, arrival=0.0, out=100, max_new=1000):
    return RequestSpec(rid, arrival, 10, max_new, true_output_tokens=out)


def rnd(rid, accepted=2, drafted=4, seconds=0.1, t_draft=0.01, prefill=False, finished=False):
    return RoundReport(request_id=rid, drafted=drafted, accepted=accepted, emitted=accepted + 1, seconds=seconds,
                       draft_seconds=drafted * t_draft, verify_seconds=seconds - drafted * t_draft,
                       finished=finished, prefill=prefill)


def laps(**cfg):
    return make_policy("laps-sd", SchedulerConfig(**cfg), make_predictor("oracle"))


def run(policy, rid, rounds, now=0.0, **kw):
    """Feed `rounds` identical rounds of `rid`; returns the clock."""
    for _ in range(rounds):
        report = rnd(rid, **kw)
        now += report.seconds
        policy.on_round(report, now)
    return now


# --- Sup_1 measurement and thresholds (docs/design.md#sup1-measured) -------------------------
def test_sup1_is_eight_measured_rounds_then_frozen():
    policy = make_policy("las")
    policy.admit(spec("a"), 0.0)
    assert policy.thresholds == [math.inf] * 3                # fallback: nothing measured
    policy.on_round(rnd("a", seconds=5.0, prefill=True), 5.0)  # prefill rounds are not measured
    assert policy.thresholds == [math.inf] * 3
    assert policy.explain("a")["queue"] == 1                   # no demotion before measurement
    run(policy, "a", 1, seconds=0.2)
    assert policy.thresholds == pytest.approx([1.6, 3.2, 6.4])  # provisional: 8 * 0.2
    run(policy, "a", 7, seconds=0.1)
    sup1 = 8 * (0.2 + 7 * 0.1) / 8
    assert policy.thresholds == pytest.approx([sup1, 2 * sup1, 4 * sup1])
    run(policy, "a", 5, seconds=1.0)                           # frozen after 8 rounds
    assert policy.thresholds == pytest.approx([sup1, 2 * sup1, 4 * sup1])


def test_fixed_sup1_and_rounds_unit():
    assert make_policy("las", SchedulerConfig(sup1_seconds=0.3, num_queues=3)).thresholds == \
        pytest.approx([0.3, 0.6])
    policy = make_policy("las", SchedulerConfig(attained_unit="rounds"))
    assert policy.thresholds == [8.0, 16.0, 32.0]
    policy.admit(spec("a"), 0.0)
    run(policy, "a", 8, seconds=7.0)
    assert policy.explain("a")["queue"] == 2 and policy.explain("a")["attained"] == 8


# --- demotion by attained service (docs/design.md#attained-seconds, #run-to-threshold) --------
def test_demotion_at_each_threshold_and_unbounded_last_queue():
    policy = make_policy("las", SchedulerConfig(sup1_seconds=1.0))   # Sup = 1, 2, 4
    for rid in "ab":
        policy.admit(spec(rid), 0.0)
    queues, now = [], 0.0
    while policy.pick(now) == "a":          # b waits in queue 1 until a is demoted
        now = run(policy, "a", 1, now=now, seconds=0.25)
        queues.append(policy.explain("a")["queue"])
    # a crossed Sup_1 = 1.0 after 4 rounds: demoted, and b (queue 1) takes over.
    assert queues == [1, 1, 1, 2] and policy.pick(now) == "b"
    events = [e for e in policy.drain_events() if e["event"] == "demote"]
    assert events == [{"request_id": "a", "time": pytest.approx(1.0), "event": "demote",
                       "queue": 2, "from_queue": 1, "attained": pytest.approx(1.0)}]
    now = run(policy, "b", 1, now=now, seconds=9.0)   # one huge round: straight to queue K = 4
    assert policy.explain("b")["queue"] == 4
    assert policy.explain("b")["queue_bounds"] == [4.0, None]
    assert policy.pick(now) == "a"                    # queue 2 before queue 4
    run(policy, "b", 1, now=now, seconds=100.0)       # queue K has no upper bound
    assert policy.explain("b")["queue"] == 4


def test_higher_queue_preempts_at_round_boundary_but_queue_mates_do_not():
    policy = make_policy("las", SchedulerConfig(sup1_seconds=1.0))
    policy.admit(spec("a", arrival=1.0), 1.0)
    run(policy, "a", 2, now=1.0, seconds=0.25)          # a running in queue 1
    policy.admit(spec("early", arrival=0.5), 1.5)       # earlier arrival, same queue
    assert policy.pick(1.5) == "a"                      # run to threshold: a queue-mate waits
    off = make_policy("las", SchedulerConfig(sup1_seconds=1.0, run_to_threshold=False))
    off.admit(spec("a", arrival=1.0), 1.0)
    run(off, "a", 2, now=1.0, seconds=0.25)
    off.admit(spec("early", arrival=0.5), 1.5)
    assert off.pick(1.5) == "early"                     # ablation: FCFS head wins
    run(policy, "a", 2, now=1.5, seconds=0.25)          # a reaches Sup_1: demoted to queue 2
    assert policy.pick(2.0) == "early"
    run(policy, "early", 1, now=2.0, seconds=0.25)
    policy.admit(spec("new", arrival=2.25), 2.25)
    assert policy.pick(2.25) == "early"                 # queue-mate arrival: no preemption
    run(policy, "early", 3, now=2.25, seconds=0.25)     # early -> queue 2 (behind nobody new)
    assert policy.pick(3.0) == "new"                    # queue 1 beats queue 2


# --- stability test (docs/design.md#stability-test) ----------------------------------------
def test_stability_test_window_delta_gamma():
    test = StabilityTest(window=4, delta=0.05, gamma=0.25)
    assert [test.update(4, 2) for _ in range(4)] == [False, False, False, True]
    drifting = StabilityTest(window=4, delta=0.05, gamma=0.25)
    for accepted in (4, 0, 4, 0):          # per-round std 0.5 > gamma
        assert not drifting.update(4, accepted)
    assert drifting.spread() == pytest.approx(0.5)
    mean_moves = StabilityTest(window=4, delta=0.05, gamma=1.0)
    for accepted in (0, 4, 4, 4):          # running mean 0, .5, .67, .75: moved > delta
        assert not mean_moves.update(4, accepted)
    assert mean_moves.drift() == pytest.approx(0.75)
    skip = StabilityTest(window=2, delta=0.0, gamma=0.0)
    assert not skip.update(0, 0) and not skip.update(4, 1) and skip.update(4, 1)


def test_becomes_perceptible_with_the_spec_estimate():
    policy = laps(sup1_seconds=1.0)
    policy.admit(spec("a", out=100), 0.0)
    policy.admit(spec("b", out=100), 0.0)
    run(policy, "a", 3, seconds=0.1)
    assert not policy.explain("a")["perceptible"]
    run(policy, "a", 1, seconds=0.1)                     # 4 identical rounds: stable
    info = policy.explain("a")
    assert info["perceptible"] and info["a_hat"] == 0.5 and info["generated_tokens"] == 12
    # T_draft = 0.04 s / 4 tokens, T_target = 0.06 s: one round = 0.1 s, n*A + 1 = 3 tokens.
    expected = (100 - 12) * (4 * 0.01 + 0.06) / (4 * 0.5 + 1)
    assert info["t_rem"] == pytest.approx(expected) and info["l_hat"] == 100
    assert info["queue"] == 3                            # Sup_2 = 2 <= 2.93 < Sup_3 = 4
    event = [e for e in policy.drain_events() if e["event"] == "perceptible"][0]
    assert event["queue"] == 3 and event["from_queue"] == 1
    assert event["t_rem"] == pytest.approx(expected)
    assert policy.pick(0.4) == "b"                       # queue 1 (b) before queue 3 (a)


def test_perceptible_may_move_up_and_goes_before_non_perceptible():
    policy = laps(sup1_seconds=1.0, stability_delta=1.0)
    policy.admit(spec("a", out=20), 0.0)
    policy.admit(spec("b", out=500), 0.0)
    now = 0.0
    for accepted in (0, 4, 2, 2):       # rates 0, 1, .5, .5: std 0.35 > gamma, not stable
        now = run(policy, "a", 1, now=now, accepted=accepted, seconds=0.3)
    info = policy.explain("a")
    assert not info["perceptible"] and info["queue"] == 2       # attained 1.2 >= Sup_1
    assert policy.pick(now) == "b"
    now = run(policy, "a", 1, now=now, accepted=2, seconds=0.3)  # window std 0.22: stable
    info = policy.explain("a")
    # g = 15, A_hat = 10/20, T_rem = (20 - 15) * 0.3 / 3 = 0.5 < Sup_1: promoted to queue 1,
    # where perceptible requests run before non-perceptible b.
    assert info["perceptible"] and info["t_rem"] == pytest.approx(0.5)
    assert info["queue"] == 1 and policy.pick(now) == "a"
    event = [e for e in policy.drain_events() if e["event"] == "perceptible"][0]
    assert (event["from_queue"], event["queue"]) == (2, 1)


def test_perceptible_srpt_on_estimates_inside_a_queue():
    policy = laps(sup1_seconds=100.0)
    for rid, out in (("long", 90), ("short", 40)):
        policy.admit(spec(rid, out=out), 0.0)
        run(policy, rid, 4, seconds=0.1)
        if rid == "long":
            assert policy.pick(0.0) == "long"            # alone among perceptible ones
    assert policy.explain("short")["t_rem"] < policy.explain("long")["t_rem"]
    assert policy.pick(1.0) == "short"
    assert policy.pick(1.0) != "long"             # long is preempted


def test_length_estimate_never_below_generated_plus_one():
    policy = laps(sup1_seconds=100.0)
    policy.admit(spec("a", out=5, max_new=1000), 0.0)     # the oracle says 5 tokens...
    run(policy, "a", 4, seconds=0.1)                      # ...but 12 are out already
    info = policy.explain("a")
    assert info["l_hat"] == 13 and info["t_rem"] == pytest.approx(0.1 / 3)


def test_las_never_perceptible():
    policy = make_policy("las")
    policy.admit(spec("a"), 0.0)
    run(policy, "a", 20, seconds=0.1)
    assert not policy.explain("a")["perceptible"] and policy.explain("a")["t_rem"] is None
    assert {e["event"] for e in policy.drain_events()} <= {"admit", "demote", "move"}


def test_laps_needs_a_predictor():
    from hf_laps.scheduling import LapsSDPolicy
    with pytest.raises(ValueError, match="needs a length predictor"):
        LapsSDPolicy(SchedulerConfig(), None)
