"""`hf-laps bench`: one real run on the tiny model dir (record + every policy + replay, one
table, JSON, plot) and replay-only runs on synthetic traces (no model)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hf_laps.jobs.bench import BenchConfig, Probe, format_bench_table, headline, replay, truth_of
from hf_laps.cli.bench import bench
from hf_laps.replay.replayer import simulate
from hf_laps.replay.traces import dump_traces
from hf_laps.scheduling import make_policy, make_predictor
from hf_laps.replay.synthetic import synthetic_traces

POLICIES = ("fcfs", "las", "lp-sjf", "laps-sd", "srpt-oracle", "gittins", "robust-srpt")  # every registered policy
JOB = [
    {"custom_id": "a", "prompt": "one two three one two three one two three", "max_tokens": 10},
    {"custom_id": "b", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4},
    {"custom_id": "c", "prompt": "def f(x):\n    return x\n\ndef g(x):\n", "max_tokens": 7},
]


def test_bench_on_the_tiny_model(tmp_path, tiny_model_dir):
    job = tmp_path / "job.jsonl"
    job.write_text("\n".join(json.dumps(r) for r in JOB) + "\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "hf_laps.cli.main", "bench", str(job), "--model", str(tiny_model_dir),
         "--out-dir", str(tmp_path / "out"), "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "b.png"),
         "--predictor", "oracle"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout
    for name in POLICIES:
        assert f"\n{name} " in table
    assert "laps-sd / srpt-oracle" in table and "fcfs->srpt-oracle gap" in table and "real/rep" in table and "real/self" in table
    assert all(r["self_replay_mean"] > 0 for r in json.loads((tmp_path / "b.json").read_text())["runs"])
    result = json.loads((tmp_path / "b.json").read_text())
    assert set(result["real"]) == set(result["replay"]) == set(POLICIES)
    assert len(result["runs"]) == len(POLICIES) and result["requests"] == 3
    # greedy: every policy produced the same tokens as the recording, request by request
    recorded = {r["custom_id"]: r["output_tokens"] for r in map(json.loads, open(result["record"]))}
    for run in result["runs"]:
        assert {r["custom_id"]: r["output_tokens"] for r in map(json.loads, open(run["timing_log"]))} == recorded
    assert result["real"]["lp-sjf"]["length_mape"] == pytest.approx(0.0)  # oracle lengths from the record
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_replay_only_needs_no_model(tmp_path):
    record = tmp_path / "rec.timing.jsonl"
    traces = synthetic_traces(12, tail="heavy", seed=2)
    dump_traces(traces, record)
    job = tmp_path / "job.jsonl"
    job.write_text("\n".join(json.dumps({"custom_id": t.custom_id, "prompt": "x"}) for t in traces) + "\n")
    result = CliRunner().invoke(bench, [str(job), "--record", str(record), "--replay-only", "--predictor", "oracle",
                                        "--json", str(tmp_path / "r.json"), "--out-dir", str(tmp_path / "o"),
                                        "--max-batch-size", "1"])   # one request per round: the order decides
    assert result.exit_code == 0, result.output
    assert "replay only" in result.output and "replay:" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    means = {p: row["latency_mean"] for p, row in data["replay"].items()}
    assert means["srpt-oracle"] <= min(means.values()) + 1e-9  # the oracle lower bound
    h = data["headline"]["replay"]
    assert h["laps_over_srpt"] == pytest.approx(means["laps-sd"] / means["srpt-oracle"])
    assert h["gap_closed"] == pytest.approx((means["fcfs"] - means["laps-sd"]) / (means["fcfs"] - means["srpt-oracle"]))
    assert data["replay"]["lp-sjf"]["length_mape"] == pytest.approx(0.0)
    assert data["replay"]["laps-sd"]["t_rem_mape"] is not None


def test_probe_is_transparent_and_measures_errors():
    traces = synthetic_traces(15, tail="light", seed=5)
    plain = simulate(traces, make_policy("laps-sd", predictor=make_predictor("noisy-oracle", sigma=0.5)))
    probe = Probe(make_policy("laps-sd", predictor=make_predictor("noisy-oracle", sigma=0.5)))
    probed = simulate(traces, probe)
    assert probed.schedule == plain.schedule  # the wrapper changes nothing
    errors = probe.errors(truth_of(traces))
    assert errors["perceptible"] > 0 and errors["length_mape"] > 10 and 0 < errors["t_rem_mape"] < float("inf")


def test_headline_and_table_without_real_runs():
    traces = synthetic_traces(8, seed=1)
    result = {"config": {"repeats": 1, "policies": list(POLICIES)}, "requests": 8, "real": {},
              "replay": replay(traces, BenchConfig(input="-", predictor="oracle"))}
    result["headline"] = headline(result)
    assert "real" not in result["headline"] and "laps_over_best" in result["headline"]["replay"]
    assert "srpt-oracle" in format_bench_table(result)
    # the policies beyond the paper get their own line, against the baselines and laps-sd
    means = {p: row["latency_mean"] for p, row in result["replay"].items()}
    best = min(("fcfs", "las", "lp-sjf", "laps-sd"), key=means.get)
    gittins = result["headline"]["replay"]["beyond"]["gittins"]
    assert set(result["headline"]["replay"]["beyond"]) == {"gittins", "robust-srpt"} and gittins["best_baseline"] == best
    assert gittins["over_best"] == pytest.approx(means["gittins"] / means[best])
    assert gittins["over_srpt"] == pytest.approx(means["gittins"] / means["srpt-oracle"])
    assert f"gittins / best of fcfs,las,lp-sjf,laps-sd ({best}) = {gittins['over_best']:.3f}" in format_bench_table(result)


def test_bad_policy_name_is_a_usage_error(tmp_path):
    job = tmp_path / "job.jsonl"
    job.write_text(json.dumps(JOB[0]) + "\n")
    result = CliRunner().invoke(bench, [str(job), "--policies", "fcfs,nope", "--replay-only"])
    assert result.exit_code == 2 and "nope" in result.output


# ---- benchmarks/gpu.sh: its CPU-runnable parts --------------------------------------------
REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_gpu_script_parses_and_refuses_to_fake_a_gpu(tmp_path):
    script = REPO / "benchmarks" / "gpu.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    import torch

    if not torch.cuda.is_available():
        proc = subprocess.run(["bash", str(script), str(tmp_path / "o")], capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, ALLOW_CPU="0"))
        assert proc.returncode == 1 and "no CUDA GPU" in proc.stderr


def test_paper_pair_tiny_models_and_round_times(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    tool = str(REPO / "benchmarks" / "paper_pair.py")
    proc = subprocess.run([sys.executable, tool, "models", str(tmp_path / "m"), "--scale", "tiny", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    target, draft, source = proc.stdout.split()
    assert source == "random"
    cfg = json.loads((__import__("pathlib").Path(target) / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and (__import__("pathlib").Path(draft) / "tokenizer.json").is_file()
    SHAPES = __import__("runpy").run_path(tool)["SHAPES"]  # the paper shapes: LLaMA-7B and LLaMA-68M
    assert SHAPES["paper"]["target"]["hidden_size"] == 4096 and SHAPES["paper"]["target"]["num_hidden_layers"] == 32
    assert SHAPES["paper"]["draft"]["hidden_size"] == 768 and SHAPES["paper"]["draft"]["num_hidden_layers"] == 2
    log = tmp_path / "t.jsonl"
    log.write_text(json.dumps({"custom_id": "a", "rounds": [[5, 0, 0.5, 0.1], [5, 3, 0.2, 0.05], [5, 1, 0.3, 0.05]],
                               "preemptions": 2, "switch_seconds": 0.01}) + "\n")
    out = subprocess.run([sys.executable, tool, "round-times", str(log)], capture_output=True, text=True, timeout=60).stdout
    assert "draft 50.00" in out and "verify 200.00" in out and "switch 5.00 ms per preemption" in out
