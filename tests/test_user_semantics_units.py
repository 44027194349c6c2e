"""The small pieces behind the user-facing semantics, in process: preflight checks, stop-string
cutting, input warnings, the non-modifying output probe."""
from __future__ import annotations

import pytest
import torch

from hf_laps.jobs.notices import ignored_fields, input_warnings
from hf_laps.jobs.records import cut_at_stop, success_record
from hf_laps.jobs.requests import parse_line
from hf_laps.jobs.sink import SinkError, probe_writable
from hf_laps.preflight import PreflightError, check_device, check_model_location, looks_like_path


@pytest.mark.parametrize("name, path_like", [
    ("meta-llama/Llama-2-7b-hf", False), ("gpt2", False), ("JackFram/llama-68m", False),
    ("/models/llama", True), ("./llama", True), ("../llama", True), ("~/models/x", True),
    ("model.gguf", True), ("a/b/c", True), ("models/", True), ("C:\\models\\x", True),
])
def test_looks_like_path(name, path_like):
    assert looks_like_path(name) is path_like


def test_check_model_location(tmp_path):
    check_model_location(None)  # the embedded default is installed here
    with pytest.raises(PreflightError, match="not in the local Hugging Face cache"):
        check_model_location("meta-llama/Llama-2-7b-hf")  # HF_HUB_OFFLINE=1 here (conftest): cache only
    check_model_location(str(tmp_path))  # exists
    for missing in (tmp_path / "nope", "./nope", "nope.gguf"):
        with pytest.raises(PreflightError, match="does not exist"):
            check_model_location(str(missing))
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(PreflightError, match="not a file"):
        check_model_location(str(tmp_path / "dir.gguf"))


def test_check_device():
    check_device("cpu")
    check_device("cpu:0")
    for bad, message in (("gpu", "not a torch device"), ("cuda:x", "not a torch device"), ("meta", "holds no weights")):
        with pytest.raises(PreflightError, match=message):
            check_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(PreflightError, match="CUDA is not available"):
            check_device("cuda")
    else:
        check_device("cuda")
        with pytest.raises(PreflightError, match="CUDA device"):
            check_device(f"cuda:{torch.cuda.device_count()}")
    assert issubclass(PreflightError, ValueError)


def test_cut_at_stop():
    assert cut_at_stop("```\n\nmore", ["\n\n"]) == "```"
    assert cut_at_stop("abc STOP def END", ["END", "STOP"]) == "abc "  # the earliest wins
    assert cut_at_stop("no match", ["zzz"]) == "no match"
    assert cut_at_stop("text", []) == "text"


def request(line: dict):
    import json

    parsed = parse_line(1, json.dumps(line))
    assert not hasattr(parsed, "reason"), parsed
    return parsed


def test_success_record_cuts_the_stop_string_only_when_it_stopped():
    req = request({"custom_id": "a", "prompt": "x", "stop": ["\n\n"]})
    kwargs = dict(prompt_tokens=1, completion_tokens=3, model="m", created=0)
    stopped = success_record(req, text="```\n\n", finish_reason="stop", stop=req.stop, **kwargs)
    assert stopped["response"]["body"]["choices"][0]["text"] == "```"
    # a request that ran out of tokens keeps its text, even if it happens to contain a stop string
    cut = success_record(req, text="a\n\nb", finish_reason="length", stop=req.stop, **kwargs)
    assert cut["response"]["body"]["choices"][0] == {"index": 0, "text": "a\n\nb", "finish_reason": "length", "logprobs": None}


def test_input_warnings():
    assert input_warnings("in.jsonl", [], []) == ["in.jsonl has no requests (it is empty or has only blank lines); nothing to do"]
    plain = request({"custom_id": "a", "prompt": "x"})
    assert input_warnings("in.jsonl", [plain], []) == []
    extras = [request({"custom_id": f"r{i}", "prompt": "x", "logprobs": True, "user": "u" if i else None}) for i in range(3)]
    assert ignored_fields(extras) == {"logprobs": 3, "user": 3}
    assert input_warnings("in.jsonl", extras, []) == [
        "ignored fields that hf-laps does not implement: logprobs (3 lines), user (3 lines)"]


def test_probe_writable_creates_and_changes_nothing(tmp_path):
    missing = tmp_path / "new.jsonl"
    probe_writable(missing)
    assert not missing.exists()
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(b'{"custom_id": "a"}\n{"custom_id": "b", "tor')
    probe_writable(torn)
    assert torn.read_bytes() == b'{"custom_id": "a"}\n{"custom_id": "b", "tor'
    with pytest.raises(SinkError, match="no such file or directory"):
        probe_writable(tmp_path / "no-such-folder" / "r.jsonl")
    with pytest.raises(SinkError):
        probe_writable(tmp_path)  # a directory
