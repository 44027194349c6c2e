"""Mean latency under Poisson arrivals at a utilisation U, at several B, in one run.

The arrival rate is rate = U / S, S the mean service seconds of a request at B = 1 (the sum of
its rounds, measured in an earlier pass of the same requests): at B = 1 the server is then busy
a fraction U of the time on average. The same arrival times serve every B, and the B values run
interleaved (B1, B2, B2, B1, ...) so a drift of the machine hits them alike.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from hf_laps.workloads import poisson_arrivals

from benchmarks.batched.sides import RunResult, run_ours


@dataclass(frozen=True)
class LoadResult:
    utilisation: float
    rate: float                       # requests per second
    policy: str
    latency: dict[int, float]         # B -> median over repeats of the mean latency
    runs: dict[int, list[RunResult]]

    def holds(self, size: int) -> bool:
        """The goal: latency at B no worse than at B = 1."""
        return self.latency[size] <= self.latency[1]


def interleaved(sizes: list[int], repeats: int) -> list[int]:
    """Run order: the sizes, then reversed, alternating (ABBA...)."""
    order = []
    for repeat in range(repeats):
        order += sizes if repeat % 2 == 0 else list(reversed(sizes))
    return order


def latency_under_load(engine, requests, sizes: list[int], service_seconds: float, *, utilisation: float = 0.7,
                       policy: str = "laps-sd", history=None, repeats: int = 2, seed: int = 0,
                       token_budget: int | None = None, log=print) -> LoadResult:
    rate = utilisation / service_seconds
    arrivals = poisson_arrivals(len(requests), rate, seed)
    runs: dict[int, list[RunResult]] = {size: [] for size in sizes}
    for size in interleaved(sizes, repeats):
        result = run_ours(engine, requests, size, policy, arrivals=arrivals, history=history, token_budget=token_budget)
        runs[size].append(result)
        log(f"#   poisson U={utilisation} B={size} {policy}: mean latency {result.mean_latency:.2f} s, "
            f"wall {result.wall:.1f} s")
    latency = {size: statistics.median(r.mean_latency for r in rs) for size, rs in runs.items()}
    return LoadResult(utilisation, rate, policy, latency, runs)
