"""How much a batched round costs over its rows' batch-1 rounds, measured side by side.

B requests of a job (greedy, prompt-lookup drafting: the default configuration) are prefilled on
the embedded model; then, per trial, each request's NEXT round is run twice within a second:
alone (`SpeculativeEngine.step` on a copy of its state, saved and loaded back) and together
with the others (`BatchedRound.step`, one shared verify forward), in alternating order, so the
load of a shared machine hits both alike. Under greedy both compute the same rounds. Per trial:

    ratio = shared round seconds / max(rows' batch-1 round seconds)

whose median per B is what `hf_laps.replay.batch_cost.BATCH_RATIOS` holds (the fallback of a replay
without batched recordings); g fits ratio = 1 + g (B - 1) through the origin, as a summary.
Seconds are the rounds' own (what the timing log records), not the state copies.

    OMP_NUM_THREADS=1 python benchmarks/batch_growth.py benchmarks/data/mixed-30.jsonl --sizes 2 4 --trials 20
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from hf_laps.engine.batched_round import BatchedRound
from hf_laps.engine.speculative import SpeculativeEngine
from hf_laps.models.loading import embedded_source, load_causal_lm, load_tokenizer


def read_prompts(path: str, count: int) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    return [line.get("messages") or line.get("prompt") for line in lines[:count]]


def saved(states, scratch: Path) -> list[Path]:
    paths = [scratch / f"{state.request_id}.safetensors" for state in states]
    for state, path in zip(states, paths):
        state.save(path)
    return paths


def alone_seconds(engine: SpeculativeEngine, paths: list[Path]) -> list[float]:
    """The next round of each saved state, run alone on a copy loaded back."""
    return [engine.step(engine.load_state(path)).seconds for path in paths]


def trials(engine, tokenizer, prompts, size: int, count: int, max_new_tokens: int) -> list[float]:
    batched = BatchedRound(engine)
    texts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in prompts[:size]]
    states = [engine.start(text, f"r{i}", max_new_tokens=max_new_tokens, do_sample=False) for i, text in enumerate(texts)]
    for state in states:
        engine.step(state)                       # the prefill round, alone as in a real run
    ratios = []
    with tempfile.TemporaryDirectory() as scratch:
        for trial in range(count):
            if any(s.finished for s in states):
                break
            paths = saved(states, Path(scratch))   # the states before this round
            if trial % 2:
                shared = batched.step(states).results[0].seconds
                alone = alone_seconds(engine, paths)
            else:
                alone = alone_seconds(engine, paths)
                shared = batched.step(states).results[0].seconds
            ratios.append(shared / max(alone))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("job")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args()
    source = embedded_source()
    tokenizer = load_tokenizer(source)
    engine = SpeculativeEngine(load_causal_lm(source, "cpu", "auto", False, 1), tokenizer)
    prompts = read_prompts(args.job, max(args.sizes))
    pairs = []
    for size in args.sizes:
        ratios = trials(engine, tokenizer, prompts, size, args.trials, args.max_new_tokens)
        print(f"B={size}: {len(ratios)} trials, ratio median {statistics.median(ratios):.3f} "
              f"mean {statistics.fmean(ratios):.3f}", flush=True)
        pairs += [(size - 1, r) for r in ratios]
    growth = sum(x * (r - 1) for x, r in pairs) / sum(x * x for x, _ in pairs)
    print(f"g = {growth:.3f} (ratio = 1 + g (B - 1))")


if __name__ == "__main__":
    main()
