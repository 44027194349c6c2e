"""The prior-informed Gittins policy: index math, calibration, hysteresis, tails, replay."""
import math
import random
from pathlib import Path

import pytest

from hf_laps.scheduling import RequestSpec, RoundReport, SchedulerConfig, make_policy, make_predictor

from hf_laps.replay.traces import load_traces

from hf_laps.replay.synthetic import synthetic_traces
from hf_laps.replay.replayer import simulate
from hf_laps.scheduling.predictors.calibration import LengthCalibration, weighted_quantiles
from hf_laps.scheduling.policies.gittins import GittinsConfig, GittinsPolicy, gittins_index

pytestmark = pytest.mark.torchfree

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data"


def spec(rid, out, arrival=0.0, prompt_tokens=20, cap=2000):
    return RequestSpec(rid, arrival, prompt_tokens, cap, prompt=f"say {rid}",
                       true_output_tokens=out, true_service_seconds=0.01 * out)


def rnd(rid, emitted=10, seconds=0.1, finished=False, prefill=False):
    return RoundReport(request_id=rid, drafted=emitted - 1, accepted=emitted - 1, emitted=emitted, seconds=seconds,
                       draft_seconds=0.0, verify_seconds=seconds, finished=finished, prefill=prefill)


def gittins(config=None, predictor="oracle"):
    return GittinsPolicy(config, make_predictor(predictor))


# --- the index -------------------------------------------------------------------------------
@pytest.mark.parametrize("prefill, spt, remaining, expected", [
    (2.0, 0.5, [10.0], 7.0),                 # one point: prefill + spt * d
    (0.0, 1.0, [1.0, 9.0], 2.0),             # j=1: E=(1+1)/2=1, /(1/2) = 2;  j=2: 5/1 = 5
    (3.0, 1.0, [1.0, 9.0], 8.0),             # j=1: (3+1)/(1/2) = 8;  j=2: (3+5)/1 = 8
    (0.0, 1.0, [2.0, 2.0, 2.0], 2.0),        # ties: the full quantum wins (2/1 vs 2/(1/3))
    (0.0, 1.0, [1.0, 2.0, 3.0, 100.0], 3.0),  # j=3: E=(6+3)/4, P=3/4 -> 3; j=4 -> 26.5
])
def test_gittins_index_by_hand(prefill, spt, remaining, expected):
    assert gittins_index(prefill, spt, remaining) == pytest.approx(expected)


def test_index_is_srpt_when_the_length_is_known():
    # every support point equal: rank = prefill + spt * remaining (expected remaining time)
    assert gittins_index(1.5, 0.2, [40.0] * 64) == pytest.approx(1.5 + 0.2 * 40)


# --- calibration -----------------------------------------------------------------------------
def test_calibration_without_data_trusts_the_prediction():
    cal = LengthCalibration()
    alpha, beta = cal.coefficients()
    assert alpha == pytest.approx(0.0, abs=1e-9) and beta == pytest.approx(1.0)
    normal = [__import__("statistics").NormalDist().inv_cdf((k + 0.5) / 64) for k in range(64)]
    assert cal.residuals == pytest.approx(normal)
    assert cal.support(50.0, 2000)[32] == pytest.approx(50.0 * math.exp(normal[32]))
    assert max(cal.support(500.0, 600)) == 600          # capped


def test_calibration_recovers_alpha_beta_on_lognormal_data():
    rng = random.Random(3)
    cal = LengthCalibration()
    for _ in range(3000):
        x = rng.uniform(math.log(5), math.log(500))
        cal.observe(math.exp(x), math.exp(0.7 + 0.6 * x + rng.gauss(0.0, 0.3)))
    alpha, beta = cal.coefficients()
    assert alpha == pytest.approx(0.7, abs=0.1) and beta == pytest.approx(0.6, abs=0.03)
    normal = __import__("statistics").NormalDist(0.0, 0.3)
    for k in (6, 32, 57):
        assert cal.residuals[k] == pytest.approx(normal.inv_cdf((k + 0.5) / 64), abs=0.05)


def test_calibration_history_weight_is_capped():
    # 1,000 history pairs saying L = 10 L_hat weigh 50 in all, against the identity prior's 50
    history = [(l, 10 * l) for l in (5, 20, 80, 320) for _ in range(250)]
    alpha, beta = LengthCalibration(history).coefficients()
    assert 0.3 * math.log(10) < alpha + (beta - 1) * math.log(40) < 0.7 * math.log(10)


def test_weighted_quantiles_by_hand():
    assert weighted_quantiles([(1.0, 1.0), (2.0, 1.0), (3.0, 2.0)], 4) == [1.0, 2.0, 3.0, 3.0]


# --- speeds ----------------------------------------------------------------------------------
def test_seconds_per_token_shrinks_toward_the_job():
    policy = gittins(GittinsConfig(kappa=100.0))
    policy.admit(spec("slow", 500), 0.0)
    policy.admit(spec("fast", 500), 0.0)
    policy.on_round(rnd("slow", emitted=10, seconds=1.0, prefill=True), 1.0)
    policy.on_round(rnd("slow", emitted=10, seconds=0.4), 1.4)       # 0.04 s / token
    policy.on_round(rnd("fast", emitted=10, seconds=1.0, prefill=True), 2.4)
    policy.on_round(rnd("fast", emitted=30, seconds=0.3), 2.7)       # 0.01 s / token
    pop = 0.7 / 40
    assert policy.job_seconds_per_token() == pytest.approx(pop)
    assert policy.explain("slow")["seconds_per_token"] == pytest.approx((0.4 + 100 * pop) / 110)
    assert policy.explain("fast")["seconds_per_token"] == pytest.approx((0.3 + 100 * pop) / 130)
    # prefill per prompt token: first rounds' seconds beyond their decoding at the job's speed
    assert policy.prefill_per_token() == pytest.approx((2.0 - pop * 20) / 40)
    blind = gittins(GittinsConfig(per_request_speed=False))
    blind.admit(spec("slow", 500), 0.0)
    blind.on_round(rnd("slow", emitted=10, seconds=1.0, prefill=True), 1.0)
    blind.on_round(rnd("slow", emitted=10, seconds=0.4), 1.4)
    assert blind.explain("slow")["seconds_per_token"] == pytest.approx(0.04)


# --- hysteresis ------------------------------------------------------------------------------
def _running_then_newcomer(hysteresis, newcomer_out):
    policy = gittins(GittinsConfig(hysteresis=hysteresis))
    policy.admit(spec("a", 100), 0.0)
    assert policy.pick(0.0) == "a"
    policy.on_round(rnd("a", emitted=2, seconds=0.05, prefill=True), 0.05)
    policy.admit(spec("b", newcomer_out, arrival=0.05), 0.05)
    return policy, policy.explain("a")["rank"], policy.explain("b")["rank"]


def test_hysteresis_keeps_the_running_request_against_a_slightly_better_one():
    policy, rank_a, rank_b = _running_then_newcomer(0.3, 80)
    assert 0.7 * rank_a <= rank_b < rank_a          # better, but inside the band
    assert policy.pick(0.05) == "a"
    eager, _, _ = _running_then_newcomer(0.0, 80)
    assert eager.pick(0.05) == "b"                  # without hysteresis it would switch
    clear, rank_a, rank_b = _running_then_newcomer(0.3, 30)
    assert rank_b < 0.7 * rank_a and clear.pick(0.05) == "b"


def ping_pongs(schedule):
    """A runs, B preempts it, A preempts B back before B finished (A, B, A segments)."""
    segments = [rid for k, rid in enumerate(schedule) if k == 0 or schedule[k - 1] != rid]
    last_segment = {rid: k for k, rid in enumerate(segments)}
    return sum(1 for k in range(len(segments) - 2)
               if segments[k] == segments[k + 2] and last_segment[segments[k + 1]] > k + 1)


def test_hysteresis_cuts_preemptions_and_ping_pong():
    preemptions, pongs = {0.0: 0, 0.3: 0}, {0.0: 0, 0.3: 0}
    for seed in range(3):
        traces = synthetic_traces(60, tail="heavy", arrivals="poisson", utilisation=0.9,
                                  seed=50 + seed)
        for h in preemptions:
            policy = GittinsPolicy(GittinsConfig(hysteresis=h),
                                   make_predictor("noisy-oracle", sigma=0.5, seed=seed))
            result = simulate(traces, policy)
            preemptions[h] += result.preemptions
            pongs[h] += ping_pongs(result.schedule)
    print(preemptions, pongs)
    assert preemptions[0.3] < preemptions[0.0] and pongs[0.3] < pongs[0.0]


# --- tails -----------------------------------------------------------------------------------
def _overrun_policy():
    """'late' was predicted at 10 tokens and has emitted 300 (past every support point)."""
    policy = gittins()
    policy.admit(spec("late", 10, prompt_tokens=0), 0.0)
    policy.on_round(rnd("late", emitted=10, seconds=0.1, prefill=True), 0.1)
    for k in range(29):
        policy.on_round(rnd("late", emitted=10, seconds=0.1), 0.2 + 0.1 * k)
    return policy


def test_a_request_past_its_prediction_is_ranked_by_its_tail_not_by_one_more_token():
    policy = _overrun_policy()
    info = policy.explain("late")
    assert info["generated_tokens"] == 300
    # past every support point: expected remaining = 0.1 g + 1 = 31 tokens
    assert info["rank"] == pytest.approx(info["seconds_per_token"] * 31)
    policy.admit(spec("tiny", 5, prompt_tokens=0), 3.0)     # 5 tokens: really shorter
    policy.admit(spec("long", 300, prompt_tokens=0), 3.0)   # 300 tokens: really longer
    ranks = {rid: policy.explain(rid)["rank"] for rid in ("late", "tiny", "long")}
    # not jumping ahead wrongly (the L_hat = g + 1 rule would make it look 1 token from done),
    # nor starved behind a request that is longer than its expected remainder
    assert ranks["tiny"] < ranks["late"] < ranks["long"]
    assert policy.pick(3.0) == "tiny"


def test_a_request_within_its_support_uses_the_conditional_tail():
    policy = gittins()
    policy.admit(spec("r", 40, prompt_tokens=0), 0.0)
    policy.on_round(rnd("r", emitted=5, seconds=0.05, prefill=True), 0.05)
    early = policy.explain("r")["rank"]
    for k in range(5):                                       # 55 tokens, past L_hat = 40
        policy.on_round(rnd("r", emitted=10, seconds=0.1), 0.15 + 0.1 * k)
    info = policy.explain("r")
    support = policy.calibration.support(40.0, 2000)
    tail = [x - 55 for x in support if x > 55]
    assert 0 < len(tail) < 64
    assert info["rank"] == pytest.approx(gittins_index(0.0, info["seconds_per_token"], tail))
    # not the L_hat = g + 1 rule ("one token left"): the tail still holds many tokens
    assert info["rank"] > 5 * info["seconds_per_token"] and early > 0


# --- decisions over whole workloads ---------------------------------------------------------
@pytest.mark.parametrize("config", [GittinsConfig(), GittinsConfig(per_request_speed=False),
                                    GittinsConfig(hysteresis=0.0, sweep_per_round=0)])
def test_work_conservation(config):
    for seed, arrivals in ((0, "burst"), (1, "poisson")):
        traces = synthetic_traces(40, tail="heavy", arrivals=arrivals, seed=seed,
                                  utilisation=0.9 if arrivals == "poisson" else None)
        result = simulate(traces, GittinsPolicy(config, make_predictor("learned")))
        assert result.busy_seconds == pytest.approx(sum(t.service_seconds for t in traces))
        clock = None
        for t in sorted(traces, key=lambda t: t.arrival):
            clock = t.arrival if clock is None else max(clock, t.arrival)
            clock += t.service_seconds
        assert result.makespan == pytest.approx(clock - min(t.arrival for t in traces))
        assert len(result.schedule) == sum(len(t.rounds) for t in traces)


def test_lazy_refresh_picks_within_the_refresh_band_of_the_exact_argmin():
    traces = synthetic_traces(150, tail="heavy", seed=11)
    policy = GittinsPolicy(GittinsConfig(sweep_per_round=0), make_predictor("oracle"))
    by_id = {t.custom_id: t for t in traces}
    for t in traces:
        policy.admit(t.to_request(), 0.0)
    cursor, now, checked = dict.fromkeys(by_id, 0), 0.0, 0
    while len(policy):
        rid = policy.pick(now)
        if rid != policy._running:
            exact = min(policy.rank(s) for s in policy._states.values())
            assert policy.rank(policy._states[rid]) <= exact * 1.05 ** 2 + 1e-12
            checked += 1
        trace, k = by_id[rid], cursor[rid]
        r = trace.rounds[k]
        cursor[rid] += 1
        now += r.seconds
        policy.on_round(RoundReport(request_id=rid, drafted=r.drafted, accepted=r.accepted, emitted=r.accepted + 1,
                                    seconds=r.seconds, draft_seconds=r.draft_seconds or 0.0,
                                    verify_seconds=r.seconds - (r.draft_seconds or 0.0),
                                    finished=k == len(trace.rounds) - 1, prefill=k == 0), now)
    assert checked >= 150


def test_replay_synthetic_beats_fcfs_and_stays_near_srpt_oracle():
    ratios = []
    for seed in range(3):
        traces = synthetic_traces(80, tail="heavy", arrivals="poisson", utilisation=0.9,
                                  seed=70 + seed)
        fcfs = simulate(traces, "fcfs").mean_latency
        srpt = simulate(traces, "srpt-oracle").mean_latency
        mean = simulate(traces, GittinsPolicy(predictor=make_predictor("oracle"))).mean_latency
        ratios.append(mean / srpt)
        assert mean < 0.8 * fcfs
    assert sum(ratios) / len(ratios) < 1.15


def test_replay_of_a_real_recording_beats_fcfs_and_lp_sjf():
    traces = [t.with_arrival(0.0) for t in load_traces(DATA / "mixed-30.fcfs.timing.jsonl")]
    fcfs = simulate(traces, "fcfs").mean_latency
    lp_sjf = simulate(traces, "lp-sjf", predictor=make_predictor("oracle")).mean_latency
    oracle = simulate(traces, "gittins", predictor=make_predictor("oracle"))
    learned = simulate(traces, "gittins", predictor=make_predictor("learned"))
    assert oracle.mean_latency < 0.97 * lp_sjf and oracle.preemptions == 0
    assert learned.mean_latency < fcfs


# --- registry and config ---------------------------------------------------------------------
def test_registry_builds_gittins_with_the_given_predictor():
    predictor = make_predictor("oracle")
    policy = make_policy("gittins", predictor=predictor)
    assert isinstance(policy, GittinsPolicy) and policy.predictor is predictor
    with pytest.raises(ValueError, match="needs a length predictor"):
        GittinsPolicy()


@pytest.mark.parametrize("field, value", [("hysteresis", 1.0), ("hysteresis", -0.1),
                                          ("quantiles", 0), ("kappa", -1.0),
                                          ("kappa", math.inf), ("per_request_speed", "yes"),
                                          ("prior_residual_weight", 0.0),
                                          ("sweep_per_round", 1.5)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        GittinsConfig(**{field: value})


# --- laps-sd's probe switch ------------------------------------------------------------------
def test_laps_sd_without_probe_is_perceptible_at_admission():
    traces = synthetic_traces(12, tail="heavy", seed=5)
    shortest = min(traces, key=lambda t: t.output_tokens).custom_id
    first_arrival = traces[0].custom_id
    paper = simulate(traces, "laps-sd", predictor=make_predictor("oracle"))
    no_probe = simulate(traces, "laps-sd", config=SchedulerConfig(probe=False),
                        predictor=make_predictor("oracle"))
    assert paper.schedule[0] == first_arrival                     # probing: FCFS in queue 1
    assert not [e for e in paper.events if e["event"] == "perceptible" and e["time"] == 0.0]
    admits = [e for e in no_probe.events if e["event"] == "perceptible"]
    assert len(admits) == 12 and all(e["time"] == 0.0 for e in admits)
    assert no_probe.schedule[0] == shortest != first_arrival
    assert no_probe.mean_latency < paper.mean_latency
    with pytest.raises(ValueError, match="probe"):
        SchedulerConfig(probe="no")
