"""Gittins over the predictor's own distribution: per-kind residuals of the hidden predictor,
the policy ranking by them, and the starvation guard."""
import math
import random
from statistics import NormalDist

import pytest

from hf_laps.scheduling import RequestSpec, RoundReport, make_predictor
from hf_laps.scheduling.policies.gittins import GittinsConfig, GittinsPolicy, gittins_index
from hf_laps.scheduling.predictors.hidden import (RESIDUAL_WINDOW, HiddenStatePredictor,
                                                 ResidualWindow)
from hf_laps.scheduling.predictors.base import LengthPredictor

pytestmark = pytest.mark.torchfree


def mixed_kinds(count, seed=0):
    """Chat replies that run to their cap (64) and completions with stop strings that stop after
    2 tokens or after ~60, at random: the same cheap features within each kind."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2:
            out.append((RequestSpec(f"chat{i}", 0.0, 40, 64, is_chat=True), 64))
        else:
            length = 2 if rng.random() < 0.5 else rng.randint(50, 70)
            out.append((RequestSpec(f"code{i}", 0.0, 40, 256, has_stop=True), length))
    return out


def test_residuals_are_kept_per_kind_of_request():
    predictor = HiddenStatePredictor().fit(mixed_kinds(200))
    levels = [0.1, 0.5, 0.9]
    chat = predictor.predict_quantiles(RequestSpec("c", 0.0, 40, 64, is_chat=True), levels)
    code = predictor.predict_quantiles(RequestSpec("k", 0.0, 40, 256, has_stop=True), levels)
    # chat replies always run to the cap: their distribution is (almost) a point at 64
    assert chat[0] > 50 and chat[-1] == 64
    # completions are bimodal: the 10 % quantile is the 2-token mode, the 90 % one ~60 tokens
    assert code[0] <= 3 and 45 <= code[-1] <= 80


def test_a_kind_without_residuals_gets_a_prior():
    predictor = HiddenStatePredictor(min_residuals=10).fit(mixed_kinds(200))
    levels = [0.02, 0.5, 0.98]
    # never seen, with stop strings: it may end anywhere below the cap (log-uniform)
    rare_stop = RequestSpec("r", 0.0, 40, 256, has_stop=True, is_chat=True)
    assert predictor.predict_quantiles(rare_stop, levels) == pytest.approx(
        [max(256 ** q, 1.0) for q in levels])
    # never seen, no stop strings: a factor e either way around the model's prediction
    rare_plain = RequestSpec("p", 0.0, 40, 4096)
    mid = predictor.predict(rare_plain)
    z = [NormalDist().inv_cdf(q) for q in levels]
    assert predictor.predict_quantiles(rare_plain, levels) == pytest.approx(
        [min(max(mid * math.exp(e), 1.0), 4096) for e in z])


def test_residual_window_keeps_the_latest_values_sorted():
    window = ResidualWindow()
    values = [math.sin(k) for k in range(RESIDUAL_WINDOW + 50)]
    for v in values:
        window.add(v)
    assert len(window) == RESIDUAL_WINDOW
    assert window.ordered == sorted(values[50:])
    assert list(window) == values[50:]


class Bimodal(LengthPredictor):
    """Same point prediction for everyone; request ids starting with 'split' are either very
    short or long (half each), the others are exactly their prediction."""

    name = "bimodal"

    def predict(self, request):
        return 50.0

    def predict_quantiles(self, request, qs):
        if request.request_id.startswith("split"):
            return [2.0 if q < 0.5 else 98.0 for q in qs]
        return [50.0 for _ in qs]


def test_the_policy_ranks_by_the_predictors_quantiles():
    # equal medians-ish and the split one arrives second; only its distribution can put it first
    policy = GittinsPolicy(GittinsConfig(), Bimodal())
    policy.admit(RequestSpec("plain", 0.0, 10, 100), 0.0)
    policy.admit(RequestSpec("split", 0.0, 10, 100), 0.0)
    assert policy.pick(0.0) == "split"
    n = GittinsConfig().quantiles
    support = [2.0] * (n // 2) + [98.0] * (n // 2)
    spt = policy.job_seconds_per_token()
    assert policy.explain("split")["rank"] == pytest.approx(gittins_index(0.0, spt, support))
    calibrated = GittinsPolicy(GittinsConfig(predictor_quantiles=False), Bimodal())
    calibrated.admit(RequestSpec("plain", 0.0, 10, 100), 0.0)
    calibrated.admit(RequestSpec("split", 0.0, 10, 100), 0.0)
    assert calibrated.pick(0.0) == "plain"          # the point prediction cannot tell them apart


def test_past_its_short_mode_a_request_is_ranked_by_the_long_one():
    policy = GittinsPolicy(GittinsConfig(hysteresis=0.0), Bimodal())
    policy.admit(RequestSpec("split", 0.0, 10, 100), 0.0)
    policy.admit(RequestSpec("plain", 0.0, 10, 100), 0.0)
    assert policy.pick(0.0) == "split"
    policy.on_round(RoundReport(request_id="split", drafted=0, accepted=0, emitted=3,
                                seconds=0.3, draft_seconds=0.0, verify_seconds=0.3,
                                finished=False, prefill=True), 0.3)
    # 95 tokens left for sure now, against 50 for the plain one
    assert policy.pick(0.3) == "plain"


def test_starvation_guard_serves_the_oldest_request_after_a_long_wait():
    def picks(starvation):
        policy = GittinsPolicy(GittinsConfig(starvation=starvation), make_predictor("oracle"))
        policy.admit(RequestSpec("long", 0.0, 10, 1000, true_output_tokens=300), 0.0)
        policy.admit(RequestSpec("quick", 0.0, 10, 1000, true_output_tokens=1), 0.0)
        policy.on_round(RoundReport(request_id="quick", drafted=0, accepted=0, emitted=1,
                                    seconds=2.0, draft_seconds=0.0, verify_seconds=2.0,
                                    finished=True, prefill=True), 2.0)    # mean latency 2 s
        policy.admit(RequestSpec("short", 3.0, 10, 1000, true_output_tokens=5), 3.0)
        return policy.pick(5.0), policy.pick(9.0)
    # by t = 5 'long' has waited 5 s (2.5x the mean latency), by t = 9 it has waited 9 s (4.5x)
    assert picks(0.0) == ("short", "short")    # off: the shorter request runs first
    assert picks(4.0) == ("short", "long")     # past 4x the mean latency the oldest runs
    assert picks(2.0) == ("long", "long")


@pytest.mark.parametrize("field, value", [("predictor_quantiles", "yes"), ("starvation", -0.5),
                                          ("starvation", math.inf)])
def test_new_knobs_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        GittinsConfig(**{field: value})
