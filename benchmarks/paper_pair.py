"""The paper's model pair for benchmarks/gpu.sh: LLaMA-7B target, LLaMA-68M draft.

    python benchmarks/paper_pair.py models OUT_DIR [--scale paper|tiny] [--device cuda]
        -> prints "TARGET_DIR DRAFT_DIR SOURCE" (SOURCE: real | random)
    python benchmarks/paper_pair.py round-times TIMING_LOG [TIMING_LOG ...]
        -> per-round draft / verify seconds (medians), switch seconds per resume
    python benchmarks/paper_pair.py batched [--scale paper|tiny] [--device cuda] [--dtype float16] [BENCH OPTIONS]
        -> the batched-rounds table (benchmarks.batched) on the random-weight pair built in
           memory (nothing written to disk); BENCH OPTIONS are that benchmark's (--limit, --sizes, ...)

`models` first tries the real weights (meta-llama/Llama-2-7b-hf, JackFram/llama-68m) from the
hub or the local cache. When they cannot be had (no network, gated repo), it writes two model
directories with the SAME SHAPES and random weights, and says so: then every time measured is
real, but acceptance is that of two unrelated random models (near 0), so the policy table shows
the mechanics and the costs, not LAPS-SD's benefit. The random pair uses the embedded SmolLM2
tokenizer (vocab 49,152 instead of LLaMA's 32,000: the embedding and LM head are 1.5x larger).
`--scale tiny` builds the same structure at toy size (for the CPU test of gpu.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

HUB_TARGET, HUB_DRAFT = "meta-llama/Llama-2-7b-hf", "JackFram/llama-68m"
# LLaMA-7B and LLaMA-68M (JackFram/llama-68m) shapes
SHAPES = {
    "paper": {"target": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                             num_key_value_heads=32, max_position_embeddings=4096),
              "draft": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=2, num_attention_heads=12,
                            num_key_value_heads=12, max_position_embeddings=2048)},
    "tiny": {"target": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=4, max_position_embeddings=1024),
             "draft": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, max_position_embeddings=1024)},
}


def real_pair(out: Path) -> tuple[str, str] | None:
    """Hub snapshots of the real pair, or None when they cannot be downloaded."""
    try:
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model"]
        target = snapshot_download(HUB_TARGET, allow_patterns=patterns, cache_dir=out / "hub")
        draft = snapshot_download(HUB_DRAFT, allow_patterns=patterns, cache_dir=out / "hub")
        return target, draft
    except Exception as exc:  # offline, gated, no token: fall back to random weights
        print(f"real weights unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})", file=sys.stderr)
        return None


def random_model(shape: dict, tokenizer, device: str, dtype, seed: int):
    """A LlamaForCausalLM of `shape` with random weights, initialised where it will run (7B on a
    CPU takes minutes) and directly in `dtype` (7B in fp32 would need 27 GB first)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False, torch_dtype="bfloat16", **shape)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def random_dir(path: Path, shape: dict, tokenizer, device: str, seed: int) -> str:
    import torch

    if (path / "config.json").is_file():
        return str(path)  # built by an earlier run
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = random_model(shape, tokenizer, device, dtype, seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    del model
    return str(path)


def models(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pair = None if args.scale == "tiny" or args.random else real_pair(out)
    source = "real"
    if pair is None:
        from hf_laps.models.loading import embedded_source, load_tokenizer

        tokenizer = load_tokenizer(embedded_source())
        shapes = SHAPES[args.scale]
        pair = (random_dir(out / f"target-{args.scale}", shapes["target"], tokenizer, args.device, 0),
                random_dir(out / f"draft-{args.scale}", shapes["draft"], tokenizer, args.device, 1))
        source = "random"
    print(pair[0], pair[1], source)


def round_times(args) -> None:
    """Median per-round draft / verify seconds and switch seconds per preemption of timing logs."""
    for path in args.logs:
        records = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        rounds = [r for rec in records for r in rec["rounds"][1:]]  # the first round includes the prefill
        prefill = [rec["rounds"][0][2] for rec in records if rec["rounds"]]
        draft = [r[3] for r in rounds if len(r) > 3]
        verify = [r[2] - (r[3] if len(r) > 3 else 0.0) for r in rounds]
        resumes = sum(rec.get("preemptions", 0) for rec in records)
        switch = sum(rec.get("switch_seconds", 0.0) for rec in records)
        accepted = [r[1] for r in rounds if r[0] > 0]
        med = lambda xs: 1000 * statistics.median(xs) if xs else float("nan")
        print(f"{os.path.basename(path)}: {len(records)} requests, {len(rounds)} rounds; median ms per round: "
              f"draft {med(draft):.2f}, verify {med(verify):.2f}, round {med([r[2] for r in rounds]):.2f}, "
              f"first round (prefill) {med(prefill):.1f}; accepted per round {statistics.fmean(accepted) if accepted else 0:.2f}; "
              f"switch {1000 * switch / resumes if resumes else 0.0:.2f} ms per preemption ({resumes} preemptions)")


def batched(args, bench_argv: list[str]) -> None:
    """The batched benchmark on the random-weight pair of `args.scale`, built in memory. Random
    weights never meet EOS early, so every request runs to its cap (`--lengths cap`)."""
    import torch
    from benchmarks.batched.__main__ import bench, parse_args
    from hf_laps.models.loading import embedded_source, load_tokenizer

    options = parse_args(bench_argv + ["--device", args.device, "--lengths", "cap"])
    torch.set_num_threads(options.threads)
    tokenizer = load_tokenizer(embedded_source())
    dtype = getattr(torch, args.dtype)
    shapes = SHAPES[args.scale]
    target = random_model(shapes["target"], tokenizer, args.device, dtype, 0)
    draft = random_model(shapes["draft"], tokenizer, args.device, dtype, 1)
    print(f"# RANDOM weights, {args.scale} shapes (target {shapes['target']['num_hidden_layers']} layers x "
          f"{shapes['target']['hidden_size']}, draft {shapes['draft']['num_hidden_layers']} x "
          f"{shapes['draft']['hidden_size']}), {args.dtype}: times are real, acceptance is that of two "
          f"unrelated random models (~0)", flush=True)
    bench(options, target, draft, tokenizer, log=lambda text: print(text, flush=True))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("models")
    m.add_argument("out")
    m.add_argument("--scale", choices=sorted(SHAPES), default="paper")
    m.add_argument("--device", default="cuda")
    m.add_argument("--random", action="store_true", help="skip the hub, use random weights")
    r = sub.add_parser("round-times")
    r.add_argument("logs", nargs="+")
    b = sub.add_parser("batched", help="the batched benchmark on the random pair; other options go to it")
    b.add_argument("--scale", choices=sorted(SHAPES), default="paper")
    b.add_argument("--device", default="cuda")
    b.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    args, rest = parser.parse_known_args(argv)
    if args.command == "batched":
        batched(args, rest)
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    else:
        (models if args.command == "models" else round_times)(args)


if __name__ == "__main__":
    main()
