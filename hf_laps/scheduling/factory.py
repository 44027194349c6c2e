"""make_policy: every scheduling policy by name (adding one = one module + one line here)."""
from __future__ import annotations

from typing import Callable

from .config import SchedulerConfig
from .fcfs import FCFSPolicy
from .gittins import GittinsPolicy
from .laps_sd import LapsSDPolicy
from .las import LASPolicy
from .lp_sjf import LPSJFPolicy
from .policy import Policy
from .predictors import LengthPredictor, make_predictor
from .srpt_oracle import SRPTOraclePolicy

_Builder = Callable[[SchedulerConfig, LengthPredictor | None], Policy]

# name -> builder(config, predictor); predictor is None unless the policy uses one.
_REGISTRY: dict[str, tuple[bool, _Builder]] = {
    "fcfs": (False, lambda config, predictor: FCFSPolicy()),
    "las": (False, lambda config, predictor: LASPolicy(config)),
    "lp-sjf": (True, lambda config, predictor: LPSJFPolicy(predictor)),
    "srpt-oracle": (False, lambda config, predictor: SRPTOraclePolicy()),
    "laps-sd": (True, lambda config, predictor: LapsSDPolicy(config, predictor)),
    "gittins": (True, lambda config, predictor: GittinsPolicy(predictor=predictor)),
}
POLICY_NAMES = tuple(_REGISTRY)


def make_policy(name: str, config: SchedulerConfig | None = None,
                predictor: LengthPredictor | None = None) -> Policy:
    """A fresh policy.

    Args:
        name: one of POLICY_NAMES.
        config: queue knobs for `las` / `laps-sd` (ignored by the others; `gittins` takes its
            GittinsConfig defaults, build GittinsPolicy(config, predictor) to change them); default SchedulerConfig().
        predictor: length predictor for `lp-sjf` / `laps-sd` / `gittins` (ignored by the others); default a
            fresh `learned` predictor with no history, which predicts max_new_tokens until the
            first request finishes. Give every compared policy its own instance.

    Raises:
        ValueError: unknown name.
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"unknown policy {name!r}; choose one of {POLICY_NAMES}")
    uses_predictor, build = entry
    if config is None:
        config = SchedulerConfig()
    elif not isinstance(config, SchedulerConfig):
        raise TypeError(f"config must be a SchedulerConfig, got {type(config).__name__}")
    if uses_predictor and predictor is None:
        predictor = make_predictor("learned")
    return build(config, predictor if uses_predictor else None)
