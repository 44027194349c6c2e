"""Chunked prefill (`BatchedRound(token_budget=...)`): a ~3,000-token prompt joins a running batch
chunk by chunk, the decoding rows keep emitting tokens every round, its length-prediction
features are still read at its last prompt token, and every request's greedy tokens equal plain
`generate` (up to near-ties, counted).
"""
from __future__ import annotations

import torch

from hf_laps import EngineConfig, SpeculativeEngine
from hf_laps.engine.batched_round import BatchedRound
import hf_reference as ref
from tiny_models import EOS, prompts, tiny_target

LONG = 3000
BUDGET = 512


def test_a_long_prompt_joins_in_chunks_while_others_decode():
    target = tiny_target(max_position_embeddings=4096)
    engine = SpeculativeEngine(target, config=EngineConfig(draft_length=4))
    generator = torch.Generator().manual_seed(5)
    long_prompt = torch.randint(1, EOS - 1, (LONG,), generator=generator).tolist()
    short = prompts(2)
    prompt_list = short + [long_prompt]
    caps = [40, 40, 12]
    states = [engine.start(p, request_id=f"r{i}", max_new_tokens=c, do_sample=False)
              for i, (p, c) in enumerate(zip(prompt_list, caps))]
    batcher = BatchedRound(engine, token_budget=BUDGET)
    batcher.step(states[:2])  # the short ones are decoding
    chunks, kv = 0, []
    while not states[2].num_generated:
        outcome = batcher.step(states)
        by_id = {r.request_id: r for r in outcome.results}
        assert by_id["r0"].emitted >= 1 and by_id["r1"].emitted >= 1  # never stalled
        long_round = by_id["r2"]
        assert long_round.prefill
        kv.append(states[2].kv_len)
        chunks += 1
        if long_round.emitted == 0:  # a chunk that is not the last one: no tokens, no features
            assert long_round.features is None and states[2].features is None
            assert states[2].kv_len < LONG
    # ceil(3000 / (512 - the decoding rows' 2 x (1 + 4))) rounds, each chunk at most the budget
    assert chunks == -(-LONG // (BUDGET - 10))
    assert all(0 < b - a <= BUDGET for a, b in zip([0] + kv, kv))
    # features from the last chunk's forward, equal to a batch-1 prefill's up to fp rounding
    alone = SpeculativeEngine(target, config=EngineConfig(draft_length=4))
    single = alone.step(alone.start(long_prompt, max_new_tokens=12, do_sample=False))
    assert states[2].features is not None and states[2].features_model == engine.features.fingerprint
    assert torch.allclose(torch.tensor(states[2].features), torch.tensor(single.features), atol=1e-3, rtol=1e-3)
    while not all(s.finished for s in states):
        batcher.step([s for s in states if not s.finished])
    expected = [ref.plain_greedy(target, p, max_new_tokens=c) for p, c in zip(prompt_list, caps)]
    assert ref.check_near_ties(target, prompt_list, states, expected) == 0


def test_without_a_budget_a_prompt_joins_whole():
    target = tiny_target(max_position_embeddings=4096)
    engine = SpeculativeEngine(target, config=EngineConfig(draft_length=4), features=False)
    state = engine.start([i % 120 + 1 for i in range(699)], max_new_tokens=3, do_sample=False)
    (result,) = BatchedRound(engine).step([state]).results
    assert result.prefill and result.emitted >= 1 and state.kv_len >= 699
