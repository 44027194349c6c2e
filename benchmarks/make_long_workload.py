"""Build benchmarks/data/long.jsonl: long caps (512-1024) and prompt sources no other recording uses.

The third recording of the cross-workload study (docs/studies/cross-workload.md): nothing in it
was seen while the policies and predictors were designed, and its caps are 2-8x the natural
recording's, so a predictor that leans on the cap or on the kind of prompt is caught out.

| part   | source (inspect-evals data files, read as files)         | shape | cap (tokens)  |
|--------|-----------------------------------------------------------|-------|---------------|
| advice | PersistBench user queries (menus, plans, recommendations) | chat  | one of 768/1024 |
| fact   | FreshQA questions (short factual, some false-premise)     | chat  | 512           |
| shell  | AgentBench OS tasks ("tell me how many ...", shell work)  | chat  | one of 512/768 |

The same drawing rule as make_natural_workload.py: random.Random(f"long:{seed}") picks each
part's prompts and caps, then the lines are shuffled. MBPP, the paper's code set, is not
installable here (no hub access); AgentBench's shell tasks stand in as the code-like part.

    python benchmarks/make_long_workload.py [--per-part 10] [--seed 0] [--out PATH]
"""
from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

from hf_laps import workloads

CAPS = {"advice": (768, 1024), "fact": (512,), "shell": (512, 768)}
PERSIST_FILE = "persistbench/benchmark_samples/beneficial_samples.jsonl"
FRESHQA_FILE = "abstention_bench/data/freshqa/FreshQA_v12182024.csv"
AGENTBENCH_FILE = "agent_bench/data/agent_bench_os_test.json"
DEFAULT_OUT = Path(__file__).parent / "data" / "long.jsonl"


def chat(custom_id: str, text: str) -> dict:
    return {"custom_id": custom_id, "messages": [{"role": "user", "content": text.strip()}]}


def advice_items(root: Path) -> list[dict]:
    with open(root / PERSIST_FILE, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    # Queries repeat across samples (one query, several memory sets): keep each text once.
    texts = sorted({row["query"] for row in rows})
    return [chat(f"advice-{n}", text) for n, text in enumerate(texts)]


def fact_items(root: Path) -> list[dict]:
    with open(root / FRESHQA_FILE, encoding="utf-8", newline="") as handle:
        lines = handle.readlines()
    # The file opens with a warning row and a blank row before the header.
    header_at = next(n for n, line in enumerate(lines) if line.startswith("id,split,question"))
    rows = csv.DictReader(lines[header_at:])
    return [chat(f"fact-{row['id']}", row["question"]) for row in rows if row["question"].strip()]


def shell_items(root: Path) -> list[dict]:
    with open(root / AGENTBENCH_FILE, encoding="utf-8") as handle:
        tasks = json.load(handle)
    return [chat(f"shell-{task['id']}", task["description"]) for task in tasks]


def build(per_part: int, seed: int) -> list[dict]:
    rng = random.Random(f"long:{seed}")
    root = workloads.package_dir("writing")  # inspect-evals: the package that holds all three
    parts = {"advice": advice_items(root), "fact": fact_items(root), "shell": shell_items(root)}
    lines = []
    for name, items in parts.items():
        if len(items) < per_part:
            raise SystemExit(f"part {name!r} has {len(items)} prompts; asked for {per_part}")
        for item in rng.sample(items, per_part):
            lines.append({**item, "max_tokens": rng.choice(CAPS[name])})
    rng.shuffle(lines)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-part", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    lines = build(args.per_part, args.seed)
    workloads.write_jsonl(lines, args.out)
    print(f"wrote {len(lines)} requests to {args.out}")


if __name__ == "__main__":
    main()
