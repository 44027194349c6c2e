"""Validation of `hf-laps run` input lines: both shapes, both endpoints, every rejection rule."""
from __future__ import annotations

import json

import pytest

from hf_laps.jobs.requests import (
    CHAT, COMPLETIONS, DUPLICATE_CUSTOM_ID, INVALID_JSON, JobRequest, LineError, parse_line,
    read_requests,
)

pytestmark = pytest.mark.torchfree

MSGS = [{"role": "user", "content": "Hi"}]


def batch(body: dict, url: str = COMPLETIONS, **top) -> str:
    return json.dumps({"custom_id": "r1", "method": "POST", "url": url, "body": body, **top})


def short(**fields) -> str:
    return json.dumps({"custom_id": "r1", **fields})


def ok(line: str | bytes) -> JobRequest:
    parsed = parse_line(3, line)
    assert isinstance(parsed, JobRequest), parsed
    return parsed


# --- accepted shapes --------------------------------------------------------------------------


def test_batch_completion_all_options():
    r = ok(batch({"model": "m", "prompt": "Hello", "max_tokens": 16, "temperature": 0.7,
                  "top_p": 0.9, "top_k": 40, "seed": 7, "stop": ["\n", "END"], "n": 1}))
    assert (r.custom_id, r.line_no, r.endpoint, r.prompt, r.messages) == (
        "r1", 3, COMPLETIONS, "Hello", None)
    assert (r.max_tokens, r.temperature, r.top_p, r.top_k, r.seed, r.stop, r.model) == (
        16, 0.7, 0.9, 40, 7, ("\n", "END"), "m")
    assert r.arrival_time is None and r.ignored == ()


def test_batch_chat_with_max_completion_tokens():
    r = ok(batch({"messages": MSGS, "max_completion_tokens": 5}, url=CHAT))
    assert r.endpoint == CHAT and r.prompt is None
    assert r.messages == ({"role": "user", "content": "Hi"},) and r.max_tokens == 5


def test_method_may_be_omitted():
    assert ok(json.dumps({"custom_id": "a", "url": COMPLETIONS, "body": {"prompt": "x"}}))


def test_short_form_infers_endpoint():
    assert ok(short(prompt="x")).endpoint == COMPLETIONS
    assert ok(short(messages=MSGS)).endpoint == CHAT


def test_short_form_options_and_arrival_time():
    r = ok(short(prompt="x", max_tokens=0, temperature=0, stop="###", arrival_time=1.5))
    assert (r.max_tokens, r.temperature, r.stop, r.arrival_time) == (0, 0.0, ("###",), 1.5)


def test_batch_arrival_time_at_top_level():
    assert ok(batch({"prompt": "x"}, arrival_time=2)).arrival_time == 2.0


def test_nulls_mean_not_given():
    r = ok(short(prompt="x", max_tokens=None, temperature=None, top_p=None, seed=None,
                 stop=None, n=None, model=None, arrival_time=None))
    assert (r.max_tokens, r.temperature, r.top_p, r.seed, r.stop, r.model) == (
        None, None, None, None, (), None)


def test_unknown_fields_ignored_and_listed():
    r = ok(json.dumps({"custom_id": "a", "url": CHAT, "metadata": {"k": 1},
                       "body": {"messages": MSGS, "logprobs": True, "stream": True}}))
    assert r.ignored == ("metadata", "body.logprobs", "body.stream")
    assert ok(short(prompt="x", echo=True)).ignored == ("echo",)


def test_text_content_parts_joined():
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "text", "text": "b"}], "name": "u"}]
    assert ok(short(messages=msgs)).messages[1] == {"role": "user", "content": "a\nb"}


def test_top_k_disabled_values():
    assert ok(short(prompt="x", top_k=0)).top_k is None
    assert ok(short(prompt="x", top_k=-1)).top_k is None


def test_both_max_token_fields_when_equal():
    assert ok(short(messages=MSGS, max_tokens=4, max_completion_tokens=4)).max_tokens == 4


def test_str_and_bytes_and_crlf_whitespace():
    line = short(prompt="héllo")
    assert ok(line) == ok(line.encode("utf-8")) == ok("  " + line + "  ")


# --- generation_kwargs ------------------------------------------------------------------------


def test_generation_kwargs_greedy_default():
    r = ok(short(prompt="x", top_p=0.5, top_k=3))
    assert r.generation_kwargs(64) == {"max_new_tokens": 64, "do_sample": False}


def test_generation_kwargs_sampling():
    r = ok(short(prompt="x", max_tokens=8, temperature=0.8, top_p=0.5, top_k=3, seed=1,
                 stop=["a"]))
    assert r.generation_kwargs(64) == {
        "max_new_tokens": 8, "do_sample": True, "temperature": 0.8, "top_p": 0.5, "top_k": 3,
        "seed": 1, "stop_strings": ["a"]}


def test_generation_kwargs_default_temperature_and_explicit_zero():
    assert ok(short(prompt="x")).generation_kwargs(4, 1.0) == {
        "max_new_tokens": 4, "do_sample": True, "temperature": 1.0}
    assert ok(short(prompt="x", temperature=0)).generation_kwargs(4, 1.0) == {
        "max_new_tokens": 4, "do_sample": False}


# --- rejections: (line, field, words in the reason) -------------------------------------------

REJECT = [
    # document level
    (b"not json", "json", "not valid JSON"),
    (b'{"custom_id": "a", "prompt": "\xff"}', "json", "UTF-8"),
    (b"[1, 2]", "json", "must be a JSON object"),
    (b'"text"', "json", "must be a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "json", "nested too deeply"),
    (b'{"custom_id": "a", "custom_id": "b", "prompt": "x"}', "json", "duplicate key"),
    (b'{"custom_id": "a", "prompt": "x"', "json", "not valid JSON"),
    # custom_id
    (json.dumps({"prompt": "x"}), "custom_id", "missing"),
    (json.dumps({"custom_id": "", "prompt": "x"}), "custom_id", "non-empty string"),
    (json.dumps({"custom_id": 5, "prompt": "x"}), "custom_id", "non-empty string, got 5"),
    (json.dumps({"custom_id": None, "prompt": "x"}), "custom_id", "non-empty string"),
    (json.dumps({"custom_id": "x" * 513, "prompt": "x"}), "custom_id", "at most 512"),
    (json.dumps({"custom_id": "a\tb", "prompt": "x"}), "custom_id", "control characters"),
    (json.dumps({"custom_id": "a\x00", "prompt": "x"}), "custom_id", "control characters"),
    ('{"custom_id": "a\\ud800", "prompt": "x"}', "custom_id", "surrogates"),
    (json.dumps({"custom_id": "line:12", "prompt": "x"}), "custom_id", "reserved"),
    # envelope
    (batch({"prompt": "x"}, url="/v1/embeddings"), "url", "must be"),
    (json.dumps({"custom_id": "a", "method": "POST", "body": {"prompt": "x"}}), "url", "missing"),
    (json.dumps({"custom_id": "a", "method": "GET", "url": COMPLETIONS, "body": {"prompt": "x"}}),
     "method", "POST"),
    (json.dumps({"custom_id": "a", "url": COMPLETIONS}), "body", "must be an object"),
    (json.dumps({"custom_id": "a", "url": COMPLETIONS, "body": "x"}), "body", "must be an object"),
    # prompt / messages
    (short(prompt=[1, 2, 3]), "prompt", "token-id"),
    (short(prompt=["a", "b"]), "prompt", "multi-prompt"),
    (short(prompt=5), "prompt", "non-empty string"),
    (short(prompt=""), "prompt", "non-empty string"),
    ('{"custom_id": "a", "prompt": "x\\udc00"}', "prompt", "surrogate"),
    (short(), "prompt", "missing prompt or messages"),
    (short(prompt="x", messages=MSGS), "messages", "not both"),
    (batch({"messages": MSGS}), "body.messages", "not accepted by /v1/completions"),
    (batch({"prompt": "x"}, url=CHAT), "body.prompt", "not accepted by /v1/chat/completions"),
    (batch({}, url=CHAT), "body.messages", "missing messages"),
    (batch({}), "body.prompt", "missing prompt"),
    (short(messages=[]), "messages", "non-empty array"),
    (short(messages="hi"), "messages", "non-empty array"),
    (short(messages=["hi"]), "messages[0]", "must be an object"),
    (short(messages=[{"content": "x"}]), "messages[0].role", "must be one of"),
    (short(messages=[{"role": "robot", "content": "x"}]), "messages[0].role", '"robot"'),
    (short(messages=[{"role": "user"}]), "messages[0].content", "string or an array"),
    (short(messages=[{"role": "user", "content": 3}]), "messages[0].content", "got 3"),
    (short(messages=[{"role": "user", "content": [{"type": "image_url"}]}]),
     "messages[0].content[0]", "text"),
    (short(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]),
     "messages[0].content[0].text", "must be a string"),
    # options
    (batch({"prompt": "x", "n": 2}), "body.n", "only n=1"),
    (short(prompt="x", n=0), "n", ">= 1"),
    (batch({"prompt": "x", "max_tokens": -3}), "body.max_tokens",
     "must be an integer >= 0, got -3"),
    (short(prompt="x", max_tokens=1.5), "max_tokens", "integer"),
    (short(prompt="x", max_tokens=16.0), "max_tokens", "integer"),
    (short(prompt="x", max_tokens="16"), "max_tokens", "integer"),
    (short(prompt="x", max_tokens=True), "max_tokens", "got true"),
    (short(prompt="x", max_tokens=2**31), "max_tokens", "<= 2147483647"),
    (short(messages=MSGS, max_completion_tokens=-1), "max_completion_tokens", ">= 0"),
    (short(messages=MSGS, max_tokens=4, max_completion_tokens=5), "max_completion_tokens",
     "conflicts"),
    (short(prompt="x", temperature=2.5), "temperature", "[0, 2]"),
    (short(prompt="x", temperature=-0.1), "temperature", "[0, 2]"),
    (short(prompt="x", temperature=True), "temperature", "got true"),
    (short(prompt="x", temperature="0.5"), "temperature", "number"),
    ('{"custom_id": "a", "prompt": "x", "temperature": NaN}', "temperature", "NaN"),
    ('{"custom_id": "a", "prompt": "x", "temperature": Infinity}', "temperature", "Infinity"),
    ('{"custom_id": "a", "prompt": "x", "temperature": 1e999}', "temperature", "finite"),
    (short(prompt="x", temperature=10**400), "temperature", "integer"),
    (short(prompt="x", top_p=0), "top_p", "(0, 1]"),
    (short(prompt="x", top_p=1.01), "top_p", "(0, 1]"),
    (short(prompt="x", top_p=False), "top_p", "got false"),
    (short(prompt="x", top_k=-2), "top_k", ">= -1"),
    (short(prompt="x", top_k=2.0), "top_k", "integer"),
    (short(prompt="x", seed=-1), "seed", ">= 0"),
    (short(prompt="x", seed=2**63), "seed", "<="),
    (short(prompt="x", seed=False), "seed", "integer"),
    (short(prompt="x", stop=""), "stop", "non-empty string"),
    (short(prompt="x", stop=["a", ""]), "stop[1]", "non-empty string"),
    (short(prompt="x", stop=["a", 1]), "stop[1]", "got 1"),
    (short(prompt="x", stop=["a"] * 5), "stop", "at most 4"),
    (short(prompt="x", stop=5), "stop", "string or an array"),
    (short(prompt="x", stop={"a": 1}), "stop", "string or an array"),
    (short(prompt="x", model=3), "model", "non-empty string"),
    (short(prompt="x", arrival_time=-1), "arrival_time", ">= 0"),
    (short(prompt="x", arrival_time="1"), "arrival_time", "number"),
    (short(prompt="x", arrival_time=True), "arrival_time", "number"),
    ('{"custom_id": "a", "prompt": "x", "arrival_time": -Infinity}', "arrival_time", "finite"),
]


@pytest.mark.parametrize("line,field,words", REJECT, ids=[f"{i}-{r[1]}" for i, r in
                                                         enumerate(REJECT)])
def test_rejected_line_names_line_field_and_reason(line, field, words):
    err = parse_line(7, line)
    assert isinstance(err, LineError), err
    assert (err.line_no, err.field) == (7, field), err
    assert words in err.reason, err.reason
    msg = err.message()
    assert msg.startswith(f"line 7, field '{field}': ") and words in msg
    assert err.code != "internal_error"
    assert len(msg) < 400  # never echoes a huge value


def test_invalid_json_code_and_custom_id_kept_when_readable():
    assert parse_line(1, b"{").code == INVALID_JSON
    err = parse_line(1, batch({"prompt": "x", "max_tokens": -3}))
    assert err.custom_id == "r1" and err.code == "invalid_request"
    assert parse_line(1, json.dumps({"custom_id": "x" * 600})).custom_id is None


def test_huge_prompt_accepted_and_huge_bad_value_not_echoed():
    big = "x" * 1_000_000
    assert ok(short(prompt=big)).prompt == big
    err = parse_line(1, short(prompt="x", max_tokens=big))
    assert isinstance(err, LineError) and len(err.message()) < 200


# --- read_requests ----------------------------------------------------------------------------


def write(tmp_path, lines: list[bytes | str], end: bytes = b"\n"):
    path = tmp_path / "in.jsonl"
    path.write_bytes(end.join(x.encode() if isinstance(x, str) else x for x in lines))
    return path


def test_read_requests_mixed_file(tmp_path):
    path = write(tmp_path, [
        json.dumps({"custom_id": "a", "prompt": "x"}),
        "",
        "   ",
        b"garbage",
        json.dumps({"custom_id": "b", "messages": MSGS}),
        json.dumps({"custom_id": "c", "prompt": "x", "n": 3}),
    ])
    reqs, errs = read_requests(path)
    assert [(r.custom_id, r.line_no) for r in reqs] == [("a", 1), ("b", 5)]
    assert [(e.line_no, e.field) for e in errs] == [(4, "json"), (6, "n")]


def test_duplicates_error_on_later_lines(tmp_path):
    path = write(tmp_path, [short(prompt="x"), short(prompt="y"), short(prompt="z")])
    reqs, errs = read_requests(path)
    assert [(r.line_no, r.prompt) for r in reqs] == [(1, "x")]
    assert [(e.line_no, e.field, e.code, e.custom_id) for e in errs] == [
        (2, "custom_id", DUPLICATE_CUSTOM_ID, None), (3, "custom_id", DUPLICATE_CUSTOM_ID, None)]
    assert "first used on line 1" in errs[0].reason and '"r1"' in errs[0].reason


def test_invalid_first_line_still_owns_its_id(tmp_path):
    # line 1 keeps custom_id "r1" in its error record, so line 2 may not claim it too
    path = write(tmp_path, [short(prompt="x", n=2), short(prompt="y")])
    reqs, errs = read_requests(path)
    assert reqs == [] and [(e.line_no, e.field, e.custom_id) for e in errs] == [
        (1, "n", "r1"), (2, "custom_id", None)]


def test_crlf_bom_and_missing_final_newline(tmp_path):
    path = write(tmp_path, [b"\xef\xbb\xbf" + short(prompt="x").encode(),
                            json.dumps({"custom_id": "b", "prompt": "y"})], end=b"\r\n")
    reqs, errs = read_requests(path)
    assert errs == [] and [r.custom_id for r in reqs] == ["r1", "b"]


def test_empty_and_blank_files(tmp_path):
    assert read_requests(write(tmp_path, [])) == ([], [])
    assert read_requests(write(tmp_path, ["", " ", "\t"])) == ([], [])


def test_only_bad_lines(tmp_path):
    reqs, errs = read_requests(write(tmp_path, ["{", "[]", "1", "null"]))
    assert reqs == [] and [e.line_no for e in errs] == [1, 2, 3, 4]


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_requests(tmp_path / "nope.jsonl")
