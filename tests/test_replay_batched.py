"""Batched rounds in the timing log and in replay: what a batched round was, what it costs, and
every policy replayed at max_batch_size > 1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict

import pytest

from hf_laps import EngineConfig, LapsGenerator
from hf_laps.replay.batch_cost import (BatchFactor, LinearBatchCost, RecordedBatches, RowRound, batched_rounds,
                                fit_batch_cost, least_squares)
from hf_laps.serving.executor import Submission
from hf_laps.replay.replayer import ParametricCost, RecordedCost, TraceReplayer, simulate
from hf_laps.scheduling import POLICY_NAMES
from hf_laps.timing_log import RoundRecord
from hf_laps.replay.traces import dump_traces, load_traces
from hf_laps.replay.synthetic import synthetic_traces
from hf_laps.timing_log import TimingRecord, read_timing_log
from helpers import predictor_for
from tiny_models import prompts, tiny_target

B1_LOG = "benchmarks/data/mixed-30.fcfs.timing.jsonl"


# ---- step 1: the timing log keeps the batch of a round --------------------------------------
def test_a_batch_1_round_is_written_as_before():
    assert RoundRecord(drafted=3, accepted=1, seconds=0.5).to_json() == [3, 1, 0.5]
    assert RoundRecord(drafted=3, accepted=1, seconds=0.5, draft_seconds=0.1).to_json() == [3, 1, 0.5, 0.1]


def test_a_batched_round_round_trips():
    record = RoundRecord(drafted=3, accepted=1, seconds=0.5, batch_size=4, batch_tokens=19)
    assert record.to_json() == [3, 1, 0.5, None, 4, 19]
    assert RoundRecord.from_json(record.to_json()) == record
    assert RoundRecord.from_json([3, 1, 0.5, 0.1]).batch_size == 1
    with pytest.raises(ValueError):
        RoundRecord.from_json([3, 1, 0.5, 0.1, 4])
    with pytest.raises(ValueError):
        RoundRecord(drafted=3, accepted=1, seconds=0.5, batch_size=0)


def test_the_rounds_of_a_recorded_batch_1_log_are_rewritten_identically():
    with open(B1_LOG, encoding="utf-8") as handle:
        written = [json.dumps(json.loads(line)["rounds"]) for line in handle]
    assert [json.dumps(r.to_json()["rounds"]) for r in read_timing_log(B1_LOG)] == written


@pytest.fixture(scope="module")
def batched_records() -> list[TimingRecord]:
    """A real batched run on the tiny model: 5 requests, up to 3 per round, fcfs."""
    gen = LapsGenerator(tiny_target(), policy="fcfs", max_batch_size=3, progress=False,
                        engine_config=EngineConfig(draft_length=3))
    submissions = [gen.submission(str(i), p, {"max_new_tokens": 24, "do_sample": False})
                   for i, p in enumerate(prompts(5))]
    completions = list(gen.stream(submissions))
    assert all(c.ok for c in completions)
    return [c.record for c in completions]


def shared_rounds(records):
    """Rows of each batched round, keyed by the shared round's seconds (every row of one forward
    reports the same measured seconds), with the row's round index and its request's record."""
    groups = defaultdict(list)
    for record in records:
        for k, r in enumerate(record.rounds):
            if r.batch_size > 1:
                groups[(r.seconds, r.draft_seconds)].append((k, r, record))
    return list(groups.values())


def test_the_engine_records_the_batch_of_every_shared_round(batched_records):
    groups = shared_rounds(batched_records)
    assert groups and any(len(rows) == 3 for rows in groups)
    for rows in groups:
        assert {r.batch_size for _, r, _ in rows} == {len(rows)}
        # a first round feeds its whole prompt (the packed layout batches prefills), a later
        # one its last bonus token; both then their drafts
        fed = sum((record.prompt_tokens if k == 0 else 1) + r.drafted for k, r, record in rows)
        assert {r.batch_tokens for _, r, _ in rows} == {fed}
    # the first rounds joined the batch: 5 requests, 3 rows per round, arriving together
    assert sum(record.rounds[0].batched for record in batched_records) >= 3


# ---- step 2: the batched round's cost ---------------------------------------------------------
def test_least_squares_recovers_a_plane_and_refuses_a_degenerate_column():
    xs = [[1.0, t, 10.0 * t * t + k] for t in range(1, 6) for k in range(3)]
    ys = [0.5 + 0.01 * x[1] + 0.002 * x[2] for x in xs]
    assert least_squares(xs, ys) == pytest.approx([0.5, 0.01, 0.002])
    assert least_squares([[1.0, 3.0] for _ in range(5)], [1.0] * 5) is None   # constant = intercept


TRUTH = LinearBatchCost(intercept=0.05, per_token=0.004, per_kv=0.0002)


def replayed_log(tmp_path, traces, cost, batch_size, name="fcfs"):
    """A batched replay's own timing log, read back as traces (the log format round trip)."""
    result = simulate(traces, name, cost=cost, max_batch_size=batch_size, predictor=predictor_for(name))
    path = tmp_path / "replayed.timing.jsonl"
    path.write_text("".join(json.dumps(r.to_json()) + "\n" for r in result.records), encoding="utf-8")
    return result, load_traces(path)


def test_the_batched_cost_is_learnt_from_a_batched_log(tmp_path):
    traces = synthetic_traces(12, seed=3)
    truth, logged = replayed_log(tmp_path, traces, RecordedCost(batch=TRUTH), 3)
    assert {len(rows) for rows in batched_rounds(logged)} == {2, 3}
    fit = fit_batch_cost(logged)
    assert (fit.intercept, fit.per_token, fit.per_kv) == pytest.approx((0.05, 0.004, 0.0002), rel=1e-6)
    # the log replayed at its own batch size under its own policy is the run it recorded
    again = simulate(logged, "fcfs", max_batch_size=3)
    assert again.mean_latency == pytest.approx(truth.mean_latency, rel=1e-9)
    assert again.schedule == truth.schedule


def test_without_batched_recordings_rounds_cost_the_slowest_row_times_the_batch_factor():
    traces = synthetic_traces(4, seed=1)
    cost = RecordedCost().for_traces(traces)
    assert isinstance(cost.batch, BatchFactor) and fit_batch_cost(traces) is None
    rows = [RowRound(t, 2, t.prompt_tokens + 9) for t in traces]
    slowest = max(t.rounds[2].seconds for t in traces)
    assert cost.batch_seconds(rows)[0] == pytest.approx(slowest * 1.370)   # measured at B = 4
    factor = BatchFactor(((1, 1.0), (2, 1.1), (4, 1.5)))
    assert [factor.factor(b) for b in (1, 2, 3, 4, 6)] == pytest.approx([1.0, 1.1, 1.3, 1.5, 1.9])


def test_a_round_recorded_in_a_batch_replays_alone_at_the_fitted_price_of_one_row(tmp_path):
    _, logged = replayed_log(tmp_path, synthetic_traces(12, seed=3), RecordedCost(batch=TRUTH), 3)
    cost = RecordedCost().for_traces(logged)
    trace = next(t for t in logged if t.rounds[1].batched)
    row = RowRound(trace, 1, trace.prompt_tokens + trace.rounds[0].accepted + 1)
    seconds, _ = cost.round_seconds(trace, 1, row.context_tokens)
    assert seconds == pytest.approx(TRUTH.predict(row.fed_tokens, row.kv_tokens))
    assert seconds < trace.rounds[1].seconds      # less than the shared round it was recorded in


def test_parametric_batch_pays_the_weight_floor_once():
    gpu = ParametricCost.paper_pair_gpu()
    traces = synthetic_traces(4, seed=2)
    rows = [RowRound(t, 3, t.prompt_tokens + 20) for t in traces]
    one = [gpu.round_seconds(r.trace, r.k, r.context_tokens)[0] for r in rows]
    assert gpu.batch_seconds(rows[:1])[0] == one[0]
    batch, draft = gpu.batch_seconds(rows)
    drafted = [r.record.drafted for r in rows]
    assert draft == pytest.approx(sum(drafted) * gpu.t_draft)
    # the floor once, every row's query and context terms
    query = sum(d + 1 for d in drafted)
    context = sum(r.context_tokens + d + 1 for r, d in zip(rows, drafted))
    assert batch - draft == pytest.approx(gpu.t_target(context, query))
    assert max(one) < batch < sum(one) - 2 * gpu.target_base
    batched_draft = ParametricCost(**{**gpu.__dict__, "batched_draft": True})
    assert batched_draft.batch_seconds(rows)[1] == pytest.approx(max(drafted) * gpu.t_draft)


def test_run_batch_prefills_alone_then_shares_one_forward():
    traces = synthetic_traces(3, seed=5)
    replayer = TraceReplayer(traces, RecordedCost(batch=TRUTH))
    for t in traces:
        replayer.start(Submission(t.custom_id, t.prompt))
    ids = [t.custom_id for t in traces]
    first = replayer.run_batch(ids)
    assert [r.seconds for r in first.reports] == [t.rounds[0].seconds for t in traces]
    assert first.seconds == pytest.approx(sum(t.rounds[0].seconds for t in traces))
    assert all(r.prefill and r.batch_size == 1 for r in first.reports)
    second = replayer.run_batch(ids)
    rows = [RowRound(t, 1, t.prompt_tokens + t.rounds[0].accepted + 1) for t in traces]
    assert second.seconds == pytest.approx(TRUTH.seconds(rows))
    assert {(r.batch_size, r.batch_tokens, r.seconds) for r in second.reports} == \
        {(3, sum(r.fed_tokens for r in rows), second.seconds)}


# ---- step 3: every policy at B > 1 ------------------------------------------------------------
@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_replays_batched_rounds(name):
    traces = synthetic_traces(16, seed=11)          # a burst: the queue holds more than B
    gpu = ParametricCost.paper_pair_gpu()
    alone = simulate(traces, name, cost=gpu, predictor=predictor_for(name))
    for size in (2, 4):
        result = simulate(traces, name, cost=gpu, max_batch_size=size, predictor=predictor_for(name))
        assert [r.custom_id for r in result.requests] == [t.custom_id for t in traces]
        assert [r.output_tokens for r in result.requests] == [t.output_tokens for t in traces]
        # every recorded round played exactly once, in its order
        for record, trace in zip(result.records, traces):
            assert [(r.drafted, r.accepted) for r in record.rounds] == [(r.drafted, r.accepted) for r in trace.rounds]
        sizes = {r.batch_size for record in result.records for r in record.rounds}
        assert max(sizes) == size
        # sharing the weight floor: the work takes less time than one request per round
        assert result.makespan < alone.makespan
        assert result.mean_latency < alone.mean_latency


def test_a_slope_the_noise_made_negative_is_dropped(tmp_path):
    """More fed tokens cannot make a forward faster: such a term is left out and the rest refitted."""
    truth = LinearBatchCost(intercept=0.05, per_token=-0.001, per_kv=0.0002)
    _, logged = replayed_log(tmp_path, synthetic_traces(12, seed=3), RecordedCost(batch=truth), 3)
    fit = fit_batch_cost(logged)
    assert fit.per_token == 0.0 and fit.per_kv > 0


def test_bench_replays_at_the_max_batch_size(tmp_path):
    record = tmp_path / "rec.timing.jsonl"
    traces = synthetic_traces(10, seed=4)
    dump_traces(traces, record)
    job = tmp_path / "job.jsonl"
    job.write_text("".join(json.dumps({"custom_id": t.custom_id, "prompt": "x"}) + "\n" for t in traces))
    proc = subprocess.run(
        [sys.executable, "-m", "hf_laps.cli.main", "bench", str(job), "--record", str(record), "--replay-only",
         "--policies", "fcfs,las", "--max-batch-size", "3", "--json", str(tmp_path / "r.json"),
         "--out-dir", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stderr
    replayed = json.loads((tmp_path / "r.json").read_text())["replay"]
    for name in ("fcfs", "las"):
        assert replayed[name]["latency_mean"] == pytest.approx(
            simulate(traces, name, max_batch_size=3).mean_latency)


# ---- the real batched recording -----------------------------------------------------------------
B4_LOG = "benchmarks/data/mixed-30.b4.timing.jsonl"


def test_a_real_batched_run_replays_at_its_own_batch_size():
    """`hf-laps run benchmarks/data/mixed-30.jsonl --max-batch-size 4 --policy fcfs`, replayed.

    The log was recorded before the batch planner: every round ran fcfs's top 4, which the
    replay re-enacts with batch_plan="fill"."""
    records, traces = read_timing_log(B4_LOG), load_traces(B4_LOG)
    real = sum(r.latency for r in records) / len(records)
    fit = fit_batch_cost(traces)
    assert fit.rounds > 400 and fit.intercept > 0 and fit.per_token > 0
    # re-enacting the recorded batches: the replayer itself is exact
    exact = simulate(traces, "fcfs", cost=RecordedCost(batch=RecordedBatches(fit)), max_batch_size=4,
                     batch_plan="fill")
    assert exact.mean_latency == pytest.approx(real, rel=0.01)
    # the fit prices every batch alike: the same work in the same time (makespan), while the
    # machine's load, which grew during the recording, is averaged (docs/studies/replay-batched.md)
    fitted = simulate(traces, "fcfs", max_batch_size=4, batch_plan="fill")
    assert fitted.makespan == pytest.approx(max(r.finish for r in records), rel=0.02)
    assert fitted.mean_latency == pytest.approx(real, rel=0.15)


def test_a_replay_honours_the_kv_capacity():
    """The replayer prices a token's KV like its cost model, so a capacity replays like a real run:
    with room for about two requests' worst case, at most two are admitted at once."""
    traces = synthetic_traces(8, seed=5)
    per_token = ParametricCost.paper_pair_gpu().kv_bytes(1)
    worst = max(t.prompt_tokens + t.max_new_tokens for t in traces) * per_token
    capped = simulate(traces, "fcfs", cost=ParametricCost.paper_pair_gpu(), max_batch_size=4,
                      kv_capacity_bytes=2 * worst)
    free = simulate(traces, "fcfs", cost=ParametricCost.paper_pair_gpu(), max_batch_size=4)
    assert len(capped.records) == len(traces)
    assert capped.mean_latency > free.mean_latency
