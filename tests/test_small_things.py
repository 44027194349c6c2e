"""The small things a new user trips on (issue 19, item 9): each says what it is."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from hf_laps.jobs.bench import format_bench_table, headline
from hf_laps.jobs.sink import SinkError, probe_writable
from cli_subprocess import REPO, hf_laps


def test_report_given_the_results_file_names_the_timing_log(tmp_path):
    # before: "missing key 'prompt_tokens'"
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"id": "batch_req_1", "custom_id": "a", "response": {"status_code": 200},
                                   "error": None}) + "\n")
    proc = hf_laps("report", results)
    assert proc.returncode == 2
    assert "is a results file" in proc.stderr and str(tmp_path / "results.timing.jsonl") in proc.stderr


def test_a_read_only_file_system_is_erofs_not_eacces(tmp_path, monkeypatch):
    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda path: ReadOnly())
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as os.access answers on a ro mount
    with pytest.raises(SinkError) as info:
        probe_writable(tmp_path / "results.jsonl")
    assert info.value.errno == errno.EROFS and "read-only file system (EROFS)" in info.value.reason


def test_the_readme_run_leaves_nothing_for_git(tmp_path):
    names = ["results.jsonl", "results.timing.jsonl", "results.summary.json"]
    proc = subprocess.run(["git", "check-ignore", *names], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.split() == names


def bench_result(means: dict) -> dict:
    rows = {name: {"latency_mean": mean, "latency_p50": mean, "latency_p90": mean, "latency_p99": mean,
                   "ttft_mean": 0.1, "makespan": 1.0, "tokens_per_second": 1.0, "preemptions": 0}
            for name, mean in means.items()}
    return {"real": {}, "replay": rows, "requests": 3, "config": {"policies": list(means), "repeats": 1}}


def test_bench_prints_no_gap_ratio_over_noise():
    # before: "gap closed = -1976 %" when fcfs and srpt-oracle differed by run-to-run noise
    result = bench_result({"fcfs": 1.00, "lp-sjf": 0.97, "srpt-oracle": 0.99, "laps-sd": 1.20})
    result["headline"] = headline(result)
    assert "gap_closed" not in result["headline"]["replay"]
    table = format_bench_table(result)
    assert "gap closed =" not in table and "too small to measure" in table
    wide = bench_result({"fcfs": 2.0, "srpt-oracle": 1.0, "laps-sd": 1.5})
    assert headline(wide)["replay"]["gap_closed"] == pytest.approx(0.5)


def test_bench_help_names_no_truth_flag():
    proc = hf_laps("bench", "--help")
    assert proc.returncode == 0 and "--truth" not in proc.stdout


def test_num_processes_prints_each_line_once_and_no_no_message(tmp_path, tiny_model_dir):
    # before: "shard 1 of 2 (...) exited 0: no message (the main process reports the run)"
    job = tmp_path / "job.jsonl"
    job.write_text("".join(json.dumps({"custom_id": f"r{i}", "prompt": f"Hello {i}", "max_tokens": 4}) + "\n"
                           for i in range(4)))
    proc = hf_laps("run", job, "-o", tmp_path / "results.jsonl", "--model", tiny_model_dir, "--no-progress",
                   "--num-processes", "2", timeout=400)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert "no message" not in output and "shard 1 of 2" not in output
    assert output.count("4 succeeded") == 1


def test_num_processes_with_a_missing_results_folder_is_one_line(tmp_path, tiny_model_dir):
    # before: every launched worker died with a FileNotFoundError traceback
    job = tmp_path / "job.jsonl"
    job.write_text(json.dumps({"custom_id": "r0", "prompt": "Hello", "max_tokens": 4}) + "\n")
    proc = hf_laps("run", job, "-o", tmp_path / "missing" / "results.jsonl", "--model", tiny_model_dir,
                   "--no-progress", "--num-processes", "2", timeout=400)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "missing" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "missing").exists()


def test_the_readme_test_command_says_why_a_test_is_skipped():
    # before: `pytest -q` printed a bare "1 skipped" (the workload tests: "N skipped", no package named)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_jobs_sink.py::test_read_only_directory", "tests/test_jobs_sink.py::test_resume_false_truncates_resume_true_appends"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    if "1 skipped" not in proc.stdout:
        pytest.skip("not root here, so nothing is skipped (that test skips as root: root ignores file permissions)")
    assert "SKIPPED" in proc.stdout and "root ignores file permissions" in proc.stdout, proc.stdout
