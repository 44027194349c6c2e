"""Resource faults: one bad request never takes the batch down, and a failing disk loses nothing.

`hf-laps run` runs in process (click's CliRunner, on the tiny model dir) so that faults can be
injected with monkeypatch; the exit code is the CLI's own `sys.exit` code:

- a prompt over the context window, or max_tokens past it -> a 400 error record, the others
  finish, exit 3;
- torch.OutOfMemoryError raised by one request's round -> a 500 error record, the others finish
  with the texts of a fault-free run, exit 3, and `--resume` does not retry it;
- ENOSPC / EIO injected into os.write / os.fsync of the results or timing file, and output paths
  that cannot be opened -> exit 4, every line already written intact and nothing half-written,
  and `--resume` (after "freeing space") completes the job exactly once.

The request faults and a representative disk fault run at one request per round and at batched
rounds (--max-batch-size 4, and the default "auto": the batch planner decides), against the same
fault-free B = 1 run.
"""
from __future__ import annotations

import errno
import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hf_laps.cli.run import run
from hf_laps.engine.speculative import SpeculativeEngine

N = 12
BATCH_SIZES = (1, 4, "auto")


def write_input(path: Path, extra: list[dict] = ()) -> Path:
    words = "one two three four five six seven eight nine ten".split()
    lines = [{"custom_id": f"r{i:02d}", "prompt": " ".join(words[i % 7 : i % 7 + 3 + i % 4]), "max_tokens": 6 + (i * 7) % 19}
             for i in range(N)]
    lines[3] = {"custom_id": "r03", "messages": [{"role": "user", "content": "two three two three"}], "max_tokens": 15}
    path.write_text("".join(json.dumps(line) + "\n" for line in [*lines, *extra]), encoding="utf-8")
    return path


def hf_laps_run(tmp_path: Path, model_dir: Path, *extra_args: str, input_name: str = "input.jsonl"):
    args = [str(tmp_path / input_name), "-o", str(tmp_path / "results.jsonl"), "--model", str(model_dir), "--no-progress", *extra_args]
    return CliRunner().invoke(run, args, catch_exceptions=False)


def read_records(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path.name} ends on a partial line"
    return [json.loads(line) for line in data.splitlines()]


def texts(records: list[dict]) -> dict[str, dict]:
    return {r["custom_id"]: r["response"]["body"]["choices"][0] for r in records if r["error"] is None}


@pytest.fixture(scope="module")
def baseline(tiny_model_dir, tmp_path_factory):
    """The fault-free run: custom_id -> choice."""
    tmp = tmp_path_factory.mktemp("baseline")
    write_input(tmp / "input.jsonl")
    result = hf_laps_run(tmp, tiny_model_dir)
    assert result.exit_code == 0, result.output
    records = read_records(tmp / "results.jsonl")
    assert len(records) == N
    return texts(records)


# ---- bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_prompt_over_the_context_window(tiny_model_dir, tmp_path, baseline, batch):
    long_text = "word " * 600  # > 512 = max_position_embeddings of the tiny model
    near = "word " * 505  # fits, with room for 6 tokens
    write_input(tmp_path / "input.jsonl", [
        {"custom_id": "too-long", "prompt": long_text},
        {"custom_id": "too-long-chat", "messages": [{"role": "user", "content": long_text}]},
        {"custom_id": "near", "prompt": near, "max_tokens": 100},  # refused: 506 + 100 > 512
        {"custom_id": "near-default", "prompt": near},  # the job's default cap, fitted to the window
    ])
    result = hf_laps_run(tmp_path, tiny_model_dir, "--max-batch-size", str(batch))
    assert result.exit_code == 3, result.output
    records = {r["custom_id"]: r for r in read_records(tmp_path / "results.jsonl")}
    assert len(records) == N + 4
    for custom_id, field in (("too-long", "prompt"), ("too-long-chat", "messages"), ("near", "max_tokens")):
        record = records[custom_id]
        assert record["response"]["status_code"] == 400
        assert record["response"]["body"]["error"]["type"] == "invalid_request_error"
        assert record["error"]["field"] == field and "context window" in record["error"]["message"]
    near_body = records["near-default"]["response"]["body"]
    assert records["near-default"]["error"] is None and near_body["choices"][0]["finish_reason"] == "length"
    assert near_body["usage"]["total_tokens"] == 512  # stopped at the window, not at the default cap
    assert texts(list(records.values())) == {**baseline, "near-default": near_body["choices"][0]}
    assert "3 failed" in result.output


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_out_of_memory_in_a_round(tiny_model_dir, tmp_path, baseline, monkeypatch, batch):
    # the request's own part of a round (its logits processing), which a batch-1 round and a
    # batched round both run once per request per round
    real_process = SpeculativeEngine.process_scores
    rounds = Counter()

    def process_scores(self, state, candidates, logits):
        rounds[state.request_id] += 1
        # r05 fails on its first round (prefill), r07 in the middle of its generation
        if (state.request_id, rounds[state.request_id]) in (("r05", 1), ("r07", 2)):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real_process(self, state, candidates, logits)

    monkeypatch.setattr(SpeculativeEngine, "process_scores", process_scores)
    write_input(tmp_path / "input.jsonl")
    result = hf_laps_run(tmp_path, tiny_model_dir, "--max-batch-size", str(batch))
    assert result.exit_code == 3, result.output
    records = read_records(tmp_path / "results.jsonl")
    assert sorted(r["custom_id"] for r in records) == [f"r{i:02d}" for i in range(N)]
    failed = {r["custom_id"]: r for r in records if r["error"] is not None}
    assert set(failed) == {"r05", "r07"}
    for record in failed.values():
        assert record["response"]["status_code"] == 500
        assert record["response"]["body"]["error"]["type"] == "server_error"
        assert "OutOfMemoryError" in record["error"]["message"] and "out of memory" in record["error"]["message"]
    assert texts(records) == {k: v for k, v in baseline.items() if k not in failed}
    timing = read_records(tmp_path / "results.timing.jsonl")
    assert sorted(t["custom_id"] for t in timing) == sorted(set(baseline) - set(failed))
    if batch != 1:  # the faults hit batched rounds: requests really ran side by side
        assert max(sum(r["start"] <= t["start"] < r["finish"] for r in timing) for t in timing) >= 3
    assert json.loads((tmp_path / "results.summary.json").read_text())["requests"] == N - 2
    assert "10 succeeded, 2 failed" in result.output

    # error records are final: --resume reruns nothing and still reports the failures
    monkeypatch.setattr(SpeculativeEngine, "process_scores", real_process)
    before = (tmp_path / "results.jsonl").read_bytes()
    again = hf_laps_run(tmp_path, tiny_model_dir, "--resume", "--max-batch-size", str(batch))
    assert again.exit_code == 3, again.output
    assert "0 succeeded, 2 failed, 12 already done" in again.output
    assert (tmp_path / "results.jsonl").read_bytes() == before


# ---- disk faults -----------------------------------------------------------------------------


class DiskFault:
    """Make os.write / os.fsync fail on one file, from its `at`-th record on (a full disk stays
    full). `partial`: the failing os.write first writes half of its bytes (a short write)."""

    def __init__(self, monkeypatch, target: Path, call: str, at: int, err: int, partial: bool = False):
        self.target, self.call, self.at, self.err, self.partial = target, call, at, err, partial
        self.count, self.injected = 0, 0
        self.real_write, self.real_fsync = os.write, os.fsync
        monkeypatch.setattr(os, "write", self.write)
        monkeypatch.setattr(os, "fsync", self.fsync)

    def _hits(self, fd: int) -> bool:
        try:
            return self.target.exists() and os.path.samestat(os.fstat(fd), self.target.stat())
        except OSError:
            return False

    def _fail(self):
        self.injected += 1
        raise OSError(self.err, os.strerror(self.err))

    def write(self, fd, data):
        if self._hits(fd) and self.call == "write":
            self.count += 1
            if self.count >= self.at:
                if self.partial and self.injected == 0:
                    self.injected += 1
                    return self.real_write(fd, bytes(data)[: max(1, len(data) // 2)])  # a short write...
                self._fail()  # ...and the retry of the rest finds the disk full
        return self.real_write(fd, data)

    def fsync(self, fd):
        if self._hits(fd) and self.call == "fsync" and os.fstat(fd).st_size > 0:
            self.count += 1
            if self.count >= self.at:
                self._fail()
        return self.real_fsync(fd)


@pytest.mark.parametrize("target, call, err, partial, batch", [
    ("results.jsonl", "write", errno.ENOSPC, False, 1),
    ("results.jsonl", "write", errno.ENOSPC, True, 1),
    ("results.jsonl", "fsync", errno.EIO, False, 1),
    ("results.timing.jsonl", "write", errno.EDQUOT, False, 1),
    ("results.jsonl", "write", errno.ENOSPC, True, 4),
    ("results.jsonl", "write", errno.ENOSPC, True, "auto"),
], ids=["results-enospc", "results-short-write-then-enospc", "results-fsync-eio", "timing-edquot",
        "results-short-write-then-enospc-batch-4", "results-short-write-then-enospc-batch-auto"])
def test_disk_fault_loses_nothing_and_resume_completes(tiny_model_dir, tmp_path, baseline, monkeypatch, target, call, err,
                                                       partial, batch):
    write_input(tmp_path / "input.jsonl")
    results = tmp_path / "results.jsonl"
    fault = DiskFault(monkeypatch, tmp_path / target, call, at=5, err=err, partial=partial)
    result = hf_laps_run(tmp_path, tiny_model_dir, "--max-batch-size", str(batch))
    monkeypatch.undo()  # space freed
    assert fault.injected >= 1
    assert result.exit_code == 4, result.output
    assert errno.errorcode[err] in result.output and "cannot write" in result.output
    records = read_records(results)  # ends on a complete line: the partial one was cut
    written = [json.dumps(r, sort_keys=True) for r in records]
    assert len(records) == 4  # the records before the 5th (a timing line precedes its result)
    assert texts(records) == {r["custom_id"]: baseline[r["custom_id"]] for r in records}
    read_records(tmp_path / "results.timing.jsonl")
    assert not (tmp_path / "results.summary.json").exists()

    again = hf_laps_run(tmp_path, tiny_model_dir, "--resume", "--max-batch-size", str(batch))
    assert again.exit_code == 0, again.output
    final = read_records(results)
    assert [json.dumps(r, sort_keys=True) for r in final[: len(written)]] == written  # kept as they were
    assert sorted(r["custom_id"] for r in final) == sorted(baseline)  # exactly once
    assert texts(final) == baseline
    assert f"{N - len(written)} succeeded, 0 failed, {len(written)} already done" in again.output


def test_results_folder_missing_is_exit_4(tiny_model_dir, tmp_path):
    write_input(tmp_path / "input.jsonl")
    args = [str(tmp_path / "input.jsonl"), "-o", str(tmp_path / "no-such-dir" / "results.jsonl"), "--model", str(tiny_model_dir), "--no-progress"]
    result = CliRunner().invoke(run, args, catch_exceptions=False)
    assert result.exit_code == 4, result.output
    assert "no such file or directory" in result.output.lower()


def test_results_not_writable_is_exit_4_and_keeps_old_records(tiny_model_dir, tmp_path, monkeypatch):
    """EACCES when opening the results file (injected: the tests may run as root)."""
    write_input(tmp_path / "input.jsonl")
    results = tmp_path / "results.jsonl"
    old = b'{"custom_id": "r00", "error": null, "response": {"status_code": 200}}\n'
    results.write_bytes(old)
    real_open = os.open

    def guarded_open(path, flags, *args, **kwargs):
        if os.fspath(path) == str(results) and flags & (os.O_WRONLY | os.O_RDWR):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    result = hf_laps_run(tmp_path, tiny_model_dir, "--resume")
    assert result.exit_code == 4, result.output
    assert "EACCES" in result.output
    assert results.read_bytes() == old


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_folder_is_exit_4(tiny_model_dir, tmp_path):
    write_input(tmp_path / "input.jsonl")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        args = [str(tmp_path / "input.jsonl"), "-o", str(out / "results.jsonl"), "--model", str(tiny_model_dir), "--no-progress"]
        assert CliRunner().invoke(run, args, catch_exceptions=False).exit_code == 4
    finally:
        out.chmod(0o700)


def test_summary_not_writable_is_exit_4_after_every_result(tiny_model_dir, tmp_path, baseline):
    """The summary is written last: its failure is reported (exit 4) but every result is there,
    and --resume with a writable summary path finishes the job without rerunning anything."""
    write_input(tmp_path / "input.jsonl")
    result = hf_laps_run(tmp_path, tiny_model_dir, "--summary", str(tmp_path / "missing" / "summary.json"))
    assert result.exit_code == 4, result.output
    assert texts(read_records(tmp_path / "results.jsonl")) == baseline
    again = hf_laps_run(tmp_path, tiny_model_dir, "--resume")
    assert again.exit_code == 0 and f"0 succeeded, 0 failed, {N} already done" in again.output
    assert json.loads((tmp_path / "results.summary.json").read_text())["requests"] == N


def test_exit_code_2_for_an_unloadable_model(tmp_path):
    write_input(tmp_path / "input.jsonl")
    result = hf_laps_run(tmp_path, tmp_path / "no-such-model")
    assert result.exit_code == 2 and "does not exist" in result.output
    (tmp_path / "not-a-model").mkdir()
    result = hf_laps_run(tmp_path, tmp_path / "not-a-model")
    assert result.exit_code == 2 and "could not load" in result.output
    assert not (tmp_path / "results.jsonl").exists()  # checked and loaded before any output is opened
