"""Draft backends: who proposes the n tokens that the target verifies in one forward.

Two strategies, mirroring transformers' candidate generators (one class per strategy):
- `DraftModelBackend`: a small causal LM run token by token on the request's own DynamicCache.
  transformers' `AssistedCandidateGenerator` calls a full `assistant_model.generate()` every
  round (config copies, processor construction, mask inference: ~2 ms of Python per round);
  direct forwards remove that waste.
- `PromptLookupBackend`: n-gram lookup in the request's own tokens (no model). It reuses
  transformers' `PromptLookupCandidateGenerator`, which is stateless apart from its config.
"""
from __future__ import annotations

import torch
from transformers import PreTrainedModel
from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

from hf_laps.compat import cache_kwarg, cache_length, crop_to, new_cache
from hf_laps.state import GenerationState


class DraftModelBackend:
    """Draft with a separate assistant model (e.g. LLaMA-68M for LLaMA-7B)."""

    uses_model = True

    def __init__(self, model: PreTrainedModel, draft_temperature: float | None = None):
        self.model = model.eval()
        self.draft_temperature = draft_temperature
        self._cache_kw = cache_kwarg(model)

    @torch.no_grad()
    def propose(self, state: GenerationState, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Draft up to k tokens; returns (ids [m], q [m, V] when sampling else None).

        The draft cache holds the prompt and every token the target accepted; each call feeds the
        tokens it has not seen (1 or 2 after the first round), then one token per draft step.
        The last drafted token is never fed, so the cache ends at len(ids) + m - 1.
        """
        ids = state.input_ids
        empty = ids.new_empty(0)
        if k <= 0:
            return empty, None
        if state.draft_cache is None:
            state.draft_cache = new_cache(self.model)
        cache = state.draft_cache
        feed = ids[:, cache_length(cache) :]
        sampling = bool(state.generation_config.do_sample)
        eos = state.generation_config._eos_token_tensor
        sequence, tokens, probs = ids, [], []
        for _ in range(k):
            out = self.model(input_ids=feed, **{self._cache_kw: cache}, use_cache=True, logits_to_keep=1)
            scores = self._process(state, sequence, out.logits[:, -1, :].float())
            if sampling:
                q = torch.softmax(scores, dim=-1)
                token = torch.multinomial(q, 1, generator=state.generator)
                probs.append(q[0])
            else:
                token = scores.argmax(dim=-1, keepdim=True)
            tokens.append(token[0])
            sequence = torch.cat([sequence, token], dim=1)
            feed = token
        candidates = torch.cat(tokens)
        q = torch.stack(probs) if sampling else None
        # The draft stops proposing at EOS, like transformers' assistant. Checked once after the
        # loop (one host sync per round instead of one per draft token); drafts past an EOS are
        # dropped, and the draft cache is cropped back past them at rollback.
        if eos is not None:
            hits = torch.isin(candidates, eos).nonzero()
            if hits.numel():
                end = int(hits[0, 0]) + 1
                candidates, q = candidates[:end], (q[:end] if q is not None else None)
        return candidates, q

    def _process(self, state: GenerationState, sequence: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Apply the request's processors once (transformers applies its warpers twice: T^2).

        With `draft_temperature`, rescale the processed logits from the target's temperature T to
        the draft's: logits/T * T/T_draft. Masks (-inf from top-k/top-p) survive the scaling.
        """
        if len(state.logits_processor):
            logits = state.logits_processor(sequence, logits)
        if self.draft_temperature is not None and state.generation_config.do_sample:
            temperature = state.generation_config.temperature or 1.0
            logits = logits * (temperature / self.draft_temperature)
        return logits

    def rollback(self, state: GenerationState, keep: int) -> None:
        if state.draft_cache is not None and cache_length(state.draft_cache) > keep:
            crop_to(state.draft_cache, keep)


class PromptLookupBackend:
    """Prompt-lookup decoding: copy the continuation of the last n-gram's earlier occurrence."""

    uses_model = False

    def __init__(self, max_matching_ngram_size: int = 2):
        # the draft length is not kept here: `propose` gets it from the request state each round
        self.max_matching_ngram_size = max_matching_ngram_size

    def propose(self, state: GenerationState, k: int) -> tuple[torch.Tensor, None]:
        ids = state.input_ids
        if k <= 0:
            return ids.new_empty(0), None
        lookup = self._lookup(state, k)
        candidate_ids, _ = lookup.get_candidates(ids)
        return candidate_ids[0, ids.shape[1] :], None

    def _lookup(self, state: GenerationState, k: int) -> PromptLookupCandidateGenerator:
        # Built once per request (max_length and processors are per request), rebuilt after load.
        lookup = state.runtime.get("prompt_lookup")
        if lookup is None or lookup.num_output_tokens != k:
            processors = state.logits_processor if len(state.logits_processor) else None
            lookup = PromptLookupCandidateGenerator(
                eos_token_id=state.generation_config._eos_token_tensor,
                num_output_tokens=k,
                max_matching_ngram_size=self.max_matching_ngram_size,
                max_length=state.max_length,
                logits_processor=processors,
                vocab_size=state.runtime.get("vocab_size"),
            )
            state.runtime["prompt_lookup"] = lookup
        return lookup

    def rollback(self, state: GenerationState, keep: int) -> None:
        """Nothing to roll back: the lookup is a pure function of the committed ids."""
