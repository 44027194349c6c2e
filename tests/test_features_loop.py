"""Prefill features travel end to end: engine -> timing record -> replay -> the policy's predictor."""
from __future__ import annotations

import pytest

from hf_laps import EngineConfig, LapsGenerator
from hf_laps.replay.replayer import simulate
from hf_laps.replay.traces import Trace
from hf_laps.scheduling import make_policy, make_predictor
from hf_laps.scheduling.predictors.feature_codec import decode_features
from tiny_models import prompts, tiny_target


@pytest.fixture(scope="module")
def records():
    target = tiny_target()
    gen = LapsGenerator(target, policy="lp-sjf", predictor="hidden", engine_config=EngineConfig(draft_length=3),
                        progress=False)
    results = gen.generate(prompts(4), max_new_tokens=12, do_sample=False)
    assert all(r.error is None for r in results)
    return [r.timing for r in results], gen.engine.features


def test_the_timing_record_carries_the_prefill_features(records):
    logged, features = records
    for record in logged:
        assert record.features is not None and record.features["model"] == features.fingerprint
        values = decode_features(record.features, features.fingerprint)
        assert values is not None and len(values) == features.size


def test_a_replay_hands_the_logged_features_to_the_policy(records):
    logged, _ = records
    traces = [Trace.from_record(r) for r in logged]
    result = simulate(traces, make_policy("lp-sjf", predictor=make_predictor("hidden")))
    repredicted = {e["request_id"] for e in result.events if e["event"] == "repredict"}
    assert repredicted == {t.custom_id for t in traces}
