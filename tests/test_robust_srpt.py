"""robust-srpt on replayed traces: online calibration, the aging bound, hysteresis, registry."""
from __future__ import annotations

from pathlib import Path

import pytest

from hf_laps.replay.scenarios import poisson_sets
from hf_laps.replay.replayer import simulate
from hf_laps.scheduling import RequestSpec, RoundReport, make_policy, make_predictor
from hf_laps.replay.traces import load_traces
from hf_laps.scheduling.predictors.base import LengthPredictor
from hf_laps.scheduling.policies.robust_srpt import RobustSRPTConfig, RobustSRPTPolicy
from hf_laps.stats import percentile

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data"


class InvertedPredictor(LengthPredictor):
    """Ranks exactly backwards: the longest request looks the shortest (calibration is off)."""

    name = "inverted"

    def predict(self, request: RequestSpec) -> float:
        return 1e5 / max(request.true_output_tokens, 1)


@pytest.fixture(scope="module")
def natural():
    return load_traces(DATA / "natural.features.jsonl")


def burst(traces, count=60):
    return [t.with_arrival(0.0) for t in traces[:count]]


def mean_latency(traces, policy, **kwargs) -> float:
    return simulate(traces, policy, record_events=False, **kwargs).mean_latency


def test_close_to_srpt_oracle_with_exact_lengths(natural):
    traces = burst(natural)
    robust = mean_latency(traces, RobustSRPTPolicy(predictor=make_predictor("oracle")))
    assert robust <= 1.15 * mean_latency(traces, "srpt-oracle")
    assert robust < 0.7 * mean_latency(traces, "fcfs")


def test_online_calibration_undoes_a_backwards_predictor(natural):
    """A predictor that ranks backwards sinks lp-sjf 40 % below fcfs in a stream; robust-srpt
    learns a negative slope from the finished requests and ends up ahead of fcfs."""
    stream = poisson_sets(natural, 0.7, 240, [0])[0]
    fcfs = mean_latency(stream, "fcfs")
    lp_sjf = mean_latency(stream, make_policy("lp-sjf", predictor=InvertedPredictor()))
    robust = mean_latency(stream, RobustSRPTPolicy(predictor=InvertedPredictor()))
    assert lp_sjf > 1.2 * fcfs
    assert robust < 0.95 * fcfs


def test_aging_bounds_the_tail_at_high_load(natural):
    stream = poisson_sets(natural, 0.9, 200, [0])[0]
    fcfs = simulate(stream, "fcfs", record_events=False)
    pure = simulate(stream, RobustSRPTPolicy(RobustSRPTConfig(aging=0.0), make_predictor("oracle")),
                    record_events=False)
    aged = simulate(stream, RobustSRPTPolicy(RobustSRPTConfig(aging=0.5), make_predictor("oracle")),
                    record_events=False)
    p99 = lambda result: percentile(result.latencies, 99)
    assert p99(aged) <= 2.0 * p99(fcfs)
    assert p99(aged) < p99(pure)
    assert aged.mean_latency < fcfs.mean_latency


def test_huge_aging_is_fcfs_on_distinct_arrivals(natural):
    stream = poisson_sets(natural, 0.7, 80, [1])[0]
    fcfs = simulate(stream, "fcfs", record_events=False)
    aged = simulate(stream, RobustSRPTPolicy(RobustSRPTConfig(aging=1e9), make_predictor("oracle")),
                    record_events=False)
    assert aged.latencies == pytest.approx(fcfs.latencies)


def rnd(rid, emitted, finished=False, prefill=False):
    return RoundReport(request_id=rid, drafted=0, accepted=0, emitted=emitted, seconds=0.01 * emitted,
                       draft_seconds=0.0, verify_seconds=0.01 * emitted, finished=finished, prefill=prefill)


def spec(rid, out, arrival=0.0):
    return RequestSpec(rid, arrival, 10, 1000, true_output_tokens=out, true_service_seconds=0.01 * out)


def test_hysteresis_keeps_the_runner_against_a_slightly_shorter_newcomer():
    policy = RobustSRPTPolicy(RobustSRPTConfig(aging=0.0, hysteresis=0.3), make_predictor("oracle"))
    policy.admit(spec("long", 100), 0.0)
    policy.on_round(rnd("long", 10, prefill=True), 0.1)           # 90 tokens left
    policy.admit(spec("close", 80), 0.1)                          # 80 < 90, but not by 30 %
    assert policy.pick(0.1) == "long"
    policy.admit(spec("short", 5), 0.1)                           # far shorter: preempts
    assert policy.pick(0.1) == "short"


def test_registered_and_explained():
    policy = make_policy("robust-srpt", predictor=make_predictor("oracle"))
    policy.admit(spec("a", 40), 0.0)
    info = policy.explain("a")
    assert info["policy"] == "robust-srpt" and info["l_cal"] == pytest.approx(40.0, rel=0.05)
    with pytest.raises(ValueError):
        RobustSRPTConfig(hysteresis=1.0)
