"""Record true output lengths and prefill features of a job file with the real model.

Runs every line of a job JSONL (short form: "prompt" or "messages", "max_tokens", "stop") through
`SpeculativeEngine` (greedy, prompt-lookup drafting: the default configuration) one request at a
time, and writes one JSON line per request:

    {"custom_id", "arrival": 0.0, "prompt_tokens", "max_new_tokens", "output_tokens",
     "finish_reason", "has_stop", "is_chat", "prompt", "features": {codec blob},
     "rounds": [[drafted, accepted, seconds, draft_seconds], ...]}

which is a timing log as far as `hf_laps.replay.traces` and the `hidden` predictor's
history are concerned. With `--layers PATH` it also writes, per request, the projected
last-prompt-token state of EVERY layer (embedding output, each decoder layer; the last is the
LM head's input), from one extra forward with output_hidden_states=True: the layer study that
chose hf_laps.engine.features.DEFAULT_LAYER_FRACTION. Lines already in the output are skipped, so an
interrupted run resumes. With `--prefill-only` nothing is generated: each job line carries
"reference_tokens" (a dataset reply's length, the serving-benchmark convention) and only the
prefill runs, for a large, cheap study of how well the features predict someone else's length.

    OMP_NUM_THREADS=1 python benchmarks/record_features.py benchmarks/data/natural.jsonl \\
        benchmarks/data/natural.features.jsonl --layers benchmarks/data/natural.layers.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hf_laps.engine.speculative import SpeculativeEngine
from hf_laps.engine.features import projection_matrix
from hf_laps.models.loading import embedded_source, load_causal_lm, load_tokenizer
from hf_laps.scheduling.predictors.feature_codec import encode_features

HIDDEN_CAP = 4096   # --prefill-only: the cap every request shows the predictor (carries nothing)


def done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with open(path, encoding="utf-8") as handle:
        return {json.loads(line)["custom_id"] for line in handle if line.strip()}


def prompt_text(line: dict, tokenizer) -> str:
    if line.get("messages"):
        return tokenizer.apply_chat_template(line["messages"], tokenize=False, add_generation_prompt=True)
    return line["prompt"]


def record(engine: SpeculativeEngine, line: dict, prefill_only: bool = False) -> dict:
    if prefill_only:
        return record_prefill(engine, line)
    text = prompt_text(line, engine.tokenizer)
    kwargs = {"max_new_tokens": int(line["max_tokens"]), "do_sample": False}
    if line.get("stop"):
        kwargs["stop_strings"] = list(line["stop"])
    state = engine.start(text, request_id=line["custom_id"], **kwargs)
    rounds = []
    while not state.finished:
        result = engine.step(state)
        rounds.append([result.drafted, result.accepted, round(result.seconds, 6),
                       round(result.draft_seconds, 6)])
    return {
        "custom_id": line["custom_id"], "arrival": 0.0, "prompt_tokens": state.prompt_len,
        "max_new_tokens": int(line["max_tokens"]), "output_tokens": state.num_generated,
        "finish_reason": state.finish_reason, "has_stop": bool(line.get("stop")),
        "is_chat": bool(line.get("messages")), "prompt": text,
        "features": encode_features(state.features, state.features_model)
        if state.features is not None else None,
        "rounds": rounds,
    }


def record_prefill(engine: SpeculativeEngine, line: dict) -> dict:
    """Features of one prefill round; the true length is the line's reference reply length
    ("reference_tokens"), the cap the scheduler would see is hidden (a constant)."""
    text = prompt_text(line, engine.tokenizer)
    state = engine.start(text, request_id=line["custom_id"], max_new_tokens=1, do_sample=False)
    engine.step(state)
    return {
        "custom_id": line["custom_id"], "arrival": 0.0, "prompt_tokens": state.prompt_len,
        "max_new_tokens": HIDDEN_CAP, "output_tokens": int(line["reference_tokens"]),
        "has_stop": bool(line.get("stop")), "is_chat": bool(line.get("messages")), "prompt": text,
        "features": encode_features(state.features, state.features_model),
    }


@torch.no_grad()
def every_layer(engine: SpeculativeEngine, text: str) -> list[dict]:
    """Projected last-token state of each hidden_states entry (same recipe as features.py)."""
    ids = engine.tokenizer(text, return_tensors="pt").input_ids
    out = engine.model(input_ids=ids, output_hidden_states=True, logits_to_keep=1)
    recipe = engine.features.config
    projection = projection_matrix(out.hidden_states[0].shape[-1], recipe.dim, recipe.seed)
    blobs = []
    for index, hidden in enumerate(out.hidden_states):
        row = hidden[0, -1].float()
        row = row / row.pow(2).mean().sqrt().clamp_min(1e-12)
        blobs.append(encode_features((row @ projection).tolist(), f"hidden_states[{index}]"))
    return blobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=Path, default=None, help="also write every layer's projection")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--prefill-only", action="store_true",
                        help="no generation: the true length is each line's reference_tokens")
    parser.add_argument("--shard", default="0/1", help="i/n: only lines i, i+n, ... (parallel runs)")
    args = parser.parse_args()
    source = embedded_source()
    engine = SpeculativeEngine(load_causal_lm(source, "cpu", "float32"), load_tokenizer(source))
    with open(args.jobs, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()][: args.limit]
    skip = done_ids(args.out)
    shard, shards = (int(part) for part in args.shard.split("/"))
    for number, line in enumerate(lines, 1):
        if line["custom_id"] in skip or (number - 1) % shards != shard:
            continue
        result = record(engine, line, args.prefill_only)
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result, ensure_ascii=False) + "\n")
        if args.layers is not None:
            layers = every_layer(engine, result["prompt"])
            with open(args.layers, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"custom_id": line["custom_id"], "layers": layers}) + "\n")
        print(f"{number}/{len(lines)} {line['custom_id']}: {result['output_tokens']} tokens "
              f"({result.get('finish_reason', 'reference')})", flush=True)


if __name__ == "__main__":
    main()
