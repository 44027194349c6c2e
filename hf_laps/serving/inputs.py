"""What `LapsGenerator.generate` accepts, turned into what the engine needs, checked up front.

transformers users call `model.generate(**tokenizer(texts, return_tensors="pt", padding=True))`,
pass a `GenerationConfig`, and expect a typo in a kwarg to be an error naming it. The same habits
work here:

- prompts: a list of texts / token-id lists / chat message lists, a `datasets.Dataset` column,
  a tokenizer's `BatchEncoding` (or any mapping with `input_ids` and an optional
  `attention_mask`, padded on either side), or a 2-D tensor of token ids. Each row of a padded
  batch becomes the prompt made of its unmasked ids, so padding never reaches the model;
- `generation_config=`: its explicitly set fields (the ones that are not None) become the
  defaults of every request, explicit kwargs override them (transformers' own priority);
- `input_ids=` / `attention_mask=` (or `inputs=`) as keywords, as `model.generate` takes them;
- unknown kwargs, and options that would change the result in a way hf-laps cannot honour
  (`num_beams=3`, `output_scores=True`, `streamer=`): a ValueError naming them, before any request
  runs (`hf_laps.engine.generation_fields`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import GenerationConfig

from hf_laps.engine.generation_fields import check_options

PROMPT_COLUMNS = ("prompt", "messages", "text")

# accepted for drop-in compatibility and ignored: the engine already holds the tokenizer
IGNORED_ARGUMENTS = frozenset({"tokenizer"})
# GenerationConfig bookkeeping, not a generation option
CONFIG_BOOKKEEPING = frozenset({"transformers_version", "_from_model_config"})


# ---- prompts -----------------------------------------------------------------------------------
def normalise_prompts(prompts, column: str | None = None) -> list:
    """A list of prompts (text, token-id list or chat messages) from anything `generate` takes."""
    if isinstance(prompts, (str, bytes)):
        raise TypeError("prompts must be a list of prompts, not a single string")
    if isinstance(prompts, Mapping):
        return _encoded_rows(prompts)
    if _is_tensor(prompts):
        if prompts.dim() != 2:
            raise ValueError(f"a tensor of prompts must be 2-D [batch, tokens], got shape {tuple(prompts.shape)}")
        return [row.tolist() for row in prompts]
    dataset_rows = _dataset_column(prompts, column)
    return dataset_rows if dataset_rows is not None else list(prompts)


def prompts_from_keywords(prompts, kwargs: dict[str, Any]):
    """`prompts`, or the batch given as transformers' keywords (`input_ids=` / `inputs=` and
    `attention_mask=`), popped from `kwargs`: `generate(**tokenizer(texts, padding=True))`."""
    ids = [kwargs.pop(name) for name in ("input_ids", "inputs") if kwargs.get(name) is not None]
    mask = kwargs.pop("attention_mask", None)
    if len(ids) + (prompts is not None) > 1:
        raise TypeError("give the prompts once: positionally, as input_ids= or as inputs=")
    if ids:
        prompts = ids[0]
    if prompts is None:
        raise TypeError("generate() needs prompts (a list, a tokenizer's batch, or input_ids=)")
    if mask is not None:
        if isinstance(prompts, Mapping):
            raise TypeError("attention_mask= is given twice: in the batch and as a keyword")
        prompts = {"input_ids": prompts, "attention_mask": mask}
    return prompts


def _encoded_rows(encoding: Mapping) -> list[list[int]]:
    """Each row's unpadded ids: the positions its attention mask keeps (left or right padding)."""
    if "input_ids" not in encoding:
        raise ValueError(
            f"a mapping of prompts needs `input_ids` (a tokenizer's output); got keys {sorted(encoding)}"
        )
    rows = _as_lists(encoding["input_ids"])
    mask = encoding.get("attention_mask")
    if mask is None:
        return rows
    masks = _as_lists(mask)
    if [len(m) for m in masks] != [len(r) for r in rows]:
        raise ValueError("attention_mask and input_ids have different shapes")
    return [[token for token, keep in zip(row, keep_row) if keep] for row, keep_row in zip(rows, masks)]


def _as_lists(value) -> list[list[int]]:
    rows = value.tolist() if hasattr(value, "tolist") else list(value)
    if rows and not isinstance(rows[0], (list, tuple)):
        rows = [rows]  # one unbatched sequence
    return [[int(token) for token in row] for row in rows]


def _is_tensor(value) -> bool:
    return hasattr(value, "dim") and hasattr(value, "tolist") and hasattr(value, "shape")


def _dataset_column(prompts, column: str | None) -> list | None:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        return None
    if not isinstance(prompts, datasets.Dataset):
        return None
    names = [column] if column else [c for c in PROMPT_COLUMNS if c in prompts.column_names]
    if not names or names[0] not in prompts.column_names:
        raise ValueError(
            f"dataset needs a column named one of {PROMPT_COLUMNS} (or pass column=); has {prompts.column_names}"
        )
    return list(prompts[names[0]])


# ---- generation options ------------------------------------------------------------------------
def generation_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The per-request kwargs of one `generate()` call: config merged, then validated.

    Raises:
        ValueError: a kwarg hf-laps does not use (a misspelt `max_new_token=5` lands here), or one
            that asks for what it cannot honour (`num_beams=3`), named in the message
            (`hf_laps.engine.generation_fields`).
        TypeError: `generation_config` that is not a GenerationConfig.
    """
    kwargs = dict(kwargs)
    config = kwargs.pop("generation_config", None)
    merged = {**config_fields(config), **kwargs} if config is not None else kwargs
    for name in IGNORED_ARGUMENTS:
        merged.pop(name, None)
    return check_options(merged)


def config_fields(config: GenerationConfig) -> dict[str, Any]:
    """The fields the user set on `config` (unset ones are None in transformers 5)."""
    if not isinstance(config, GenerationConfig):
        raise TypeError(f"generation_config must be a transformers.GenerationConfig, got {type(config).__name__}")
    return {
        name: getattr(config, name)
        for name, value in config.to_dict().items()
        if value is not None and name not in CONFIG_BOOKKEEPING
    }
