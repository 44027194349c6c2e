"""The batched benchmark's command (see the package docstring); `--help` lists the knobs."""
from __future__ import annotations

import argparse
import platform
import sys
from dataclasses import replace

import torch

from hf_laps.engine.speculative import EngineConfig, SpeculativeEngine

from benchmarks.batched.poisson import latency_under_load
from benchmarks.batched.sides import run_hf_continuous, run_hf_padded, run_ours
from benchmarks.batched.table import HF_CONTINUOUS, HF_PADDED, answer_open_question, default_candidates, format_table, \
    ours_throughput, summarise
from benchmarks.batched.workload import history_examples, load_requests

POLICIES = "fcfs,las,lp-sjf,srpt-oracle,laps-sd,gittins"


def parse_args(argv=None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    parser = parser or argparse.ArgumentParser(prog="python -m benchmarks.batched",
                                     description="tokens/s and latency of batched rounds per policy vs transformers")
    parser.add_argument("--job", default="benchmarks/data/natural.jsonl", help="job JSONL (short form)")
    parser.add_argument("--recording", default="benchmarks/data/natural.features.jsonl",
                        help="timing log of the same job (true output lengths, the predictor's history)")
    parser.add_argument("--limit", type=int, default=24, help="requests in the seeded subset")
    parser.add_argument("--seed", type=int, default=0, help="subset and arrival seed")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="lower every line's max_tokens to this")
    parser.add_argument("--token-scale", type=float, default=1.0,
                        help="multiply every line's max_tokens by this (keeps the spread of lengths)")
    parser.add_argument("--lengths", choices=["recording", "cap"], default="recording",
                        help="true lengths: the recording's, or every request's cap (random weights)")
    parser.add_argument("--sizes", default="1,2,4,8", help="batch sizes B, comma separated")
    parser.add_argument("--policies", default=POLICIES, help="our policies, comma separated (fcfs first)")
    parser.add_argument("--hf", default="padded,continuous", help="transformers sides: padded, continuous, none")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repetitions of the table")
    parser.add_argument("--utilisation", type=float, default=0.7, help="Poisson load (0 skips that part)")
    parser.add_argument("--load-policy", default="laps-sd", help="policy of the Poisson part (the job default)")
    parser.add_argument("--load-repeats", type=int, default=2, help="interleaved repetitions per B under load")
    parser.add_argument("--load-size", type=int, default=None,
                        help="compare this B with B = 1 under load (default: the candidates from the table)")
    parser.add_argument("--tolerance", type=float, default=0.05, help="default B: within this of the best tok/s")
    parser.add_argument("-n", type=int, default=None, help="draft length (engine default if omitted)")
    parser.add_argument("--token-budget", type=int, default=None,
                        help="most prompt + draft tokens one batched round feeds (long prompts join in chunks)")
    parser.add_argument("--model", default=None, help="target model (default: the embedded SmolLM2-135M)")
    parser.add_argument("--assistant", default=None, help="draft model (default: prompt lookup)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.policies = [p for p in args.policies.split(",") if p]
    args.hf = [s for s in args.hf.split(",") if s and s != "none"]
    if args.policies[0] != "fcfs":
        parser.error("--policies must start with fcfs (its B = 1 run measures the seconds per token srpt-oracle reads)")
    return args


def load_models(args):
    from hf_laps.models.loading import load_causal_lm, load_tokenizer, resolve_source

    source = resolve_source(args.model)
    # threads=: the loader would otherwise pick its own count from the machine's idle cores
    model = load_causal_lm(source, args.device, args.dtype, threads=args.threads)
    tokenizer = load_tokenizer(source)
    draft = (load_causal_lm(resolve_source(args.assistant), args.device, args.dtype, threads=args.threads)
             if args.assistant else None)
    return model, draft, tokenizer


def hf_side(name, model, tokenizer, requests, size, log):
    """One transformers run, or None with the reason printed when it cannot run here."""
    runner = run_hf_padded if name == "padded" else run_hf_continuous
    try:
        return runner(model, tokenizer, requests, size)
    except Exception as exc:  # e.g. continuous batching unsupported on this device / attention
        log(f"# transformers {name} could not run at B={size}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return None


def run_table(args, engine, model, tokenizer, requests, history, log):
    """Every side at every B, interleaved: ours (policies), HF, HF, ours (reversed), ..."""
    runs: dict[tuple[int, str], list] = {}
    seconds_per_token = None
    sides = [("ours", p) for p in args.policies] + [("hf", s) for s in args.hf]
    for size in args.sizes:
        for repeat in range(args.repeats):
            for kind, name in (sides if repeat % 2 == 0 else list(reversed(sides))):
                if kind == "hf":
                    result = hf_side(name, model, tokenizer, requests, size, log)
                    key = HF_PADDED if name == "padded" else HF_CONTINUOUS
                else:
                    if name == "srpt-oracle" and seconds_per_token is None:
                        log("# srpt-oracle skipped: it needs fcfs at B = 1 first (its seconds per token)")
                        continue
                    result = run_ours(engine, requests, size, name, seconds_per_token=seconds_per_token,
                                      history=history, token_budget=args.token_budget)
                    key = name
                    if size == 1 and name == "fcfs" and seconds_per_token is None:
                        seconds_per_token = sum(result.service) / result.tokens
                if result is not None:
                    runs.setdefault((size, key), []).append(result)
                    log(f"#   B={size} {key}: {result.tokens_per_second:.1f} tok/s, mean latency "
                        f"{result.mean_latency:.2f} s, wall {result.wall:.1f} s"
                        + (f", prefill share {result.prefill_share:.0%}, KV copy share of batched rounds "
                           f"{result.copy_share:.1%}" if kind == "ours" and size > 1 else ""))
    return [summarise(size, side, rs) for (size, side), rs in runs.items()], runs


def choose_default(args, engine, requests, history, rows, runs, log):
    """The smallest B within tolerance of the best tok/s whose latency under load is no worse than B = 1."""
    fcfs_b1 = runs.get((1, "fcfs"))
    if not fcfs_b1:
        log("# Poisson part skipped: it needs fcfs at B = 1 (the mean service seconds)")
        return
    service = sum(s for r in fcfs_b1 for s in r.service) / sum(len(r.service) for r in fcfs_b1)
    candidates = [args.load_size] if args.load_size else default_candidates(ours_throughput(rows), args.tolerance)
    log(f"\n## Poisson arrivals, utilisation {args.utilisation}, policy {args.load_policy}: mean service at "
        f"B=1 {service:.2f} s; default-B candidates (within {args.tolerance:.0%} of the best tok/s): {candidates}")
    for candidate in candidates:
        if candidate == 1:
            log("default B = 1 (no larger B is within tolerance of the best throughput)")
            return
        load = latency_under_load(engine, requests, [1, candidate], service, utilisation=args.utilisation,
                                  policy=args.load_policy, history=history, repeats=args.load_repeats,
                                  seed=args.seed, token_budget=args.token_budget, log=log)
        log(f"| B | mean latency s (median of {args.load_repeats}) |\n|---|---|\n"
            + "\n".join(f"| {b} | {lat:.2f} |" for b, lat in load.latency.items())
            + f"\narrival rate {load.rate:.3f}/s; B={candidate} vs B=1 latency {load.latency[candidate] / load.latency[1]:.2f}x")
        if load.holds(candidate):
            log(f"recommended default B = {candidate}")
            return
        log(f"B={candidate} is slower than B=1 under load; trying the next candidate")
    log("recommended default B = 1 (no candidate kept latency under load)")


def bench(args, model, draft, tokenizer, log=print) -> None:
    """The whole benchmark on loaded models (the GPU script passes models it built in memory)."""
    requests = load_requests(args.job, args.recording, tokenizer, limit=args.limit, seed=args.seed,
                             max_new_tokens=args.max_new_tokens, scale=args.token_scale)
    history = history_examples(args.recording, {r.custom_id for r in requests}, args.token_scale,
                               args.max_new_tokens)
    if args.lengths == "cap":  # random weights: no request meets EOS, each runs to its cap
        requests = [replace(r, true_output_tokens=r.max_new_tokens) for r in requests]
        history = [(spec, spec.max_new_tokens) for spec, _ in history]
    config = EngineConfig(draft_length=args.n) if args.n else EngineConfig()
    # no length-prediction features: the policies here predict from the prompt text (learned)
    engine = SpeculativeEngine(model, tokenizer, assistant_model=draft, config=config, features=False)
    drafting = "draft model" if draft is not None else "prompt lookup"
    log(f"# {len(requests)} requests of {args.job} (seed {args.seed}, lines without stop strings), "
        f"{sum(r.true_output_tokens for r in requests)} true output tokens, max_tokens x {args.token_scale}: "
        f"{sorted({r.max_new_tokens for r in requests})}; {drafting} n={engine.draft_length}, token budget {args.token_budget}; "
        f"{model.device} {model.dtype}, {args.threads} threads, torch {torch.__version__}, {platform.machine()}; "
        f"learned-predictor history: {len(history)} recorded requests")
    rows, runs = run_table(args, engine, model, tokenizer, requests, history, log)
    log("\n" + format_table(rows))
    log("\n" + answer_open_question(rows, args.policies))
    if args.utilisation > 0:
        choose_default(args, engine, requests, history, rows, runs, log)


def main(argv=None) -> None:
    args = parse_args(argv)
    model, draft, tokenizer = load_models(args)
    bench(args, model, draft, tokenizer, log=lambda text: print(text, flush=True))


if __name__ == "__main__":
    sys.exit(main())
