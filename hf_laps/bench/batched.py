"""Batched-rounds benchmark: tokens/s and mean latency at B = 1, 2, 4, 8, next to transformers'
padded batched `generate` (no speculation) on the same prompts.

Every request arrives at t = 0 (an offline batch). Our side is the real serving loop
(`ServingLoop` + `BatchEngineExecutor`, policy fcfs, prompt lookup, greedy); transformers' side
runs the prompts in chunks of B, left-padded, one `generate(do_sample=False)` per chunk, each
request finishing when its chunk does. Sides are interleaved per B (ours, HF, HF, ours, ...), so
drift on a shared machine hits both alike; the table shows medians over repeats.

Also reported: the share of our batched rounds spent copying KV caches into and out of the
batch layout (gather + scatter, `hf_laps.batch_kv`), and the share of the run spent in the
batch-1 prefills of new requests (transformers prefills each chunk in one forward).

    python -m hf_laps.bench.batched                          # embedded SmolLM2-135M, CPU
    python -m hf_laps.bench.batched --sizes 1,4 --repeats 1 --max-new-tokens 32
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from hf_laps.batch_executor import BatchEngineExecutor
from hf_laps.bench.engine import PROMPT_TEXTS
from hf_laps.engine import EngineConfig, SpeculativeEngine
from hf_laps.engine_executor import EngineExecutor
from hf_laps.executor import Submission
from hf_laps.loop import ServingLoop
from hf_laps.scheduling import make_policy

EXTRA_TEXTS = [
    "Explain in two sentences why the sky is blue.",
    "Translate to French: The cat sleeps on the warm windowsill every afternoon.",
    "Summarise: Water boils at 100 degrees Celsius at sea level, but at lower temperatures on mountains.",
    "Name five fruits and one colour for each.",
]


def load_embedded(device: str, dtype: str):
    from hf_laps.models import embedded_source, load_causal_lm, load_tokenizer

    source = embedded_source()
    model, tokenizer = load_causal_lm(source, device, dtype), load_tokenizer(source)
    prompts = []
    for text in PROMPT_TEXTS + EXTRA_TEXTS:
        chat = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
        prompts.append(tokenizer(chat).input_ids)
    return model, tokenizer, prompts


class CopyMeter:
    """Sums the timings of every batched round an executor runs (gather + scatter = KV copies;
    prefill = the batch-1 first rounds of new requests)."""

    def __init__(self, executor: BatchEngineExecutor) -> None:
        self.copy = self.total = self.prefill = 0.0
        step = executor.batched.step

        def measured(states):
            outcome = step(states)
            self.copy += outcome.timings.gather_seconds + outcome.timings.scatter_seconds
            self.prefill += outcome.timings.prefill_seconds
            self.total += outcome.seconds - outcome.timings.prefill_seconds
            return outcome

        executor.batched.step = measured


def run_ours(engine, prompts, size: int, max_new_tokens: int, layout: str = "packed") -> dict:
    executor = BatchEngineExecutor(engine, layout) if size > 1 else EngineExecutor(engine)
    meter = CopyMeter(executor) if size > 1 else None
    loop = ServingLoop(executor, make_policy("fcfs"), max_batch_size=size)
    submissions = [Submission(str(i), p, {"max_new_tokens": max_new_tokens, "do_sample": False})
                   for i, p in enumerate(prompts)]
    started = time.perf_counter()
    completions = list(loop.run(submissions))
    wall = time.perf_counter() - started
    tokens = sum(c.state.num_generated for c in completions)
    latencies = [c.record.finish - c.record.arrival for c in completions]
    out = {"wall": wall, "tokens": tokens, "latency": statistics.mean(latencies)}
    out["copy_share"] = meter.copy / meter.total if meter and meter.total else 0.0
    out["prefill_share"] = meter.prefill / wall if meter else 0.0
    return out


def run_hf(model, tokenizer, prompts, size: int, max_new_tokens: int) -> dict:
    """Chunks of `size` prompts, left-padded, one greedy `generate` each."""
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos))
    started = time.perf_counter()
    tokens, latencies = 0, []
    for first in range(0, len(prompts), size):
        chunk = prompts[first : first + size]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=model.device)
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=pad)
        for row in out[:, width:].tolist():
            ends = [i for i, t in enumerate(row) if t in eos]
            tokens += ends[0] + 1 if ends else len(row)
        latencies += [time.perf_counter() - started] * len(chunk)
    return {"wall": time.perf_counter() - started, "tokens": tokens, "latency": statistics.mean(latencies)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8", help="batch sizes B, comma separated")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("-n", type=int, default=10, help="prompt-lookup draft length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layout", choices=["packed", "padded"], default="packed", help="batch KV layout")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer, prompts = load_embedded(args.device, args.dtype)
    # no length-prediction features (fcfs needs none): new requests' prefill joins the batch
    engine = SpeculativeEngine(model, tokenizer, config=EngineConfig(draft_length=args.n), features=False)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# {len(prompts)} prompts, max_new_tokens={args.max_new_tokens}, prompt lookup n={args.n}, {args.layout}, "
          f"{args.threads} threads, torch {torch.__version__}, {platform.machine()}")
    rows = {}
    for size in sizes:
        ours, hf = [], []
        for repeat in range(args.repeats):
            order = (run_ours, run_hf) if repeat % 2 == 0 else (run_hf, run_ours)
            for runner in order:
                if runner is run_ours:
                    ours.append(run_ours(engine, prompts, size, args.max_new_tokens, args.layout))
                else:
                    hf.append(run_hf(model, tokenizer, prompts, size, args.max_new_tokens))
        rows[size] = (ours, hf)
    print("| B | ours tok/s | ours mean latency s | HF batched generate tok/s | HF mean latency s | ours / HF tok/s | ours tok/s / ours at B=1 | KV copy share | batch-1 prefill share |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = None
    for size, (ours, hf) in rows.items():
        ours_tps = statistics.median(r["tokens"] / r["wall"] for r in ours)
        hf_tps = statistics.median(r["tokens"] / r["wall"] for r in hf)
        base = base if base is not None else ours_tps
        print(f"| {size} | {ours_tps:.1f} | {statistics.median(r['latency'] for r in ours):.2f} | {hf_tps:.1f} | "
              f"{statistics.median(r['latency'] for r in hf):.2f} | {ours_tps / hf_tps:.2f} | {ours_tps / base:.2f} | "
              f"{statistics.median(r['copy_share'] for r in ours):.1%} | "
              f"{statistics.median(r['prefill_share'] for r in ours):.1%} |")


if __name__ == "__main__":
    main()
