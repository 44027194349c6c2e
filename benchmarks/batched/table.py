"""The batched benchmark's table and the choice of the default B (pure Python, no torch).

Timings on a shared machine drift, so besides seconds the table gives each run's mean latency
divided by its own wall time (latency / makespan): a drift that slows a whole run scales both
alike and cancels, which is what compares policies at the same B fairly. A policy's scheduling
gain at B is fcfs's mean latency over the policy's (> 1: the policy is better).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

HF_PADDED, HF_CONTINUOUS = "hf generate (padded)", "hf continuous batching"


@dataclass(frozen=True)
class Row:
    """Medians over the repeats of one side at one B."""

    size: int
    side: str               # a policy name, or HF_PADDED / HF_CONTINUOUS
    tokens_per_second: float
    mean_latency: float
    latency_per_wall: float
    runs: int
    prefill_share: float = 0.0   # ours at B > 1: share of the wall in batch-1 prefills of new requests


def summarise(size: int, side: str, runs: list) -> Row:
    """`runs`: RunResult-like objects (tokens_per_second, mean_latency, wall)."""
    return Row(size, side, statistics.median(r.tokens_per_second for r in runs),
               statistics.median(r.mean_latency for r in runs),
               statistics.median(r.mean_latency / r.wall for r in runs), len(runs),
               statistics.median(getattr(r, "prefill_share", 0.0) for r in runs))


def ours_throughput(rows: list[Row]) -> dict[int, float]:
    """Our tokens/s per B: the median over every policy's row (all do the same work per B)."""
    sizes = sorted({r.size for r in rows if not r.side.startswith("hf ")})
    return {b: statistics.median(r.tokens_per_second for r in rows if r.size == b and not r.side.startswith("hf "))
            for b in sizes}


def default_candidates(throughput: dict[int, float], tolerance: float = 0.05) -> list[int]:
    """The B values within `tolerance` of the best throughput, smallest first: the default is the
    first of them that also keeps latency under load no worse than B = 1."""
    best = max(throughput.values())
    return [b for b in sorted(throughput) if throughput[b] >= (1 - tolerance) * best]


def scheduling_gain(rows: list[Row], size: int, policy: str) -> float | None:
    """fcfs latency / policy latency at B (on latency / wall, drift-free); None if either is missing."""
    by_side = {r.side: r for r in rows if r.size == size}
    if "fcfs" not in by_side or policy not in by_side:
        return None
    return by_side["fcfs"].latency_per_wall / by_side[policy].latency_per_wall


def format_table(rows: list[Row]) -> str:
    through = ours_throughput(rows)
    hf = {(r.size, r.side): r for r in rows if r.side.startswith("hf ")}
    lines = ["| B | side | tok/s | mean latency s | latency / wall | gain vs fcfs | tok/s / HF generate "
             "| tok/s / HF continuous | tok/s / ours at B=1 | prefill share |", "|---|---|---|---|---|---|---|---|---|---|"]
    base = through.get(1)
    for row in rows:
        gain = scheduling_gain(rows, row.size, row.side)
        padded, cont = hf.get((row.size, HF_PADDED)), hf.get((row.size, HF_CONTINUOUS))
        ratio = lambda other: f"{row.tokens_per_second / other.tokens_per_second:.2f}" if other else "-"
        lines.append(f"| {row.size} | {row.side} | {row.tokens_per_second:.1f} | {row.mean_latency:.1f} | "
                     f"{row.latency_per_wall:.3f} | {f'{gain:.2f}' if gain and not row.side.startswith('hf ') else '-'} | "
                     f"{ratio(padded)} | {ratio(cont)} | "
                     f"{f'{row.tokens_per_second / base:.2f}' if base else '-'} | "
                     f"{f'{row.prefill_share:.0%}' if row.size > 1 and not row.side.startswith('hf ') else '-'} |")
    return "\n".join(lines)


def answer_open_question(rows: list[Row], policies: list[str]) -> str:
    """Does the scheduling gain survive batching? Each policy's gain vs fcfs at every B."""
    sizes = sorted({r.size for r in rows})
    parts = []
    for policy in policies:
        if policy == "fcfs":
            continue
        gains = [(b, scheduling_gain(rows, b, policy)) for b in sizes]
        gains = [f"B={b}: {g:.2f}" for b, g in gains if g is not None]
        if gains:
            parts.append(f"{policy}: " + ", ".join(gains))
    return ("scheduling gain = fcfs mean latency / policy mean latency (each over its run's wall time; "
            "> 1 = better than fcfs)\n" + "\n".join(parts))
