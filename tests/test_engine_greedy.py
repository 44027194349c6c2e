"""Greedy exactness of the resumable step against two independent references.

Under greedy decoding in fp32 on CPU, speculative decoding is lossless: every request's tokens
must equal plain `target.generate(do_sample=False)` and transformers' own assisted generation,
whatever the interleaving, offloading or checkpointing between rounds; and the per-round
(drafted, accepted) must equal transformers' own with the same fixed draft length.
"""
from __future__ import annotations

import json
import pytest

from hf_laps import EngineConfig, SpeculativeEngine
import hf_reference as ref
from tiny_models import prompts

N = 4
NEW_TOKENS = 40


def make_engine(target, draft, kind):
    if kind == "draft-model":
        return SpeculativeEngine(target, assistant_model=draft, config=EngineConfig(draft_length=N))
    return SpeculativeEngine(target, config=EngineConfig(draft_length=N))


def poison_move(state, tmp_path, index):
    """Move every tensor to fresh storage and fill the old storage with NaN / -1.

    Any stale reference to the old tensors would then corrupt the output.
    """
    old = [tensor for _, _, _, tensor in state._cache_tensors()] + [state.input_ids]
    state.to("cpu", copy=True)
    for tensor in old:
        tensor.fill_(float("nan") if tensor.is_floating_point() else -1)
    return state


def checkpoint(engine, state, tmp_path, index):
    path = tmp_path / f"state-{state.request_id}-{index}.safetensors"
    state.save(path)
    return engine.load_state(path)


def run_interleaved(engine, prompt_list, between, tmp_path):
    """Round-robin one round per request; `between(state)` runs after each round."""
    states = [engine.start(p, request_id=f"r{i}", max_new_tokens=NEW_TOKENS, do_sample=False) for i, p in enumerate(prompt_list)]
    rounds = {s.request_id: [] for s in states}
    index = 0
    while not all(s.finished for s in states):
        for i, state in enumerate(states):
            if state.finished:
                continue
            result = engine.step(state)
            rounds[state.request_id].append((result.drafted, result.accepted))
            if not state.finished and between is not None:
                states[i] = between(engine, state, tmp_path, index)
            index += 1
    return states, rounds


BETWEEN = {
    "none": None,
    "offload-poisoned": lambda engine, state, tmp_path, index: poison_move(state, tmp_path, index),
    "checkpoint-file": checkpoint,
    "mixed": lambda engine, state, tmp_path, index: (
        checkpoint(engine, state, tmp_path, index) if index % 2 else poison_move(state, tmp_path, index)
    ),
}


@pytest.mark.parametrize("kind", ["draft-model", "prompt-lookup"])
@pytest.mark.parametrize("mode", list(BETWEEN))
def test_interleaved_equals_plain_and_hf_assisted(target, draft, kind, mode, tmp_path):
    engine = make_engine(target, draft, kind)
    prompt_list = prompts(3)
    states, rounds = run_interleaved(engine, prompt_list, BETWEEN[mode], tmp_path)
    for state, prompt in zip(states, prompt_list):
        expected = ref.plain_greedy(target, prompt, max_new_tokens=NEW_TOKENS)
        assert state.output_ids == expected
        if kind == "draft-model":
            hf_tokens, hf_rounds = ref.assisted_greedy(target, prompt, draft=draft, n=N, max_new_tokens=NEW_TOKENS)
        else:
            hf_tokens, hf_rounds = ref.assisted_greedy(target, prompt, prompt_lookup=N, max_new_tokens=NEW_TOKENS)
        assert state.output_ids == hf_tokens
        if kind == "prompt-lookup":
            hf_rounds = cap_at_budget(hf_rounds, NEW_TOKENS)
        assert rounds[state.request_id] == hf_rounds


def cap_at_budget(rounds, max_new_tokens):
    """transformers' prompt lookup may draft past the budget and cut afterwards; we never draft
    more than max_new_tokens - generated - 1 (the target adds one token), as its draft-model path
    does. Same tokens and acceptance; only the count of wasted drafts differs."""
    capped, generated = [], 0
    for drafted, accepted in rounds:
        capped.append((min(drafted, max_new_tokens - generated - 1), accepted))
        generated += accepted + 1
    return capped


def test_rounds_exercise_partial_acceptance(target, draft):
    """The fixture must actually test rollback: rounds accept 0, some, and all n drafts."""
    engine = make_engine(target, draft, "draft-model")
    seen = set()
    for prompt in prompts(6):
        state = engine.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False)
        seen.update(a for a, count in enumerate(state.metrics.acceptance_histogram) if count)
    assert 0 in seen and N in seen and seen & set(range(1, N))


def test_metrics_are_consistent(target, draft):
    engine = make_engine(target, draft, "draft-model")
    state = engine.start(prompts(1)[0], max_new_tokens=NEW_TOKENS, do_sample=False)
    results = []
    while not state.finished:
        results.append(engine.step(state))
    m = state.metrics
    assert m.num_spec_steps == len(results)
    assert m.num_draft_tokens == sum(r.drafted for r in results)
    assert m.num_accepted_draft_tokens == sum(r.accepted for r in results)
    assert sum(m.acceptance_histogram) == len(results)
    assert sum(r.emitted for r in results) == state.num_generated == NEW_TOKENS
    assert m.mean_acceptance_length == pytest.approx(1 + m.num_accepted_draft_tokens / m.num_spec_steps)
    assert results[0].prefill and not any(r.prefill for r in results[1:])
    assert all(r.emitted == r.accepted + 1 for r in results)
    assert state.kv_bytes > 0
    # the target cache holds every committed token but the last one
    assert state.kv_len == state.input_ids.shape[1] - 1


def test_heuristic_schedule_matches_transformers(target, draft):
    engine = SpeculativeEngine(
        target, assistant_model=draft, config=EngineConfig(draft_length=N, draft_schedule="heuristic")
    )
    for prompt in prompts(3):
        state = engine.start(prompt, max_new_tokens=NEW_TOKENS, do_sample=False)
        ours = []
        while not state.finished:
            r = engine.step(state)
            ours.append((r.drafted, r.accepted))
        hf_tokens, hf_rounds = ref.assisted_greedy(
            target, prompt, draft=draft, n=N, schedule="heuristic", max_new_tokens=NEW_TOKENS
        )
        assert state.output_ids == hf_tokens
        assert ours == hf_rounds
    # and our schedule lives in the request: the shared draft config is never written
    draft.generation_config.num_assistant_tokens = 123
    state = engine.generate(prompts(1)[0], max_new_tokens=NEW_TOKENS, do_sample=False)
    assert draft.generation_config.num_assistant_tokens == 123
    assert state.draft_length != N  # the schedule did move, inside the request


def test_state_file_is_not_a_pickle(target, draft, tmp_path):
    engine = make_engine(target, draft, "draft-model")
    state = engine.start(prompts(1)[0], max_new_tokens=8, do_sample=False)
    engine.step(state)
    path = tmp_path / "s.safetensors"
    state.save(path)
    data = path.read_bytes()
    header = int.from_bytes(data[:8], "little")     # safetensors: u64 header length, then JSON
    assert data[8:9] == b"{" and json.loads(data[8:8 + header])["__metadata__"]["hf_laps_state"]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04not a state")
    with pytest.raises(ValueError, match="not a hf-laps state file"):
        engine.load_state(bad)
