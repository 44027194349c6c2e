"""Build benchmarks/data/sharegpt-ref.jsonl: ShareGPT first turns with their reference length.

Each line is {"custom_id", "messages", "reference_tokens"}: the first human turn and the token
count (embedded SmolLM2 tokenizer) of the gpt reply that followed it, the serving-benchmark
convention for "true" lengths. Prompts are English and at most 1,000 characters (a bounded
prefill cost); `count` of them are drawn with random.Random(f"sharegpt-ref:{seed}").
benchmarks/record_features.py --prefill-only adds the prefill features.

    python benchmarks/make_reference_workload.py [--count 300] [--seed 0] [--out PATH]
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from hf_laps import workloads
from hf_laps.models import embedded_source, load_tokenizer

DEFAULT_OUT = Path(__file__).parent / "data" / "sharegpt-ref.jsonl"


def build(count: int, seed: int) -> list[dict]:
    tokenizer = load_tokenizer(embedded_source())
    path = workloads.package_dir("chat") / workloads.SHAREGPT_FILE
    items = []
    for index, conversation in enumerate(workloads.iter_json_array(path)):
        if index >= workloads.CHAT_POOL:
            break
        turns = conversation.get("conversations") or []
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            continue
        prompt, reply = (turns[0].get("value") or "").strip(), (turns[1].get("value") or "").strip()
        if 8 <= len(prompt) <= 1000 and workloads.is_english(prompt) and reply:
            items.append((conversation.get("id", index), prompt, reply))
    chosen = random.Random(f"sharegpt-ref:{seed}").sample(items, count)
    return [{"custom_id": f"ref-{cid}", "messages": [{"role": "user", "content": prompt}],
             "reference_tokens": len(tokenizer(reply).input_ids)} for cid, prompt, reply in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    lines = build(args.count, args.seed)
    workloads.write_jsonl(lines, args.out)
    print(f"wrote {len(lines)} requests to {args.out}")


if __name__ == "__main__":
    main()
