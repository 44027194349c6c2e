"""The simulator and the scheduling invariants over many seeded synthetic workloads."""
import json
import math

import pytest

from hf_laps.replay.replayer import linear_switch_cost, simulate
from hf_laps.scheduling import POLICY_NAMES, make_predictor
from hf_laps.timing_log import RoundRecord
from hf_laps.replay.traces import Trace
from hf_laps.replay.synthetic import synthetic_traces
from hf_laps.scheduling.policies.base import BasePolicy
from helpers import completion_order, predictor_for

pytestmark = pytest.mark.torchfree



def sim(traces, name, kind="noisy", config=None, switch_cost=0.0):
    return simulate(traces, name, switch_cost, config=config, predictor=predictor_for(name, kind))


def workloads(count=6):
    """`count` bursts of 10..40 requests and `count` Poisson workloads at utilisation 0.5..1."""
    for seed in range(count):
        tail = "heavy" if seed % 2 else "light"
        yield synthetic_traces(10 + 5 * (seed % 7), tail=tail, seed=seed)
        yield synthetic_traces(40, tail=tail, arrivals="poisson", seed=1000 + seed,
                               utilisation=(0.5, 0.7, 0.9, 1.0)[seed % 4])


def lindley_makespan(traces):
    """Makespan of ANY work-conserving schedule without switch costs (policy-independent)."""
    clock = None
    for t in sorted(traces, key=lambda t: t.arrival):
        clock = t.arrival if clock is None else max(clock, t.arrival)
        clock += t.service_seconds
    return clock - min(t.arrival for t in traces)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_request_finishes_exactly_once_and_work_is_conserved(name):
    for traces in workloads():
        result = sim(traces, name)
        assert [r.custom_id for r in result.requests] == [t.custom_id for t in traces]
        counts = {}
        for rid in result.schedule:
            counts[rid] = counts.get(rid, 0) + 1
        assert counts == {t.custom_id: len(t.rounds) for t in traces}   # each round once
        for outcome, trace in zip(result.requests, traces):
            assert outcome.finish > outcome.arrival and outcome.output_tokens == trace.output_tokens
            assert outcome.latency == pytest.approx(outcome.finish - trace.arrival)
            assert outcome.arrival <= outcome.first_token - trace.rounds[0].seconds + 1e-9
        busy = sum(t.service_seconds for t in traces)
        assert result.busy_seconds == pytest.approx(busy)
        assert result.makespan >= busy + result.switch_seconds - 1e-9
        assert result.makespan == pytest.approx(lindley_makespan(traces))   # never idle w/ work


def test_switch_costs_are_charged_on_resume_only():
    traces = synthetic_traces(20, tail="heavy", seed=3)
    result = simulate(traces, "las", switch_cost=linear_switch_cost(1e-4, 0.01))
    resumed = sum(1 for o in result.requests if o.switch_seconds > 0)
    assert result.preemptions > 0 and resumed > 0 and result.switch_seconds > 0
    assert result.makespan == pytest.approx(result.busy_seconds + result.switch_seconds)
    assert simulate(traces, "fcfs", switch_cost=5.0).switch_seconds == 0   # never resumes


def test_srpt_oracle_is_never_beaten_on_mean_latency():
    for traces in workloads(count=20):
        best = sim(traces, "srpt-oracle").mean_latency
        for name in ("fcfs", "las", "lp-sjf", "laps-sd"):
            for kind in ("noisy", "oracle"):
                assert best <= sim(traces, name, kind).mean_latency * (1 + 1e-9), name


def handmade(lengths_in_rounds, accepted=(1, 2, 3), drafted=4, seconds=0.1):
    """Requests with constant acceptance and identical round times (exactly predictable)."""
    traces = []
    for i, rounds in enumerate(lengths_in_rounds):
        a = accepted[i % len(accepted)]
        traces.append(Trace(f"r{i:02d}", 0.0, 16, 10_000, rounds * (a + 1),
                            tuple(RoundRecord(drafted=drafted, accepted=a, seconds=seconds, draft_seconds=0.04) for _ in range(rounds))))
    return traces


def test_laps_sd_with_exact_predictions_and_stable_acceptance_follows_srpt_order():
    # Every request outlasts the probe (W = 4 rounds) plus Sup_1 (8 rounds), so all become
    # perceptible before the first one finishes; from then on T_rem is exact.
    lengths = [37, 13, 90, 25, 61, 18, 44, 72, 29, 15, 53, 33, 20, 81, 47]
    traces = handmade(lengths)
    srpt = simulate(traces, "srpt-oracle")
    laps = simulate(traces, "laps-sd", predictor=make_predictor("oracle"))
    assert completion_order(laps) == completion_order(srpt)
    assert completion_order(laps) == [f"r{i:02d}" for i in sorted(range(15), key=lengths.__getitem__)]
    perceptible = [e for e in laps.events if e["event"] == "perceptible"]
    assert len(perceptible) == 15
    # The probe phase is W = 4 rounds each in arrival order; after it, each request runs once,
    # to completion, shortest first: srpt-oracle's schedule.
    assert laps.schedule[:60] == [t.custom_id for t in traces for _ in range(4)]
    tail = laps.schedule[60:]
    runs = [rid for k, rid in enumerate(tail) if k == 0 or tail[k - 1] != rid]
    assert runs == completion_order(srpt)


@pytest.mark.parametrize("arrivals, util", [("burst", None), ("poisson", 0.8)])
def test_laps_sd_that_never_stabilises_is_las(arrivals, util):
    traces = synthetic_traces(40, tail="heavy", arrivals=arrivals, utilisation=util,
                              acceptance="oscillating", seed=5)
    laps = simulate(traces, "laps-sd", predictor=make_predictor("oracle"))
    las = simulate(traces, "las")
    assert not [e for e in laps.events if e["event"] == "perceptible"]
    assert laps.schedule == las.schedule
    assert [r.finish for r in laps.requests] == [r.finish for r in las.requests]


def test_no_starvation_beyond_the_busy_period():
    """Stated bound: a request finishes no later than the end of the busy period it arrives
    in (true of every work-conserving policy). With one long request of S seconds at t=0 and
    short requests of s seconds arriving every s/rho seconds forever, that busy period ends by
    (S + s) / (1 - rho): the long request is served whenever the shorts are, at worst at rate
    1 - rho, and cannot be starved."""
    rho, s = 0.8, 0.5
    long = Trace("long", 0.0, 16, 10_000, 1000,
                 tuple(RoundRecord(drafted=4, accepted=2, seconds=0.1, draft_seconds=0.04) for _ in range(200)))       # S = 20 s
    shorts = [Trace(f"s{i:04d}", i * s / rho, 16, 10_000, 15,
                    tuple(RoundRecord(drafted=4, accepted=2, seconds=0.1, draft_seconds=0.04) for _ in range(5)))       # s = 0.5 s
              for i in range(600)]                                            # 375 s of arrivals
    bound = (20.0 + s) / (1 - rho)
    for name in POLICY_NAMES:
        result = sim([long] + shorts, name, kind="oracle")
        outcome = {o.custom_id: o for o in result.requests}
        assert outcome["long"].latency <= bound + 1e-9, name
        assert max(o.latency for o in result.requests) <= bound + 1e-9, name


class _Lazy(BasePolicy):
    """A broken policy that idles while a request waits."""
    name = "lazy"

    def pick(self, now):
        return None

    def _admitted(self, state, now):
        pass

    def _finished(self, state, report, now):
        pass


def test_simulator_rejects_a_policy_that_idles_with_work():
    with pytest.raises(RuntimeError, match="picked nothing while 1 requests wait"):
        simulate(synthetic_traces(1, seed=0), _Lazy())


def test_summary_fields_and_strict_json_events():
    traces = synthetic_traces(12, tail="heavy", arrivals="poisson", utilisation=0.7, seed=4)
    summary = simulate(traces, "fcfs").summary()
    for key in ("latency_mean", "latency_p50", "latency_p90", "latency_p99", "ttft_mean",
                "makespan", "tokens_per_second", "preemptions", "switch_seconds"):
        assert math.isfinite(summary[key]), key
    result = sim(traces, "laps-sd")
    kinds = {e["event"] for e in result.events}
    assert {"admit", "perceptible"} <= kinds <= {"admit", "demote", "perceptible", "move"}
    json.dumps(result.events, allow_nan=False)


def test_replay_admits_ties_in_the_recorded_admission_order_not_the_log_order():
    # a timing log lists requests in the order they FINISHED; admission order breaks ties in
    # arrival, so a replay must admit them as the recording did
    from dataclasses import replace
    traces = synthetic_traces(4, seed=3)
    logged = [replace(t, admitted=0.01 * (4 - i)) for i, t in enumerate(traces)]   # admitted in reverse
    order = completion_order(simulate(logged, "fcfs"))
    assert order == [t.custom_id for t in reversed(traces)]
    assert completion_order(simulate(traces, "fcfs")) == [t.custom_id for t in traces]  # no times: input order
