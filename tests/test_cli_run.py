"""`hf-laps run` as a user runs it: a subprocess, on the tiny model dir and on the real
embedded default."""
from __future__ import annotations

import json

import pytest

from helpers import EXAMPLES, hf_laps


@pytest.mark.torchfree
def test_help_lists_every_option():
    out = hf_laps("run", "--help").stdout
    for flag in ("--output", "--timing-log", "--summary", "--policy", "--model", "--assistant", "--draft-length",
                 "--draft-schedule", "--max-new-tokens", "--device", "--dtype", "--resume", "--seed",
                 "--kv-budget-bytes", "--predictor", "--truth", "--trust-remote-code"):
        assert flag in out, flag
    for policy in ("fcfs", "las", "lp-sjf", "srpt-oracle", "laps-sd"):
        assert policy in out


def test_run_on_a_model_directory(tmp_path, tiny_model_dir):
    out = tmp_path / "results.jsonl"
    proc = hf_laps("run", EXAMPLES, "-o", out, "--model", tiny_model_dir, "--no-progress", "--policy", "las")
    assert proc.returncode == 0, proc.stderr
    assert "latency" in proc.stdout and "8 succeeded" in proc.stdout
    assert len(out.read_text().splitlines()) == 8
    assert len((tmp_path / "results.timing.jsonl").read_text().splitlines()) == 8
    assert json.loads((tmp_path / "results.summary.json").read_text())["requests"] == 8


def test_missing_model_is_a_clear_error_not_a_traceback(tmp_path):
    proc = hf_laps("run", EXAMPLES, "-o", tmp_path / "r.jsonl", "--model", tmp_path / "no-such-model")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_embedded_default_end_to_end(tmp_path):
    """The README's first command, on two lines of the examples to keep CI short."""
    lines = EXAMPLES.read_text().splitlines()
    small = tmp_path / "small.jsonl"
    small.write_text("\n".join([lines[0], lines[1]]) + "\n")
    out = tmp_path / "results.jsonl"
    proc = hf_laps("run", small, "-o", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    records = {r["custom_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    copy = records["copy-1"]["response"]["body"]["choices"][0]["message"]["content"]
    assert copy.startswith("The committee met on Tuesday")
    assert "Paris" in records["capital"]["response"]["body"]["choices"][0]["message"]["content"]
    timing = [json.loads(l) for l in (tmp_path / "results.timing.jsonl").read_text().splitlines()]
    accept = {t["custom_id"]: t["metrics"]["mean_acceptance_length"] for t in timing}
    assert accept["copy-1"] > 3  # prompt lookup copies the text
