"""The serving loop has one path: B = 1 is a batch of one.

At every round boundary the loop asks `pick_batch(now, B)`; at B = 1 that must be exactly
`pick(now)` for every registered policy, at every moment of a run (not only a fresh one), so
the unified loop schedules B = 1 as the per-request loop did.
"""
from __future__ import annotations

import pytest

from hf_laps.serving.clock import VirtualClock
from hf_laps.serving.executor import Submission
from hf_laps.serving.loop import ServingLoop
from hf_laps.replay.replayer import TraceReplayer
from hf_laps.timing_log import RoundRecord
from hf_laps.replay.traces import Trace
from hf_laps.scheduling import make_policy, make_predictor, policy_entry, policy_names

pytestmark = pytest.mark.torchfree


def traces() -> list[Trace]:
    """Requests of 1 to 40 rounds arriving over time, acceptance varying per request, so queue
    thresholds are crossed, requests are preempted and newcomers interrupt longer ones."""
    out = []
    for i, rounds in enumerate([40, 3, 25, 1, 12, 33, 7, 18]):
        accepted = i % 4
        out.append(Trace(f"r{i}", 0.3 * i, 16, 10_000, rounds * (accepted + 1),
                         tuple(RoundRecord(drafted=4, accepted=accepted, seconds=0.1 + 0.01 * i, draft_seconds=0.02)
                               for _ in range(rounds))))
    return out


def fresh(name: str):
    return make_policy(name, predictor=make_predictor("oracle") if policy_entry(name).needs_predictor else None)


@pytest.mark.parametrize("name", policy_names())
def test_a_batch_of_one_is_the_policys_pick_at_every_round_boundary(name):
    policy, clock = fresh(name), VirtualClock()
    compared = []

    def check(report):
        now = clock.now()
        single = policy.pick(now)
        assert policy.pick_batch(now, 1) == ([] if single is None else [single])
        compared.append(single)

    loop = ServingLoop(TraceReplayer(traces()), policy, clock=clock, on_round=check)
    done = list(loop.run([Submission(t.custom_id, t.prompt, arrival=t.arrival) for t in traces()]))
    assert len(done) == 8 and all(c.ok for c in done)
    assert len(compared) == sum(len(t.rounds) for t in traces())  # every round boundary


class OneAtATimeReplayer(TraceReplayer):
    """An executor that can only run one request per round (no run_batch), like a third party's."""

    run_batch = None


def test_an_executor_without_run_batch_runs_batches_of_one_and_refuses_more():
    replayer = OneAtATimeReplayer(traces())
    loop = ServingLoop(replayer, make_policy("fcfs"), clock=VirtualClock())
    done = list(loop.run([Submission(t.custom_id, t.prompt, arrival=t.arrival) for t in traces()]))
    # fcfs at B = 1 runs each request to the end, in arrival order, back to back
    assert [c.submission.request_id for c in done] == [f"r{i}" for i in range(8)]
    assert done[-1].record.finish == pytest.approx(sum(t.service_seconds for t in traces()))
    with pytest.raises(ValueError, match="run_batch"):
        ServingLoop(OneAtATimeReplayer(traces()), make_policy("fcfs"), max_batch_size=2)
