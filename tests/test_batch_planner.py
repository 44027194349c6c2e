"""The scheduler owns the batch: the round-cost model, the batch planner, and the loop around them
(round ids in the timing log, batched-round failures counted and logged)."""
from __future__ import annotations

import logging

import pytest

from hf_laps.replay.batch_cost import batched_rounds
from hf_laps.replay.cost import ParametricCost
from hf_laps.replay.replayer import TraceReplayer, simulate
from hf_laps.replay.synthetic import synthetic_traces
from hf_laps.replay.traces import Trace
from hf_laps.scheduling.batch_planner import AUTO_MAX_BATCH, BatchPlanner, Candidate, resolve_max_batch_size
from hf_laps.scheduling.round_cost import CPU_PRIOR_POINTS, RoundCostModel, prior_for
from hf_laps.serving.clock import VirtualClock
from hf_laps.serving.executor import Submission
from hf_laps.serving.loop import ServingLoop
from hf_laps.scheduling import make_policy
from hf_laps.timing_log import RoundRecord


# ---- the round-cost model ------------------------------------------------------------------
def test_the_cpu_prior_matches_the_measured_forwards():
    model = RoundCostModel.for_device("cpu")
    for rows, tokens, seconds in CPU_PRIOR_POINTS:
        assert model.seconds(rows, tokens) == pytest.approx(seconds, rel=0.15)
    gpu = RoundCostModel.for_device("cuda:0")
    assert gpu.line.a == pytest.approx(0.022, rel=0.01) and gpu.line.b == pytest.approx(0.00002, rel=0.05)
    assert prior_for("mps") == prior_for("cuda")


def test_the_model_learns_the_job_s_own_line():
    model = RoundCostModel.for_device("cpu")
    truth = lambda rows, tokens: 0.2 + 0.01 * tokens  # a slower machine than the prior's
    for i in range(200):
        rows = 1 + i % 8
        tokens = rows * (1 + i % 5)
        model.observe(rows, tokens, truth(rows, tokens))
    assert model.seconds(4, 20) == pytest.approx(truth(4, 20), rel=0.1)  # the prior still anchors a little
    assert model.seconds(8, 40) == pytest.approx(truth(8, 40), rel=0.1)
    assert model.summary()["observed"] == 200


def test_nonsense_rounds_teach_nothing_and_slopes_stay_non_negative():
    model = RoundCostModel.for_device("cpu")
    before = model.line
    model.observe(0, 5, 1.0)
    model.observe(2, 5, float("nan"))
    assert model.line == before
    for tokens in range(1, 60):  # more tokens, less time: noise, not physics
        model.observe(4, tokens, 1.0 - tokens / 100)
    assert model.line.b >= 0 and model.line.c >= 0


# ---- the planner ---------------------------------------------------------------------------
def candidates(*specs):
    return [Candidate(f"r{i}", tokens, remaining) for i, (tokens, remaining) in enumerate(specs)]


def test_a_cap_of_one_is_the_policy_s_pick():
    planner = BatchPlanner(RoundCostModel.for_device("cpu"), cap=1)
    assert planner.plan(candidates((5, 9), (5, 9), (5, 9))) == ["r0"]
    assert planner.plan([]) == []


def test_decode_rows_batch_wide_up_to_the_cap():
    planner = BatchPlanner(RoundCostModel.for_device("cpu"), cap=4)
    assert planner.plan(candidates(*[(5, 1)] * 6)) == ["r0", "r1", "r2", "r3"]


def test_a_long_prefill_waits_for_rows_in_their_last_round_and_does_not_block_the_rest():
    planner = BatchPlanner(RoundCostModel.for_device("cpu"), cap=8)
    # r0, r1 finish this round; r2 would feed a 900-token prompt: 2 x b x 900 > a round
    assert planner.plan(candidates((5, 1), (5, 1), (900, 50), (5, 20))) == ["r0", "r1", "r3"]
    # nobody about to finish: the prefill costs the same whenever it runs, so it joins now
    assert planner.plan(candidates((5, 30), (5, 30), (900, 50))) == ["r0", "r1", "r2"]
    # on a GPU a token is nearly free: a 300-token prompt joins even next to finishing rows
    gpu = BatchPlanner(RoundCostModel.for_device("cuda"), cap=8)
    assert gpu.plan(candidates((5, 1), (5, 1), (300, 50))) == ["r0", "r1", "r2"]


def test_fill_takes_every_candidate_up_to_the_cap():
    planner = BatchPlanner(RoundCostModel.for_device("cpu"), cap=2, mode="fill")
    assert planner.plan(candidates((5, 1), (900, 1), (5, 1))) == ["r0", "r1"]
    with pytest.raises(ValueError, match="batch plan"):
        BatchPlanner(RoundCostModel.for_device("cpu"), cap=2, mode="widest")


@pytest.mark.parametrize("value, cap", [("auto", AUTO_MAX_BATCH), (None, AUTO_MAX_BATCH), (1, 1), (8, 8), ("8", 8)])
def test_max_batch_size_settings(value, cap):
    assert resolve_max_batch_size(value) == cap


@pytest.mark.parametrize("value", [0, -1, "many", 2.5, True])
def test_bad_max_batch_sizes_are_refused(value):
    with pytest.raises(ValueError, match="max_batch_size"):
        resolve_max_batch_size(value)


# ---- the loop ------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["fcfs", "las", "lp-sjf", "laps-sd", "gittins"])
def test_every_policy_replays_at_the_auto_default_with_a_planned_batch(policy):
    traces = synthetic_traces(12, seed=3)
    one = simulate(traces, policy, max_batch_size=1)
    auto = simulate(traces, policy, max_batch_size="auto")
    sizes = {r.batch_size for record in auto.records for r in record.rounds}
    assert max(sizes) > 1 and max(sizes) <= AUTO_MAX_BATCH
    assert {r.batch_size for record in one.records for r in record.rounds} == {1}
    assert auto.makespan < one.makespan


def test_the_same_recording_replays_to_the_same_decisions():
    traces = synthetic_traces(10, seed=5)
    first = simulate(traces, "laps-sd", max_batch_size="auto")
    again = simulate(traces, "laps-sd", max_batch_size="auto")
    assert first.schedule == again.schedule


def test_every_round_has_an_id_shared_by_its_rows():
    traces = synthetic_traces(8, seed=2)
    # a parametric cost prices equal batches alike: rounds with identical seconds
    result = simulate(traces, "fcfs", cost=ParametricCost.paper_pair_gpu(), max_batch_size=4, batch_plan="fill")
    ids = [r.round_id for record in result.records for r in record.rounds]
    assert None not in ids
    groups = batched_rounds([Trace.from_record(record) for record in result.records])
    assert groups and all(len({row.record.round_id for row in rows}) == 1 for rows in groups)
    batched = {r.round_id for record in result.records for r in record.rounds if r.batch_size > 1}
    assert len(groups) == len(batched)  # every batched round found again, none merged
    seconds = [rows[0].record.seconds for rows in groups]
    assert len(set(seconds)) < len(seconds)  # grouping by seconds would have merged some


def test_round_ids_round_trip_and_old_rounds_stay_readable():
    record = RoundRecord(drafted=3, accepted=1, seconds=0.5, draft_seconds=0.1, round_id=7)
    assert record.to_json() == [3, 1, 0.5, 0.1, 1, 0, 7]
    assert RoundRecord.from_json(record.to_json()) == record
    assert RoundRecord.from_json([3, 1, 0.5, 0.1, 4, 19]).round_id is None
    assert RoundRecord.from_json([3, 1, 0.5]).round_id is None


class FlakyReplayer(TraceReplayer):
    """Its second batched round raises."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = 0

    def run_batch(self, request_ids):
        self.batches += 1
        if self.batches == 2:
            raise RuntimeError("out of memory (simulated)")
        return super().run_batch(request_ids)


def test_a_failing_batched_round_is_logged_counted_and_rerun_alone(caplog):
    traces = synthetic_traces(6, seed=1)
    loop = ServingLoop(FlakyReplayer(traces), make_policy("fcfs"), clock=VirtualClock(), max_batch_size=4)
    with caplog.at_level(logging.WARNING, logger="hf_laps.serving.loop"):
        done = list(loop.run([Submission(t.custom_id, t.prompt, arrival=t.arrival) for t in traces]))
    assert all(c.ok for c in done) and len(done) == 6
    assert loop.batched_round_failures == 1
    assert any("out of memory (simulated)" in message and "RuntimeError" in message for message in caplog.messages)


def test_the_job_summary_reports_batched_round_failures():
    from hf_laps.jobs.summary import format_summary_table, summarize

    summary = summarize([], batched_round_failures=2)
    assert summary["batched_round_failures"] == 2
    assert "batched round failures" in format_summary_table(summary)
