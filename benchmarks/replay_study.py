"""Sweeps for docs/studies/benchmarks.md by replaying REAL recorded traces in the simulator (cheap).

    python benchmarks/replay_study.py mixed=rec/mixed-30.timing.jsonl [code=rec/code-30.timing.jsonl ...] [--split]

Each NAME=LOG is a timing log of a real fcfs run of a 30-request burst (`hf-laps run --policy
fcfs`). Under greedy decoding a request's rounds do not depend on the schedule, so every policy,
K, stability setting, predictor and arrival pattern below is a replay of the same real rounds:
  (1) bursts of the first 10 and all 30 requests, and Poisson arrivals at utilisation
      0.5 / 0.7 / 0.9 (rate = U / mean service seconds; 3 arrival seeds averaged);
  (2) K = 1..8;  (3) stability window W / delta / gamma;  (4) noisy-oracle sigma 0..1;
  (5) switch cost: none (KV kept on device) vs parked (a copy out and back per resume).
Mean latency in seconds; ratios are laps-sd over the best of fcfs / las / lp-sjf and over srpt-oracle.
"""
from __future__ import annotations

import statistics
import sys

from hf_laps.replay.replayer import linear_switch_cost, simulate
from hf_laps.scheduling import LearnedPredictor, SchedulerConfig, make_policy, make_predictor, policy_entry
from hf_laps.replay.traces import load_traces
from hf_laps.workloads import poisson_arrivals

POLICIES = ("fcfs", "las", "lp-sjf", "srpt-oracle", "laps-sd")
UTILISATIONS = (0.5, 0.7, 0.9)
SEEDS = (0, 1, 2)
# parking a paused KV cache in CPU memory and bringing it back: SmolLM2-135M keeps
# 30 layers x 2 (K, V) x 3 kv heads x 64 dims x 4 bytes = 46 KB per token; two copies at a few GB/s
PARKED_SECONDS_PER_TOKEN = 2e-5


def predictor(name: str, seed: int = 0):
    if name == "learned":
        return LearnedPredictor()
    if name.startswith("noisy-"):
        return make_predictor("noisy-oracle", sigma=float(name[6:]), seed=seed)
    return make_predictor(name)


def mean_latency(traces, policy: str, pred: str = "learned", config=None, switch=0.0, seed=0) -> float:
    p = make_policy(policy, config or SchedulerConfig(), predictor(pred, seed) if policy_entry(policy).needs_predictor else None)
    return simulate(traces, p, switch, record_events=False).mean_latency


def poisson(traces, utilisation: float, seed: int):
    service = statistics.fmean(t.service_seconds for t in traces)
    times = poisson_arrivals(len(traces), utilisation / service, seed)
    return [t.with_arrival(a) for t, a in zip(traces, times)]


def scenarios(traces) -> dict[str, list]:
    """name -> list of trace sets (several arrival seeds for Poisson)."""
    burst = [t.with_arrival(0.0) for t in traces]
    out = {"burst 10": [burst[:10]]}
    if len(burst) > 10:
        out[f"burst {len(burst)}"] = [burst]
    for u in UTILISATIONS:
        out[f"poisson {u}"] = [poisson(burst, u, s) for s in SEEDS]
    return out


def row(sets, pred="learned", config=None, switch=0.0) -> dict[str, float]:
    return {p: statistics.fmean(mean_latency(ts, p, pred, config, switch, seed=i) for i, ts in enumerate(sets))
            for p in POLICIES}


def ratios(r: dict[str, float]) -> tuple[float, str, float]:
    best = min(("fcfs", "las", "lp-sjf"), key=r.get)
    return r["laps-sd"] / r[best], best, r["laps-sd"] / r["srpt-oracle"]


def table_policies(workloads) -> None:
    print("\n(1) mean latency (s) per policy, replayed real traces; laps-sd/best | laps-sd/srpt for learned and oracle lengths")
    print(f"{'workload':<28}" + "".join(f"{p:>12}" for p in POLICIES) + f"{'laps/best':>16}{'laps/srpt':>10}{'oracle: l/best':>16}{'l/srpt':>8}")
    for name, traces in workloads.items():
        for label, sets in scenarios(traces).items():
            r, o = row(sets), row(sets, "oracle")
            lb, best, ls = ratios(r)
            ob, obest, os_ = ratios(o)
            print(f"{name + ' ' + label:<28}" + "".join(f"{r[p]:>12.2f}" for p in POLICIES)
                  + f"{lb:>10.3f} {best:<5}{ls:>10.3f}{ob:>10.3f} {obest:<5}{os_:>8.3f}")


def table_k(workloads) -> None:
    print("\n(2) laps-sd mean latency (s) for K = 1..8, learned lengths (ratio to srpt-oracle)")
    print(f"{'workload':<28}" + "".join(f"{'K=' + str(k):>13}" for k in range(1, 9)))
    for name, traces in workloads.items():
        for label, sets in scenarios(traces).items():
            if label not in ("burst 10", "burst 30", "poisson 0.9"):  # (a 10-request set has no burst 30)
                continue
            srpt = statistics.fmean(mean_latency(ts, "srpt-oracle") for ts in sets)
            cells = []
            for k in range(1, 9):
                m = statistics.fmean(mean_latency(ts, "laps-sd", config=SchedulerConfig(num_queues=k), seed=i) for i, ts in enumerate(sets))
                cells.append(f"{m:7.2f}({m / srpt:.2f})")
            print(f"{name + ' ' + label:<28}" + "".join(f"{c:>13}" for c in cells))


def table_stability(workloads) -> None:
    settings = [("W", "stability_window", (1, 2, 4, 8)), ("delta", "stability_delta", (0.02, 0.05, 0.1, 0.3)),
                ("gamma", "stability_gamma", (0.1, 0.25, 0.5, 1.0))]
    print("\n(3) stability test: laps-sd / srpt-oracle on each whole set as a burst (learned | oracle lengths); others at defaults W=4 delta=0.05 gamma=0.25")
    for short, field, values in settings:
        print(f"{short:<8}" + "".join(f"{name:>22}" for name in workloads))
        for v in values:
            cfg = SchedulerConfig(**{field: v})
            cells = []
            for traces in workloads.values():
                burst = [t.with_arrival(0.0) for t in traces]
                srpt = mean_latency(burst, "srpt-oracle")
                cells.append(f"{mean_latency(burst, 'laps-sd', 'learned', cfg) / srpt:.3f} | {mean_latency(burst, 'laps-sd', 'oracle', cfg) / srpt:.3f}")
            print(f"{v:<8}" + "".join(f"{c:>22}" for c in cells))


def table_noise(workloads) -> None:
    sigmas = (0.0, 0.25, 0.5, 0.75, 1.0)
    print("\n(4) noisy-oracle lengths: laps-sd / lp-sjf | laps-sd / srpt-oracle (5 noise seeds)")
    print(f"{'workload':<28}" + "".join(f"{'sigma ' + str(s):>18}" for s in sigmas))
    for name, traces in workloads.items():
        for label, sets in scenarios(traces).items():
            if label not in ("burst 10", "burst 30", "poisson 0.9") or (label == "burst 10" and len(traces) > 10):
                continue
            srpt = statistics.fmean(mean_latency(ts, "srpt-oracle") for ts in sets)
            cells = []
            for s in sigmas:
                laps = statistics.fmean(mean_latency(ts, "laps-sd", f"noisy-{s}", seed=k) for k in range(5) for ts in sets)
                lp = statistics.fmean(mean_latency(ts, "lp-sjf", f"noisy-{s}", seed=k) for k in range(5) for ts in sets)
                cells.append(f"{laps / lp:.3f} | {laps / srpt:.3f}")
            print(f"{name + ' ' + label:<28}" + "".join(f"{c:>18}" for c in cells))


def table_switch(workloads) -> None:
    parked = linear_switch_cost(PARKED_SECONDS_PER_TOKEN)
    print(f"\n(5) switch cost: KV kept on device (0 s) vs parked ({PARKED_SECONDS_PER_TOKEN * 1e6:.0f} us per context token per resume); mean latency (s), learned lengths")
    print(f"{'workload':<28}{'policy':<12}{'on device':>10}{'parked':>10}{'cost %':>8}")
    for name, traces in workloads.items():
        burst = [t.with_arrival(0.0) for t in traces]
        for p in ("las", "laps-sd", "srpt-oracle"):
            a, b = mean_latency(burst, p), mean_latency(burst, p, switch=parked)
            print(f"{name + ' burst ' + str(len(burst)):<28}{p:<12}{a:>10.2f}{b:>10.2f}{100 * (b / a - 1):>8.2f}")


def main(argv: list[str]) -> None:
    workloads = {}
    split = "--split" in argv  # also each custom_id prefix (chat-, code-, writing-) of a mixed log
    for arg in (a for a in argv if a != "--split"):
        name, _, path = arg.partition("=")
        workloads[name] = load_traces(path)
        prefixes = sorted({t.custom_id.split("-")[0] for t in workloads[name]})
        if split and len(prefixes) > 1:
            for prefix in prefixes:
                workloads[f"{prefix} (of {name})"] = [t for t in workloads[name] if t.custom_id.startswith(prefix + "-")]
    for name, traces in workloads.items():
        service = [t.service_seconds for t in traces]
        tokens = [t.output_tokens for t in traces]
        per_round = [t.output_tokens / len(t.rounds) for t in traces]
        print(f"{name}: {len(traces)} requests; service s min/median/max {min(service):.2f}/{statistics.median(service):.2f}/{max(service):.2f}; "
              f"output tokens {min(tokens)}/{statistics.median(tokens):.0f}/{max(tokens)}; tokens per round {min(per_round):.2f}/{statistics.median(per_round):.2f}/{max(per_round):.2f}")
    table_policies(workloads)
    table_k(workloads)
    table_stability(workloads)
    table_noise(workloads)
    table_switch(workloads)


if __name__ == "__main__":
    main(sys.argv[1:])
