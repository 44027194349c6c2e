"""`SpeculativeEngine`: advance one request by exactly one speculative round, resumably.

transformers' assisted generation (`generate(assistant_model=...)`) is one monolithic loop whose
state lives in local variables; resuming it from its returned cache is silently wrong
(docs/design.md#no-per-round-api). The engine keeps every piece of a request's progress in a
model-free `GenerationState`, so a scheduler can interleave, preempt and park requests between
rounds.

One round (Leviathan et al.; transformers' `_assisted_decoding` body):
  1. draft m = min(n, max_length - L - 1) tokens (draft model or prompt lookup);
  2. verify: one target forward over the tokens the target cache has not seen plus the drafts
     (the whole prompt on the first round = prefill), keeping the last m + 1 logits;
  3. accept the longest agreeing prefix (greedy) or run speculative sampling, then add the
     target's own next token: the round emits accepted + 1 tokens;
  4. cut the block at the budget, after the first EOS and at the first stop-criterion hit;
  5. roll back both caches: the target keeps every committed token but the last (it is fed with
     the next round's drafts), the draft keeps what it saw of the committed tokens.
What transformers already does well is reused: `generate()` itself resolves the
GenerationConfig, logits processors and stopping criteria (captured through
`custom_generate=callable`, which stops right before decoding), DynamicCache and its crop, and
the prompt-lookup candidate generator.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import PreTrainedModel, StoppingCriteriaList
from transformers.generation.stopping_criteria import EosTokenCriteria, MaxLengthCriteria, StopStringCriteria

from hf_laps.engine import acceptance
from hf_laps.compat import cache_kwarg, cache_length, crop_to, new_cache
from hf_laps.engine.drafting import DraftModelBackend, DraftStrategy, PromptLookupBackend
from hf_laps.engine.config import ContextWindowExceeded, EngineConfig
from hf_laps.engine.features import FeatureConfig, make_prefill_features
from hf_laps.engine.generation_fields import draft_length_option
from hf_laps.metrics import SpecMetrics
from hf_laps.engine.state import GenerationState, RoundResult, jsonable_kwargs, read_state_file, restore_cache

DEFAULT_MAX_NEW_TOKENS = 128


def _capture(model, input_ids, logits_processor, stopping_criteria, generation_config, **model_kwargs):
    """`generate(custom_generate=_capture)` returns what generate prepared, before decoding."""
    return generation_config, logits_processor, stopping_criteria


class SpeculativeEngine:
    """Owns the target, the draft (a model or prompt lookup) and the tokenizer; no requests.

    Args:
        model: the target causal LM.
        tokenizer: needed for text prompts, stop strings and `state.text`.
        assistant_model: a draft model sharing the target's tokenizer; None = prompt lookup.
        config: the round's knobs.
        features: length-prediction features taken at prefill (hf_laps.engine.features): a
            FeatureConfig, True for the default one, False for none.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer=None,
        assistant_model: PreTrainedModel | None = None,
        config: EngineConfig | None = None,
        features: FeatureConfig | bool = True,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or EngineConfig()
        self._cache_kw = cache_kwarg(model)
        self.draft: DraftStrategy
        if assistant_model is not None:
            self.draft = DraftModelBackend(assistant_model, self.config.draft_temperature)
        else:
            self.draft = PromptLookupBackend(self.config.max_matching_ngram_size)
        self.draft_length = self.config.draft_length_for(self.draft.kind)
        self._request_counter = 0
        self.features = make_prefill_features(model, features)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def context_window(self) -> int | None:
        return getattr(self.model.config.get_text_config(), "max_position_embeddings", None)

    # ---- requests --------------------------------------------------------------------------
    def start(
        self,
        prompt: str | Sequence[int] | torch.Tensor,
        request_id: str | None = None,
        *,
        default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        **generation_kwargs,
    ) -> GenerationState:
        """Create the state of a new request; nothing runs on the models until `step`.

        Args:
            prompt: text (tokenised with the engine's tokenizer) or token ids.
            request_id: a name for logs; defaults to a counter.
            default_max_new_tokens: the cap when neither max_new_tokens nor max_length is
                given; it is lowered to what fits the context window after the prompt.
            **generation_kwargs: transformers generation options (max_new_tokens, do_sample,
                temperature, top_p, top_k, eos_token_id, stop_strings, logits_processor,
                stopping_criteria, ...) plus `seed` for the request's own RNG;
                `num_assistant_tokens` / `prompt_lookup_num_tokens` set this request's draft length.
        Raises:
            ValueError: empty prompt, or a prompt that does not fit the context window.
            ContextWindowExceeded: an explicit max_new_tokens / max_length past the window.
        """
        input_ids = self._prompt_ids(prompt)
        if request_id is None:
            request_id = f"req-{self._request_counter}"
            self._request_counter += 1
        kwargs = dict(generation_kwargs)
        seed = kwargs.pop("seed", None)
        draft_length = draft_length_option(kwargs, self.draft.kind)
        if "max_new_tokens" not in kwargs and "max_length" not in kwargs:
            kwargs["max_new_tokens"] = self._fitted(default_max_new_tokens, int(input_ids.shape[1]))
        state = self._new_state(request_id, input_ids, kwargs)
        state.generator = self._generator(seed)
        if draft_length is not None:  # this request's own n (transformers' per-call names)
            state.draft_length = draft_length
        return state

    def check_fits(self, prompt_tokens: int, max_new_tokens: int) -> None:
        """Raise ContextWindowExceeded when prompt_tokens + max_new_tokens > the context window."""
        window = self.context_window
        if window is not None and prompt_tokens + max_new_tokens > window:
            raise ContextWindowExceeded(prompt_tokens, max_new_tokens, window)

    def prompt_length(self, prompt: str | Sequence[int] | torch.Tensor) -> int:
        """Tokens of `prompt` as `start` counts them (raises as `start` does for a bad prompt)."""
        return int(self._prompt_ids(prompt).shape[1])

    def _fitted(self, max_new_tokens: int, prompt_tokens: int) -> int:
        window = self.context_window
        return max_new_tokens if window is None else min(max_new_tokens, window - prompt_tokens)

    def _prompt_ids(self, prompt) -> torch.Tensor:
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ValueError("a text prompt needs a tokenizer; pass token ids or give the engine one")
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        else:
            ids = torch.as_tensor(prompt, dtype=torch.long).reshape(1, -1)
        if ids.shape[1] == 0:
            raise ValueError("the prompt is empty")
        window = self.context_window
        if window is not None and ids.shape[1] >= window:
            raise ValueError(
                f"prompt has {ids.shape[1]} tokens but the model's context window is {window} "
                f"(max_position_embeddings); shorten the prompt"
            )
        return ids.to(self.device)

    def _new_state(self, request_id: str, input_ids: torch.Tensor, kwargs: dict[str, Any]) -> GenerationState:
        generation_config, processors, criteria = self._resolve(input_ids, kwargs)
        prompt_len = int(input_ids.shape[1])
        max_length = int(generation_config.max_length)
        self.check_fits(prompt_len, max_length - prompt_len)
        state = GenerationState(
            request_id=request_id,
            input_ids=input_ids,
            prompt_len=prompt_len,
            max_length=max_length,
            generation_kwargs=jsonable_kwargs(kwargs),
            generation_config=generation_config,
            logits_processor=processors,
            stopping_criteria=criteria,
            generator=torch.Generator(device=self.device),
            draft_length=self.draft_length,
        )
        state.runtime["vocab_size"] = self.model.config.get_text_config().vocab_size
        state.runtime["custom_stop"] = _custom_criteria(criteria)
        if prompt_len >= max_length:
            state.finished, state.finish_reason, state.text = True, "length", ""
        return state

    def _resolve(self, input_ids: torch.Tensor, kwargs: dict[str, Any]):
        """Let `generate()` resolve config, processors and criteria exactly as it would.

        A `custom_generate` callable does not receive the tokenizer, so `generate` cannot build
        the stop-string criterion itself; we add transformers' own StopStringCriteria after.
        """
        kwargs = dict(kwargs)
        stop_strings = kwargs.pop("stop_strings", None)
        # max_new_tokens=0 is an empty completion (finish_reason "length"); transformers refuses
        # 0, so resolve with 1 and put the cap back to the prompt's end after
        empty = kwargs.get("max_new_tokens") == 0
        if empty:
            kwargs["max_new_tokens"] = 1
        generation_config, processors, criteria = self.model.generate(input_ids, custom_generate=_capture, **kwargs)
        if empty:
            generation_config.max_new_tokens, generation_config.max_length = 0, int(input_ids.shape[1])
        if stop_strings:
            if self.tokenizer is None:
                raise ValueError("stop_strings need a tokenizer; give the engine one")
            stop_strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
            criteria.append(StopStringCriteria(tokenizer=self.tokenizer, stop_strings=stop_strings))
            generation_config.stop_strings = stop_strings
        return generation_config, processors, criteria

    def _generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        return generator

    # ---- one round -------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, state: GenerationState) -> RoundResult:
        """Run exactly one speculative round of `state` (the first one also prefills)."""
        self.check_unfinished(state)
        prefill = state.target_cache is None
        start_len = int(state.input_ids.shape[1])
        t0 = time.perf_counter()
        candidates, draft_probs = self.propose(state)
        t1 = self.sync_clock()
        if prefill and self.features is not None:
            feed_len = start_len + int(candidates.shape[0])  # the prefill feeds everything
            with self.features.capture(start_len - 1, feed_len) as captured:
                scores = self._verify(state, candidates)
            state.features, state.features_model = self.features.vector(captured), self.features.fingerprint
        else:
            scores = self._verify(state, candidates)
        tokens, reason = self.settle(state, candidates, draft_probs, scores)
        t2 = self.sync_clock()
        return self.record_round(state, candidates, tokens, reason, prefill=prefill,
                                 draft_seconds=t1 - t0, verify_seconds=t2 - t1)

    # The phases of a round, shared with `hf_laps.engine.batched_round.BatchedRound`, which runs `propose`,
    # `settle` and `record_round` per request around ONE verify forward for the whole batch.
    def check_unfinished(self, state: GenerationState) -> None:
        if state.finished:
            raise ValueError(f"request {state.request_id} is already finished ({state.finish_reason})")

    def draft_limit(self, state: GenerationState) -> int:
        """The drafts this round may take: never past the budget, the target adds one token of its
        own (docs/design.md#eos-and-budget-cut)."""
        return min(state.draft_length, state.max_length - int(state.input_ids.shape[1]) - 1)

    def propose(self, state: GenerationState, cap: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The round's drafts [m <= cap] (and their probabilities when a draft model samples)."""
        k = self.draft_limit(state)
        return self.draft.propose(state, k if cap is None else min(k, cap))

    def settle(self, state: GenerationState, candidates: torch.Tensor, draft_probs: torch.Tensor | None,
               scores: torch.Tensor) -> tuple[torch.Tensor, str | None]:
        """Accept, cut and commit; returns (the committed tokens, the finish reason or None)."""
        _, tokens = self._accept(state, candidates, draft_probs, scores)
        tokens, reason = self._cut(state, tokens)
        self._commit(state, tokens)
        return tokens, reason

    def record_round(self, state: GenerationState, candidates: torch.Tensor, tokens: torch.Tensor,
                     reason: str | None, *, prefill: bool, draft_seconds: float,
                     verify_seconds: float) -> RoundResult:
        """Count the round in the state (metrics, draft-length schedule, finish) and report it."""
        drafted, accepted = int(candidates.shape[0]), int(tokens.shape[0]) - 1
        state.metrics.record(drafted, accepted)
        self.draft.adapt(state, drafted, accepted, self.config.draft_schedule)
        if reason is not None:
            state.finished, state.finish_reason = True, reason
            state.text = self.decode(state)
        return RoundResult(
            request_id=state.request_id, drafted=drafted, accepted=accepted,
            new_token_ids=tuple(tokens.tolist()), finished=state.finished, finish_reason=state.finish_reason,
            draft_seconds=draft_seconds, verify_seconds=verify_seconds, prefill=prefill, kv_len=state.kv_len,
            features=tuple(state.features) if prefill and state.features is not None else None,
        )

    def sync_clock(self) -> float:
        """perf_counter after the device finished its queued work (round timings)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _verify(self, state: GenerationState, candidates: torch.Tensor) -> torch.Tensor:
        """One target forward; returns processed scores [m + 1, V] for the m drafts + bonus."""
        if state.target_cache is None:
            state.target_cache = new_cache(self.model)
        sequence = torch.cat([state.input_ids, candidates.unsqueeze(0)], dim=1)
        feed = sequence[:, cache_length(state.target_cache) :]
        m = int(candidates.shape[0])
        out = self.model(
            input_ids=feed, **{self._cache_kw: state.target_cache}, use_cache=True, logits_to_keep=m + 1
        )
        return self.process_scores(state, candidates, out.logits[0, -(m + 1) :].float())

    def process_scores(self, state: GenerationState, candidates: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The request's logits processors over the verify logits [m + 1, V]."""
        if not len(state.logits_processor):
            return logits
        # processors see exactly the prefix that precedes each position, as in transformers
        sequence = torch.cat([state.input_ids, candidates.unsqueeze(0)], dim=1)
        base = state.input_ids.shape[1]
        m = int(candidates.shape[0])
        rows = [state.logits_processor(sequence[:, : base + i], logits[i : i + 1]) for i in range(m + 1)]
        return torch.cat(rows, dim=0)

    def _accept(self, state, candidates, draft_probs, scores) -> tuple[int, torch.Tensor]:
        if not state.generation_config.do_sample:
            return acceptance.greedy_accept(candidates, scores)
        if draft_probs is not None and candidates.shape[0] > 0:
            return acceptance.speculative_sample(candidates, draft_probs, scores, state.generator)
        return acceptance.sample_and_match(candidates, scores, state.generator)

    def _cut(self, state: GenerationState, tokens: torch.Tensor) -> tuple[torch.Tensor, str | None]:
        """Cut the accepted block at the budget, after the first EOS, at the first stop hit."""
        length = int(state.input_ids.shape[1])
        tokens = tokens[: state.max_length - length]
        eos = state.generation_config._eos_token_tensor
        if eos is not None:
            hits = torch.isin(tokens, eos).nonzero()
            if hits.numel():
                return tokens[: int(hits[0, 0]) + 1], "eos"
        custom = state.runtime.get("custom_stop")
        if custom:
            # criteria look only at the END of a sequence: test every prefix
            # (docs/design.md#stop-criteria-every-prefix). Only the custom ones (stop strings, ...):
            # the budget's MaxLengthCriteria would fire on the last prefix and call a request that
            # ran out of tokens "stop" instead of "length"
            for j in range(tokens.shape[0]):
                prefix = torch.cat([state.input_ids, tokens[: j + 1].unsqueeze(0)], dim=1)
                if bool(custom(prefix, None).any()):
                    return tokens[: j + 1], "stop"
        if length + tokens.shape[0] >= state.max_length:
            return tokens, "length"
        return tokens, None

    def _commit(self, state: GenerationState, tokens: torch.Tensor) -> None:
        """Append the tokens, then roll both caches back to the committed sequence minus one."""
        state.input_ids = torch.cat([state.input_ids, tokens.unsqueeze(0)], dim=1)
        keep = int(state.input_ids.shape[1]) - 1
        crop_to(state.target_cache, keep)
        self.draft.rollback(state, keep)


    # ---- conveniences ----------------------------------------------------------------------
    def generate(self, prompt, **generation_kwargs) -> GenerationState:
        """Run one request to completion (no scheduling); returns its finished state."""
        state = self.start(prompt, **generation_kwargs)
        while not state.finished:
            self.step(state)
        return state

    def decode(self, state: GenerationState) -> str | None:
        if self.tokenizer is None:
            return None
        return self.tokenizer.decode(state.output_ids, skip_special_tokens=True)

    def load_state(self, path: str | Path, **runtime_kwargs) -> GenerationState:
        """Load a state saved with `state.save(path)` (safetensors + JSON, no pickle).

        Objects that cannot live in a file (custom logits processors or stopping criteria) must be
        passed again as `runtime_kwargs`; everything else is rebuilt from the saved kwargs.
        """
        meta, tensors = read_state_file(path)
        kwargs = {**meta["generation_kwargs"], **runtime_kwargs}
        input_ids = tensors["input_ids"].to(self.device)
        prompt_ids = input_ids[:, : meta["prompt_len"]]
        state = self._new_state(meta["request_id"], prompt_ids, kwargs)
        state.input_ids = input_ids
        state.max_length = meta["max_length"]
        # "num_assistant_tokens": the key of states saved before the draft length had one name
        state.draft_length = meta.get("draft_length", meta.get("num_assistant_tokens"))
        state.metrics = SpecMetrics.from_dict(meta["metrics"])
        state.finished, state.finish_reason, state.text = meta["finished"], meta["finish_reason"], meta["text"]
        state.features, state.features_model = meta.get("features"), meta.get("features_model")
        state.generator.set_state(tensors["rng_state"])
        for which, scalars in meta["caches"].items():
            model = self.model if which == "target" else self.draft.model
            cache = new_cache(model)
            restore_cache(cache, which, scalars, tensors, self.device)
            setattr(state, f"{which}_cache", cache)
        return state


def _custom_criteria(criteria: StoppingCriteriaList) -> StoppingCriteriaList:
    """Everything besides max-length / EOS: checked on every prefix of a block."""
    return StoppingCriteriaList([c for c in criteria if not isinstance(c, (MaxLengthCriteria, EosTokenCriteria))])
