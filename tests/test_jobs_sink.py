"""Output records, the durable JSONL sink, torn-line repair, resume keys and injected I/O faults."""
from __future__ import annotations

import errno
import json
import os

import pytest

from hf_laps.jobs.records import (
    error_record, line_error_record, record_key, success_record,
)
from hf_laps.jobs.requests import CHAT, LineError, parse_line
from hf_laps.jobs.sink import JsonlSink, SinkError, completed_keys, encode_record

pytestmark = pytest.mark.torchfree


def request(custom_id="a", chat=False):
    body = {"messages": [{"role": "user", "content": "hi"}]} if chat else {"prompt": "hi"}
    return parse_line(1, json.dumps({"custom_id": custom_id, **body}))


def lines(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --- records ----------------------------------------------------------------------------------


def test_success_record_completion_shape():
    rec = success_record(request(), text="yo", finish_reason="eos", prompt_tokens=3,
                         completion_tokens=2, model="m", created=123, extra={"metrics": {"x": 1}})
    assert rec["id"].startswith("batch_req_") and rec["custom_id"] == "a" and rec["error"] is None
    resp = rec["response"]
    assert resp["status_code"] == 200 and isinstance(resp["request_id"], str)
    body = resp["body"]
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"] == [{"index": 0, "text": "yo", "finish_reason": "stop",
                                "logprobs": None}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    assert (body["model"], body["created"], body["metrics"]) == ("m", 123, {"x": 1})


def test_success_record_chat_shape_and_finish_reasons():
    req = request(chat=True)
    assert req.endpoint == CHAT
    rec = success_record(req, text="yo", finish_reason="length", prompt_tokens=1,
                         completion_tokens=1, model="m")
    body = rec["response"]["body"]
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "yo"},
                                "finish_reason": "length"}]
    assert isinstance(body["created"], int)
    stop = success_record(req, text="", finish_reason="stop", prompt_tokens=1,
                          completion_tokens=0, model="m")
    assert stop["response"]["body"]["choices"][0]["finish_reason"] == "stop"


def test_success_record_rejects_bad_input():
    with pytest.raises(ValueError, match="finish_reason"):
        success_record(request(), text="", finish_reason="oom", prompt_tokens=1,
                       completion_tokens=0, model="m")
    with pytest.raises(ValueError, match="collides"):
        success_record(request(), text="", finish_reason="eos", prompt_tokens=1,
                       completion_tokens=0, model="m", extra={"usage": {}})


def test_ids_are_stable_and_distinct():
    kw = dict(text="t", finish_reason="eos", prompt_tokens=1, completion_tokens=1, model="m",
              created=1)
    assert success_record(request("a"), **kw) == success_record(request("a"), **kw)
    assert success_record(request("a"), **kw)["id"] != success_record(request("b"), **kw)["id"]


def test_error_record_shapes():
    rec = error_record(custom_id="a", line_no=None, field=None, message="out of memory",
                       code="out_of_memory", status_code=500)
    assert rec["custom_id"] == "a" and rec["response"]["status_code"] == 500
    assert rec["response"]["body"]["error"]["type"] == "server_error"
    assert rec["error"] == {"code": "out_of_memory", "message": "out of memory", "line": None,
                            "field": None}
    assert error_record(custom_id=None, line_no=4, field="json", message="m",
                        status_code=None)["response"] is None
    with pytest.raises(ValueError):
        error_record(custom_id=None, line_no=None, field=None, message="m")


def test_line_error_record():
    err = parse_line(7, json.dumps({"custom_id": "a", "prompt": "x", "max_tokens": -3}))
    rec = line_error_record(err)
    assert rec["custom_id"] == "a" and rec["response"]["status_code"] == 400
    assert rec["response"]["body"]["error"] == {
        "message": err.message(), "type": "invalid_request_error", "param": "max_tokens",
        "code": "invalid_request"}
    assert rec["error"] == {"code": "invalid_request", "line": 7, "field": "max_tokens",
                            "message": "line 7, field 'max_tokens': must be an integer >= 0, "
                                       "got -3"}


def test_record_key():
    ok = success_record(request("a"), text="", finish_reason="eos", prompt_tokens=1,
                        completion_tokens=0, model="m")
    assert record_key(ok) == "a"
    assert record_key(line_error_record(LineError(9, None, "json", "bad"))) == "line:9"
    assert record_key(line_error_record(LineError(9, "b", "n", "bad"))) == "b"
    dup = LineError(5, None, "custom_id", "duplicate", "duplicate_custom_id")
    assert record_key(line_error_record(dup)) == "line:5"  # never the first line's id
    for junk in ({}, {"custom_id": ""}, {"error": {"line": True}}, {"error": "x"}):
        with pytest.raises(ValueError):
            record_key(junk)


# --- sink -------------------------------------------------------------------------------------


def test_write_appends_fsynced_lines(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "out.jsonl"
    with JsonlSink(path, resume=False) as sink:
        before = len(synced)
        sink.write({"custom_id": "a", "text": "héllo"})
        sink.write({"custom_id": "b"})
        assert len(synced) - before == 2  # one fsync per record
    assert lines(path) == ['{"custom_id": "a", "text": "héllo"}\n'.encode(),
                           b'{"custom_id": "b"}\n']


def test_resume_false_truncates_resume_true_appends(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"custom_id": "old"}\n')
    with JsonlSink(path, resume=True) as sink:
        sink.write({"custom_id": "new"})
    assert completed_keys(path) == {"old", "new"}
    with JsonlSink(path, resume=False) as sink:
        sink.write({"custom_id": "x"})
    assert completed_keys(path) == {"x"}


@pytest.mark.parametrize("tail", [b'{"custom_id": "torn", "te', b'{"custom_id": "c"}', b"\xff\xfe"])
def test_torn_last_line_is_cut_on_resume(tmp_path, tail):
    path = tmp_path / "out.jsonl"
    good = b'{"custom_id": "a"}\n{"custom_id": "b"}\n'
    path.write_bytes(good + tail)
    assert completed_keys(path) == {"a", "b"}  # a line without "\n" does not count
    with JsonlSink(path, resume=True) as sink:
        assert path.read_bytes() == good
        sink.write({"custom_id": "c"})
    assert path.read_bytes() == good + b'{"custom_id": "c"}\n'


def test_torn_only_line_and_long_tail(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"custom_id": "a"' + b"x" * 200_000)  # longer than one scan chunk
    JsonlSink(path, resume=True).close()
    assert path.read_bytes() == b""
    path.write_bytes(b"{}\n" + b"y" * 200_000)
    JsonlSink(path, resume=True).close()
    assert path.read_bytes() == b"{}\n"


def test_completed_keys_tolerates_garbage(tmp_path):
    path = tmp_path / "out.jsonl"
    err = line_error_record(LineError(4, None, "json", "bad"))
    path.write_bytes(b"garbage\n[1]\n{}\n\n\xff\n" + b"[" * 50_000 + b"\n" +
                     encode_record({"custom_id": "a"}) + encode_record(err) + b'{"custom')
    assert completed_keys(path) == {"a", "line:4"}
    assert completed_keys(tmp_path / "missing.jsonl") == set()


def test_encode_record_edge_cases():
    assert encode_record({"x": float("nan"), "y": [float("inf")]}) == b'{"x": null, "y": [null]}\n'
    # raw U+2028 / U+0085 would break str.splitlines() readers; they are escaped
    out = encode_record({"t": "a\u2028b\x85c\nd"})
    assert out.count(b"\n") == 1 and len(out.decode().splitlines()) == 1
    assert json.loads(out) == {"t": "a\u2028b\x85c\nd"}
    # an unpaired surrogate cannot be UTF-8: the line falls back to \\u escapes, still exact
    assert json.loads(encode_record({"t": "a\ud800"})) == {"t": "a\ud800"}
    with pytest.raises(TypeError):
        encode_record({"x": object()})


def test_unserialisable_record_writes_nothing(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlSink(path, resume=False) as sink:
        sink.write({"custom_id": "a"})
        with pytest.raises(TypeError):
            sink.write({"custom_id": "b", "x": {1, 2}})
        sink.write({"custom_id": "c"})
    assert completed_keys(path) == {"a", "c"}


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlSink(path, resume=False) as sink:
        sink.write({"custom_id": "a"})
        with pytest.raises(SinkError, match="another process"):
            JsonlSink(path, resume=False)
        assert completed_keys(path) == {"a"}  # the refused writer did not truncate
    JsonlSink(path, resume=True).close()  # the lock is released on close


def test_closed_sink_raises(tmp_path):
    sink = JsonlSink(tmp_path / "o.jsonl", resume=False)
    sink.close()
    sink.close()
    with pytest.raises(SinkError, match="closed"):
        sink.write({"custom_id": "a"})


# --- injected faults --------------------------------------------------------------------------


def _fail_after(monkeypatch, name: str, code: int, partial: int | None = None):
    """Make os.<name> raise OSError(code); for os.write, first write `partial` bytes."""
    real = getattr(os, name)

    def fake(fd, *args):
        if name == "write" and partial is not None:
            real(fd, bytes(args[0][:partial]))
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, name, fake)
    return real


def test_enospc_on_write_keeps_earlier_records_and_cuts_partial(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path, resume=False)
    sink.write({"custom_id": "a"})
    _fail_after(monkeypatch, "write", errno.ENOSPC, partial=5)
    with pytest.raises(SinkError) as info:
        sink.write({"custom_id": "b", "text": "long enough to be torn"})
    e = info.value
    assert e.errno == errno.ENOSPC and "ENOSPC" in e.reason and e.path == str(path)
    assert "ENOSPC" in str(e) and str(path) in str(e)
    assert path.read_bytes() == b'{"custom_id": "a"}\n'  # partial line rolled back
    monkeypatch.undo()
    with pytest.raises(SinkError, match="earlier write failed"):
        sink.write({"custom_id": "c"})  # a failed sink stays failed
    sink.close()


def test_eio_on_fsync_raises_sink_error(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path, resume=False)
    sink.write({"custom_id": "a"})
    _fail_after(monkeypatch, "fsync", errno.EIO)
    with pytest.raises(SinkError) as info:
        sink.write({"custom_id": "b"})
    assert info.value.errno == errno.EIO
    monkeypatch.undo()
    sink.close()
    assert completed_keys(path) == {"a"}


def test_rollback_failure_leaves_torn_tail_that_resume_repairs(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path, resume=False)
    sink.write({"custom_id": "a"})
    _fail_after(monkeypatch, "write", errno.ENOSPC, partial=7)
    _fail_after(monkeypatch, "ftruncate", errno.EIO)
    with pytest.raises(SinkError):
        sink.write({"custom_id": "b"})
    monkeypatch.undo()
    sink.close()
    assert completed_keys(path) == {"a"}
    JsonlSink(path, resume=True).close()
    assert path.read_bytes() == b'{"custom_id": "a"}\n'


def test_eacces_on_open_injected(tmp_path, monkeypatch):
    _fail_after(monkeypatch, "open", errno.EACCES)
    with pytest.raises(SinkError) as info:
        JsonlSink(tmp_path / "out.jsonl", resume=False)
    assert info.value.errno == errno.EACCES and "EACCES" in info.value.reason


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores file permissions")
def test_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(SinkError) as info:
            JsonlSink(ro / "out.jsonl", resume=False)
        assert info.value.errno == errno.EACCES
    finally:
        ro.chmod(0o700)


def test_missing_directory(tmp_path):
    with pytest.raises(SinkError) as info:
        JsonlSink(tmp_path / "no" / "out.jsonl", resume=True)
    assert info.value.errno == errno.ENOENT


def test_path_is_a_directory(tmp_path):
    with pytest.raises(SinkError) as info:
        JsonlSink(tmp_path, resume=False)
    assert info.value.errno == errno.EISDIR


FILE_SIZE_LIMIT_CHILD = """
import resource, signal, sys
from hf_laps.jobs.sink import JsonlSink, SinkError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
sink = JsonlSink(sys.argv[1], resume=False)
for i in range(1000):
    try:
        sink.write({"custom_id": f"r{i}", "text": "x" * 37})
    except SinkError as e:
        print(i, e.errno)
        break
"""


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX rlimits")
def test_real_kernel_write_failure_file_size_limit(tmp_path):
    # RLIMIT_FSIZE makes the kernel fail a write half way (EFBIG), as a full disk would
    import subprocess
    import sys
    path = tmp_path / "out.jsonl"
    out = subprocess.run([sys.executable, "-c", FILE_SIZE_LIMIT_CHILD, str(path)],
                         capture_output=True, text=True, check=True).stdout.split()
    failed_at, code = int(out[0]), int(out[1])
    assert code == errno.EFBIG and failed_at > 0
    data = path.read_bytes()
    assert data.endswith(b"\n") and len(data.splitlines()) == failed_at  # no torn line
    assert completed_keys(path) == {f"r{i}" for i in range(failed_at)}


def test_jobs_modules_import_no_torch():
    import subprocess
    import sys
    code = ("import sys, hf_laps.jobs.requests, hf_laps.jobs.records, hf_laps.jobs.sink, "
            "hf_laps.jobs.summary; print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
