"""The headline table (`hf-laps bench --replay`): hidden caps, scenarios, the table's invariants
and the command line, on small synthetic recordings (no model)."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from benchmarks.headline_goals import goals_met
from helpers import completion_order, hf_laps
from hf_laps.replay.headline import REFERENCE, HeadlineConfig, best_of_names, run_headline
from hf_laps.replay.scenarios import (HIDDEN_CAP, build_scenarios, hide_cap, load_recording,
                                              resampled_stream)
from hf_laps.replay.headline_table import format_headline, headline_json, summarize
from hf_laps.replay.replayer import simulate
from hf_laps.scheduling import LearnedPredictor, make_policy, policy_names
from hf_laps.replay.traces import dump_traces
from hf_laps.replay.synthetic import synthetic_traces

REPO = Path(__file__).resolve().parents[1]   # run from the checkout, so it is this hf_laps
SMALL = HeadlineConfig(predictors=("learned", "oracle"), bursts=(5, 50), utilisations=(0.7,),
                       poisson_requests=20, seeds=(0, 1))


def reference_like(n: int = 10, seed: int = 3):
    """Traces recorded with max_tokens = their true length (the reference-length convention)."""
    return [replace(t, max_new_tokens=t.output_tokens) for t in synthetic_traces(n, tail="heavy", seed=seed)]


def lp_sjf_order(traces):
    return completion_order(simulate(traces, make_policy("lp-sjf", predictor=LearnedPredictor())))


@pytest.mark.torchfree
def test_a_visible_reference_cap_leaks_the_length_and_hiding_it_stops_the_leak(tmp_path):
    traces = reference_like()
    fcfs = completion_order(simulate(traces, "fcfs"))
    # before any request finishes the learned predictor says max_new_tokens: with the cap
    # visible that IS the true length, so lp-sjf orders like an oracle
    assert lp_sjf_order(traces) == [t.custom_id for t in sorted(traces, key=lambda t: t.output_tokens)]
    assert lp_sjf_order(traces) != fcfs
    path = tmp_path / "ref.timing.jsonl"
    dump_traces(traces, path)
    hidden = load_recording(path, hidden_cap=HIDDEN_CAP)
    assert {t.max_new_tokens for t in hidden} == {HIDDEN_CAP}
    assert [(t.output_tokens, t.rounds) for t in hidden] == [(t.output_tokens, t.rounds) for t in traces]
    assert lp_sjf_order(hidden) == fcfs          # nothing left to order by
    assert simulate(hidden, "srpt-oracle").mean_latency == pytest.approx(simulate(traces, "srpt-oracle").mean_latency)


@pytest.mark.torchfree
def test_a_hidden_cap_below_a_recorded_length_is_refused():
    traces = reference_like()
    with pytest.raises(ValueError, match="below a recorded length"):
        hide_cap(traces, cap=max(t.output_tokens for t in traces) - 1)


@pytest.mark.torchfree
def test_streams_resample_in_epochs_with_unique_ids():
    traces = synthetic_traces(7, seed=1)
    stream = resampled_stream(traces, 20, seed=4)
    assert len(stream) == 20 and len({t.custom_id for t in stream}) == 20
    counts = Counter(t.custom_id.split("~")[0] for t in stream)
    assert set(counts) == {t.custom_id for t in traces} and max(counts.values()) - min(counts.values()) <= 1
    assert resampled_stream(traces, 20, seed=4) == stream != resampled_stream(traces, 20, seed=5)
    whole = resampled_stream(traces, 5, seed=0)        # long enough: all of it, once, shuffled
    assert sorted(t.custom_id for t in whole) == sorted(t.custom_id for t in traces)


@pytest.mark.torchfree
def test_scenarios_cap_burst_sizes_and_flag_resampling():
    traces = synthetic_traces(12, seed=2)
    scenarios = build_scenarios(traces, bursts=(5, 30, 40), utilisations=(0.5, 0.9), poisson_requests=20, seeds=(0, 1, 2))
    assert [s.name for s in scenarios] == ["burst 5", "burst 12", "poisson 0.5", "poisson 0.9"]
    assert all(len(s.arrival_sets) == 3 for s in scenarios)
    assert all(t.arrival == 0.0 for s in scenarios[:2] for ts in s.arrival_sets for t in ts)
    assert len({tuple(t.custom_id for t in ts) for ts in scenarios[0].arrival_sets}) == 3   # three orders
    poisson = scenarios[3]
    assert poisson.resampled and all(len(ts) == 20 for ts in poisson.arrival_sets)
    # U = rate x mean service: the higher load arrives faster
    assert poisson.arrival_sets[0][-1].arrival < scenarios[2].arrival_sets[0][-1].arrival


@pytest.fixture(scope="module")
def small_result():
    return run_headline({"syn": synthetic_traces(12, tail="heavy", seed=2)}, SMALL)


@pytest.mark.torchfree
def test_every_policy_meets_every_predictor_in_every_cell(small_result):
    rows = small_result.rows
    cells = {(r.scenario, r.predictor) for r in rows}
    assert cells == {(s, p) for s in ("burst 5", "burst 12", "poisson 0.7") for p in SMALL.predictors}
    for scenario, predictor in cells:
        assert sorted(r.policy for r in rows if (r.scenario, r.predictor) == (scenario, predictor)) == sorted(policy_names())


@pytest.mark.torchfree
def test_ratios_are_taken_to_the_right_references(small_result):
    for cell in {(r.scenario, r.predictor) for r in small_result.rows}:
        rows = {r.policy: r for r in small_result.rows if (r.scenario, r.predictor) == cell}
        assert rows[REFERENCE].over_srpt == pytest.approx(1.0)
        assert rows["fcfs"].p99_over_fcfs == pytest.approx(1.0)
        baselines = [rows[b].over_best for b in best_of_names()]
        assert min(baselines) == pytest.approx(1.0) and all(b >= 1.0 - 1e-12 for b in baselines)
        best = rows["fcfs"].best_baseline
        assert best in best_of_names() and rows[best].over_best == pytest.approx(1.0)
        for row in rows.values():
            assert row.over_best == pytest.approx(row.mean / rows[best].mean)
            assert row.over_srpt == pytest.approx(row.mean / rows[REFERENCE].mean)


@pytest.mark.torchfree
def test_policies_without_a_predictor_run_once_and_the_oracle_lp_sjf_is_sjf(small_result):
    rows = small_result.rows
    for policy in ("fcfs", "las", REFERENCE):
        by_predictor = {(r.scenario, r.predictor): r.mean for r in rows if r.policy == policy}
        for scenario in {s for s, _ in by_predictor}:
            assert by_predictor[(scenario, "learned")] == by_predictor[(scenario, "oracle")]
    assert all(r.preemptions == 0 for r in rows if r.policy in ("fcfs", "lp-sjf"))


@pytest.mark.torchfree
def test_summary_goals_follow_the_worst_cells(small_result):
    summaries = summarize(small_result)
    assert len(summaries) == len(SMALL.predictors) * len(policy_names())
    for s in summaries:
        rows = [r for r in small_result.rows if (r.predictor, r.policy) == (s.predictor, s.policy)]
        assert s.poisson_worst == max(r.over_best for r in rows if r.kind == "poisson")
        assert s.burst_worst == max(r.over_best for r in rows if r.kind == "burst")
        assert goals_met(s)["burst"] == (s.burst_worst <= 1.0)
    srpt = next(s for s in summaries if s.policy == REFERENCE)
    assert srpt.srpt_geomean == pytest.approx(1.0) and goals_met(srpt)["srpt"]
    text = format_headline(small_result)
    assert "p99/fcfs" in text and "(Poisson streams resampled)" in text and "poisson 0.7" in text
    data = json.loads(json.dumps(headline_json(small_result), allow_nan=False))
    assert len(data["cells"]) == len(small_result.rows) and data["recordings"]["syn"]["requests"] == 12
    assert [goals_met(s) for s in data["summary"]] == [goals_met(s) for s in summaries]


run_cli = partial(hf_laps, "bench", timeout=300, env={"OMP_NUM_THREADS": "1"}, cwd=REPO)


@pytest.mark.torchfree
def test_cli_replays_a_reference_recording_with_the_cap_hidden(tmp_path):
    record = tmp_path / "ref.timing.jsonl"
    dump_traces(reference_like(8), record)
    common = ["--replay", str(record), "--predictors", "learned", "--bursts", "8", "--utilisations", "0.9",
              "--poisson-requests", "16", "--seeds", "2", "--policies", "fcfs,lp-sjf",
              "--max-batch-size", "1"]   # one request per round: the order alone decides (a batch of 8 holds all)
    shown = run_cli(*common, "--json", str(tmp_path / "shown.json"))
    hidden = run_cli(*common, "--hide-cap", "--json", str(tmp_path / "hidden.json"))
    assert shown.returncode == 0 and hidden.returncode == 0, shown.stderr + hidden.stderr
    for name in ("fcfs", "las", "lp-sjf", "laps-sd", "srpt-oracle"):   # asked + what the ratios need
        assert f" {name} " in hidden.stdout
    burst = {}
    for tag in ("shown", "hidden"):
        data = json.loads((tmp_path / f"{tag}.json").read_text())
        burst[tag] = {r["policy"]: r["over_best"] for r in data["cells"] if r["scenario"] == "burst 8"}
    # the visible cap is the true length: lp-sjf is SJF; hidden, it is fcfs
    assert burst["shown"]["lp-sjf"] < burst["shown"]["fcfs"]
    assert burst["hidden"]["lp-sjf"] == pytest.approx(burst["hidden"]["fcfs"])


@pytest.mark.torchfree
def test_cli_refuses_a_job_and_recordings_together_and_bad_predictors(tmp_path):
    record = tmp_path / "rec.timing.jsonl"
    dump_traces(synthetic_traces(4, seed=0), record)
    job = tmp_path / "job.jsonl"
    job.write_text(json.dumps({"custom_id": "a", "prompt": "x"}) + "\n")
    both = run_cli(str(job), "--replay", str(record))
    assert both.returncode == 2 and "not both" in both.stderr
    bad = run_cli("--replay", str(record), "--predictors", "psychic")
    assert bad.returncode == 2 and "unknown predictors" in bad.stderr
    neither = run_cli()
    assert neither.returncode == 2 and "--replay" in neither.stderr


def test_a_bench_of_a_job_adds_the_headline_of_its_recording(tmp_path):
    record = tmp_path / "rec.timing.jsonl"
    traces = synthetic_traces(8, tail="heavy", seed=4)
    dump_traces(traces, record)
    job = tmp_path / "job.jsonl"
    job.write_text("".join(json.dumps({"custom_id": t.custom_id, "prompt": "x"}) + "\n" for t in traces))
    proc = run_cli(str(job), "--record", str(record), "--replay-only", "--predictor", "oracle", "--headline",
                   "--predictors", "oracle", "--bursts", "8", "--utilisations", "0.5", "--poisson-requests", "8",
                   "--seeds", "1", "--no-cells", "--out-dir", str(tmp_path / "o"), "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr
    assert "replay only" in proc.stdout and "p99/fcfs" in proc.stdout
    data = json.loads((tmp_path / "b.json").read_text())
    table = data["headline_table"]
    assert {c["scenario"] for c in table["cells"]} == {"burst 8", "poisson 0.5"}
    # the bench's own replay and the headline's burst replay the same 8 requests at t = 0
    srpt = next(c for c in table["cells"] if c["scenario"] == "burst 8" and c["policy"] == REFERENCE)
    assert srpt["mean"] == pytest.approx(data["replay"][REFERENCE]["latency_mean"])
