"""Simulation study of LAPS-SD against its baselines on synthetic workloads.

    python -m benchmarks.sim_study [--burst-seeds 10] [--poisson-seeds 3]
                                      [--poisson-requests 200] [--switch-per-token 0]

Workloads: 10 and 30 requests at once, Poisson arrivals at utilisation 0.5 / 0.7 / 0.9; output
lengths light- and heavy-tailed (hf_laps.replay.synthetic). Each cell is the mean over seeds
of the mean latency (seconds, virtual clock). lp-sjf and laps-sd share one predictor per run
(docs/design.md#length-predictor), a fresh copy each:
  learned      ridge on prompt features fitted on 500 earlier requests of the same kind (a
               different seed), refit online as requests finish; its MAPE on the evaluated
               requests (before any refit) is printed;
  noisy-0.5/1  true length x exp(N(0, sigma^2));   oracle  the true length.
Tables: (1) every policy with the learned predictor; (2) laps-sd / best baseline and laps-sd /
srpt-oracle for every predictor; (3) laps-sd for K = 1..8 (learned predictor); (5) 30-request
bursts with output lengths x1, x4, x16 (how the probing cost shrinks with longer requests);
(4) the headline on the heavy-tailed 30-request burst against the goal (<= 0.61 x best,
<= 1.10 x srpt-oracle).
Pure Python, deterministic; about two minutes on two CPU cores.
"""
from __future__ import annotations

import argparse
import copy
import platform
import time
from dataclasses import dataclass

from hf_laps.replay.replayer import linear_switch_cost, simulate
from hf_laps.scheduling import (POLICY_NAMES, SchedulerConfig, baseline_names, make_predictor, mape, policy_entry)
from hf_laps.replay.synthetic import synthetic_traces
from hf_laps.stats import mean

PREDICTORS = ("learned", "noisy-0.5", "noisy-1.0", "oracle")
GOAL_BEST, GOAL_SRPT = 0.61, 1.10


@dataclass(frozen=True)
class Workload:
    tail: str
    arrivals: str
    requests: int
    utilisation: float | None = None
    length_scale: int = 1          # output lengths x scale (max_new_tokens 2048 x scale)

    @property
    def label(self) -> str:
        shape = (f"burst {self.requests}" if self.arrivals == "burst"
                 else f"poisson {self.utilisation:.1f}")
        return f"{self.tail:<5} {shape}" + (f" x{self.length_scale}" if self.length_scale > 1 else "")

    def traces(self, seed: int, count: int | None = None, id_prefix: str = "req"):
        return synthetic_traces(count or self.requests, tail=self.tail,
                                arrivals=self.arrivals if count is None else "burst",
                                utilisation=self.utilisation, seed=seed,
                                length_scale=self.length_scale,
                                max_new_tokens=2048 * self.length_scale, id_prefix=id_prefix)


def workloads(poisson_requests: int) -> list[Workload]:
    out = []
    for tail in ("light", "heavy"):
        out += [Workload(tail, "burst", 10), Workload(tail, "burst", 30)]
        out += [Workload(tail, "poisson", poisson_requests, u) for u in (0.5, 0.7, 0.9)]
    return out


def fitted_learned(workload: Workload, seed: int):
    """A learned predictor fitted on 500 'earlier' requests of the same kind."""
    history = workload.traces(10_000 + seed, count=500, id_prefix="hist")
    return make_predictor("learned").fit((t.to_request(), t.output_tokens) for t in history)


def predictor(name: str, learned):
    if name == "learned":
        return copy.deepcopy(learned)
    if name == "oracle":
        return make_predictor("oracle")
    return make_predictor("noisy-oracle", sigma=float(name.split("-")[1]), seed=0)


class Study:
    """Runs and caches (workload, seed, policy, predictor, K) -> mean latency."""

    def __init__(self, burst_seeds: int, poisson_seeds: int, switch_per_token: float,
                 scale_seeds: int = 4) -> None:
        self.burst_seeds, self.poisson_seeds = burst_seeds, poisson_seeds
        self.scale_seeds = scale_seeds
        self.switch = linear_switch_cost(switch_per_token) if switch_per_token else 0.0
        self._traces: dict = {}
        self._learned: dict = {}
        self._cache: dict = {}
        self.mape: dict[Workload, list[float]] = {}

    def seeds(self, workload: Workload) -> range:
        if workload.length_scale > 1:
            return range(self.scale_seeds)
        return range(self.burst_seeds if workload.arrivals == "burst" else self.poisson_seeds)

    def _setup(self, workload: Workload, seed: int):
        key = (workload, seed)
        if key not in self._traces:
            traces = self._traces[key] = workload.traces(seed)
            learned = self._learned[key] = fitted_learned(workload, seed)
            error = mape([learned.predict(t.to_request()) for t in traces],
                         [t.output_tokens for t in traces])
            self.mape.setdefault(workload, []).append(error)
        return self._traces[key], self._learned[key]

    def latency(self, workload: Workload, policy: str, pred: str = "learned", k: int = 4) -> float:
        """Mean over seeds of the mean latency."""
        uses = policy_entry(policy).needs_predictor
        key = (workload, policy, pred if uses else None, k if policy in ("las", "laps-sd") else 4)
        if key not in self._cache:
            self._cache[key] = self._run(workload, policy, pred, k)
        return self._cache[key]

    def _run(self, workload: Workload, policy: str, pred: str, k: int) -> float:
        values = []
        for seed in self.seeds(workload):
            traces, learned = self._setup(workload, seed)
            uses = policy_entry(policy).needs_predictor
            result = simulate(traces, policy, self.switch, config=SchedulerConfig(num_queues=k),
                              predictor=predictor(pred, learned) if uses else None,
                              record_events=False)
            values.append(result.mean_latency)
        return mean(values)

    def ratios(self, workload: Workload, pred: str, k: int = 4) -> tuple[float, float, str]:
        """(laps-sd / best of fcfs, las, lp-sjf; laps-sd / srpt-oracle; the best baseline)."""
        base = {name: self.latency(workload, name, pred) for name in baseline_names()}
        best = min(base, key=base.get)
        laps = self.latency(workload, "laps-sd", pred, k)
        return laps / base[best], laps / self.latency(workload, "srpt-oracle"), best


def print_policies(study: Study, loads: list[Workload]) -> None:
    print("\n(1) mean latency (s) per policy, learned predictor; K = 4")
    head = f"{'workload':<19}" + "".join(f"{p:>12}" for p in POLICY_NAMES) + \
        f"{'laps/best':>11}{'laps/srpt':>11}{'MAPE %':>8}"
    print(head + "\n" + "-" * len(head))
    for w in loads:
        cells = "".join(f"{study.latency(w, p):>12.3f}" for p in POLICY_NAMES)
        to_best, to_srpt, best = study.ratios(w, "learned")
        print(f"{w.label:<19}{cells}{to_best:>7.3f} {best[:3]:<3}{to_srpt:>11.3f}"
              f"{mean(study.mape[w]):>8.1f}")


def print_predictors(study: Study, loads: list[Workload]) -> None:
    print("\n(2) laps-sd / best baseline  |  laps-sd / srpt-oracle, per predictor; K = 4")
    head = f"{'workload':<19}" + "".join(f"{p:>12}" for p in PREDICTORS) + " |" + \
        "".join(f"{p:>12}" for p in PREDICTORS)
    print(head + "\n" + "-" * len(head))
    for w in loads:
        pairs = [study.ratios(w, p) for p in PREDICTORS]
        print(f"{w.label:<19}" + "".join(f"{b:>12.3f}" for b, _, _ in pairs) + " |" +
              "".join(f"{s:>12.3f}" for _, s, _ in pairs))


def print_k_sweep(study: Study, loads: list[Workload]) -> None:
    print("\n(3) laps-sd mean latency (s) for K = 1..8, learned predictor (ratio to srpt-oracle)")
    head = f"{'workload':<19}" + "".join(f"{'K=' + str(k):>13}" for k in range(1, 9))
    print(head + "\n" + "-" * len(head))
    for w in loads:
        srpt = study.latency(w, "srpt-oracle")
        cells = []
        for k in range(1, 9):
            value = study.latency(w, "laps-sd", "learned", k)
            cells.append(f"{value:>7.2f}({value / srpt:.2f})")
        print(f"{w.label:<19}" + "".join(f"{c:>13}" for c in cells))


def print_headline(study: Study) -> None:
    w = Workload("heavy", "burst", 30)
    print("\n(4) headline: heavy-tailed 30-request burst, K = 4 "
          f"(goal laps-sd <= {GOAL_BEST} x best baseline and <= {GOAL_SRPT} x srpt-oracle)")
    for pred in PREDICTORS:
        to_best, to_srpt, best = study.ratios(w, pred)
        verdict = "MET" if to_best <= GOAL_BEST and to_srpt <= GOAL_SRPT else "NOT MET"
        print(f"  {pred:<10} laps-sd / best ({best}) = {to_best:.3f}   "
              f"laps-sd / srpt-oracle = {to_srpt:.3f}   {verdict}")


def print_length_scale(study: Study) -> None:
    print("\n(5) longer outputs, 30-request bursts: laps-sd / best baseline | laps-sd / srpt-oracle"
          f" (x4, x16: {study.scale_seeds} seeds; output lengths and max_new_tokens x scale)")
    head = f"{'workload':<19}{'learned':>12}{'oracle':>12} |{'learned':>12}{'oracle':>12}" \
        f"{'lp-sjf/srpt':>13}"
    print(head + "\n" + "-" * len(head))
    for tail in ("light", "heavy"):
        for scale in (1, 4, 16):
            w = Workload(tail, "burst", 30, length_scale=scale)
            (lb, ls, _), (ob, os_, _) = study.ratios(w, "learned"), study.ratios(w, "oracle")
            lp = study.latency(w, "lp-sjf", "learned") / study.latency(w, "srpt-oracle")
            label = w.label if scale > 1 else w.label + " x1"
            print(f"{label:<19}{lb:>12.3f}{ob:>12.3f} |{ls:>12.3f}{os_:>12.3f}{lp:>13.3f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst-seeds", type=int, default=10)
    parser.add_argument("--poisson-seeds", type=int, default=3)
    parser.add_argument("--poisson-requests", type=int, default=200)
    parser.add_argument("--scale-seeds", type=int, default=4)
    parser.add_argument("--switch-per-token", type=float, default=0.0,
                        help="switch cost in seconds per context token on resume (default 0: "
                             "every KV cache stays on the GPU)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    study = Study(args.burst_seeds, args.poisson_seeds, args.switch_per_token, args.scale_seeds)
    loads = workloads(args.poisson_requests)
    print(f"python {platform.python_version()}; seeds: burst {args.burst_seeds}, poisson "
          f"{args.poisson_seeds} x {args.poisson_requests} requests; switch "
          f"{args.switch_per_token} s/token")
    print_policies(study, loads)
    print_predictors(study, loads)
    print_k_sweep(study, loads)
    print_length_scale(study)
    print_headline(study)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
