"""Property-based fuzzing of the JSONL reader/validator (hypothesis).

Every generated file goes through `read_requests`; the invariants checked on each:
no exception; every non-blank line is exactly one JobRequest or one LineError; each LineError
names its line and a field and gives a reason (and is never an internal error); lines built to
be valid are parsed, lines built to be invalid are rejected naming the broken field.

Profiles (tests/conftest.py): "ci" (default: derandomised, the same examples on every run, >= 10,000
lines, well under a minute on 2 cores) and "nightly" (random, 10x the examples):
HF_LAPS_FUZZ_PROFILE=nightly pytest tests/test_jobs_fuzz.py
"""
from __future__ import annotations

import json
import random
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import BAD_LINE, dumps, fuzz, json_scalar, json_value, text, valid_request
from hf_laps.jobs.requests import CHAT, COMPLETIONS, INTERNAL_ERROR, JobRequest, LineError, read_requests

pytestmark = pytest.mark.torchfree

LINES = Counter()  # test name -> lines fed to the reader (reported by the last test)


# --- strategies (valid lines and garbage: tests/fuzzing.py) -----------------------------------

# wrong values per field: none of them is valid for that field
not_a_number = st.booleans() | st.text(max_size=5) | st.lists(json_scalar, max_size=2) | \
    st.dictionaries(st.text(max_size=3), json_scalar, max_size=2)
not_an_int = not_a_number | st.floats().filter(lambda x: x != int(x) if x == x and abs(x) < 1e300
                                               else True) | st.floats(-1e6, 1e6).map(float)
not_a_string = st.booleans() | st.integers() | st.floats() | \
    st.dictionaries(st.text(max_size=3), json_scalar, max_size=2)
WRONG = {
    "max_tokens": not_an_int | st.integers(max_value=-1) | st.integers(min_value=2**31),
    "max_completion_tokens": not_an_int | st.integers(max_value=-1),
    "temperature": not_a_number | st.floats().filter(lambda x: not 0 <= x <= 2),
    "top_p": not_a_number | st.floats().filter(lambda x: not 0 < x <= 1),
    "top_k": not_an_int | st.integers(max_value=-2),
    "seed": not_an_int | st.integers(max_value=-1) | st.integers(min_value=2**63),
    "n": not_an_int | st.integers(max_value=0) | st.integers(min_value=2),
    "stop": st.integers() | st.floats() | st.booleans() | st.just("")
    | st.lists(text, min_size=5, max_size=8)
    | st.lists(not_a_string | st.just(""), min_size=1, max_size=4),
    "model": not_a_string | st.just("") | st.lists(text, max_size=2),
    "prompt": not_a_string | st.just("") | st.lists(st.integers(0, 50000), max_size=5),
    "messages": not_a_string | st.just([]) | st.lists(json_scalar, min_size=1, max_size=3)
    | st.lists(st.fixed_dictionaries({"role": text.filter(lambda r: r not in (
        "system", "developer", "user", "assistant")), "content": text}), min_size=1, max_size=2),
}
WRONG_TOP = {
    "custom_id": not_a_string | st.just("") | st.text(min_size=513, max_size=600)
    | st.text(max_size=5).map(lambda s: s + "\x00"),
    "arrival_time": not_a_number | st.floats(max_value=-1e-9) | st.just(float("nan")),
}


# --- the invariant check ----------------------------------------------------------------------


def check(name: str, lines: list[bytes], good: dict[int, str] | None = None,
          bad: dict[int, str | None] | None = None):
    """Write `lines`, read them back and check the invariants.

    Args:
        good: line number -> custom_id of lines that must parse.
        bad: line number -> the field that must be named (None: any field).
    """
    LINES[name] += len(lines)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(b"\n".join(lines))
        reqs, errs = read_requests(path)
    if lines and lines[0].startswith(b"\xef\xbb\xbf"):  # a BOM on line 1 is dropped
        lines = [lines[0][3:]] + lines[1:]
    nonblank = {i for i, line in enumerate(lines, 1) if line.strip()}
    seen = [r.line_no for r in reqs] + [e.line_no for e in errs]
    assert sorted(seen) == sorted(nonblank), "each non-blank line exactly once"
    for e in errs:
        assert isinstance(e, LineError) and e.code != INTERNAL_ERROR, e
        assert e.field and e.reason and isinstance(e.field, str)
        assert e.message().startswith(f"line {e.line_no}, field '{e.field}': ")
        assert len(e.message()) < 600
    ids = [r.custom_id for r in reqs]
    assert len(ids) == len(set(ids)), "custom_ids unique among requests"
    by_line = {r.line_no: r for r in reqs} | {e.line_no: e for e in errs}
    for line_no, cid in (good or {}).items():
        parsed = by_line[line_no]
        assert isinstance(parsed, JobRequest) and parsed.custom_id == cid, parsed
    for line_no, field in (bad or {}).items():
        parsed = by_line[line_no]
        assert isinstance(parsed, LineError), (lines[line_no - 1][:300], parsed)
        assert field is None or parsed.field == field, (lines[line_no - 1][:300], parsed)
    return reqs, errs


# --- tests ------------------------------------------------------------------------------------


@fuzz(2.0)
@given(st.lists(st.binary(max_size=120), min_size=20, max_size=40), st.data())
def test_random_bytes_between_valid_lines(blobs, data):
    lines, good = [], {}
    for i, blob in enumerate(blobs):
        lines.append(blob.replace(b"\n", b" "))
        if i % 4 == 0:
            cid = f"good-{i}"
            lines.append(dumps(data.draw(valid_request(cid))))
            good[len(lines)] = cid
    check("random_bytes", lines, good)


@fuzz(2.0)
@given(st.data())
def test_truncated_and_invalid_utf8_lines(data):
    lines, good, bad = [], {}, {}
    for i in range(data.draw(st.integers(10, 30))):
        raw = dumps(data.draw(valid_request(f"id-{i}")))
        kind = data.draw(st.sampled_from(["ok", "cut", "utf8"]))
        if kind == "cut":  # any strict prefix of a JSON object is not JSON (or not UTF-8)
            raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
        elif kind == "utf8":
            at = data.draw(st.integers(0, len(raw)))
            junk = data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80",
                                              b"\xf8\x88\x80\x80\x80"]))
            raw = raw[:at] + junk + raw[at:]
        lines.append(raw)
        if kind == "ok":
            good[len(lines)] = f"id-{i}"
        elif raw.strip():
            bad[len(lines)] = "json"
    check("truncated_utf8", lines, good, bad)


@fuzz(0.1)
@given(st.data())
def test_huge_lines(data):
    size = 1 << 20
    filler = data.draw(st.sampled_from(["x", "é", "\u4e2d", "\U0001f600", "\\"]))
    huge = filler * (size // len(filler.encode()))
    lines = [
        dumps({"custom_id": "big", "prompt": huge}),                    # 1 MB, valid
        dumps({"custom_id": "big2", "prompt": "x", "max_tokens": huge}),  # 1 MB, bad field
        dumps({"custom_id": huge, "prompt": "x"}),                      # 1 MB id
        b"{" + b"x" * size,                                             # 1 MB garbage
        bytes(random.Random(data.draw(st.integers())).randbytes(size)).replace(b"\n", b" "),
    ]
    reqs, _ = check("huge", lines, good={1: "big"},
                    bad={2: "max_tokens", 3: "custom_id", 4: "json", 5: None})
    assert reqs[0].prompt == huge


@fuzz(0.1)
@given(st.integers(1_000, 100_000), st.sampled_from(["[", '{"a":', '{"custom_id": "n", "x": [']))
def test_deeply_nested(depth, opener):
    # Whether a depth parses depends on the interpreter's recursion limit; either way the line
    # must give a JobRequest or a LineError. 100,000 levels never parse.
    closer = {"[": "]", '{"a":': "}", '{"custom_id": "n", "x": [': "]"}[opener]
    nested = (opener * depth + "1" + closer * depth).encode()
    in_body = dumps({"custom_id": "deep", "url": COMPLETIONS, "body": {"prompt": "x"}})[:-2]
    in_body += b', "extra": ' + b"[" * depth + b"]" * depth + b"}}"
    shallow = dumps({"custom_id": "ok", "prompt": "x", "extra": [[[[{"a": [[[]]]}]]]]})
    bad = {1: None} | ({2: "json"} if depth == 100_000 else {})
    reqs, errs = check("nested", [nested, in_body, shallow], good={3: "ok"}, bad=bad)
    assert all(e.field in ("json", "custom_id", "prompt") for e in errs)
    assert {r.custom_id for r in reqs} <= {"ok", "deep"}


def test_nested_100k_levels():
    LINES["nested"] += 2
    for opener, closer in (("[", "]"), ('{"a":', "}")):
        lines = [(opener * 100_000 + "1" + closer * 100_000).encode()]
        check("nested", lines, bad={1: "json"})


@fuzz(4.0)
@given(st.data())
def test_wrong_type_for_every_field(data):
    lines, bad = [], {}
    for i in range(data.draw(st.integers(10, 30))):
        obj = data.draw(valid_request(f"w{i}"))
        batch = "body" in obj
        src = obj["body"] if batch else obj
        where = data.draw(st.sampled_from(sorted(WRONG) + sorted(WRONG_TOP)
                                          + (["method", "url", "body"] if batch else [])))
        if where in WRONG_TOP:
            obj[where] = data.draw(WRONG_TOP[where])
            field = where
        elif where == "method":
            obj["method"] = data.draw(not_a_string | text.filter(lambda m: m != "POST"))
            field = "method"
        elif where == "url":
            obj["url"] = data.draw(not_a_string | text)
            field = "url" if obj["url"] not in (COMPLETIONS, CHAT) else None
        elif where == "body":
            obj["body"] = data.draw(st.none() | st.booleans() | st.integers() | st.text()
                                    | st.lists(json_scalar, max_size=3))
            field = "body"
        else:
            field = _mutate_option(data, src, where, batch)
        lines.append(dumps(obj))
        bad[len(lines)] = field
    check("wrong_types", lines, bad=bad)


def _mutate_option(data, src: dict, name: str, batch: bool) -> str | None:
    """Put a wrong value in src[name]; return the field the error must name (None: any)."""
    prefix = "body." if batch else ""
    value = data.draw(WRONG[name])
    if name in ("prompt", "messages"):
        src.pop("prompt", None), src.pop("messages", None)
        src[name] = value
        if batch:  # the url decides the endpoint; a mismatch is reported on the field too
            return None
        if name == "messages" and isinstance(value, list) and value:
            return None  # reported on messages[i]... : any field under it
        return prefix + name
    if name == "max_completion_tokens":
        src.pop("max_tokens", None)
    src[name] = value
    if name == "stop" and isinstance(value, list) and len(value) <= 4:
        return None  # reported as stop[i]
    return prefix + name


@fuzz(2.0)
@given(st.data())
def test_unknown_fields_are_ignored(data):
    lines, good, extras = [], {}, {}
    known = {"custom_id", "method", "url", "body", "arrival_time", "model", "prompt", "messages",
             "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed",
             "stop", "n"}
    names = st.text(min_size=1, max_size=12).filter(lambda k: k not in known)
    for i in range(data.draw(st.integers(10, 30))):
        obj = data.draw(valid_request(f"u{i}"))
        added = data.draw(st.dictionaries(names, json_value, min_size=1, max_size=4))
        target = obj.get("body", obj) if data.draw(st.booleans()) else obj
        target.update(added)
        lines.append(dumps(obj))
        good[len(lines)] = f"u{i}"
        prefix = "body." if target is not obj else ""
        extras[len(lines)] = {prefix + k for k in added}
    reqs, _ = check("unknown_fields", lines, good)
    for r in reqs:
        assert extras[r.line_no] <= set(r.ignored)


@fuzz(2.0)
@given(st.lists(st.sampled_from("abcde"), min_size=5, max_size=40), st.data())
def test_duplicate_ids(ids, data):
    lines = [dumps(data.draw(valid_request(cid))) for cid in ids]
    first = {}
    for n, cid in enumerate(ids, 1):
        first.setdefault(cid, n)
    good = {n: cid for cid, n in first.items()}
    bad = {n: "custom_id" for n in range(1, len(ids) + 1) if n not in good}
    _, errs = check("duplicates", lines, good, bad)
    assert all(e.code == "duplicate_custom_id" and e.custom_id is None for e in errs)


@fuzz(4.0)
@given(st.lists(BAD_LINE | st.just(b"") | st.just(b"   "), min_size=20, max_size=40),
       st.lists(st.builds(lambda cid, v: (cid, v), st.sampled_from("xyz"), json_value),
                max_size=10))
def test_mixed_garbage_never_crashes(lines, fragments):
    # JSON objects with a custom_id and random contents: any outcome, but no crash
    lines = lines + [dumps({"custom_id": c, "prompt": v}) for c, v in fragments]
    check("mixed", lines)


@fuzz(0.5)
@given(st.lists(st.sampled_from([b"{", b"[]", b"1", b"null", b'"s"', b"{}", b'{"prompt": "x"}',
                                 b'{"custom_id": ""}', b"\xff", b"NaN", b"\x00"]),
                min_size=1, max_size=30))
def test_file_with_only_bad_lines(lines):
    reqs, errs = check("only_bad", lines, bad={i: None for i in range(1, len(lines) + 1)})
    assert reqs == [] and len(errs) == len(lines)


def test_empty_files():
    LINES["empty"] += 1
    for content in (b"", b"\n", b"\n\n\n", b"\r\n", b"\xef\xbb\xbf"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "in.jsonl"
            path.write_bytes(content)
            assert read_requests(path) == ([], [])


def test_zz_fuzzed_line_count():
    """Runs last (file order): at least 10,000 lines went through the reader in this module."""
    expected = {"random_bytes", "truncated_utf8", "huge", "nested", "wrong_types",
                "unknown_fields", "duplicates", "mixed", "only_bad", "empty"}
    if set(LINES) != expected:
        pytest.skip("only part of the fuzz module ran")
    total = sum(LINES.values())
    print(f"\nfuzzed lines: {total} {dict(LINES)}")
    assert total >= 10_000, dict(LINES)
