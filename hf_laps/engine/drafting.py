"""Drafting strategies: who proposes the n tokens that the target verifies in one forward.

`DraftStrategy` is the base class (transformers' `CandidateGenerator` is the model: one class
per strategy, the caller never asks which one it has). Every strategy answers `propose` (one
request), `propose_rows` (the rows of one batched round, given the rule that trims their draft
lengths), `rollback`, `adapt` (the per-request draft-length schedule) and `models` (the weights
it runs, for memory accounting). Two strategies:
- `DraftModelBackend`: a small causal LM run token by token on the request's own DynamicCache
  (in a batched round: all rows in one forward per draft step, each row's K/V in its own slot,
  `hf_laps.engine.ragged`). It pays a forward per draft step, so it trims BEFORE drafting.
  transformers' `AssistedCandidateGenerator` calls a full `assistant_model.generate()` every
  round (config copies, processor construction, mask inference: ~2 ms of Python per round);
  direct forwards remove that waste.
- `PromptLookupBackend`: n-gram lookup in the request's own tokens (no model). It reuses
  transformers' `PromptLookupCandidateGenerator`, which is stateless apart from its config.
  Lookup is free and often finds nothing, so it trims AFTER proposing, over what it found.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
from transformers import PreTrainedModel
from transformers.generation.candidate_generator import PromptLookupCandidateGenerator

from hf_laps.compat import cache_kwarg, cache_length, crop_to, new_cache
from hf_laps.engine.ragged import RaggedBatch
from hf_laps.engine.state import GenerationState

Proposal = tuple[torch.Tensor, "torch.Tensor | None"]  # (ids [m], q [m, V] when a model samples)
Trim = Callable[[list[int]], list[int]]  # draft lengths on offer -> the lengths to verify


class DraftStrategy(ABC):
    """One way to propose drafts. `kind` names its default draft length (EngineConfig)."""

    kind: str = ""
    model: PreTrainedModel | None = None  # the draft model, for strategies that run one

    @property
    def models(self) -> list[PreTrainedModel]:
        """The weights this strategy runs besides the target's (memory and KV accounting)."""
        return [] if self.model is None else [self.model]

    @abstractmethod
    def propose(self, state: GenerationState, k: int) -> Proposal:
        """Up to k drafts for one request."""

    @abstractmethod
    def propose_rows(self, states: list[GenerationState], limits: list[int], trim: Trim) -> list[Proposal]:
        """Drafts for the rows of one batched round: row i at most limits[i], and `trim` (over
        the per-row lengths on offer) picks how many of them the round verifies."""

    def rollback(self, state: GenerationState, keep: int) -> None:
        """Forget what the strategy saw past the first `keep` committed tokens."""

    def adapt(self, state: GenerationState, drafted: int, accepted: int, schedule: str) -> None:
        """Move the request's draft length after a round (`schedule` of EngineConfig)."""


class DraftModelBackend(DraftStrategy):
    """Draft with a separate assistant model (e.g. LLaMA-68M for LLaMA-7B)."""

    kind = "model"

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
        sequence, tokens, probs = ids, [], []
        for _ in range(k):
            out = self.model(input_ids=feed, **{self._cache_kw: cache}, use_cache=True, logits_to_keep=1)
            token, q = self._pick(state, sequence, out.logits[:, -1, :].float())
            tokens.append(token[0])
            probs.append(q)
            sequence = torch.cat([sequence, token], dim=1)
            feed = token
        return self._until_eos(state, tokens, probs)

    def propose_rows(self, states: list[GenerationState], limits: list[int], trim: Trim) -> list[Proposal]:
        # a draft step costs a forward: cap the lengths first, then draft every row at once
        return self.propose_batch(states, trim(limits))

    def adapt(self, state: GenerationState, drafted: int, accepted: int, schedule: str) -> None:
        """transformers' heuristic: n += 2 after a fully accepted round, else n = max(1, n - 1)."""
        if schedule != "heuristic":
            return
        if drafted > 0 and accepted == drafted:
            state.draft_length += 2
        else:
            state.draft_length = max(1, state.draft_length - 1)

    @torch.no_grad()
    def propose_batch(self, states: list[GenerationState], limits: list[int]) -> list[Proposal]:
        """`propose` for several requests at once: each draft step is ONE draft-model forward over
        the rows still drafting, each row's K/V in its own slot (`hf_laps.engine.ragged`),
        instead of one batch-1 forward per row. Row i drafts up to limits[i] tokens; everything
        per row (processors, its generator, the EOS cut, the cache left at len(ids) + m - 1) is
        as in `propose`, the logits differ from batch 1 only by fp rounding.
        """
        live = [i for i, limit in enumerate(limits) if limit > 0]
        for i in live:
            if states[i].draft_cache is None:
                states[i].draft_cache = new_cache(self.model)
        sequences = [state.input_ids for state in states]
        feeds = [state.input_ids[0, cache_length(state.draft_cache) :] for state in states]
        tokens: list[list[torch.Tensor]] = [[] for _ in states]
        probs: list[list[torch.Tensor | None]] = [[] for _ in states]
        while live:
            batch = RaggedBatch.of([states[i].draft_cache for i in live], [feeds[i] for i in live],
                                   [states[i].max_length for i in live], keeps=[1] * len(live))
            out = batch.forward(self.model)
            for row, i in enumerate(live):
                token, q = self._pick(states[i], sequences[i], batch.logits_rows(out.logits, row, 1).float())
                tokens[i].append(token[0])
                probs[i].append(q)
                sequences[i] = torch.cat([sequences[i], token], dim=1)
                feeds[i] = token[0]
            live = [i for i in live if len(tokens[i]) < limits[i]]
        return [self._until_eos(state, t, q) if t else (state.input_ids.new_empty(0), None)
                for state, t, q in zip(states, tokens, probs)]

    def _pick(self, state: GenerationState, sequence: torch.Tensor, logits: torch.Tensor):
        """The next draft token [1, 1] from the logits [1, V], and q [V] when sampling."""
        scores = self._process(state, sequence, logits)
        if not state.generation_config.do_sample:
            return scores.argmax(dim=-1, keepdim=True), None
        q = torch.softmax(scores, dim=-1)
        return torch.multinomial(q, 1, generator=state.generator), q[0]

    @staticmethod
    def _until_eos(state: GenerationState, tokens: list[torch.Tensor], probs: list) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(ids [m], q [m, V] or None) of the drafted tokens, cut after the first EOS."""
        candidates = torch.cat(tokens)
        q = torch.stack(probs) if probs[0] is not None else None
        eos = state.generation_config._eos_token_tensor
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


class PromptLookupBackend(DraftStrategy):
    """Prompt-lookup decoding: copy the continuation of the last n-gram's earlier occurrence."""

    kind = "prompt_lookup"

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

    def propose_rows(self, states: list[GenerationState], limits: list[int], trim: Trim) -> list[Proposal]:
        # free, and often finds nothing: look up first, then trim over what was found
        proposals = [self.propose(state, k) for state, k in zip(states, limits)]
        caps = trim([int(candidates.shape[0]) for candidates, _ in proposals])
        return [(candidates[:cap], None) for (candidates, _), cap in zip(proposals, caps)]

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
