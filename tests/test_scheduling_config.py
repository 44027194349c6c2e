"""SchedulerConfig: the documented defaults (docs/design.md) and clear validation errors."""
import math
from dataclasses import fields

import pytest

from hf_laps.scheduling import SchedulerConfig, make_policy
from hf_laps.scheduling.config import GittinsConfig

pytestmark = pytest.mark.torchfree


def test_defaults_are_the_documented_values():
    cfg = SchedulerConfig()
    assert cfg.attained_unit == "seconds"                 # docs/design.md#attained-seconds
    assert cfg.num_queues == 4                            # docs/design.md#queues-and-thresholds
    assert cfg.threshold_multiplier == 2.0                # docs/design.md#queues-and-thresholds
    assert cfg.sup1_rounds == 8 and cfg.sup1_seconds is None
    assert cfg.sup1_fallback_seconds == math.inf
    assert cfg.run_to_threshold is True                   # docs/design.md#run-to-threshold
    assert (cfg.stability_window, cfg.stability_delta, cfg.stability_gamma) == (4, 0.05, 0.25)
    assert cfg.perceptible is True
    assert cfg.thresholds(1.5) == [1.5, 3.0, 6.0]         # Sup_j = Sup_1 * M**(j-1), j < K


@pytest.mark.parametrize("field, value, words", [
    ("num_queues", 0, "num_queues must be an integer >= 1"),
    ("num_queues", 2.5, "num_queues must be an integer"),
    ("num_queues", True, "num_queues must be an integer"),
    ("threshold_multiplier", 1.0, "threshold_multiplier (M) must be a number > 1"),
    ("threshold_multiplier", float("nan"), "threshold_multiplier"),
    ("sup1_rounds", 0, "sup1_rounds must be an integer >= 1"),
    ("sup1_seconds", 0.0, "sup1_seconds must be None"),
    ("sup1_seconds", math.inf, "sup1_seconds must be None"),
    ("sup1_fallback_seconds", -1.0, "sup1_fallback_seconds must be > 0"),
    ("stability_window", 0, "stability_window must be an integer >= 1"),
    ("stability_delta", -0.1, "stability_delta must be a finite number >= 0"),
    ("stability_gamma", math.inf, "stability_gamma must be a finite number >= 0"),
    ("attained_unit", "tokens", "attained_unit must be one of"),
    ("run_to_threshold", 1, "run_to_threshold must be True or False"),
])
def test_validation_errors_name_the_field(field, value, words):
    with pytest.raises(ValueError) as info:
        SchedulerConfig(**{field: value})
    assert words in str(info.value)
    assert repr(value) in str(info.value) or field == "threshold_multiplier"


def test_make_policy_errors():
    with pytest.raises(ValueError, match="unknown policy 'sjf'; choose one of"):
        make_policy("sjf")
    with pytest.raises(TypeError, match="config must be a SchedulerConfig"):
        make_policy("las", config={"num_queues": 3})


def test_as_dict_round_trips():
    cfg = SchedulerConfig(num_queues=6, sup1_seconds=0.5)
    assert SchedulerConfig(**{**cfg.as_dict(), "gittins": GittinsConfig(**cfg.as_dict()["gittins"])}) == cfg
    assert set(cfg.as_dict()) == {f.name for f in fields(SchedulerConfig)}
