"""`BatchedRound`: one speculative round for B requests that share ONE target verify forward.

A batch-1 round spends most of its time reading the target's weights; B requests verified in one
forward read them once. Everything per request stays as in `SpeculativeEngine.step`, through the
engine's own phases, so the B = 1 round is the batch-1 round:

  1. each request drafts through the engine's drafting strategy (`hf_laps.engine.drafting`:
     prompt lookup, or the draft model with all rows in one draft forward per step); draft
     lengths are ragged, some draft nothing; in a batch of 2+ only the greedy drafts worth their
     positions in the forward are kept (`hf_laps.engine.draft_budget`);
  2. ONE target forward over the ragged rows [unseen committed tokens + drafts]
     (`hf_laps.engine.ragged`): each row's K/V stay in the request's own slot
     (`hf_laps.engine.batch_kv`), the forward writes only the new tokens there;
  3. per request: its logits processors, greedy / sampled acceptance with its own generator,
     the cut at budget / EOS / stop, the commit and rollback (a length change of the slot
     views), its metrics and schedule.

A request that has never run prefills its prompt as a row of the batch, and its
length-prediction features (`hf_laps.engine.features`) are read at its own last prompt token.
With a `token_budget` (vLLM's max_num_batched_tokens), a long prompt joins in chunks: the
decoding rows' tokens come first, the prefilling rows share the rest, and a row whose prompt is
not yet all in reports a round with no tokens (`prefill=True`, `emitted == 0`); its last chunk is
a normal first round (drafts, tokens, features). After `step` every state is again a plain
`GenerationState` with its own caches: it may leave the batch, be parked, saved, and come back.

Under greedy decoding a row's logits differ from the batch-1 ones only by fp rounding (another
matmul shape), so tokens can differ from batch 1 only where the target's top two logits are
closer than that rounding (tests/test_batched_round.py counts such near-ties).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import torch

from hf_laps.compat import crop_to, new_cache
from hf_laps.engine.batch_kv import supports_batching
from hf_laps.engine.draft_budget import CostLine, draft_lengths, prior_line, tally_of
from hf_laps.engine.ragged import RaggedBatch
from hf_laps.engine.speculative import SpeculativeEngine
from hf_laps.engine.state import GenerationState, RoundResult


@dataclass(frozen=True)
class BatchTimings:
    """Where one batched round's wall seconds went.

    gather: laying the rows out (ids, positions, masks); scatter stays 0 since the forward
    writes each row's new K/V into its slot itself (kept for readers of older logs).
    """

    prefill_seconds: float = 0.0   # unused since prefill joins the batch (kept for readers)
    draft_seconds: float = 0.0     # every row's drafting
    gather_seconds: float = 0.0    # the rows' layout
    forward_seconds: float = 0.0   # the one target forward
    scatter_seconds: float = 0.0   # always 0 (see above)
    settle_seconds: float = 0.0    # processors, acceptance, cut, commit + rollback

    @property
    def seconds(self) -> float:
        return (self.prefill_seconds + self.draft_seconds + self.gather_seconds + self.forward_seconds
                + self.scatter_seconds + self.settle_seconds)


@dataclass(frozen=True)
class BatchResult:
    """The RoundResult of every request that ran (in the order given), the round's timings, and
    the requests whose own part of the round raised (id -> the exception; their state is as
    before the round).

    A row's RoundResult reports the shared part of the round: draft_seconds = all rows'
    drafting, verify_seconds = gather + forward + settle, i.e. the time the request waited.
    """

    results: list[RoundResult]
    timings: BatchTimings
    errors: dict[str, Exception] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.timings.seconds


class BatchedRound:
    """Runs rounds for several `GenerationState`s of one engine at once.

    `token_budget`: the most prompt + draft tokens one round feeds (None: no limit, a prompt
    joins whole); prompts longer than what is left join in chunks (see the module docstring).

    Raises:
        ValueError: the target's cache has non-full-attention layers (sliding windows), which
            the slots do not support; use batch size 1 for such models.
    """

    batch_prefill = True  # new requests' prompts are rows of the batched forward

    def __init__(self, engine: SpeculativeEngine, token_budget: int | None = None) -> None:
        if not supports_batching(engine.model):
            raise ValueError(f"batched rounds need full-attention cache layers; "
                             f"{type(engine.model).__name__} has others (use max_batch_size=1)")
        if token_budget is not None and token_budget < 1:
            raise ValueError(f"token_budget must be >= 1, got {token_budget}")
        self.engine = engine
        self.token_budget = token_budget
        self.cost = CostLine(prior_line(engine.device.type))

    @torch.no_grad()
    def step(self, states: Sequence[GenerationState]) -> BatchResult:
        """Run one round of every state (each at most once; all unfinished).

        A failure of a request's own part (its logits processors, its stop criteria) is reported
        in `errors` and leaves that request as before the round; a failure of the shared forward
        restores every request and raises.
        """
        ids = [s.request_id for s in states]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a request appears twice in the batch: {ids}")
        for state in states:
            self.engine.check_unfinished(state)
        results: dict[str, RoundResult] = {}
        errors: dict[str, Exception] = {}
        timings = self._round(list(states), results, errors) if states else BatchTimings()
        return BatchResult(results=[results[i] for i in ids if i in results], timings=timings, errors=errors)

    def _round(self, states: list[GenerationState], results: dict[str, RoundResult],
               errors: dict[str, Exception]) -> BatchTimings:
        """The round; fills `results` / `errors` per request and returns the timings."""
        engine = self.engine
        clock = engine.sync_clock
        cached = [s.kv_len if s.started else 0 for s in states]
        prefilling = [c < s.prompt_len for s, c in zip(states, cached)]
        chunks = self._chunks(states, cached, prefilling)
        t0 = clock()
        try:
            # a row still short of its prompt drafts nothing and feeds its next chunk only
            whole = [i for i, chunk in enumerate(chunks) if chunk is None]
            drafted = self._propose([states[i] for i in whole], [cached[i] for i in whole])
            empty = states[0].input_ids.new_empty(0)
            proposals: list = [(empty, None)] * len(states)
            for i, proposal in zip(whole, drafted):
                proposals[i] = proposal
            t1 = clock()
            feeds, keeps = [], []
            for state, c, chunk, (candidates, _) in zip(states, cached, chunks, proposals):
                end = int(state.input_ids.shape[1]) if chunk is None else c + chunk
                feeds.append(torch.cat([state.input_ids[0, c:end], candidates]))
                keeps.append(0 if chunk is not None else int(candidates.shape[0]) + 1)
            for state in states:
                if state.target_cache is None:
                    state.target_cache = new_cache(engine.model)
            batch = RaggedBatch.of([s.target_cache for s in states], feeds, [s.max_length for s in states], keeps)
            t2 = clock()
            new_rows, capture = self._capture_features(states, prefilling, chunks, batch)
            with capture as captured:
                out = batch.forward(engine.model)
            features = {} if captured is None else dict(zip(new_rows, engine.features.vectors(captured)))
            t3 = clock()
        except Exception:
            for state, length in zip(states, cached):
                self._restore(state, length)
            raise
        settled = {}
        for row, (state, chunk, (candidates, draft_probs)) in enumerate(zip(states, chunks, proposals)):
            if chunk is not None:
                continue
            try:
                m = int(candidates.shape[0])
                logits = batch.logits_rows(out.logits, row, m + 1).float()
                scores = engine.process_scores(state, candidates, logits)
                settled[state.request_id] = engine.settle(state, candidates, draft_probs, scores)
            except Exception as exc:
                self._restore(state, cached[row])
                errors[state.request_id] = exc
        t4 = clock()
        self.cost.observe(sum(batch.fed), t4 - t1)
        for row, (state, chunk, (candidates, _), new) in enumerate(zip(states, chunks, proposals, prefilling)):
            if chunk is not None:
                results[state.request_id] = _chunk_result(state, t1 - t0, t4 - t1)
            elif state.request_id in settled:
                tokens, reason = settled[state.request_id]
                if row in features:
                    state.features, state.features_model = features[row], engine.features.fingerprint
                result = engine.record_round(
                    state, candidates, tokens, reason, prefill=new, draft_seconds=t1 - t0, verify_seconds=t4 - t1)
                tally_of(state.runtime).record(result.drafted, result.accepted)
                results[state.request_id] = result
        return BatchTimings(draft_seconds=t1 - t0, gather_seconds=t2 - t1, forward_seconds=t3 - t2,
                            settle_seconds=t4 - t3)

    def _chunks(self, states: list[GenerationState], cached: list[int], prefilling: list[bool]) -> list[int | None]:
        """Per row: None when it feeds all its unseen tokens (and drafts) this round, else the
        prompt tokens of its next chunk (a prompt that does not fit what the budget leaves).

        The decoding rows' tokens (unseen + the most drafts they may take) come first; the
        prefilling rows share the rest in order, each at least 1 token so every row advances.
        """
        chunks: list[int | None] = [None] * len(states)
        if self.token_budget is None:
            return chunks
        engine = self.engine
        left = self.token_budget - sum(int(s.input_ids.shape[1]) - c + max(engine.draft_limit(s), 0)
                                       for s, c, new in zip(states, cached, prefilling) if not new)
        for i, (state, c, new) in enumerate(zip(states, cached, prefilling)):
            if not new:
                continue
            rest = state.prompt_len - c
            room = max(left, 1)
            if rest > room:
                chunks[i] = room
            left -= min(rest, room)
        return chunks

    def _capture_features(self, states: list[GenerationState], prefilling: list[bool],
                          chunks: list[int | None], batch: RaggedBatch):
        """(the rows whose last prompt token is in this forward, hooks reading their
        length-prediction features there: `hf_laps.engine.features.capture_rows`; a null context
        when nobody needs them).

        Row i's feed starts at sum(f_j, j < i) and holds its prompt from token c_i, so its last
        prompt token is at start + prompt_len - 1 - c_i; the LM head sees only each row's last
        m + 1 positions, of which that token is the first.
        """
        rows = [i for i, (new, chunk) in enumerate(zip(prefilling, chunks)) if new and chunk is None]
        if self.engine.features is None or not rows:
            return rows, nullcontext(None)
        mid = [batch.starts[i] + states[i].prompt_len - 1 - batch.cached[i] for i in rows]
        final = [sum(batch.kept[:i]) for i in rows]
        return rows, self.engine.features.capture_rows(mid, final)

    def _propose(self, states: list[GenerationState], cached: list[int]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Every row's drafts; in a batch of 2+ rows only as many as pay off (`hf_laps.engine.draft_budget`).

        Only greedy rows are trimmed (`hf_laps.engine.draft_budget`: a sampled row's draft count decides
        how it consumes its generator); a sampled row's drafts count as fixed positions.
        """
        if not states:
            return []
        engine = self.engine
        limits = [max(engine.draft_limit(state), 0) for state in states]
        if len(states) == 1:  # B = 1 is the batch-1 round: every draft on offer
            return engine.draft.propose_rows(states, limits, lambda lengths: lengths)
        greedy = [not state.generation_config.do_sample for state in states]
        alphas = [tally_of(state.runtime).alpha for state in states]
        unseen = sum(int(state.input_ids.shape[1]) - c for state, c in zip(states, cached))
        line = self.cost.line
        return engine.draft.propose_rows(states, limits,
                                         lambda lengths: self._caps(alphas, lengths, greedy, unseen, line))

    @staticmethod
    def _caps(alphas: list[float], limits: list[int], greedy: list[bool], unseen: int,
              line: tuple[float, float]) -> list[int]:
        """`draft_lengths` over the greedy rows; sampled rows keep their limits."""
        fixed = sum(limit for limit, g in zip(limits, greedy) if not g)
        rows = [i for i, g in enumerate(greedy) if g]
        chosen = draft_lengths([alphas[i] for i in rows], [limits[i] for i in rows], unseen + fixed, line,
                               base_expected=float(len(limits)))
        caps = list(limits)
        for i, length in zip(rows, chosen):
            caps[i] = length
        return caps

    def _restore(self, state: GenerationState, cached: int) -> None:
        """Undo a round that did not commit: both caches back to what they held before it."""
        if cached == 0:
            state.target_cache = state.draft_cache = None
            return
        if state.kv_len > cached:
            crop_to(state.target_cache, cached)
        self.engine.draft.rollback(state, int(state.input_ids.shape[1]) - 1)


def _chunk_result(state: GenerationState, draft_seconds: float, verify_seconds: float) -> RoundResult:
    """The report of a round that only fed a chunk of the request's prompt: no tokens yet."""
    return RoundResult(request_id=state.request_id, drafted=0, accepted=0, new_token_ids=(), finished=False,
                       finish_reason=None, draft_seconds=draft_seconds, verify_seconds=verify_seconds,
                       prefill=True, kv_len=state.kv_len)
