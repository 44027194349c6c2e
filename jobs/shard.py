"""Split a job's requests over N processes, balanced by predicted work, and name their files.

    plan = plan_shards(requests, count=2, default_max_new_tokens=128)   # custom_ids per shard
    spec = ShardSpec(index=1, count=2)
    requests, line_errors = spec.select(requests, line_errors, default_max_new_tokens=128)

Cost of a request (a cheap prediction of its work, known before any model is loaded):

    cost = prompt_tokens_estimate + max_new_tokens
    prompt_tokens_estimate = ceil(UTF-8 bytes of the prompt (or of all message contents) / 4)

About 4 bytes per token is the usual BPE average on English text; max_new_tokens is the line's
`max_tokens`, else the job's `--max-new-tokens`. Decoding dominates (one forward per round, the
prefill is one batched forward), so the estimate over-weights prompts; it only needs to rank.

Assignment: greedy longest-processing-time (LPT): requests by decreasing cost (ties: input
order) each go to the shard with the least total cost so far (ties: the lowest index). LPT's
makespan is at most 4/3 - 1/(3N) of the optimum (Graham 1969). Every process computes the same
plan from the same input, so no process has to send it to another. Within a shard requests keep
their input order, as in a single-process run.

Invalid input lines (error records, no work) all go to shard 0, so each is written exactly once.

Files of shard K of N, next to the results file `out/results.jsonl`:
    out/results.shard-K-of-N.jsonl            its results (durable, resumable, as a single run)
    out/results.shard-K-of-N.timing.jsonl     its timing log
    out/results.shard-K-of-N.summary.json     its summary (written when the shard completes)
    out/results.shard-K-of-N.status.json      its outcome (exit code, counts), see manifest.py
    out/results.shards.json                   the run's manifest (job sha256, N, version, plan)
"""
from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hf_laps.jobs.requests import JobRequest, LineError

BYTES_PER_TOKEN = 4


def request_cost(request: JobRequest, default_max_new_tokens: int) -> int:
    """prompt tokens (estimated from UTF-8 bytes) + the request's token cap."""
    if request.messages is not None:
        text = "".join(str(m.get("content", "")) for m in request.messages)
    else:
        text = request.prompt or ""
    prompt_tokens = math.ceil(len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN)
    cap = request.max_tokens if request.max_tokens is not None else default_max_new_tokens
    return prompt_tokens + cap


def plan_shards(requests: Sequence[JobRequest], count: int, default_max_new_tokens: int) -> list[list[str]]:
    """custom_ids of each of `count` shards (greedy LPT on `request_cost`), each in input order."""
    if count < 1:
        raise ValueError(f"the number of shards must be >= 1, got {count}")
    costs = [request_cost(r, default_max_new_tokens) for r in requests]
    by_cost = sorted(range(len(requests)), key=lambda i: (-costs[i], i))
    loads = [(0, shard) for shard in range(count)]  # (assigned cost, shard): a min-heap
    owner = [0] * len(requests)
    for i in by_cost:
        load, shard = heapq.heappop(loads)
        owner[i] = shard
        heapq.heappush(loads, (load + costs[i], shard))
    plan: list[list[str]] = [[] for _ in range(count)]
    for i, request in enumerate(requests):
        plan[owner[i]].append(request.custom_id)
    return plan


def plan_digest(plan: list[list[str]]) -> str:
    """sha256 of the assignment: equal digests mean every request stays in its shard."""
    digest = hashlib.sha256()
    for shard, ids in enumerate(plan):
        for custom_id in ids:
            digest.update(f"{shard}\0{custom_id}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardSpec:
    """This process's shard: `index` in 0 .. count - 1."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1}, got {self.index}")

    @property
    def label(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    def select(self, requests: list[JobRequest], line_errors: list[LineError],
               default_max_new_tokens: int) -> tuple[list[JobRequest], list[LineError]]:
        """This shard's requests (input order) and line errors (all of them on shard 0)."""
        mine = set(plan_shards(requests, self.count, default_max_new_tokens)[self.index])
        return [r for r in requests if r.custom_id in mine], (line_errors if self.index == 0 else [])

    def results_path(self, results: str) -> str:
        """`out/results.jsonl` -> `out/results.shard-K-of-N.jsonl` (timing and summary follow
        from it as for any results file)."""
        path = Path(results)
        return str(path.with_name(f"{path.stem}.{self.label}{path.suffix or '.jsonl'}"))

    def timing_path(self, results: str) -> str:
        return self._beside(results, "timing.jsonl")

    def summary_path(self, results: str) -> str:
        return self._beside(results, "summary.json")

    def status_path(self, results: str) -> str:
        return self._beside(results, "status.json")

    def _beside(self, results: str, suffix: str) -> str:
        path = Path(results)
        return str(path.with_name(f"{path.stem}.{self.label}.{suffix}"))


def manifest_path(results: str) -> str:
    path = Path(results)
    return str(path.with_name(f"{path.stem}.shards.json"))
