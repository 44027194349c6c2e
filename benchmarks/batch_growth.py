"""How much a batched round costs over its rows' batch-1 rounds, measured side by side.

Runs the same requests (the first lines of a job, greedy, prompt-lookup drafting, fcfs) at
max_batch_size 1 and at each B, interleaved (1, B, 1, B, ... so the machine's drift hits both
alike), on the embedded model. Under greedy a request's rounds are the same at every B, so each
round of a B-row forward is matched with the same rounds run alone; per shared round:

    ratio = shared seconds / max(rows' batch-1 seconds)

and g fits ratio = 1 + g (B - 1) (least squares through the origin on B - 1): the growth per
extra row that `hf_laps.batch_cost.BatchFactor` uses when a replay has no batched recordings.

    OMP_NUM_THREADS=1 python benchmarks/batch_growth.py benchmarks/data/mixed-30.jsonl --requests 8 --sizes 2 4
"""
from __future__ import annotations

import argparse
import json
import statistics

from hf_laps import LapsGenerator
from hf_laps.batch_cost import batched_rounds, replay_rows
from hf_laps.models import embedded_source, load_causal_lm, load_tokenizer
from hf_laps.scheduling import Trace


def read_prompts(path: str, count: int) -> list[tuple[str, object]]:
    with open(path, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()][:count]
    return [(line["custom_id"], line.get("messages") or line.get("prompt")) for line in lines]


def run(model, tokenizer, prompts, batch_size: int, max_new_tokens: int) -> list[Trace]:
    gen = LapsGenerator(model, tokenizer=tokenizer, policy="fcfs", max_batch_size=batch_size, progress=False)
    subs = [gen.submission(cid, prompt, {"max_new_tokens": max_new_tokens, "do_sample": False})
            for cid, prompt in prompts]
    return [Trace.from_record(c.record) for c in gen.stream(subs)]


def ratios(batched: list[Trace], alone: list[Trace]) -> list[tuple[int, float]]:
    """(rows, shared / max(rows' batch-1 seconds)) for every shared round whose rows all match."""
    solo = {(row.trace.custom_id, row.k): row.record for t in alone for row in replay_rows(t)}
    out = []
    for rows in batched_rounds(batched):
        matched = [solo.get((r.trace.custom_id, r.k)) for r in rows]
        if all(m is not None and (m.drafted, m.accepted) == (r.record.drafted, r.record.accepted)
               for m, r in zip(matched, rows)):
            out.append((len(rows), rows[0].record.seconds / max(m.seconds for m in matched)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("job")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    source = embedded_source()
    model, tokenizer = load_causal_lm(source, "cpu", "auto", False, 1), load_tokenizer(source)
    prompts = read_prompts(args.job, args.requests)
    pairs: list[tuple[int, float]] = []
    for _ in range(args.repeats):
        for size in args.sizes:
            alone = run(model, tokenizer, prompts, 1, args.max_new_tokens)
            pairs += ratios(run(model, tokenizer, prompts, size, args.max_new_tokens), alone)
    for rows in sorted({b for b, _ in pairs}):
        rs = [r for b, r in pairs if b == rows]
        print(f"{rows} rows: {len(rs)} shared rounds, ratio mean {statistics.mean(rs):.3f} "
              f"median {statistics.median(rs):.3f}")
    pairs = [(b - 1, r) for b, r in pairs]
    growth = sum(x * (r - 1) for x, r in pairs) / sum(x * x for x, _ in pairs)
    print(f"g = {growth:.3f} (ratio = 1 + g (B - 1))")


if __name__ == "__main__":
    main()
