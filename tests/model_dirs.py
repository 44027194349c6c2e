"""A tiny random Llama saved as a model directory with the real SmolLM2 tokenizer (from the
embedded GGUF), so the CLI can load it by path (`--model DIR`) in subprocess tests. The tokenizer
has the real chat template, so chat requests work; the weights are random, so the text is junk,
but it is deterministic, fast, and greedy-exact like any fp32 model."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hf_laps.models.loading import embedded_source, load_tokenizer


def save_tiny_model_dir(path: Path, seed: int = 0, layers: int = 2, embedding_scale: float = 20.0) -> Path:
    """embedding_scale 20 makes the model repeat the prompt's last token; 1 keeps the random
    init, which repeats some other token (e.g. "Hello" -> "FoundFound..."), so a stop string
    can lie wholly inside the generated text."""
    tokenizer = load_tokenizer(embedded_source())
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # repetitive greedy output, so prompt lookup accepts some drafts
        model.model.embed_tokens.weight.mul_(embedding_scale)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
