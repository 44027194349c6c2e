"""Latency statistics shared by the simulator, the job runner and the benchmarks.

Pure Python (no numpy, no torch) so the scheduling core can use it.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, as numpy's default.

    Returns NaN for an empty sequence so that a summary of zero requests stays valid JSON-able
    data (callers print it as "-").
    """
    if not values:
        return math.nan
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def latency_summary(latencies: Sequence[float], prefix: str = "latency") -> dict[str, float]:
    """mean / p50 / p90 / p99 of a list of seconds, keyed `{prefix}_mean` etc."""
    return {
        f"{prefix}_mean": mean(latencies),
        f"{prefix}_p50": percentile(latencies, 50),
        f"{prefix}_p90": percentile(latencies, 90),
        f"{prefix}_p99": percentile(latencies, 99),
    }


def finite_json(value):
    """`value` with every NaN / inf float replaced by None, through dicts, lists and tuples: what
    strict JSON (allow_nan=False) can write. NaN is "no data" (a summary with no cell), inf a
    config's "never"; both read back as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def solve_linear(augmented: list[list[float]], tolerance: float) -> list[float] | None:
    """x with A x = y for a small augmented [A | y], by Gaussian elimination with partial pivoting;
    None when a pivot is at most `tolerance` (A singular at the caller's scale). Shared by the
    replay's batch-cost fit and the scheduler's online round-cost model."""
    n = len(augmented)
    a = [list(row) for row in augmented]
    for col in range(n):
        pivot = max(range(col, n), key=lambda i: abs(a[i][col]))
        if abs(a[pivot][col]) <= tolerance:
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for i in range(n):
            if i != col:
                f = a[i][col] / a[col][col]
                a[i] = [v - f * p for v, p in zip(a[i], a[col])]
    return [a[i][n] / a[i][i] for i in range(n)]
