"""What the prefill features cost: the first round of one request with and without them.

Interleaves `--reps` prefill rounds of the same prompt on two engines sharing one model (features
on / off) and prints the median and minimum seconds of each and their ratio; also the cost of
output_hidden_states=True (every layer kept) for comparison.

    OMP_NUM_THREADS=1 python benchmarks/feature_cost.py [--reps 15] [--prompt-tokens 200]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_laps.engine.speculative import SpeculativeEngine
from hf_laps.models.loading import embedded_source, load_causal_lm, load_tokenizer


def prefill_seconds(engine: SpeculativeEngine, ids: list[int]) -> float:
    state = engine.start(ids, max_new_tokens=2, do_sample=False)
    start = time.perf_counter()
    engine.step(state)
    return time.perf_counter() - start


@torch.no_grad()
def all_layers_seconds(model, ids: list[int]) -> float:
    start = time.perf_counter()
    model(input_ids=torch.tensor([ids]), output_hidden_states=True, logits_to_keep=1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--prompt-tokens", type=int, default=200)
    args = parser.parse_args()
    source = embedded_source()
    model, tokenizer = load_causal_lm(source, "cpu", "float32"), load_tokenizer(source)
    text = "Explain how a hash map works, with an example in Python. " * 40
    ids = tokenizer(text).input_ids[: args.prompt_tokens]
    engines = {"features on": SpeculativeEngine(model, tokenizer),
               "features off": SpeculativeEngine(model, tokenizer, features=False)}
    times = {name: [] for name in engines} | {"output_hidden_states": []}
    for _ in range(args.reps):
        for name, engine in engines.items():
            times[name].append(prefill_seconds(engine, ids))
        times["output_hidden_states"].append(all_layers_seconds(model, ids))
    base = statistics.median(times["features off"])
    for name, values in times.items():
        print(f"{name:22s} median {statistics.median(values) * 1e3:7.1f} ms  min {min(values) * 1e3:7.1f} ms"
              f"  median ratio to off {statistics.median(values) / base:.3f}")


if __name__ == "__main__":
    main()
