"""The `hidden` length predictor: learns a signal carried by the features, falls back to the
cheap features without them, gives calibrated quantiles, trains from timing logs."""
import json
import warnings

import pytest

from hf_laps.scheduling import RequestSpec, make_predictor
from hf_laps.scheduling.predictors.feature_codec import encode_features
from hf_laps.scheduling.predictors.hidden import HiddenStatePredictor
from helpers import FEATURE_DIM as DIM, synthetic_feature_examples as synthetic

pytestmark = pytest.mark.torchfree

MODEL = "TinyModel:h64:layer1/2:d4:seed0:w00000000"


def spearman(a, b):
    """Rank correlation of two tie-free sequences."""
    ra = {i: r for r, i in enumerate(sorted(range(len(a)), key=a.__getitem__))}
    rb = {i: r for r, i in enumerate(sorted(range(len(b)), key=b.__getitem__))}
    n = len(a)
    return 1 - 6 * sum((ra[i] - rb[i]) ** 2 for i in range(n)) / (n * (n * n - 1))


def held_out_spearman(predictor, test):
    return spearman([predictor.predict(s) for s, _ in test], [t + 1e-6 * i for i, (_, t) in enumerate(test)])


def test_learns_a_signal_in_the_features():
    train, test = synthetic(200), synthetic(100, seed=1)
    predictor = make_predictor("hidden").fit(train)
    assert held_out_spearman(predictor, test) > 0.85
    without = [(RequestSpec(s.request_id, 0.0, s.prompt_tokens, s.max_new_tokens), t) for s, t in train]
    blind = make_predictor("hidden").fit(without)
    assert abs(held_out_spearman(blind, test)) < 0.3


def test_falls_back_to_cheap_features_without_hidden_ones():
    train = synthetic(200)
    predictor = HiddenStatePredictor().fit(train)
    cheap_only = HiddenStatePredictor().fit(
        [(RequestSpec(s.request_id, 0.0, s.prompt_tokens, s.max_new_tokens, is_chat=s.is_chat), t)
         for s, t in train])
    bare = RequestSpec("new", 0.0, prompt_tokens=40, max_new_tokens=4096, is_chat=True)
    assert predictor.predict(bare) == pytest.approx(cheap_only.predict(bare))
    assert 1 <= predictor.predict(bare) <= 4096


def test_features_of_another_size_are_ignored_with_one_warning():
    predictor = HiddenStatePredictor().fit(synthetic(100))
    odd = RequestSpec("odd", 0.0, 40, 4096, features=(1.0, 2.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = predictor.predict(odd), predictor.predict(odd)
    assert first == second == predictor.predict(RequestSpec("odd", 0.0, 40, 4096))
    assert len(caught) == 1


def test_quantiles_are_ordered_and_calibrated():
    predictor = HiddenStatePredictor().fit(synthetic(300))
    test = synthetic(200, seed=2)
    levels = [0.1, 0.5, 0.9]
    below = [0, 0, 0]
    for spec, truth in test:
        q = predictor.predict_quantiles(spec, levels)
        assert q == sorted(q) and all(1 <= v <= spec.max_new_tokens for v in q)
        below = [b + (truth <= v) for b, v in zip(below, q)]
    fractions = [b / len(test) for b in below]
    assert fractions[0] < 0.25 and 0.35 < fractions[1] < 0.65 and fractions[2] > 0.75


def test_before_any_data_quantiles_spread_up_to_the_cap():
    spec = RequestSpec("x", 0.0, 10, 256)
    predictor = HiddenStatePredictor()
    assert predictor.predict(spec) == 256
    assert predictor.predict_quantiles(spec, [0.0, 0.5, 1.0]) == pytest.approx([1, 16, 256])
    with pytest.raises(ValueError):
        predictor.predict_quantiles(spec, [1.5])


def test_trains_from_a_timing_log_and_skips_another_models_features(tmp_path):
    log = tmp_path / "earlier.timing.jsonl"
    with open(log, "w") as handle:
        for spec, truth in synthetic(150):
            handle.write(json.dumps({
                "custom_id": spec.request_id, "prompt_tokens": spec.prompt_tokens,
                "max_new_tokens": spec.max_new_tokens, "output_tokens": truth,
                "is_chat": spec.is_chat, "rounds": [[0, 0, 0.1]],
                "features": encode_features(spec.features, MODEL)}) + "\n")
        handle.write(json.dumps({"custom_id": "other", "prompt_tokens": 9, "max_new_tokens": 64,
                                 "output_tokens": 5,
                                 "features": encode_features([0.0] * DIM, "SomeOtherModel")}) + "\n")
        handle.write(json.dumps({"custom_id": "broken", "prompt_tokens": 9, "max_new_tokens": 64,
                                 "output_tokens": 5, "features": {"model": MODEL, "dim": DIM,
                                                                  "fp16": "AAAA"}}) + "\n")
    with pytest.warns(UserWarning, match="features ignored"):
        predictor = make_predictor("hidden", history=str(log), features_model=MODEL)
    assert predictor.cheap.count == 152 and predictor.full.count == 150
    assert held_out_spearman(predictor, synthetic(100, seed=3)) > 0.85
