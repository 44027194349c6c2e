"""`hf-laps run` behaves as OpenAI-batch users expect, and a run that cannot start touches
nothing. Every test runs the CLI as a subprocess, as a user would.

Models: the default tiny model dir repeats the prompt's last token; `found_model_dir` answers
"Hello" with "FoundFoundFound...", so the stop string "dF" lies wholly inside the generated text.
Both have a 512-token context window.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

import helpers

ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
OLD = {"results.jsonl": b'{"custom_id": "old"}\n', "results.timing.jsonl": b'{"custom_id": "old", "finish": 1.0}\n',
       "results.summary.json": b'{"requests": 1}'}
hf_laps = partial(helpers.hf_laps, timeout=300, env={"OMP_NUM_THREADS": "1"})


def write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def found_model_dir(tmp_path_factory):
    from model_dirs import save_tiny_model_dir

    return save_tiny_model_dir(tmp_path_factory.mktemp("found-model"), embedding_scale=1.0)


# ---- one job with the OpenAI semantics (items 1, 2, 3, 10, 13) -------------------------------

JOB = [
    {"custom_id": "length-with-stop", "prompt": "Hello", "max_tokens": 5, "stop": ["zzz"]},
    {"custom_id": "stopped", "prompt": "Hello", "max_tokens": 20, "stop": ["dF", "never"]},
    {"custom_id": "stopped-chat", "method": "POST", "url": "/v1/chat/completions",
     "body": {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "stop": "zzz",
              "logprobs": True, "top_logprobs": 2}, "metadata": {"team": "a"}},
    {"custom_id": "over-window", "prompt": "word " * 505, "max_tokens": 100, "logprobs": 1},
    {"custom_id": "default-cap", "prompt": "word " * 505},  # --max-new-tokens 128, fitted
]


@pytest.fixture(scope="module")
def job(found_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("semantics-job")
    write_jsonl(folder / "input.jsonl", JOB)
    proc = hf_laps("run", folder / "input.jsonl", "-o", folder / "results.jsonl", "--model", found_model_dir,
                   "--no-progress", "--policy", "fcfs")
    records = {r["custom_id"]: r for r in read_jsonl(folder / "results.jsonl")}
    timing = {t["custom_id"]: t for t in read_jsonl(folder / "results.timing.jsonl")}
    summary = json.loads((folder / "results.summary.json").read_text())
    return proc, records, timing, summary


def choice(record: dict) -> dict:
    return record["response"]["body"]["choices"][0]


def test_running_out_of_tokens_is_length_in_results_timing_log_and_summary(job):
    proc, records, timing, summary = job
    assert proc.returncode == 3, proc.stderr  # over-window is an error record
    assert choice(records["length-with-stop"])["finish_reason"] == "length"
    assert records["length-with-stop"]["response"]["body"]["usage"]["completion_tokens"] == 5
    assert timing["length-with-stop"]["finish_reason"] == "length"
    assert summary["finish_reasons"] == {"length": 3, "stop": 1}


def test_the_matched_stop_string_is_cut_from_the_result(job):
    _, records, timing, _ = job
    stopped = choice(records["stopped"])
    assert stopped["finish_reason"] == "stop" and timing["stopped"]["finish_reason"] == "stop"
    assert stopped["text"] == "Foun"  # generated "FoundFound": cut where "dF" starts
    assert records["stopped"]["response"]["body"]["usage"]["completion_tokens"] == 2


def test_max_tokens_past_the_context_window_is_a_400_on_max_tokens(job):
    _, records, _, _ = job
    record = records["over-window"]
    assert record["response"]["status_code"] == 400
    assert record["error"]["code"] == "invalid_request" and record["error"]["field"] == "max_tokens"
    assert record["response"]["body"]["error"]["param"] == "max_tokens"
    assert "context window of 512" in record["error"]["message"] and "max_tokens <= 6" in record["error"]["message"]
    default = records["default-cap"]
    assert default["error"] is None and choice(default)["finish_reason"] == "length"
    assert default["response"]["body"]["usage"]["total_tokens"] == 512  # the default cap, fitted


def test_the_summary_has_the_wall_time(job):
    proc, _, _, summary = job
    assert summary["wall_seconds"] is not None and summary["wall_seconds"] >= summary["makespan"] > 0
    assert summary["wall_tokens_per_second"] > 0
    assert "wall time" in proc.stdout


def test_ignored_fields_are_named_once(job):
    proc, records, _, _ = job
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: ignored fields that hf-laps does not implement: body.logprobs (1 line), "
                        "body.top_logprobs (1 line), logprobs (1 line), metadata (1 line)"], proc.stderr
    assert records["stopped-chat"]["error"] is None  # ignored, not refused


def test_empty_input_is_a_warning(tmp_path, tiny_model_dir):
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    proc = hf_laps("run", tmp_path / "empty.jsonl", "-o", tmp_path / "results.jsonl", "--model", tiny_model_dir,
                   "--no-progress")
    assert proc.returncode == 0
    assert "warning:" in proc.stderr and "has no requests" in proc.stderr


# ---- a run that cannot start touches nothing (items 4, 5, 10) --------------------------------


def write_old_outputs(folder: Path) -> None:
    for name, data in OLD.items():
        (folder / name).write_bytes(data)


def assert_untouched(folder: Path) -> None:
    for name, data in OLD.items():
        assert (folder / name).read_bytes() == data, f"{name} was changed"


def assert_one_line_usage_error(proc, *expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "results:" not in proc.stdout
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize("case, args, expected", [
    # an empty folder as the model: had the model been loaded first, the error would be about it
    ("srpt-oracle", ["--policy", "srpt-oracle"], ["srpt-oracle needs --truth"]),
    ("oracle-predictor", ["--predictor", "oracle"], ["--predictor oracle needs --truth"]),
    ("noisy-oracle-predictor", ["--predictor", "noisy-oracle"], ["needs --truth"]),
    ("device-cuda", ["--device", "cuda"], ["'cuda'", "CUDA is not available"]),
    ("device-gpu", ["--device", "gpu"], ["'gpu' is not a torch device"]),
    ("sigma-conflict", ["--predictor-sigma", "0.3"], ["--predictor-sigma applies only to --predictor noisy-oracle"]),
    ("arrivals-conflict", ["--arrival-rate", "2", "--ignore-arrivals"], ["contradict"]),
])
def test_a_run_that_cannot_start_touches_nothing(tmp_path, case, args, expected):
    if case == "device-cuda":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    (tmp_path / "not-a-model").mkdir()
    write_jsonl(tmp_path / "input.jsonl", JOB[:1])
    write_old_outputs(tmp_path)
    proc = hf_laps("run", tmp_path / "input.jsonl", "-o", tmp_path / "results.jsonl", "--model",
                   tmp_path / "not-a-model", *args)
    assert_one_line_usage_error(proc, *expected)
    assert_untouched(tmp_path)


@pytest.mark.parametrize("model", ["no-such-model-dir/", "./missing", "~/no/such/model", "missing.gguf", "a/b/c"])
def test_a_model_path_that_does_not_exist_says_so(tmp_path, model):
    write_jsonl(tmp_path / "input.jsonl", JOB[:1])
    write_old_outputs(tmp_path)
    proc = hf_laps("run", "input.jsonl", "-o", "results.jsonl", "--model", model, cwd=tmp_path)
    assert_one_line_usage_error(proc, "does not exist", repr(model))
    assert "hub" not in proc.stderr
    assert_untouched(tmp_path)


def test_a_model_that_fails_to_load_touches_nothing(tmp_path):
    (tmp_path / "not-a-model").mkdir()  # exists, so only loading finds out
    write_jsonl(tmp_path / "input.jsonl", JOB[:1])
    write_old_outputs(tmp_path)
    # --overwrite: even a run allowed to start over leaves the old outputs when the load fails
    proc = hf_laps("run", tmp_path / "input.jsonl", "-o", tmp_path / "results.jsonl", "--model", tmp_path / "not-a-model",
                   "--overwrite")
    assert proc.returncode == 2 and "could not load" in proc.stderr and "Traceback" not in proc.stderr
    assert "results:" not in proc.stdout
    assert_untouched(tmp_path)


def test_outputs_that_cannot_be_opened_are_not_named_as_results(tmp_path, tiny_model_dir):
    write_jsonl(tmp_path / "input.jsonl", JOB[:1])
    proc = hf_laps("run", tmp_path / "input.jsonl", "-o", tmp_path / "no-such-folder" / "results.jsonl",
                   "--model", tiny_model_dir, "--no-progress")
    assert proc.returncode == 4, proc.stderr
    assert "no such file or directory" in proc.stderr
    assert "results:" not in proc.stdout and "succeeded" not in proc.stdout


def test_after_an_interrupt_no_summary_is_named_or_left_over(tmp_path, tiny_model_dir):
    lines = [{"custom_id": f"r{i}", "prompt": f"count {i}", "max_tokens": 200} for i in range(40)]
    write_jsonl(tmp_path / "input.jsonl", lines)
    write_old_outputs(tmp_path)  # a summary of an earlier run must not survive as if it were this one's
    proc = subprocess.Popen([sys.executable, "-m", "hf_laps.cli.main", "run", "input.jsonl", "-o", "results.jsonl",
                             "--model", str(tiny_model_dir), "--no-progress", "--policy", "fcfs", "--overwrite"],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if (tmp_path / "results.jsonl").read_bytes().count(b"\n") >= 2 and b"old" not in (tmp_path / "results.jsonl").read_bytes():
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-2000:]
    assert not (tmp_path / "results.summary.json").exists()
    assert "summary:" not in stdout and "results.summary.json" not in stdout + stderr
    assert "no summary written" in stdout
    assert stderr.strip().splitlines()[-1] == "interrupted at a round boundary; rerun with --resume to finish"
