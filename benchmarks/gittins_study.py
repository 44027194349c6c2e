"""The prior-informed Gittins policy against every baseline, replaying the real recordings.

    python benchmarks/gittins_study.py benchmarks/data/*.fcfs.timing.jsonl [--cells]

Each log is a real fcfs run (greedy: a request's rounds do not depend on the schedule), replayed
under every policy in the same scenarios:
  * bursts of the first 10 and of all requests, each in 3 arrival orders (shuffles, seeds 0-2);
  * Poisson arrivals at utilisation 0.5 / 0.7 / 0.9 (rate = U / mean service), seeds 0-2;
and predictors: learned (hashed prompt words, no history), noisy-oracle sigma 0.5, oracle.
A cell = (recording, scenario, predictor); its mean latency is the mean over its arrival sets.
Per cell: mean latency / best baseline (fcfs, las, lp-sjf, laps-sd, same predictor),
/ srpt-oracle, p99 / fcfs's p99 (starvation), preemptions per arrival set. The summary gives
geometric means (and the worst cell) over the cells of each predictor.
Policies beyond the baselines: gittins; gittins-blind (every request priced at the job's seconds
per token: acceptance-blind); laps-sd-noprobe (the paper's policy, perceptible at admission).
"""
from __future__ import annotations

import math
import random
import statistics
import sys
from pathlib import Path

from hf_laps.scheduling import (LearnedPredictor, SchedulerConfig, load_traces, make_policy,
                                make_predictor)
from hf_laps.replay import simulate
from hf_laps.scheduling.gittins import GittinsConfig, GittinsPolicy
from hf_laps.stats import percentile
from hf_laps.workloads import poisson_arrivals

BASELINES = ("fcfs", "las", "lp-sjf", "laps-sd")
EXTRA = ("gittins", "gittins-blind", "laps-sd-noprobe")
POLICIES = BASELINES + ("srpt-oracle",) + EXTRA
PREDICTORS = ("learned", "noisy-0.5", "oracle")
SEEDS = (0, 1, 2)
UTILISATIONS = (0.5, 0.7, 0.9)


def predictor(name: str, seed: int):
    if name == "learned":
        return LearnedPredictor()
    if name.startswith("noisy-"):
        return make_predictor("noisy-oracle", sigma=float(name[6:]), seed=seed)
    return make_predictor(name)


def build(policy: str, pred: str, seed: int):
    if policy == "gittins":
        return GittinsPolicy(GittinsConfig(), predictor(pred, seed))
    if policy == "gittins-blind":
        return GittinsPolicy(GittinsConfig(per_request_speed=False), predictor(pred, seed))
    if policy == "laps-sd-noprobe":
        return make_policy("laps-sd", SchedulerConfig(probe=False), predictor(pred, seed))
    uses = policy in ("lp-sjf", "laps-sd")
    return make_policy(policy, predictor=predictor(pred, seed) if uses else None)


def scenarios(traces) -> dict[str, list]:
    """scenario -> arrival sets (3 each)."""
    out: dict[str, list] = {"burst 10": [], f"burst {len(traces)}": []}
    for seed in SEEDS:
        order = list(traces)
        random.Random(seed).shuffle(order)
        burst = [t.with_arrival(0.0) for t in order]
        out["burst 10"].append(burst[:10])
        out[f"burst {len(traces)}"].append(burst)
    service = statistics.fmean(t.service_seconds for t in traces)
    for u in UTILISATIONS:
        out[f"poisson {u}"] = [
            [t.with_arrival(a) for t, a in zip(traces, poisson_arrivals(len(traces), u / service, s))]
            for s in SEEDS]
    return out


def cell(sets, pred: str) -> dict[str, tuple[float, float, float]]:
    """policy -> (mean latency, p99 latency, preemptions), each averaged over the sets."""
    out = {}
    for policy in POLICIES:
        runs = [simulate(ts, build(policy, pred, seed), record_events=False)
                for seed, ts in enumerate(sets)]
        out[policy] = (statistics.fmean(r.mean_latency for r in runs),
                       statistics.fmean(percentile(r.latencies, 99) for r in runs),
                       statistics.fmean(r.preemptions for r in runs))
    return out


def ratios(result) -> dict[str, tuple[float, float, float, float]]:
    """policy -> (/best baseline, /srpt-oracle, p99 / fcfs p99, preemptions)."""
    best = min(result[b][0] for b in BASELINES)
    srpt, fcfs_p99 = result["srpt-oracle"][0], result["fcfs"][1]
    return {p: (m / best, m / srpt, p99 / fcfs_p99, pre) for p, (m, p99, pre) in result.items()}


def geomean(values) -> float:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values))


def main(argv: list[str]) -> None:
    show_cells = "--cells" in argv
    logs = [a for a in argv if a != "--cells"]
    cells: dict[tuple[str, str, str], dict] = {}
    for log in logs:
        name = Path(log).name.split(".")[0]
        traces = load_traces(log)
        for label, sets in scenarios(traces).items():
            for pred in PREDICTORS:
                cells[(name, label, pred)] = ratios(cell(sets, pred))
    if show_cells:
        print("per cell: gittins / best baseline | / srpt-oracle | p99 / fcfs p99 | preemptions")
        for (name, label, pred), r in cells.items():
            g = r["gittins"]
            print(f"{name:<14}{label:<14}{pred:<11}{g[0]:>7.3f}{g[1]:>8.3f}{g[2]:>8.3f}{g[3]:>7.1f}")
    print(f"\n{len(cells)} cells = {len(logs)} recordings x {len(cells) // max(len(logs), 1) // len(PREDICTORS)} "
          f"scenarios x {len(PREDICTORS)} predictors; geometric means (worst cell)")
    head = f"{'policy':<17}" + "".join(f"{p + ': /best (worst)':>24}{'/srpt':>7}{'p99/fcfs':>9}{'preempt':>8}"
                                        for p in PREDICTORS)
    print(head)
    print("-" * len(head))
    for policy in POLICIES:
        row = f"{policy:<17}"
        for pred in PREDICTORS:
            rs = [r[policy] for (_, _, p), r in cells.items() if p == pred]
            best = [x[0] for x in rs]
            row += (f"{geomean(best):>15.3f} ({max(best):.3f})"
                    f"{geomean(x[1] for x in rs):>7.3f}{geomean(x[2] for x in rs):>9.3f}"
                    f"{statistics.fmean(x[3] for x in rs):>8.1f}")
        print(row)
    print("\nby scenario, learned predictor: gittins / best baseline (geometric mean over recordings)")
    labels = list(dict.fromkeys(label for (_, label, _) in cells))
    for label in labels:
        aware = [r["gittins"][0] for (_, l, p), r in cells.items() if p == "learned" and l == label]
        blind = [r["gittins-blind"][0] for (_, l, p), r in cells.items()
                 if p == "learned" and l == label]
        print(f"  {label:<14}gittins {geomean(aware):.3f} (worst {max(aware):.3f})   "
              f"gittins-blind {geomean(blind):.3f} (worst {max(blind):.3f})")

if __name__ == "__main__":
    main(sys.argv[1:])
