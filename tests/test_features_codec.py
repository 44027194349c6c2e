"""The feature codec: fp16 + base64 blobs that round-trip, and never raise on bad input."""
import warnings

import pytest

from hf_laps.scheduling.predictors.feature_codec import decode_features, encode_features

pytestmark = pytest.mark.torchfree

MODEL = "LlamaForCausalLM:h64:layer1/2:d4:seed0:wabcdef12"


def test_round_trip_within_half_precision():
    values = [0.0, 1.0, -2.5, 0.3333, 12.75, -0.001]
    blob = encode_features(values, MODEL)
    assert blob["dim"] == len(values) and blob["model"] == MODEL
    decoded = decode_features(blob, expected_model=MODEL)
    assert decoded == pytest.approx(values, rel=1e-3, abs=1e-3)
    assert decode_features(blob) == decoded          # no expected model: any model is accepted


@pytest.mark.parametrize("damage", [
    lambda b: {**b, "fp16": b["fp16"][:-4]},          # truncated: wrong byte count
    lambda b: {**b, "fp16": "not base64 !!"},
    lambda b: {**b, "dim": 3},
    lambda b: {**b, "dim": "8"},
    lambda b: {k: v for k, v in b.items() if k != "model"},
    lambda b: "a string",
    lambda b: {**b, "dim": 1, "fp16": "AHw="},        # bytes 00 7c: fp16 +inf
])
def test_damaged_blob_warns_and_gives_none(damage):
    blob = damage(encode_features([1.0, 2.0, 3.0, 4.0], MODEL))
    with pytest.warns(UserWarning, match="features ignored"):
        assert decode_features(blob, expected_model=MODEL if isinstance(blob, dict) and "model" in blob else None) is None


def test_features_of_another_model_warn_and_give_none():
    blob = encode_features([1.0, 2.0], "GPT2LMHeadModel:h768:layer6/12:d32:seed0:w00000000")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert decode_features(blob, expected_model=MODEL) is None
    assert len(caught) == 1 and "expected" in str(caught[0].message)
    assert "\n" not in str(caught[0].message)


def test_missing_blob_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_features(None, expected_model=MODEL) is None


def test_non_finite_values_are_refused_at_encoding():
    with pytest.raises(ValueError, match="finite"):
        encode_features([float("nan")], MODEL)
