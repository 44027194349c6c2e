"""Which transformers generation options hf-laps honours, and a clear error for the rest.

Every `GenerationConfig` field falls in one of these groups; a field in none of them (and any
other name, such as a typo or `streamer`) is a ValueError before anything runs, so an option
that would change the result is never silently dropped:

- HONOURED: applied as `generate` applies them (the engine lets transformers build the logits
  processors and stopping criteria from them).
- DRAFT_LENGTH: transformers' names for the draft length n, honoured per call.
- `num_return_sequences`: n sampled requests per prompt (`LapsGenerator.generate`).
- NEUTRAL: accepted and without effect on the tokens (cache, compilation, the drafting
  strategy's other knobs, beam-only settings that are inert without beams).
- REFUSED: result-changing modes hf-laps does not run (beam search, scores in a return dict,
  ...). Their off value (e.g. `num_beams=1`, `output_scores=False`) is accepted, so a model's own
  `generation_config` still passes.
"""
from __future__ import annotations

from typing import Any

HONOURED = frozenset({
    "max_length", "max_new_tokens", "min_length", "min_new_tokens", "max_time", "stop_strings",
    "do_sample", "temperature", "top_k", "top_p", "min_p", "top_h", "typical_p", "epsilon_cutoff",
    "eta_cutoff", "repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size",
    "bad_words_ids", "renormalize_logits", "forced_bos_token_id", "forced_eos_token_id",
    "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "sequence_bias", "watermarking_config", "pad_token_id", "bos_token_id",
    "eos_token_id",
})
DRAFT_LENGTH = ("num_assistant_tokens", "prompt_lookup_num_tokens")  # draft model, prompt lookup
NEUTRAL = frozenset({
    "use_cache", "cache_implementation", "cache_config", "max_cache_len", "compile_config",
    "disable_compile", "low_memory", "prefill_chunk_size", "is_assistant",
    "num_assistant_tokens_schedule", "assistant_confidence_threshold", "max_matching_ngram_size",
    "assistant_lookbehind", "target_lookbehind", "early_stopping", "length_penalty",
    "encoder_no_repeat_ngram_size", "decoder_start_token_id",
})
# field -> (its off values, what it would have asked for)
REFUSED: dict[str, tuple[tuple, str]] = {
    "num_beams": ((1,), "beam search"),
    "num_beam_groups": ((1,), "group beam search"),
    "diversity_penalty": ((0.0,), "group beam search"),
    "constraints": ((), "constrained beam search"),
    "force_words_ids": ((), "constrained beam search"),
    "penalty_alpha": ((0.0,), "contrastive search"),
    "dola_layers": ((), "DoLa decoding"),
    "guidance_scale": ((1.0,), "classifier-free guidance"),
    "token_healing": ((False,), "token healing"),
    "output_scores": ((False,), "per-step scores"),
    "output_logits": ((False,), "per-step logits"),
    "output_attentions": ((False,), "attentions"),
    "output_hidden_states": ((False,), "hidden states"),
    "return_dict_in_generate": ((False,), "a GenerateOutput dict"),
}
# generate() arguments besides GenerationConfig fields that a request can use
REQUEST_ARGUMENTS = frozenset({"logits_processor", "stopping_criteria", "prefix_allowed_tokens_fn", "seed"})


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """`options` minus the refused fields left at their off value.

    Raises:
        ValueError: a refused field set to change the result (named, with what it asks for), or
            a name hf-laps does not use at all (a typo, `streamer`, ...).
    """
    refused = {name: value for name, value in options.items() if name in REFUSED and value not in (None, *REFUSED[name][0])}
    if refused:
        wanted = ", ".join(f"{name}={value!r} ({REFUSED[name][1]})" for name, value in sorted(refused.items()))
        raise ValueError(f"hf-laps runs greedy or sampled speculative decoding only and cannot honour {wanted}; "
                         "leave these options out (docs/python-api.md lists what is honoured)")
    known = HONOURED | NEUTRAL | REQUEST_ARGUMENTS | set(DRAFT_LENGTH) | {"num_return_sequences"} | set(REFUSED)
    unused = sorted(set(options) - known)
    if unused:
        raise ValueError(
            f"The following generation kwargs are not used by hf-laps: {unused} (note: typos in the "
            "generate arguments show up in this list; docs/python-api.md lists the options hf-laps honours)"
        )
    for name in DRAFT_LENGTH:
        if options.get(name) is not None:
            _check_draft_length(name, options[name])
    return {name: value for name, value in options.items() if name not in REFUSED}


def draft_length_option(options: dict[str, Any], drafting_kind: str) -> int | None:
    """The per-call draft length from `num_assistant_tokens` / `prompt_lookup_num_tokens`,
    popped from `options`; when both are given, the drafting in use (`DraftStrategy.kind`: "model" or
    "prompt_lookup") picks its own name."""
    values = {name: options.pop(name) for name in DRAFT_LENGTH if options.get(name) is not None}
    options.pop(DRAFT_LENGTH[0], None), options.pop(DRAFT_LENGTH[1], None)
    if not values:
        return None
    own = DRAFT_LENGTH[0] if drafting_kind == "model" else DRAFT_LENGTH[1]
    name = own if own in values else next(iter(values))
    return _check_draft_length(name, values[name])


def _check_draft_length(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} (the draft length) must be an integer >= 1, got {value!r}")
    return value
