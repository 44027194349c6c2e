"""benchmarks/make_reference_workload.py: the reference-length job file (caps = reference
lengths) and the requested-length parser of WritingBench prompts."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from hf_laps import workloads

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import make_reference_workload as ref  # noqa: E402

MISSING = [n for n in ("chat", "code", "writing") if importlib.util.find_spec(workloads.PACKAGES[n][0]) is None]


@pytest.mark.parametrize("text, words", [
    ("Write a story in 800 words.", 800),
    ("An essay of about 1,500 words on trade.", 1500),
    ("Keep it to 300-500 words please", 500),
    ("between 200 to 250 words", 250),
    ("Summarise the attached report.", None),
    ("Use 3 examples and 2 tables.", None),
])
def test_requested_words(text, words):
    assert ref.requested_words(text) == words


def test_the_committed_reference_job_has_caps_equal_to_the_reference_lengths():
    lines = [json.loads(line) for line in open(REPO / "benchmarks/data/reference.jsonl", encoding="utf-8")]
    assert len(lines) == 90 and len({line["custom_id"] for line in lines}) == 90
    prefixes = sorted(line["custom_id"].split("-")[0] for line in lines)
    assert prefixes == ["code"] * 30 + ["ref"] * 30 + ["writing"] * 30
    for line in lines:
        assert line["max_tokens"] == min(line["reference_tokens"], 384) >= 1
        assert line["messages"][0]["role"] == "user"


@pytest.mark.skipif(bool(MISSING), reason=f"data packages missing: {MISSING}; {workloads.INSTALL_ALL}")
def test_the_script_rebuilds_the_committed_job():
    committed = [json.loads(line) for line in open(REPO / "benchmarks/data/reference.jsonl", encoding="utf-8")]
    assert ref.build_reference(per_source=30, seed=0, cap=384) == committed
