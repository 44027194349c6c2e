"""Batched rounds in replay: mean latency at B = 1, 2, 4, 8 per policy, and replay fidelity.

    python benchmarks/replay_batched_study.py benchmarks/data/natural.features.jsonl \\
        --fit benchmarks/data/mixed-30.b4.timing.jsonl

(1) Fidelity: the batched recording `--fit` (a real `hf-laps run --max-batch-size B`) replayed
    at its own B under its own policy, with the batched cost fitted on its own rounds
    (`RecordedCost`: hf_laps.replay.batch_cost.fit_batch_cost), against its real mean latency.
(2) The table: every policy on the batch-1 recording LOG at B = 1, 2, 4, 8, a burst (every
    request at t = 0) and Poisson arrivals at utilisation 0.7 (rate = 0.7 / mean service
    seconds; arrival seeds 0-2 averaged). A batched round costs the fit's growth applied at the
    recording's own speed (`RelativeBatchCost`); the last column prices it with the fallback
    rule instead (`BatchFactor`, no batched recording).
"""
from __future__ import annotations

import argparse
import statistics

from hf_laps.replay.batch_cost import BatchFactor, RelativeBatchCost, batched_rounds, fit_batch_cost
from hf_laps.replay.replayer import RecordedCost, simulate
from hf_laps.scheduling import POLICY_NAMES, make_policy, make_predictor, policy_entry
from hf_laps.replay.traces import load_traces
from hf_laps.timing_log import read_timing_log
from hf_laps.stats import mean
from hf_laps.workloads import poisson_arrivals

SIZES = (1, 2, 4, 8)
SEEDS = (0, 1, 2)


def policy(name: str):
    # lengths from the learned predictor (no truth), as `hf-laps run` by default
    return make_policy(name, predictor=make_predictor("learned") if policy_entry(name).needs_predictor else None)


def mean_latency(sets, name: str, cost: RecordedCost, size: int) -> float:
    return statistics.fmean(simulate(traces, policy(name), cost=cost, max_batch_size=size, record_events=False
                                     ).mean_latency for traces in sets)


def fidelity(path: str) -> None:
    records, traces = read_timing_log(path), load_traces(path)
    fit = fit_batch_cost(traces)
    real = mean(r.latency for r in records)
    size = max(r.batch_size for t in traces for r in t.rounds)
    name = records[0].policy or "fcfs"
    replay = simulate(traces, policy(name), max_batch_size=size, record_events=False).mean_latency
    print(f"(1) {path}: {len(batched_rounds(traces))} batched rounds; fit seconds = {fit.intercept:.4f} "
          f"+ {fit.per_token:.3g} x batch_tokens + {fit.per_kv:.3g} x batch_kv (rms {fit.rms:.3f} s)")
    print(f"    real mean latency {real:.2f} s, self-replay at B = {size} ({name}) {replay:.2f} s: "
          f"{100 * (replay / real - 1):+.1f} %")
    return fit


def scenarios(traces) -> dict[str, list]:
    burst = [t.with_arrival(0.0) for t in traces]
    service = statistics.fmean(t.service_seconds for t in traces)
    poisson = [[t.with_arrival(a) for t, a in zip(burst, poisson_arrivals(len(burst), 0.7 / service, seed))]
               for seed in SEEDS]
    return {"burst": [burst], "poisson 0.7": poisson}


def table(path: str, fit) -> None:
    traces = load_traces(path)
    fitted, fallback = RecordedCost(batch=RelativeBatchCost(fit)), RecordedCost(batch=BatchFactor())
    print(f"\n(2) {path}: {len(traces)} requests; mean latency (s) per B; last column: B = 4 with the fallback")
    print(f"{'arrivals':<13}{'policy':<13}" + "".join(f"{'B=' + str(b):>9}" for b in SIZES) + f"{'B=4 fb':>9}")
    for label, sets in scenarios(traces).items():
        for name in POLICY_NAMES:
            cells = [mean_latency(sets, name, fitted, b) for b in SIZES] + [mean_latency(sets, name, fallback, 4)]
            print(f"{label:<13}{name:<13}" + "".join(f"{c:>9.2f}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", help="a batch-1 timing log (the table)")
    parser.add_argument("--fit", required=True, help="a batched recording (fidelity and the fit)")
    args = parser.parse_args()
    table(args.log, fidelity(args.fit))


if __name__ == "__main__":
    main()
