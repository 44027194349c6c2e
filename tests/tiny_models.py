"""Tiny random Llamas built from a config (no downloads) for the engine's mechanics tests.

The draft is the target with Gaussian noise added to its weights: it agrees with the target on
most tokens but not all, so rounds accept anything from 0 to n drafts - the regime that exercises
rollback. Models are fp32 on CPU, where greedy speculative decoding is exactly plain greedy.
"""
from __future__ import annotations

import copy

import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 128
EOS = VOCAB - 1


def tiny_config(**overrides) -> LlamaConfig:
    settings = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=EOS,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    settings.update(overrides)
    return LlamaConfig(**settings)


def tiny_target(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_config(**overrides)).eval()
    # a larger embedding scale makes the next token depend strongly on the current one, so the
    # model's greedy continuations repeat (prompt lookup then finds matches)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20.0)
    model.generation_config.pad_token_id = 0
    return model


def noisy_draft(target: LlamaForCausalLM, noise: float = 0.02, seed: int = 1) -> LlamaForCausalLM:
    draft = copy.deepcopy(target)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in draft.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * noise * param.std())
    return draft.eval()


def prompts(count: int = 3, seed: int = 7) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = [12, 9, 15, 5, 20, 7][:count]
    return [torch.randint(1, EOS - 1, (n,), generator=generator).tolist() for n in lengths]
