"""The README and the quickstart state the same, measured, acceptance spread of
examples/prompts.jsonl. The quickstart's own code block asserts it on a real run
(tests/test_docs.py executes it), so the text cannot drift from what the example shows."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_and_quickstart_state_the_measured_acceptance_spread():
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    quickstart = " ".join((REPO / "docs" / "quickstart.md").read_text(encoding="utf-8").split())
    low, high = re.search(r"ranges from (\d\.\d\d) tokens per round .*? to (\d\.\d\d)", readme).groups()
    assert f"{high} tokens per round" in quickstart and f"`sampled`) {low}" in quickstart
    # the quickstart's block checks the same spread on the run it just made
    assert 'max(accept, key=accept.get) == "copy-1"' in quickstart
    assert "shortest first under LAPS-SD" not in quickstart  # its own example preempts copy-1
