"""The registry: every scheduling policy (and length predictor) by name, with the facts callers need.

Adding a policy is one module (the Policy subclass) plus one registry entry: a
`register_policy` call in the list below, or, from another package, an entry point in the group
`hf_laps.policies` whose object is a PolicyEntry (loaded the first time the registry is read, so
`hf-laps run --policy my-policy` works once the package is installed):

    # pyproject.toml of the other package
    [project.entry-points."hf_laps.policies"]
    my-policy = "my_package.my_module:ENTRY"     # ENTRY = PolicyEntry("my-policy", build, ...)

The CLI's --policy choices, `hf-laps bench`, the replay studies and `make_policy` all read this
registry; none of them hard-codes a policy's properties.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

from hf_laps.scheduling.config import SchedulerConfig
from hf_laps.scheduling.policies.base import Policy
from hf_laps.scheduling.policies.fcfs import FCFSPolicy
from hf_laps.scheduling.policies.gittins import GittinsPolicy
from hf_laps.scheduling.policies.laps_sd import LapsSDPolicy
from hf_laps.scheduling.policies.las import LASPolicy
from hf_laps.scheduling.policies.lp_sjf import LPSJFPolicy
from hf_laps.scheduling.policies.robust_srpt import RobustSRPTPolicy
from hf_laps.scheduling.policies.srpt_oracle import SRPTOraclePolicy
from hf_laps.scheduling.predictors.base import LengthPredictor, NoisyOraclePredictor, OraclePredictor
from hf_laps.scheduling.predictors.registry import PREDICTORS

Builder = Callable[[SchedulerConfig, "LengthPredictor | None"], Policy]


@dataclass(frozen=True)
class PolicyEntry:
    """A policy's name, how to build it and what it needs.

    needs_predictor: it orders by predicted output lengths (gets a LengthPredictor).
    baseline: a comparison point in benchmark tables (the schedulers the paper compares with).
    needs_truth: it reads the true service time of each request (an oracle for studies; a job
        needs `--truth`, the timing log of an earlier run).
    """

    name: str
    build: Builder
    needs_predictor: bool = False
    baseline: bool = False
    needs_truth: bool = False
    summary: str = ""


PREDICTOR_NAMES = tuple(PREDICTORS)   # hf_laps.scheduling.predictors.registry builds them


def make_predictor(name: str, **kwargs) -> LengthPredictor:
    """Build a predictor by name.

    Args:
        name: one of PREDICTOR_NAMES.
        **kwargs: `noisy-oracle`: sigma (required), seed=0. `learned`: history (a path or list
            of paths to timing-log JSONL files of earlier jobs, optional), hash_dim, ridge
            (see LearnedPredictor). `hidden`: history, features_model, ridge, min_full,
            min_residuals (see HiddenStatePredictor).

    Returns:
        A fresh predictor (give each compared policy its own, so online refits do not leak).
    """
    if name == "oracle":
        if kwargs:
            raise ValueError(f"the oracle predictor takes no options, got {sorted(kwargs)}")
        return OraclePredictor()
    if name == "noisy-oracle":  # the low-level constructor: studies and jobs get NOISY_SIGMA there
        if "sigma" not in kwargs:
            raise ValueError("the noisy-oracle predictor needs sigma (log-normal error std; the "
                             "spec fixes no default), e.g. make_predictor('noisy-oracle', sigma=0.5)")
        return NoisyOraclePredictor(**kwargs)
    if name in PREDICTORS:
        return PREDICTORS[name].build(**kwargs)
    raise ValueError(f"unknown predictor {name!r}; choose one of {PREDICTOR_NAMES}")


_REGISTRY: dict[str, PolicyEntry] = {}
_PLUGINS_LOADED = False
PLUGIN_GROUP = "hf_laps.policies"


def _load_plugins() -> None:
    """Register the PolicyEntry objects other installed packages declare (once per process)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            entry = point.load()
        except Exception as exc:  # a broken plugin must not break the built-in policies
            warnings.warn(f"policy plugin {point.name!r} ({point.value}) failed to load: {exc}")
            continue
        if not isinstance(entry, PolicyEntry):
            warnings.warn(f"policy plugin {point.name!r} is not a PolicyEntry; ignored")
            continue
        register_policy(entry, replace=True)


def register_policy(entry: PolicyEntry, *, replace: bool = False) -> None:
    """Add a policy (ValueError if the name is taken, unless `replace`)."""
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"policy {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def unregister_policy(name: str) -> None:
    _REGISTRY.pop(name, None)


def policy_entry(name: str) -> PolicyEntry:
    _load_plugins()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(f"unknown policy {name!r}; choose one of {policy_names()}")
    return entry


def policy_names() -> tuple[str, ...]:
    """Every registered policy, built-ins first, in registration order."""
    _load_plugins()
    return tuple(_REGISTRY)


def baseline_names() -> tuple[str, ...]:
    _load_plugins()
    return tuple(name for name, entry in _REGISTRY.items() if entry.baseline)


for _entry in (
    PolicyEntry("fcfs", lambda config, predictor: FCFSPolicy(), baseline=True,
                summary="first come, first served; never preempts"),
    PolicyEntry("las", lambda config, predictor: LASPolicy(config), baseline=True,
                summary="least attained service over K queues"),
    PolicyEntry("lp-sjf", lambda config, predictor: LPSJFPolicy(predictor), needs_predictor=True, baseline=True,
                summary="shortest predicted length first"),
    PolicyEntry("srpt-oracle", lambda config, predictor: SRPTOraclePolicy(), needs_truth=True,
                summary="shortest true remaining time (needs --truth)"),
    PolicyEntry("laps-sd", lambda config, predictor: LapsSDPolicy(config, predictor), needs_predictor=True,
                summary="the paper's LAPS-SD"),
    PolicyEntry("gittins", lambda config, predictor: GittinsPolicy(config.gittins, predictor), needs_predictor=True,
                summary="prior-informed Gittins index on calibrated predicted lengths (no probe)"),
    PolicyEntry("robust-srpt", lambda config, predictor: RobustSRPTPolicy(predictor=predictor), needs_predictor=True,
                summary="SRPT on online-calibrated predicted seconds with an aging term (bounded starvation)"),
):
    register_policy(_entry)

# the built-in policies (a snapshot; policy_names() also lists plugins and later registrations)
POLICY_NAMES = tuple(_REGISTRY)


def make_policy(name: str, config: SchedulerConfig | None = None,
                predictor: LengthPredictor | None = None) -> Policy:
    """A fresh policy.

    Args:
        name: a registered policy (policy_names()).
        config: scheduler knobs (queue settings of `las` / `laps-sd`; ignored by the others);
            default SchedulerConfig().
        predictor: length predictor of the policies that need one (ignored by the others);
            default a fresh `learned` predictor with no history, which predicts max_new_tokens
            until the first request finishes. Give every compared policy its own instance.

    Raises:
        ValueError: unknown name.
    """
    entry = policy_entry(name)
    if config is None:
        config = SchedulerConfig()
    elif not isinstance(config, SchedulerConfig):
        raise TypeError(f"config must be a SchedulerConfig, got {type(config).__name__}")
    if entry.needs_predictor and predictor is None:
        predictor = make_predictor("learned")
    return entry.build(config, predictor if entry.needs_predictor else None)
