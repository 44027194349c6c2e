"""Build benchmarks/data/natural.jsonl: real prompts with per-request caps and stop strings.

"Natural lengths": the caps are set as batch users set them, and the model decides where it
stops (EOS, a stop string or the cap), so output lengths come from the model, not from the cap.

| part    | source (installed data package, read as files)     | shape                   | cap (tokens)        |
|---------|-----------------------------------------------------|-------------------------|---------------------|
| qa      | ShareGPT first turns of <= 120 chars ending in "?" | chat                    | one of 16/32/48/64  |
| code    | HumanEval function prompts                          | completion, stop strings| one of 128/256      |
| chat    | other ShareGPT first turns                          | chat                    | one of 64/128/256   |
| writing | WritingBench English prompts                        | chat                    | one of 192/256      |

60 of each, shuffled; everything is drawn from random.Random(f"natural:{seed}"), so a seed always
gives the same file. Code completions stop at the next top-level statement, the convention of
HumanEval's own evaluation (the Codex paper's stop sequences).

    python benchmarks/make_natural_workload.py [--per-part 60] [--seed 0] [--out PATH]
"""
from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

from hf_laps import workloads

CODE_STOPS = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"]
CAPS = {"qa": (16, 32, 48, 64), "code": (128, 256), "chat": (64, 128, 256), "writing": (192, 256)}
QA_MAX_CHARS = 120
DEFAULT_OUT = Path(__file__).parent / "data" / "natural.jsonl"


def qa_and_chat_items() -> tuple[list[dict], list[dict]]:
    """ShareGPT first turns split into short questions and everything else."""
    qa, chat = [], []
    for item in workloads.chat_items():
        text = item["messages"][0]["content"]
        short_question = len(text) <= QA_MAX_CHARS and text.rstrip().endswith("?")
        (qa if short_question else chat).append(
            {"custom_id": item["custom_id"].replace("chat-", "qa-" if short_question else "chat-", 1),
             "messages": item["messages"]})
    return qa, chat


def code_items() -> list[dict]:
    """HumanEval prompts as plain completions (the model continues the function body)."""
    path = workloads.package_dir("code") / workloads.HUMANEVAL_FILE
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        tasks = [json.loads(line) for line in handle]
    return [{"custom_id": f"code-{t['task_id']}", "prompt": t["prompt"], "stop": CODE_STOPS}
            for t in tasks]


def writing_items() -> list[dict]:
    return [{"custom_id": i["custom_id"], "messages": i["messages"]} for i in workloads.writing_items()]


def build(per_part: int, seed: int) -> list[dict]:
    rng = random.Random(f"natural:{seed}")
    qa, chat = qa_and_chat_items()
    parts = {"qa": qa, "code": code_items(), "chat": chat, "writing": writing_items()}
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
    parser.add_argument("--per-part", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    lines = build(args.per_part, args.seed)
    workloads.write_jsonl(lines, args.out)
    print(f"wrote {len(lines)} requests to {args.out}")


if __name__ == "__main__":
    main()
