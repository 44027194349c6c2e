"""Build the reference-length workloads: prompts whose "true" length is a dataset reference reply.

The serving-benchmark convention: a request's length is the length of the reply the dataset
gives for it, counted with the embedded SmolLM2 tokenizer. Two files:

* `sharegpt-ref` (default; benchmarks/data/sharegpt-ref.jsonl): `count` ShareGPT first turns,
  each {"custom_id", "messages", "reference_tokens"}, for the PREFILL-ONLY feature study
  (benchmarks/record_features.py --prefill-only);
* `reference` (benchmarks/data/reference.jsonl): `per_source` prompts from each of ShareGPT,
  HumanEval and WritingBench, shuffled, each a job line {"custom_id", "messages", "max_tokens",
  "reference_tokens"} with max_tokens = min(reference_tokens, --cap): recorded for real
  (benchmarks/record_features.py, no --prefill-only), then replayed with the cap HIDDEN from
  the scheduler (`hf_laps.replay.scenarios.load_recording(..., hidden_cap=4096)`, `hf-laps bench --hide-cap`).

Reference replies per source:
  - ShareGPT: the gpt turn that followed the first human turn (prompt English, 8-1000 chars);
  - HumanEval: the complete function, prompt + canonical_solution (the instruction asks for the
    complete function only);
  - WritingBench has no reference replies; its prompts that state a length ("in 800 words")
    carry one: 4/3 tokens per requested word (English BPE averages ~0.75 words per token).
    Only those prompts (English, 400-4000 chars) are used.
Everything is drawn from random.Random(f"{name}:{seed}"), so a seed always gives the same file.

    python benchmarks/make_reference_workload.py [--workload sharegpt-ref|reference]
        [--count 300] [--per-source 30] [--cap 384] [--seed 0] [--out PATH]
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from pathlib import Path

from hf_laps import workloads
from hf_laps.models.loading import embedded_source, load_tokenizer

DATA = Path(__file__).parent / "data"
DEFAULT_OUT = {"sharegpt-ref": DATA / "sharegpt-ref.jsonl", "reference": DATA / "reference.jsonl"}
TOKENS_PER_WORD = 4 / 3
# "in 800 words", "about 1,500 words", "800-1000 words" (the upper bound of a range is taken)
WORD_COUNT = re.compile(r"(\d[\d,]*)\s*(?:-|to|–)?\s*(\d[\d,]*)?\s*words?\b", re.IGNORECASE)


def sharegpt_items(tokenizer, max_prompt_chars: int = 1000) -> list[dict]:
    """ShareGPT first turns (English, 8..max chars) with the token count of the gpt reply."""
    path = workloads.package_dir("chat") / workloads.SHAREGPT_FILE
    items = []
    for index, conversation in enumerate(workloads.iter_json_array(path)):
        if index >= workloads.CHAT_POOL:
            break
        turns = conversation.get("conversations") or []
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            continue
        prompt, reply = (turns[0].get("value") or "").strip(), (turns[1].get("value") or "").strip()
        if 8 <= len(prompt) <= max_prompt_chars and workloads.is_english(prompt) and reply:
            items.append({"custom_id": f"ref-{conversation.get('id', index)}",
                          "messages": [{"role": "user", "content": prompt}],
                          "reference_tokens": len(tokenizer(reply).input_ids)})
    return items


def humaneval_items(tokenizer) -> list[dict]:
    """HumanEval tasks as chat requests; the reference reply is the complete function."""
    path = workloads.package_dir("code") / workloads.HUMANEVAL_FILE
    items = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            task = json.loads(line)
            content = f"{workloads.CODE_INSTRUCTION}```python\n{task['prompt']}```"
            reply = task["prompt"] + task["canonical_solution"]
            items.append({"custom_id": f"code-{task['task_id']}",
                          "messages": [{"role": "user", "content": content}],
                          "reference_tokens": len(tokenizer(reply).input_ids)})
    return items


def requested_words(text: str) -> int | None:
    """The length a prompt asks for, in words (the larger bound of a range), or None."""
    match = WORD_COUNT.search(text)
    if match is None:
        return None
    bound = match.group(2) or match.group(1)
    words = int(bound.replace(",", ""))
    return words if words > 0 else None


def writingbench_items() -> list[dict]:
    """WritingBench English prompts that state a length; reference = 4/3 tokens per word."""
    items = []
    for item in workloads.writing_items():
        words = requested_words(item["messages"][0]["content"])
        if words is not None:
            items.append({**item, "reference_tokens": round(words * TOKENS_PER_WORD)})
    return items


def build_sharegpt_ref(count: int, seed: int) -> list[dict]:
    items = sharegpt_items(load_tokenizer(embedded_source()))
    return random.Random(f"sharegpt-ref:{seed}").sample(items, count)


def build_reference(per_source: int, seed: int, cap: int) -> list[dict]:
    """`per_source` prompts of each source, max_tokens = min(reference length, cap), shuffled."""
    tokenizer = load_tokenizer(embedded_source())
    rng = random.Random(f"reference:{seed}")
    sources = {"sharegpt": sharegpt_items(tokenizer), "humaneval": humaneval_items(tokenizer),
               "writingbench": writingbench_items()}
    lines = []
    for name, items in sources.items():
        if len(items) < per_source:
            raise SystemExit(f"source {name!r} has {len(items)} prompts; asked for {per_source}")
        for item in rng.sample(items, per_source):
            lines.append({"custom_id": item["custom_id"], "messages": item["messages"],
                          "max_tokens": min(item["reference_tokens"], cap),
                          "reference_tokens": item["reference_tokens"]})
    rng.shuffle(lines)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(DEFAULT_OUT), default="sharegpt-ref")
    parser.add_argument("--count", type=int, default=300, help="sharegpt-ref: requests")
    parser.add_argument("--per-source", type=int, default=30, help="reference: requests per source")
    parser.add_argument("--cap", type=int, default=384, help="reference: largest max_tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.workload == "reference":
        lines = build_reference(args.per_source, args.seed, args.cap)
    else:
        lines = build_sharegpt_ref(args.count, args.seed)
    out = args.out or DEFAULT_OUT[args.workload]
    workloads.write_jsonl(lines, out)
    print(f"wrote {len(lines)} requests to {out}")


if __name__ == "__main__":
    main()
