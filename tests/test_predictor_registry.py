"""The predictor registry: one recipe for run, bench, the studies and the Python API."""
from __future__ import annotations

import json

import pytest

from hf_laps.scheduling import RequestSpec
from hf_laps.scheduling.predictors.feature_codec import encode_features
from hf_laps.scheduling.predictors.registry import NOISY_SIGMA, build_predictor, features_model_of, predictor_factory

MODEL_A, MODEL_B = "ModelA:h8:layer1/2:d4:seed0:w0", "ModelB:h8:layer1/2:d4:seed0:w0"


def write_history(path, model: str, count: int = 40) -> None:
    """Records whose length follows feature 0 (long when it is high), caps all equal."""
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(count):
            high = n % 2 == 0
            z = [2.0 if high else -2.0, 0.0, 0.0, 0.0]
            handle.write(json.dumps({
                "custom_id": f"h{n}", "prompt_tokens": 20, "max_new_tokens": 512,
                "output_tokens": 400 if high else 10, "rounds": [[0, 0, 0.1]],
                "features": encode_features(z, model)}) + "\n")


def spec(z0: float) -> RequestSpec:
    return RequestSpec("q", 0.0, 20, 512, features=(z0, 0.0, 0.0, 0.0))


def test_hidden_learns_from_history_when_fingerprints_match(tmp_path):
    path = tmp_path / "h.jsonl"
    write_history(path, MODEL_A)
    predictor = build_predictor("hidden", history=[str(path)], features_model=MODEL_A)
    assert predictor.predict(spec(2.0)) > 4 * predictor.predict(spec(-2.0))


def test_hidden_ignores_features_of_another_model(tmp_path):
    path = tmp_path / "h.jsonl"
    write_history(path, MODEL_B)
    with pytest.warns(UserWarning):
        predictor = build_predictor("hidden", history=[str(path)], features_model=MODEL_A)
    # only the cheap model learned (same cap and prompt for all): one answer for both
    assert predictor.predict(spec(2.0)) == pytest.approx(predictor.predict(spec(-2.0)))


def test_exclude_drops_the_replayed_requests(tmp_path):
    path = tmp_path / "h.jsonl"
    write_history(path, MODEL_A, count=4)
    factory = predictor_factory("learned", history=[str(path)], exclude={"h0", "h1"})
    assert sorted(s.request_id for s, _ in factory.examples) == ["h2", "h3"]


def test_factories_give_fresh_instances(tmp_path):
    path = tmp_path / "h.jsonl"
    write_history(path, MODEL_A)
    factory = predictor_factory("learned", history=[str(path)])
    first, second = factory(), factory()
    first.observe(RequestSpec("x", 0.0, 5, 512, prompt="x"), 3)
    assert first is not second and first.observations == second.observations + 1


def test_noisy_sigma_defaults_once_and_only_noisy_takes_it():
    assert predictor_factory("noisy-oracle").options["sigma"] == NOISY_SIGMA
    assert predictor_factory("noisy-oracle", sigma=1.0).options["sigma"] == 1.0
    with pytest.raises(ValueError, match="sigma"):
        predictor_factory("learned", sigma=0.5)
    with pytest.raises(ValueError, match="unknown predictor"):
        predictor_factory("nope")


def test_features_model_of_reads_the_first_blob():
    assert features_model_of([None, encode_features([0.0] * 4, MODEL_A)]) == MODEL_A
    assert features_model_of([None]) is None
