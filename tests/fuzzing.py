"""Hypothesis strategies for JSONL job files, shared by the reader fuzz (test_jobs_fuzz.py) and the
end-to-end fuzz (test_reliability_fuzz_batched.py). The profiles ("ci", derandomised, and
"nightly") are registered in conftest.py."""
from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st

from hf_laps.jobs.requests import CHAT, COMPLETIONS


def fuzz(examples_scale: float = 1.0):
    """The loaded profile's settings, with max_examples scaled for this test."""
    return settings(max_examples=max(1, int(settings.default.max_examples * examples_scale)))


text = st.text(min_size=1, max_size=40)
json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12)
messages = st.lists(st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant"]), "content": text}),
    min_size=1, max_size=4)
OPTIONS = {
    "max_tokens": st.integers(0, 4096),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1, exclude_min=True),
    "top_k": st.integers(-1, 100),
    "seed": st.integers(0, 2**63 - 1),
    "stop": text | st.lists(text, max_size=4),
    "n": st.just(1),
    "model": text,
}


@st.composite
def valid_request(draw, custom_id: str) -> dict:
    """A valid line as a dict, in either shape, either endpoint."""
    chat = draw(st.booleans())
    body = {"messages": draw(messages)} if chat else {"prompt": draw(text)}
    for name in draw(st.lists(st.sampled_from(sorted(OPTIONS)), unique=True, max_size=5)):
        body[name] = draw(OPTIONS[name])
    top = {"custom_id": custom_id}
    if draw(st.booleans()):
        top["arrival_time"] = draw(st.floats(0, 1e6))
    if draw(st.booleans()):
        return {**top, "method": "POST", "url": CHAT if chat else COMPLETIONS, "body": body}
    return {**top, **body}


def dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


# a line that is not a valid request: random bytes, any JSON value, any text
BAD_LINE = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    json_value.map(dumps),
    st.text(max_size=40).map(lambda t: t.replace("\n", " ").encode()),
)
