"""hf-laps as transformers' own `generate`: batched, scheduled speculative decoding in one call.

    from hf_laps import laps_generate
    out = model.generate(**tokenizer(texts, return_tensors="pt", padding=True), max_new_tokens=64,
                         custom_generate=laps_generate, assistant_model=draft)

transformers has no batched assisted generation (its issue #32165): `generate` refuses an
assistant for a batch of more than one row. With `custom_generate=<callable>`, `generate` does its
usual input preparation (generation config, special tokens, length limits) and then calls the
callable to run the decoding loop. `laps_generate` is that loop: each row's unpadded prompt
becomes one hf-laps request, the scheduler orders them, up to `max_batch_size` of them share each
verify forward (`hf_laps.engine.batched_round`), and the result is what `generate` returns: a LongTensor of
the input rows followed by their new tokens, rows that stop early padded with the pad token.
Under greedy decoding the tokens equal `generate` without an assistant.

Extra keyword arguments of `model.generate` that this callable takes (transformers forwards the
ones in its signature): `policy` (default "laps-sd") and `max_batch_size` (default: every row).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from hf_laps.engine.generation_fields import check_options
from hf_laps.serving.generator import LapsGenerator
from hf_laps.serving.inputs import config_fields

# set per row from the padded batch's lengths, or handled here (not per-request options)
BATCH_FIELDS = ("max_length", "max_new_tokens", "min_length", "num_return_sequences")


def laps_generate(model, input_ids: torch.LongTensor, logits_processor=None, stopping_criteria=None,
                  generation_config=None, assistant_model=None, streamer=None, policy: str = "laps-sd",
                  max_batch_size: int | None = None, **model_kwargs) -> torch.LongTensor:
    """The decoding loop `model.generate(custom_generate=laps_generate)` calls.

    Raises:
        ValueError: an option hf-laps cannot honour (`num_beams > 1`,
            `return_dict_in_generate=True`, a streamer, ...; hf_laps.engine.generation_fields), or
            logits processors / stopping criteria passed to `generate` as objects (they are
            rebuilt per row from the generation config, so objects of your own would be lost).
        RuntimeError: a row failed (its error message).
    """
    if streamer is not None:
        raise ValueError("laps_generate does not stream; leave streamer out")
    if assistant_model is None:
        assistant_model = _assistant_of_generate_call()
    rows = _unpadded_rows(input_ids, model_kwargs.get("attention_mask"))
    width = int(input_ids.shape[1])
    options = _row_options(generation_config)
    # as in transformers, each drafting reads only its own draft-length name (the prepared config
    # always holds num_assistant_tokens, 20 by default, which prompt lookup must not take)
    options.pop("prompt_lookup_num_tokens" if assistant_model is not None else "num_assistant_tokens", None)
    generator = LapsGenerator(model, assistant_model, policy=policy, progress=False,
                              max_batch_size=min(max_batch_size or len(rows), len(rows)))
    submissions = [generator.submission(str(i), row, _for_row(options, generation_config, width, len(row)))
                   for i, row in enumerate(rows)]
    outputs: dict[str, list[int]] = {}
    for completion in generator.stream(submissions):
        if not completion.ok:
            raise RuntimeError(f"row {completion.submission.request_id}: {completion.error}")
        _check_rebuilt(completion.state, logits_processor, stopping_criteria)
        outputs[completion.submission.request_id] = completion.state.output_ids
    return _padded(input_ids, [outputs[str(i)] for i in range(len(rows))], _pad_id(generation_config))


def _assistant_of_generate_call():
    """The `assistant_model` given to the `generate` call that called us.

    transformers (5.x) forwards to a `custom_generate` callable only the options that arrive in
    `generate`'s **kwargs; `assistant_model` is a named parameter of `generate`, so it is never
    forwarded. It is read from that call's frame instead; None (prompt lookup) when not found.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == "generate" and frame.f_globals.get("__name__") == "transformers.generation.utils":
                return frame.f_locals.get("assistant_model")
            frame = frame.f_back
        return None
    finally:
        del frame


def _unpadded_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> list[list[int]]:
    """Each row's prompt: the positions its mask keeps (generate drops an all-ones mask)."""
    if attention_mask is None:
        return input_ids.tolist()
    return [[t for t, keep in zip(row, mask) if keep] for row, mask in zip(input_ids.tolist(), attention_mask.tolist())]


def _row_options(generation_config) -> dict[str, Any]:
    """The prepared config's fields as per-request options, checked like `LapsGenerator.generate`'s."""
    fields = {k: v for k, v in config_fields(generation_config).items() if not k.startswith("_")}
    return check_options({k: v for k, v in fields.items() if k not in BATCH_FIELDS})


def _for_row(options: dict[str, Any], config, width: int, length: int) -> dict[str, Any]:
    """`generate` caps the padded batch at max_length: every row gets max_length - width new
    tokens; min_length counts the row's padding too. Sampling draws each row's seed from torch's
    global RNG, so `torch.manual_seed` before the call makes it reproducible."""
    pads = width - length
    row = {**options, "max_new_tokens": int(config.max_length) - width}
    if config.min_length:
        row["min_length"] = max(0, int(config.min_length) - pads)
    if options.get("do_sample"):
        row["seed"] = int(torch.randint(0, 2**31 - 1, (1,)).item())
    return row


def _check_rebuilt(state, logits_processor, stopping_criteria) -> None:
    """Refuse processors / criteria given to `generate` as objects: a row's are rebuilt from the
    config, so theirs would be fewer than the ones `generate` prepared."""
    for name, prepared, rebuilt in (("logits_processor", logits_processor, state.logits_processor),
                                    ("stopping_criteria", stopping_criteria, state.stopping_criteria)):
        extra = {type(p).__name__ for p in prepared or ()} - {type(p).__name__ for p in rebuilt or ()}
        if extra:
            raise ValueError(f"laps_generate rebuilds each row's {name} from the generation config and "
                             f"cannot take {sorted(extra)} passed to generate; use LapsGenerator.generate({name}=...)")


def _padded(input_ids: torch.Tensor, outputs: list[list[int]], pad: int) -> torch.LongTensor:
    longest = max((len(o) for o in outputs), default=0)
    tails = [o + [pad] * (longest - len(o)) for o in outputs]
    new = torch.tensor(tails, dtype=input_ids.dtype, device=input_ids.device).reshape(len(outputs), longest)
    return torch.cat([input_ids, new], dim=1)


def _pad_id(config) -> int:
    """generate's pad: the config's pad token (which generate sets to EOS when there is none)."""
    pad = getattr(config, "_pad_token_tensor", None)
    if pad is not None:
        return int(pad.reshape(-1)[0])
    return int(config.pad_token_id) if config.pad_token_id is not None else 0
