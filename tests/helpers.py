"""Helpers shared by test modules (test modules import from here, never from each other).
No torch import: torch-free tests use them."""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "prompts.jsonl"


def hf_laps(*args, timeout: float = 600, env: dict | None = None, cwd=None, popen: bool = False):
    """`hf-laps ARGS...` as a user runs it: a subprocess of this interpreter (the installed package),
    offline. `env` adds variables; `popen` returns the running process instead of waiting."""
    command = [sys.executable, "-m", "hf_laps.cli.main", *map(str, args)]
    environ = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    if popen:
        return subprocess.Popen(command, env=environ, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environ, cwd=cwd)


def counted_lines(lines: list[bytes]) -> int:
    """How many of a file's lines the JSONL reader answers (a record each): it drops a trailing
    "\\r" and a UTF-8 BOM on line 1, and skips the lines left blank."""
    count = 0
    for number, line in enumerate(lines, 1):
        line = line.rstrip(b"\r")
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        count += bool(line.strip())
    return count


# --- scheduling -------------------------------------------------------------------------------

def predictor_for(name: str, kind: str = "noisy"):
    """The predictor a policy that needs one is simulated with (None for the others)."""
    from hf_laps.scheduling import make_predictor

    if name not in ("lp-sjf", "laps-sd"):
        return None
    return make_predictor("noisy-oracle", sigma=0.5, seed=7) if kind == "noisy" else make_predictor("oracle")


FEATURE_DIM = 8


def synthetic_feature_examples(count: int, seed: int = 0):
    """(RequestSpec, length) pairs whose lengths are driven by two feature coordinates; prompt
    length and cap carry nothing."""
    from hf_laps.scheduling import RequestSpec

    rng = random.Random(seed)
    examples = []
    for i in range(count):
        z = tuple(rng.gauss(0, 1) for _ in range(FEATURE_DIM))
        log_len = 3.5 + 0.8 * z[0] - 0.5 * z[3] + rng.gauss(0, 0.2)
        spec = RequestSpec(f"r{i}", 0.0, prompt_tokens=rng.randint(5, 500), max_new_tokens=4096,
                           features=z, is_chat=rng.random() < 0.5)
        examples.append((spec, max(1, round(math.exp(log_len)))))
    return examples


# --- the real model ---------------------------------------------------------------------------

TEXT = (
    "The committee met on Tuesday to review the budget. After a long discussion, the members "
    "agreed to increase funding for the library and to reduce spending on office supplies."
)
QUESTIONS = [
    f"Repeat the following text exactly, word for word:\n{TEXT}",
    "List the days of the week, separated by commas.",
    "Write a short poem about the sea.",
]


def chat(tokenizer, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def completion_order(result) -> list[str]:
    """A replay's (SimulationResult's) request ids by finish time, ties in input order."""
    return [r.custom_id for r in sorted(result.requests, key=lambda r: r.finish)]
