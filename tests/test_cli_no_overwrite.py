"""`hf-laps run` twice on one results file: a forgotten --resume never loses finished results."""
from __future__ import annotations

import json

from cli_subprocess import hf_laps

FINISHED = '{"custom_id": "done", "response": {"status_code": 200}, "error": null}\n'


def write_job(tmp_path):
    job = tmp_path / "job.jsonl"
    job.write_text(json.dumps({"custom_id": "a", "prompt": "Hello", "max_tokens": 3}) + "\n")
    return job


def test_a_non_empty_results_file_is_refused_untouched(tmp_path, tiny_model_dir):
    # before: truncated, and the job started over without a word
    out = tmp_path / "results.jsonl"
    out.write_text(FINISHED)
    proc = hf_laps("run", write_job(tmp_path), "-o", out, "--model", tiny_model_dir, "--no-progress")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and "--overwrite" in lines[0], proc.stderr
    assert out.read_text() == FINISHED
    assert not (tmp_path / "results.timing.jsonl").exists()


def test_overwrite_starts_over_and_contradicting_flags_are_refused(tmp_path, tiny_model_dir):
    out = tmp_path / "results.jsonl"
    out.write_text(FINISHED)
    job = write_job(tmp_path)
    both = hf_laps("run", job, "-o", out, "--model", tiny_model_dir, "--resume", "--overwrite")
    assert both.returncode == 2 and "give one" in both.stderr and out.read_text() == FINISHED
    proc = hf_laps("run", job, "-o", out, "--model", tiny_model_dir, "--no-progress", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["custom_id"] for line in out.read_text().splitlines()] == ["a"]
