"""The default (`--max-batch-size auto`: the batch planner decides every round) against fixed
batch sizes and transformers' continuous batching, on the same requests, sides interleaved.

    OMP_NUM_THREADS=2 python -m benchmarks.default_batch --limit 16 --sides default,b1,b8,b32,hf \\
        --scenarios burst,poisson:0.3,poisson:0.5,poisson:0.7,poisson:1.5

Sides:
- `default`: the serving loop as `hf-laps run` runs it now: up to 32 rows per round, the batch
  planner (round-cost model + the policy's ranking) choosing which share each round;
- `b1`, `b8`, `b32`: the loop at a fixed B: every round runs the policy's top B (`batch_plan="fill"`;
  b1 is one request per round, as hf-laps ran before batching);
- `hf`: transformers' continuous batching (the engine behind `generate_batch`; no speculation),
  at most 32 requests per forward, each request with its own cap (burst only: it has no arrivals).

Scenarios: `burst` (every request at t = 0) and `poisson:U` (Poisson arrivals at U times B = 1's
capacity: rate = U / S, S the mean service seconds of a request at B = 1, measured by the burst's
b1 run first). Within a scenario the sides run in order, then reversed on the next repeat
(ABBA), so a drift of the machine's load hits them alike. Prints each run, then a table of tokens/s
and mean latency per side and the ratios the goals name (default / b1), and how many greedy
texts equal b1's. Not a test: numbers depend on the machine and its load (printed).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch

from hf_laps.engine.speculative import EngineConfig, SpeculativeEngine
from hf_laps.serving.batch_executor import BatchEngineExecutor
from hf_laps.serving.engine_executor import EngineExecutor
from hf_laps.serving.loop import ServingLoop
from hf_laps.workloads import poisson_arrivals

from benchmarks.batched.sides import fresh_policy, run_hf_continuous, submissions
from benchmarks.batched.workload import history_examples, load_requests


@dataclass
class Run:
    wall: float
    tokens: int
    latencies: list[float]
    service: list[float] = field(default_factory=list)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    mean_rows: float = 1.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.wall

    @property
    def mean_latency(self) -> float:
        return statistics.fmean(self.latencies)


SIDES = {"default": ("auto", "cost"), "b1": (1, "fill"), "b8": (8, "fill"), "b32": (32, "fill")}


def run_side(engine, requests, side: str, policy: str, history, arrivals=None) -> Run:
    size, plan = SIDES[side]
    executor = EngineExecutor(engine) if size == 1 else BatchEngineExecutor(engine)
    loop = ServingLoop(executor, fresh_policy(policy, history), max_batch_size=size, batch_plan=plan)
    rows = []
    loop.on_round = lambda report: rows.append(report.batch_size)
    started = time.perf_counter()
    completions = list(loop.run(submissions(requests, arrivals)))
    wall = time.perf_counter() - started
    failed = [c for c in completions if c.record is None]
    if failed:
        raise RuntimeError(f"{side}: {len(failed)} requests failed, first: {failed[0].error}")
    records = [c.record for c in completions]
    # rows per round, over rounds (each round reports once per row: weight 1 / rows)
    rounds = sum(1 / b for b in rows)
    return Run(wall=wall, tokens=sum(r.output_tokens for r in records),
               latencies=[r.finish - r.arrival for r in records], service=[r.busy_seconds for r in records],
               outputs={c.submission.request_id: list(c.state.output_ids) for c in completions},
               mean_rows=len(rows) / rounds if rounds else 1.0)


def run_hf(model, tokenizer, requests, arrivals=None) -> Run | None:
    if arrivals is not None and any(a > 0 for a in arrivals):
        return None  # no arrivals in transformers' manager as driven here: burst only
    try:
        result = run_hf_continuous(model, tokenizer, requests, 32)
    except Exception as exc:
        print(f"#   hf continuous batching could not run: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
        return None
    return Run(wall=result.wall, tokens=result.tokens, latencies=result.latencies)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.default_batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", default="benchmarks/data/natural.jsonl")
    parser.add_argument("--recording", default="benchmarks/data/natural.features.jsonl")
    parser.add_argument("--limit", type=int, default=16, help="requests (a seeded subset of the job)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="lower every cap to this (default: real caps)")
    parser.add_argument("--policy", default="laps-sd")
    parser.add_argument("--sides", default="default,b1,b8,b32,hf")
    parser.add_argument("--poisson-sides", default=None, help="sides of the Poisson scenarios (default: --sides)")
    parser.add_argument("--scenarios", default="burst,poisson:0.3,poisson:0.5,poisson:0.7,poisson:1.5")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats per scenario")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--service", type=float, default=None,
                        help="B = 1's mean service seconds per request, when no burst b1 run measures it here")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from hf_laps.models.loading import embedded_source, load_causal_lm, load_tokenizer

    source = embedded_source()
    model = load_causal_lm(source, "cpu", "float32", threads=args.threads)
    tokenizer = load_tokenizer(source)
    requests = load_requests(args.job, args.recording, tokenizer, limit=args.limit, seed=args.seed,
                             max_new_tokens=args.max_new_tokens)
    history = history_examples(args.recording, {r.custom_id for r in requests}, 1.0, args.max_new_tokens)
    engine = SpeculativeEngine(model, tokenizer, config=EngineConfig(), features=False)
    sides = [s for s in args.sides.split(",") if s]
    load = os.getloadavg()
    print(f"# {len(requests)} requests of {args.job} (seed {args.seed}), caps {sorted({r.max_new_tokens for r in requests})}, "
          f"policy {args.policy}, prompt lookup; cpu float32, {args.threads} threads, torch {torch.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
          flush=True)
    results: dict[tuple[str, str], list[Run]] = {}
    service = args.service
    for scenario in [s for s in args.scenarios.split(",") if s]:
        arrivals = None
        if scenario.startswith("poisson:"):
            if service is None:
                print(f"# {scenario} skipped: it needs the burst's b1 run first (B = 1's service seconds)")
                continue
            utilisation = float(scenario.split(":")[1])
            arrivals = poisson_arrivals(len(requests), utilisation / service, args.seed)
        these = sides if arrivals is None or not args.poisson_sides else [s for s in args.poisson_sides.split(",") if s]
        for repeat in range(args.repeats):
            for side in (these if repeat % 2 == 0 else list(reversed(these))):
                if side == "hf":
                    run = run_hf(model, tokenizer, requests, arrivals)
                else:
                    run = run_side(engine, requests, side, args.policy, history, arrivals)
                if run is None:
                    continue
                results.setdefault((scenario, side), []).append(run)
                if scenario == "burst" and side == "b1" and service is None:
                    service = statistics.fmean(run.service)
                base = results.get((scenario, "b1"))
                same = ""
                if base and run.outputs and side != "b1":
                    ref = base[0].outputs
                    same = f", texts = b1 {sum(run.outputs[k] == ref[k] for k in ref)}/{len(ref)}"
                print(f"#   {scenario} {side}: {run.tokens_per_second:.1f} tok/s, mean latency {run.mean_latency:.2f} s, "
                      f"wall {run.wall:.1f} s, mean rows per round {run.mean_rows:.1f}, load {os.getloadavg()[0]:.2f}{same}",
                      flush=True)
    print_table(results, service)


def print_table(results, service) -> None:
    print(f"\nB = 1 mean service seconds per request: {service:.2f}" if service else "")
    print("| scenario | side | tok/s | mean latency s | rows/round | tok/s vs b1 | latency vs b1 | texts = b1 |")
    print("|---|---|---|---|---|---|---|---|")
    for (scenario, side), runs in results.items():
        tps = statistics.median(r.tokens_per_second for r in runs)
        lat = statistics.median(r.mean_latency for r in runs)
        rows = statistics.fmean(r.mean_rows for r in runs)
        base = results.get((scenario, "b1"))
        ratio_t = ratio_l = same = "-"
        if base:
            ratio_t = f"{tps / statistics.median(r.tokens_per_second for r in base):.2f}x"
            ratio_l = f"{lat / statistics.median(r.mean_latency for r in base):.2f}x"
            if runs[0].outputs:
                ref = base[0].outputs
                same = f"{sum(runs[0].outputs[k] == ref[k] for k in ref)}/{len(ref)}"
        print(f"| {scenario} | {side} | {tps:.1f} | {lat:.2f} | {rows:.1f} | {ratio_t} | {ratio_l} | {same} |")


if __name__ == "__main__":
    sys.exit(main())
