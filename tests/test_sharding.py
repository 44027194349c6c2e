"""A job sharded over processes with accelerate: the plan, the manifest, the merge, and
`hf-laps run --num-processes 2` as a user runs it (2 CPU processes, gloo, tiny model)."""
from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

from helpers import hf_laps
from hf_laps.jobs.manifest import Manifest, ManifestMismatch
from hf_laps.jobs.merge import MergeError, merge_results
from hf_laps.jobs.requests import read_requests
from hf_laps.jobs.shard import ShardSpec, plan_shards, request_cost

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and POSIX signals")
RUN_TIMEOUT = 300


def write_job(path: Path, n: int = 12, bad_lines: bool = True, budget: int = 12, spread: int = 1) -> None:
    """n completions and chats of uneven length (caps budget + (i % 4) * spread), and two invalid
    lines (errors, no work)."""
    lines = []
    for i in range(n):
        text = " ".join(["the cat sat on the mat"] * (1 + i % 5))
        if i % 3 == 2:
            lines.append({"custom_id": f"r{i:02d}", "messages": [{"role": "user", "content": text}],
                          "max_tokens": budget + (i % 4) * spread})
        else:
            lines.append({"custom_id": f"r{i:02d}", "prompt": text, "max_tokens": budget + (i % 4) * spread})
    rows = [json.dumps(line) for line in lines]
    if bad_lines:
        rows[3:3] = ['{"custom_id": "bad", "prompt": 7}', "not json"]
    path.write_text("\n".join(rows) + "\n")


# `hf-laps run ARGS...`, one thread per process
run = partial(hf_laps, "run", timeout=RUN_TIMEOUT, env={"OMP_NUM_THREADS": "1"})


def records(path: Path) -> dict:
    """key -> (text or error code) of every line of a results file; fails on a key twice."""
    keys = Counter()
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        key = record["custom_id"] or f"line:{record['error']['line']}"
        keys[key] += 1
        body = (record.get("response") or {}).get("body") or {}
        choice = (body.get("choices") or [{}])[0]
        out[key] = record["error"]["code"] if record["error"] else choice.get("text", choice.get("message"))
    assert max(keys.values()) == 1, keys.most_common(3)
    return out


# ---- the plan ------------------------------------------------------------------------------

@pytest.mark.torchfree
def test_plan_balances_predicted_work_not_line_count(tmp_path):
    job = tmp_path / "job.jsonl"
    # one long request and six short ones: by line count shard 0 would get the long one and
    # three short ones; by predicted work the long one is alone
    rows = [{"custom_id": "long", "prompt": "x" * 400, "max_tokens": 300}]
    rows += [{"custom_id": f"s{i}", "prompt": "hi there", "max_tokens": 40} for i in range(6)]
    job.write_text("\n".join(map(json.dumps, rows)) + "\n")
    requests, _ = read_requests(job)
    assert request_cost(requests[0], 128) == 100 + 300  # 400 bytes / 4 + max_tokens
    plan = plan_shards(requests, 2, default_max_new_tokens=128)
    assert plan == [["long"], [f"s{i}" for i in range(6)]]
    assert plan_shards(requests, 2, 128) == plan  # every process computes the same plan


@pytest.mark.torchfree
def test_shards_partition_requests_and_line_errors_go_to_shard_zero(tmp_path):
    job = tmp_path / "job.jsonl"
    write_job(job, n=20)
    requests, errors = read_requests(job)
    chosen = [ShardSpec(k, 3).select(requests, errors, 64) for k in range(3)]
    ids = [r.custom_id for mine, _ in chosen for r in mine]
    assert sorted(ids) == sorted(r.custom_id for r in requests)  # each request in one shard
    assert [len(e) for _, e in chosen] == [2, 0, 0]
    for mine, _ in chosen:  # input order within a shard
        assert [r.line_no for r in mine] == sorted(r.line_no for r in mine)


@pytest.mark.torchfree
def test_manifest_refuses_another_job_version_or_process_count():
    earlier = Manifest("0.1.0", "a" * 64, 2, "p" * 64, "job.jsonl")
    earlier.check_resumable(earlier, "r.jsonl")  # the same run resumes
    with pytest.raises(ManifestMismatch, match="job file changed"):
        Manifest("0.1.0", "b" * 64, 2, "p" * 64, "job.jsonl").check_resumable(earlier, "r.jsonl")
    with pytest.raises(ManifestMismatch, match="hf-laps 0.0.9 wrote them"):
        earlier.check_resumable(Manifest("0.0.9", "a" * 64, 2, "p" * 64, "job.jsonl"), "r.jsonl")
    with pytest.raises(ManifestMismatch, match="written by 3 processes"):
        earlier.check_resumable(Manifest("0.1.0", "a" * 64, 3, "p" * 64, "job.jsonl"), "r.jsonl")


@pytest.mark.torchfree
def test_merge_refuses_a_key_in_two_shards_and_keeps_the_target(tmp_path):
    shards = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    shards[0].write_text('{"custom_id": "x"}\n{"custom_id": "y"}\n')
    shards[1].write_text('{"custom_id": "z"}\n{"custom_id": "y"}\n')
    target = tmp_path / "merged.jsonl"
    target.write_text("earlier\n")
    with pytest.raises(MergeError, match="'y'"):
        merge_results(list(map(str, shards)), str(target))
    assert target.read_text() == "earlier\n" and not Path(f"{target}.tmp").exists()
    shards[1].write_text('{"custom_id": "z"}\n{"custom_id": "torn"')  # a torn last line is left out
    assert merge_results(list(map(str, shards)), str(target)) == 3
    assert [json.loads(l)["custom_id"] for l in target.read_text().splitlines()] == ["x", "y", "z"]


# ---- the command ---------------------------------------------------------------------------

def test_two_processes_write_what_one_process_writes(tmp_path, tiny_model_dir):
    job = tmp_path / "job.jsonl"
    write_job(job)
    one, two = tmp_path / "one" / "results.jsonl", tmp_path / "two" / "results.jsonl"
    one.parent.mkdir(), two.parent.mkdir()
    base = (job, "--model", tiny_model_dir, "--no-progress", "--policy", "las")
    single = run(*base, "-o", one)
    sharded = run(*base, "-o", two, "--num-processes", 2)
    assert single.returncode == sharded.returncode == 3, sharded.stderr[-3000:]  # 3: the two bad lines
    assert records(two) == records(one)  # texts, custom_ids, error records: each exactly once
    assert "12 succeeded, 2 failed, 0 already done" in sharded.stdout
    summary = json.loads((two.parent / "results.summary.json").read_text())
    assert summary["requests"] == 12 and summary["processes"] == 2
    timing = [json.loads(l)["custom_id"] for l in (two.parent / "results.timing.jsonl").read_text().splitlines()]
    assert sorted(timing) == sorted(k for k in records(one) if k.startswith("r"))
    manifest = json.loads((two.parent / "results.shards.json").read_text())
    assert manifest["num_processes"] == 2 and manifest["exit_code"] == 3


def _pid_writing(path: Path) -> int | None:
    """The process holding `path` open (the shard's writer), found through /proc."""
    target = str(path.resolve())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    return None


def test_sigkill_of_one_process_then_resume_finishes_each_request_once(tmp_path, tiny_model_dir):
    job = tmp_path / "job.jsonl"
    # caps 20 / 80 / 140 / 200: at the default every shard's requests share rounds, so records must
    # finish at different rounds for the kill to land with some, not all, on disk
    write_job(job, n=24, bad_lines=False, budget=20, spread=60)
    reference, results = tmp_path / "ref" / "results.jsonl", tmp_path / "out" / "results.jsonl"
    reference.parent.mkdir(), results.parent.mkdir()
    base = (job, "--model", tiny_model_dir, "--no-progress")
    assert run(*base, "-o", reference).returncode == 0

    proc = run(*base, "-o", results, "--num-processes", 2, popen=True)
    shard = Path(ShardSpec(1, 2).results_path(str(results)))
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (shard.exists() and shard.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = _pid_writing(shard)
    written = shard.read_text().count("\n")
    assert pid is not None and 2 <= written < 12, written  # killed mid-run, with some records on disk
    os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    assert proc.returncode != 0
    assert not results.exists()  # nothing merged: the run did not complete

    resumed = run(*base, "-o", results, "--num-processes", 2, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert records(results) == records(reference)
    done = re.search(r"(\d+) succeeded, 0 failed, (\d+) already done", resumed.stdout)
    assert done and int(done[1]) + int(done[2]) == 24 and int(done[2]) >= written


def test_resume_after_the_job_file_changed_is_refused(tmp_path):
    job = tmp_path / "job.jsonl"
    write_job(job, n=4)
    results = tmp_path / "results.jsonl"
    requests, _ = read_requests(job)
    from hf_laps import __version__
    from hf_laps.jobs.manifest import file_sha256, write_manifest
    from hf_laps.jobs.shard import manifest_path, plan_digest

    plan = plan_digest(plan_shards(requests, 2, 128))
    write_manifest(manifest_path(str(results)), Manifest(__version__, file_sha256(str(job)), 2, plan, str(job)))
    job.write_text(job.read_text() + '{"custom_id": "new", "prompt": "one more"}\n')
    refused = run(job, "-o", results, "--num-processes", 2, "--resume")
    assert refused.returncode == 2
    assert "the job file changed" in refused.stderr and "Traceback" not in refused.stderr
    single = run(job, "-o", results, "--resume")  # nor can one process resume it
    assert single.returncode == 2 and "resume it with --num-processes 2" in single.stderr


def test_a_failed_process_is_named_and_the_other_shard_completes(tmp_path, tiny_model_dir):
    job = tmp_path / "job.jsonl"
    write_job(job, n=6, bad_lines=False, budget=4)
    results = tmp_path / "results.jsonl"
    blocked = Path(ShardSpec(1, 2).results_path(str(results)))
    blocked.mkdir()  # shard 1 cannot open its results file: exit 4 (output error)
    base = (job, "--model", tiny_model_dir, "--no-progress", "-o", results, "--num-processes", 2)
    failed = run(*base)
    assert failed.returncode == 4
    assert "shard 1 of 2" in failed.stderr and "is a directory" in failed.stderr
    assert len(Path(ShardSpec(0, 2).results_path(str(results))).read_text().splitlines()) == 3  # intact
    assert not results.exists()
    blocked.rmdir()
    resumed = run(*base, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "3 succeeded, 0 failed, 3 already done" in resumed.stdout and len(records(results)) == 6
