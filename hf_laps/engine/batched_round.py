"""`BatchedRound`: one speculative round for B requests that share ONE target verify forward.

A batch-1 round spends most of its time reading the target's weights; B requests verified in one
forward read them once. Everything per request stays as in `SpeculativeEngine.step`, through the
engine's own phases, so the B = 1 round is the batch-1 round:

  1. each request drafts (prompt lookup, or the draft model on the request's own cache, all
     rows in one draft forward per step); draft lengths are ragged, some draft nothing; in a batch of 2+
     only the greedy drafts worth their positions in the forward are kept (`hf_laps.engine.draft_budget`);
  2. ONE target forward over the ragged rows [unseen committed tokens + drafts] on a copy of
     their caches in one batch layout (`hf_laps.engine.batch_kv`: packed by default, or padded), then
     each row's new K/V is appended to its own cache;
  3. per request: its logits processors, greedy / sampled acceptance with its own generator,
     the cut at budget / EOS / stop, the commit and rollback, its metrics and schedule.

A request that has never run (no cache yet) prefills its prompt in its first round. In the
packed layout its prompt joins the batch (a row costs only its own tokens), and its
length-prediction features (`hf_laps.engine.features`) are read at its own last prompt token of that
forward; in the padded layout one long prompt would pad every row to its length, so there new
requests run their first round alone through `engine.step` before the batched part. After
`step` every state is again a plain `GenerationState` with its own caches: it may leave the
batch, be parked, saved, and come back.

Under greedy decoding a row's logits differ from the batch-1 ones only by fp rounding (another
matmul shape), so tokens can differ from batch 1 only where the target's top two logits are
closer than that rounding (tests/test_batched_round.py counts such near-ties).
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import torch

from hf_laps.engine.batch_kv import LAYOUTS, supports_batching
from hf_laps.compat import crop_to, new_cache
from hf_laps.engine.draft_budget import CostLine, draft_lengths, prior_line, tally_of
from hf_laps.engine.speculative import SpeculativeEngine
from hf_laps.engine.state import GenerationState, RoundResult


@dataclass(frozen=True)
class BatchTimings:
    """Where one batched round's wall seconds went (the KV copy cost is gather + scatter)."""

    prefill_seconds: float = 0.0   # batch-1 first rounds of new requests (padded layout)
    draft_seconds: float = 0.0     # every row's drafting
    gather_seconds: float = 0.0    # per-request caches -> the batch cache
    forward_seconds: float = 0.0   # the one target forward
    scatter_seconds: float = 0.0   # each row's new K/V -> its own cache
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

    A batched row's RoundResult reports the shared part of the round: draft_seconds = all rows'
    drafting, verify_seconds = gather + forward + scatter + settle, i.e. the time the request
    waited for its tokens. A prefilling row reports its own batch-1 round.
    """

    results: list[RoundResult]
    timings: BatchTimings
    errors: dict[str, Exception] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.timings.seconds


class BatchedRound:
    """Runs rounds for several `GenerationState`s of one engine at once.

    `layout`: "packed" (default; every row in one unpadded sequence) or "padded" (one row per
    request); `hf_laps.engine.batch_kv` describes both and docs/engine.md compares them.

    Raises:
        ValueError: the target's cache has non-full-attention layers (sliding windows), which
            the batch layouts do not support; use batch size 1 for such models.
    """

    def __init__(self, engine: SpeculativeEngine, layout: str = "packed", goodput_drafts: bool = True) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
        self.gather = LAYOUTS[layout]
        # packed rows cost their own tokens only, so a new request's prompt joins the batch (its
        # length-prediction features are read at its own last prompt token of the packed forward);
        # padded, one long prompt would pad every row to its length: prefill alone instead
        self.batch_prefill = layout == "packed"
        if not supports_batching(engine.model):
            raise ValueError(f"batched rounds need full-attention cache layers; "
                             f"{type(engine.model).__name__} has others (use max_batch_size=1)")
        self.engine = engine
        # batches of 2+ rows verify only the drafts that pay for their positions (draft_budget)
        self.goodput_drafts = goodput_drafts
        self.cost = CostLine(prior_line(engine.device.type))
        config = engine.model.config.get_text_config()
        pad = getattr(config, "pad_token_id", None)
        self.pad_token_id = 0 if pad is None else int(pad)

    @torch.no_grad()
    def step(self, states: Sequence[GenerationState]) -> BatchResult:
        """Run one round of every state (each at most once; all unfinished).

        A failure of a request's own part (its prefill round, its logits processors, its stop
        criteria) is reported in `errors` and leaves that request as before the round; a failure
        of the shared forward restores every request and raises.
        """
        ids = [s.request_id for s in states]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a request appears twice in the batch: {ids}")
        for state in states:
            self.engine.check_unfinished(state)
        started = time.perf_counter()
        results: dict[str, RoundResult] = {}
        errors: dict[str, Exception] = {}
        for state in states:
            if not state.started and not self.batch_prefill:
                try:
                    results[state.request_id] = self.engine.step(state)
                except Exception as exc:
                    # a first round that raised keeps no cache: the request is as before it
                    state.target_cache = state.draft_cache = None
                    errors[state.request_id] = exc
        prefill_seconds = time.perf_counter() - started
        batch = [s for s in states if s.request_id not in results and s.request_id not in errors]
        timings = BatchTimings(prefill_seconds=prefill_seconds)
        if batch:
            timings = self._round(batch, prefill_seconds, results, errors)
        return BatchResult(results=[results[i] for i in ids if i in results], timings=timings, errors=errors)

    def _round(self, states: list[GenerationState], prefill_seconds: float,
               results: dict[str, RoundResult], errors: dict[str, Exception]) -> BatchTimings:
        """The batched part; fills `results` / `errors` per request and returns the timings."""
        engine = self.engine
        clock = engine._sync_clock
        cached = [s.kv_len for s in states]
        prefilling = [not s.started for s in states]
        for state in states:
            if state.target_cache is None:
                state.target_cache = new_cache(engine.model)
        t0 = clock()
        try:
            proposals = self._propose(states, cached)
            t1 = clock()
            feeds = [torch.cat([s.input_ids[0, c:], candidates]) for s, c, (candidates, _) in zip(states, cached, proposals)]
            caches = [s.target_cache for s in states]
            keeps = [int(candidates.shape[0]) + 1 for candidates, _ in proposals]
            batch = self.gather(engine.model, caches, feeds, self.pad_token_id, keeps)
            t2 = clock()
            new_rows, capture = self._capture_features(states, prefilling, batch)
            with capture as captured:
                out = engine.model(**batch.forward_kwargs(), **{engine._cache_kw: batch.cache}, use_cache=True)
            features = {} if captured is None else dict(zip(new_rows, engine.features.vectors(captured)))
            t3 = clock()
            batch.scatter(caches)
            t4 = clock()
        except Exception:
            for state, length, new in zip(states, cached, prefilling):
                self._restore(state, length, new)
            raise
        settled = {}
        for row, (state, (candidates, draft_probs)) in enumerate(zip(states, proposals)):
            try:
                m = int(candidates.shape[0])
                logits = batch.logits_rows(out.logits, row, m + 1).float()
                scores = engine.process_scores(state, candidates, logits)
                settled[state.request_id] = engine.settle(state, candidates, draft_probs, scores)
            except Exception as exc:
                self._restore(state, cached[row], prefilling[row])
                errors[state.request_id] = exc
        t5 = clock()
        self.cost.observe(sum(batch.fed), t5 - t1)
        for row, (state, (candidates, _), new) in enumerate(zip(states, proposals, prefilling)):
            if state.request_id in settled:
                tokens, reason = settled[state.request_id]
                if row in features:
                    state.features, state.features_model = features[row], engine.features.fingerprint
                result = engine.record_round(
                    state, candidates, tokens, reason, prefill=new, draft_seconds=t1 - t0, verify_seconds=t5 - t1)
                tally_of(state.runtime).record(result.drafted, result.accepted)
                results[state.request_id] = result
        return BatchTimings(prefill_seconds=prefill_seconds, draft_seconds=t1 - t0, gather_seconds=t2 - t1,
                            forward_seconds=t3 - t2, scatter_seconds=t4 - t3, settle_seconds=t5 - t4)

    def _capture_features(self, states: list[GenerationState], prefilling: list[bool], batch):
        """(the new requests' rows, hooks reading their length-prediction features at their last
        prompt tokens: `hf_laps.engine.features.capture_rows`; a null context when nobody needs them).

        Packed, row i's feed starts at sum(f_j, j < i) and a new request feeds its prompt (L
        tokens) then its drafts, so its last prompt token is at start + L - 1; the LM head sees
        only each row's last m + 1 positions, of which that token is the first.
        """
        rows = [i for i, new in enumerate(prefilling) if new]
        if self.engine.features is None or not rows:
            return rows, nullcontext(None)
        starts = [sum(batch.fed[:i]) for i in rows]
        mid = [start + int(states[i].input_ids.shape[1]) - 1 for start, i in zip(starts, rows)]
        final = [sum(batch.kept[:i]) for i in rows]
        return rows, self.engine.features.capture_rows(mid, final)

    def _propose(self, states: list[GenerationState], cached: list[int]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Every row's drafts; in a batch of 2+ rows only as many as pay off (`hf_laps.engine.draft_budget`).

        Only greedy rows are trimmed (`hf_laps.engine.draft_budget`: a sampled row's draft count decides
        how it consumes its generator); a sampled row's drafts count as fixed positions.
        """
        engine = self.engine
        if len(states) == 1:  # B = 1 is the batch-1 round
            return [engine.propose(states[0])]
        trim = self.goodput_drafts
        greedy = [not state.generation_config.do_sample for state in states]
        alphas = [tally_of(state.runtime).alpha for state in states]
        unseen = sum(int(state.input_ids.shape[1]) - c for state, c in zip(states, cached))
        if engine.draft.uses_model:
            # a draft model pays a forward per draft step: cap the lengths before drafting, then
            # draft every row in one forward per step
            limits = [engine.draft_limit(state) for state in states]
            if trim:
                limits = self._caps(alphas, limits, greedy, unseen, self.cost.line)
            return engine.draft.propose_batch(states, limits)
        # prompt lookup is free and often finds nothing: allocate over what it actually proposed
        proposals = [engine.propose(state) for state in states]
        if not trim:
            return proposals
        caps = self._caps(alphas, [int(c.shape[0]) for c, _ in proposals], greedy, unseen, self.cost.line)
        return [(candidates[:cap], None if q is None else q[:cap]) for (candidates, q), cap in zip(proposals, caps)]

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

    def _restore(self, state: GenerationState, cached: int, new: bool) -> None:
        """Undo a round that did not commit: both caches back to what they held before it."""
        if new:
            state.target_cache = state.draft_cache = None
            return
        if state.kv_len > cached:
            crop_to(state.target_cache, cached)
        self.engine.draft.rollback(state, int(state.input_ids.shape[1]) - 1)
