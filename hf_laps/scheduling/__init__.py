"""hf_laps.scheduling: the pure-Python scheduling core (stdlib only; no torch, no numpy).

Policies (`policies/`) decide which requests run the next speculative round; length predictors
(`predictors/`) tell them how long a request will run. Both are found by name in `registry`.
The trace replayer (hf_laps.replay) plays recorded rounds back under any policy through the
serving loop. See docs/scheduling.md.

    policy = make_policy("laps-sd", SchedulerConfig(), make_predictor("learned", history=logs))
    policy.admit(spec, now); batch = policy.pick_batch(now, 4); ...; policy.on_round(report, now)
"""
from hf_laps.scheduling.config import SchedulerConfig
from hf_laps.scheduling.policies.base import Policy
from hf_laps.scheduling.policies.fcfs import FCFSPolicy
from hf_laps.scheduling.policies.laps_sd import LapsSDPolicy
from hf_laps.scheduling.policies.las import LASPolicy
from hf_laps.scheduling.policies.lp_sjf import LPSJFPolicy
from hf_laps.scheduling.policies.srpt_oracle import SRPTOraclePolicy
from hf_laps.scheduling.predictors.base import LengthPredictor, NoisyOraclePredictor, OraclePredictor, mape
from hf_laps.scheduling.predictors.learned import LearnedPredictor
from hf_laps.scheduling.registry import (POLICY_NAMES, PREDICTOR_NAMES, PolicyEntry, baseline_names, make_policy,
                                         make_predictor, policy_entry, policy_names, register_policy,
                                         unregister_policy)
from hf_laps.scheduling.types import RequestSpec, RoundReport

__all__ = [
    "RequestSpec", "RoundReport", "Policy", "SchedulerConfig", "POLICY_NAMES", "make_policy",
    "PolicyEntry", "register_policy", "unregister_policy", "policy_entry", "policy_names", "baseline_names",
    "FCFSPolicy", "LASPolicy", "LPSJFPolicy", "SRPTOraclePolicy", "LapsSDPolicy",
    "LengthPredictor", "OraclePredictor", "NoisyOraclePredictor", "LearnedPredictor",
    "PREDICTOR_NAMES", "make_predictor", "mape",
]
