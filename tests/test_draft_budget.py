"""Goodput-aware draft lengths (`hf_laps.engine.draft_budget`): the allocation is the throughput optimum,
the cost line and the acceptance tally learn what they should, and a batched round that trims
its drafts still reproduces plain greedy decoding.
"""
from __future__ import annotations

import itertools

import pytest

from hf_laps import EngineConfig, SpeculativeEngine
from hf_laps.engine.batched_round import BatchedRound
from hf_laps.engine.draft_budget import PRIOR_LINE, AcceptanceTally, CostLine, draft_lengths, prior_line, tally_of
import hf_reference as ref
from tiny_models import noisy_draft, prompts


def throughput(alphas, lengths, base_tokens, line) -> float:
    """Expected tokens per second of a round: rows emit 1 + sum_j alpha^j, it costs a + b T."""
    a, b = line
    expected = sum(1 + sum(alpha**j for j in range(1, k + 1)) for alpha, k in zip(alphas, lengths))
    return expected / (a + b * (base_tokens + sum(lengths)))


@pytest.mark.parametrize("line", [(1.0, 0.02), (1.0, 0.2), (0.0, 1.0), (1.0, 0.0), (0.3, 0.05)])
def test_draft_lengths_maximise_the_round_throughput(line):
    """Brute force over every allocation of small batches: the greedy choice is the optimum."""
    cases = [([0.9, 0.5, 0.1], [3, 3, 3], 3), ([0.6, 0.6], [4, 1], 2), ([0.95, 0.2, 0.7, 0.4], [2, 2, 3, 1], 40)]
    for alphas, limits, base in cases:
        chosen = draft_lengths(alphas, limits, base, line)
        assert all(0 <= k <= limit for k, limit in zip(chosen, limits))
        best = max(throughput(alphas, lengths, base, line)
                   for lengths in itertools.product(*(range(limit + 1) for limit in limits)))
        assert throughput(alphas, chosen, base, line) == pytest.approx(best, rel=1e-12)


def test_free_positions_keep_every_draft_and_dear_ones_keep_none():
    assert draft_lengths([0.1, 0.9], [10, 10], 2, (1.0, 0.0)) == [10, 10]
    assert draft_lengths([0.1, 0.9], [10, 10], 2, (0.01, 1.0)) == [0, 0]
    # a compute-bound line: a prefill round's many positions make a likely draft pay
    assert draft_lengths([0.5], [10], 1, (0.0, 1.0)) == [0]
    assert draft_lengths([0.5], [10], 60, (0.0, 1.0)) == [5]
    # before any fit: on an accelerator drafts as at batch 1; on a CPU only the likely ones
    assert prior_line("cuda") == PRIOR_LINE
    assert draft_lengths([0.1, 0.5], [10, 3], 2, PRIOR_LINE) == [10, 3]
    assert draft_lengths([0.1, 0.5], [10, 3], 8, prior_line("cpu")) == [1, 3]


def test_cost_line_recovers_a_line_and_keeps_it_without_spread():
    cost = CostLine()
    assert cost.line == PRIOR_LINE and not cost.fitted
    for tokens in [8, 20, 12, 40, 9, 30]:
        cost.observe(tokens, 0.2 + 0.01 * tokens)
    assert cost.fitted
    assert cost.line == pytest.approx((0.2, 0.01), rel=1e-6)
    for _ in range(200):  # only T = 8 from now on, and slower (the machine got busy)
        cost.observe(8, 0.5)
    a, b = cost.line
    # it followed the new cost while the old rounds still gave a spread, then kept its last
    # line: no fit through one cluster, and no fall back to the prior
    assert a + 8 * b == pytest.approx(0.5, rel=0.05)
    assert b > 0 and cost.line != PRIOR_LINE


def test_acceptance_tally_estimates_and_forgets():
    tally = AcceptanceTally()
    assert tally.alpha == 0.5
    for _ in range(30):
        tally.record(drafted=4, accepted=3)  # 3 accepted, then one rejection
    assert tally.alpha == pytest.approx(3 / 4, abs=0.02)
    for _ in range(60):
        tally.record(drafted=0, accepted=0)  # not drafting: the estimate drifts back to the prior
    assert tally.alpha == pytest.approx(0.5, abs=0.05)
    runtime = {}
    assert tally_of(runtime) is tally_of(runtime)


@pytest.mark.parametrize("drafting", ["prompt-lookup", "draft-model"])
def test_dear_positions_trim_greedy_drafts_and_tokens_stay_exact(target, drafting):
    """A cost line where each position costs 10x a round's fixed part: greedy rows stop drafting
    after their prefill, and every request still equals plain greedy `generate`."""
    draft = noisy_draft(target, noise=0.3) if drafting == "draft-model" else None
    engine = SpeculativeEngine(target, assistant_model=draft, config=EngineConfig(draft_length=4), features=False)
    budgets = [18 + 7 * i for i in range(4)]
    drafted = {}
    for trim in (True, False):
        states = [engine.start(p, request_id=f"r{i}", max_new_tokens=b, do_sample=False)
                  for i, (p, b) in enumerate(zip(prompts(4), budgets))]
        batcher = BatchedRound(engine)
        batcher.cost.observe = lambda tokens, seconds: None  # keep the line below
        # positions 10x the fixed part, or free (then every draft on offer is verified)
        batcher.cost.line = (0.1, 1.0) if trim else (1.0, 0.0)
        drafted[trim] = 0
        while not all(s.finished for s in states):
            live = [s for s in states if not s.finished]
            outcome = batcher.step(live)
            if len(live) > 1:
                drafted[trim] += sum(r.drafted for r in outcome.results if not r.prefill)
        expected = [ref.plain_greedy(target, p, max_new_tokens=b) for p, b in zip(prompts(4), budgets)]
        assert [s.output_ids for s in states] == expected
    assert drafted[True] == 0 < drafted[False]


def test_sampled_rows_keep_their_drafts(target):
    """Trimming a sampled row would change how it consumes its generator: it is never trimmed."""
    engine = SpeculativeEngine(target, assistant_model=noisy_draft(target, noise=0.3),
                               config=EngineConfig(draft_length=4), features=False)
    states = [engine.start(p, max_new_tokens=12, min_new_tokens=12, do_sample=True, seed=i) for i, p in enumerate(prompts(3))]
    batcher = BatchedRound(engine)
    batcher.cost.line = (0.1, 1.0)
    batcher.step(states)
    outcome = batcher.step(states)
    assert [r.drafted for r in outcome.results] == [4, 4, 4]


def test_the_chosen_batch_s_width_decides_the_drafts_low_acceptance_rows_draft_nothing_when_wide():
    """The planner's batch is what `BatchedRound._propose` trims for: the same low-acceptance row
    keeps drafts in a narrow batch and drafts nothing (K = 0) in a wide one (CPU prior line)."""
    line = prior_line("cpu")
    narrow = draft_lengths([0.2, 0.9], [10, 10], 2, line)
    wide = draft_lengths([0.2] + [0.9] * 31, [10] * 32, 32, line)
    assert narrow[0] >= 1
    assert wide[0] == 0
    assert sum(wide) / 32 < sum(narrow) / 2   # speculation shrinks per row as the batch widens
