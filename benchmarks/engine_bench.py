"""Engine benchmark: seconds per generated token, SpeculativeEngine vs transformers' generate.

Same models, same prompts, same greedy tokens, interleaved repetitions (HF, ours, HF, ours...)
so machine drift hits both sides alike. Prints per-side median seconds per token, the ratio
ours / HF (goal <= 0.90 on CPU for a draft model: transformers runs a whole nested
`assistant_model.generate()` every round, ~2 ms of Python we do not), and the mean accepted
length (tokens per target forward).

    python -m benchmarks.engine_bench                       # tiny random Llama pair, CPU
    python -m benchmarks.engine_bench --pair embedded       # SmolLM2-135M + prompt lookup
    python -m benchmarks.engine_bench --pair hub --model meta-llama/Llama-2-7b-hf \\
        --assistant JackFram/llama-68m --device cuda     # the paper's pair on a GPU
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

from hf_laps.engine.speculative import EngineConfig, SpeculativeEngine
from hf_laps.metrics import mean_acceptance_length

PROMPT_TEXTS = [
    "Repeat the following text exactly: The committee met on Tuesday to review the budget and "
    "agreed to increase funding for the library.",
    "List the planets of the solar system in order from the sun.",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Write a short story about a robot who learns to paint.",
]


def tiny_pair(seed: int = 0):
    """A random 8-layer Llama target and its own first 2 layers as the draft (shared weights).

    The embedding is scaled up so the residual stream is dominated by the token embedding; the
    2-layer prefix then agrees with the full model often enough to give a realistic mix of
    accepted lengths. No download needed.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=1024, hidden_size=256, intermediate_size=688, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024,
        bos_token_id=0, eos_token_id=1023, pad_token_id=0,
    )
    target = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        target.model.embed_tokens.weight.mul_(30.0)
    draft_config = copy.deepcopy(config)
    draft_config.num_hidden_layers = 2
    draft = LlamaForCausalLM(draft_config).eval()
    draft.load_state_dict(target.state_dict(), strict=False)
    generator = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(2, 1000, (n,), generator=generator).tolist() for n in (24, 40, 16, 32)]
    return target, draft, None, prompts


def load_pair(args):
    from hf_laps.models.loading import load_causal_lm, load_tokenizer, resolve_source

    if args.pair == "tiny":
        return tiny_pair()
    source = resolve_source(None if args.pair == "embedded" else args.model)
    target = load_causal_lm(source, args.device, args.dtype)
    tokenizer = load_tokenizer(source)
    draft = None
    if args.pair == "hub" and args.assistant:
        draft = load_causal_lm(resolve_source(args.assistant), args.device, args.dtype)
    prompts = []
    for text in PROMPT_TEXTS:
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        prompts.append(tokenizer(text).input_ids)
    return target, draft, tokenizer, prompts


def hf_generate(target, draft, prompt, args):
    ids = torch.tensor([prompt], device=target.device)
    kwargs = dict(do_sample=False, max_new_tokens=args.max_new_tokens)
    if draft is not None:
        # pin transformers' draft to a fixed n, as ours (it adapts and leaks otherwise)
        draft.generation_config.num_assistant_tokens = args.n
        draft.generation_config.num_assistant_tokens_schedule = "constant"
        draft.generation_config.assistant_confidence_threshold = 0.0
        kwargs["assistant_model"] = draft
    else:
        kwargs["prompt_lookup_num_tokens"] = args.n
    return target.generate(ids, **kwargs)[0, len(prompt):].tolist()


def ours_generate(engine, prompt, args):
    state = engine.generate(prompt, do_sample=False, max_new_tokens=args.max_new_tokens)
    return state.output_ids, state.metrics


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    target, draft, tokenizer, prompts = load_pair(args)
    config = EngineConfig(draft_length=args.n)
    engine = SpeculativeEngine(target, tokenizer, assistant_model=draft, config=config)
    hf_times, our_times, steps, accepted, mismatches = [], [], 0, 0, 0
    for prompt in prompts:  # warm-up, and the exactness check
        hf_tokens = hf_generate(target, draft, prompt, args)
        our_tokens, _ = ours_generate(engine, prompt, args)
        mismatches += hf_tokens != our_tokens
    for rep in range(args.repeats):
        for prompt in prompts:
            order = ("hf", "ours") if rep % 2 == 0 else ("ours", "hf")
            for side in order:
                if side == "hf":
                    seconds, tokens = timed(lambda: hf_generate(target, draft, prompt, args))
                    hf_times.append(seconds / len(tokens))
                else:
                    seconds, (tokens, metrics) = timed(lambda: ours_generate(engine, prompt, args))
                    our_times.append(seconds / len(tokens))
                    steps += metrics.num_spec_steps
                    accepted += metrics.num_accepted_draft_tokens
    # ratio of medians of per-(prompt, repeat) seconds per token
    hf_med, our_med = statistics.median(hf_times), statistics.median(our_times)
    return {
        "pair": args.pair,
        "draft": "model" if draft is not None else "prompt-lookup",
        "n": args.n,
        "device": args.device if args.device != "cpu" else f"cpu ({platform.processor() or platform.machine()}, {args.threads} threads)",
        "prompts": len(prompts),
        "repeats": args.repeats,
        "max_new_tokens": args.max_new_tokens,
        "hf_ms_per_token": 1000 * hf_med,
        "ours_ms_per_token": 1000 * our_med,
        "ratio": our_med / hf_med,
        "mean_acceptance_length": mean_acceptance_length(accepted, steps),
        "token_mismatches_vs_hf": mismatches,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", choices=["tiny", "embedded", "hub"], default="tiny")
    parser.add_argument("--model", default=None, help="target for --pair hub")
    parser.add_argument("--assistant", default=None, help="draft for --pair hub (omit for prompt lookup)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("-n", type=int, default=5, help="draft length")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    result = run(parser.parse_args(argv))
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
