"""KV bytes copied per batched round for rows that stay in the batch, and the round's seconds.

    OMP_NUM_THREADS=1 python benchmarks/kv_copies.py --rows 8,32 [--model tiny]

Runs B requests (prompts of ~150-250 tokens, greedy, prompt lookup n = 10) through `BatchedRound`:
one round in which every request joins, then `--rounds` rounds of the same rows. "moved" is
K/V that already existed, copied again (gathers, joins, buffer growth); "written" is the new
tokens' K/V. With this checkout's KV slots it reads `hf_laps.engine.batch_kv.COPIES`; run with
an older checkout first on PYTHONPATH (the packed layout of commit ac4e327, whose gather
concatenated every row's cache each round) and it counts that layout's copies by wrapping its
`_filled_layer` (the gather) and `_with_room` (a per-request buffer reallocation).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_laps import EngineConfig, SpeculativeEngine
from hf_laps.engine import batch_kv
from hf_laps.engine.batched_round import BatchedRound

TEXT = ("The committee met on a grey morning to decide how the river crossing should be rebuilt. "
        "Engineers argued for steel, historians for stone, and the mayor for whatever could be "
        "finished before the spring floods. ")


def counter():
    """() -> (moved, written) bytes so far, for either KV layout."""
    if hasattr(batch_kv, "COPIES"):
        batch_kv.COPIES.reset()
        return lambda: (batch_kv.COPIES.moved, batch_kv.COPIES.written)
    counts = {"moved": 0}
    gather, room = batch_kv._filled_layer, batch_kv._with_room

    def filled_layer(layers, size):
        counts["moved"] += sum(2 * l.keys.numel() * l.keys.element_size() for l in layers)
        return gather(layers, size)

    def with_room(tensor, capacity):
        counts["moved"] += tensor.numel() * tensor.element_size()
        return room(tensor, capacity)

    batch_kv._filled_layer, batch_kv._with_room = filled_layer, with_room
    return lambda: (counts["moved"], 0)


def load(name: str):
    if name == "tiny":
        import sys
        sys.path.insert(0, "tests")
        from tiny_models import tiny_target
        return tiny_target(max_position_embeddings=1024), None
    from hf_laps.models.loading import embedded_source, load_causal_lm, load_tokenizer
    source = embedded_source()
    return load_causal_lm(source, "cpu", "float32"), load_tokenizer(source)


def prompts(tokenizer, rows: int) -> list[list[int]]:
    words = (TEXT * 12).split()
    out = []
    for i in range(rows):
        text = " ".join(words[i % 7 : i % 7 + 110 + (i * 13) % 60])
        out.append(tokenizer(text).input_ids if tokenizer else [(7 * j + i) % 120 + 1 for j in range(150 + i % 60)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="8,32")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--model", default="embedded", choices=["embedded", "tiny"])
    args = parser.parse_args()
    model, tokenizer = load(args.model)
    engine = SpeculativeEngine(model, tokenizer, config=EngineConfig(draft_length=10), features=False)
    per_token = 2 * model.config.num_hidden_layers * model.config.num_key_value_heads * \
        (model.config.hidden_size // model.config.num_attention_heads) * 4
    with torch.no_grad():
        for rows in [int(r) for r in args.rows.split(",")]:
            states = [engine.start(p, request_id=f"r{i}", max_new_tokens=96, do_sample=False)
                      for i, p in enumerate(prompts(tokenizer, rows))]
            batcher = BatchedRound(engine)
            batcher.step(states)  # every request joins
            read = counter()
            seconds, moved, written = [], [], []
            for _ in range(args.rounds):
                before = read()
                started = time.perf_counter()
                batcher.step([s for s in states if not s.finished])
                seconds.append(time.perf_counter() - started)
                after = read()
                moved.append(after[0] - before[0])
                written.append(after[1] - before[1])
            context = statistics.mean(s.kv_len for s in states)
            print(f"B={rows}: mean context {context:.0f} tokens ({per_token} B/token); per round: "
                  f"moved {statistics.mean(moved) / 1e6:.2f} MB, written {statistics.mean(written) / 1e6:.3f} MB, "
                  f"median {statistics.median(seconds):.3f} s")


if __name__ == "__main__":
    main()
