"""hf_laps.scheduling: the pure-Python scheduling core (stdlib only; no torch, no numpy).

Policies decide which request runs the next speculative round; the trace replayer
(hf_laps.replay) plays recorded rounds back under any of them through the serving loop. See docs/scheduling.md.

    policy = make_policy("laps-sd", SchedulerConfig(), make_predictor("learned", history=logs))
    policy.admit(spec, now); rid = policy.pick(now); ...; policy.on_round(report, now)
"""
from .config import SchedulerConfig
from .registry import (POLICY_NAMES, PREDICTOR_NAMES, PolicyEntry, baseline_names, make_policy,
                       make_predictor, policy_entry, policy_names, register_policy, unregister_policy)
from .fcfs import FCFSPolicy
from .laps_sd import LapsSDPolicy
from .las import LASPolicy
from .learned import LearnedPredictor
from .lp_sjf import LPSJFPolicy
from .policy import Policy
from .predictors import LengthPredictor, NoisyOraclePredictor, OraclePredictor, mape
from .srpt_oracle import SRPTOraclePolicy
from .synthetic import poisson_arrivals, sample_output_length, synthetic_traces
from .records import RoundRecord, TimingRecord, read_timing_log
from .traces import Trace, dump_traces, load_length_examples, load_traces
from .types import RequestSpec, RoundReport

__all__ = [
    "RequestSpec", "RoundReport", "Policy", "SchedulerConfig", "POLICY_NAMES", "make_policy",
    "PolicyEntry", "register_policy", "unregister_policy", "policy_entry", "policy_names", "baseline_names",
    "FCFSPolicy", "LASPolicy", "LPSJFPolicy", "SRPTOraclePolicy", "LapsSDPolicy",
    "LengthPredictor", "OraclePredictor", "NoisyOraclePredictor", "LearnedPredictor",
    "PREDICTOR_NAMES", "make_predictor", "mape",
    "RoundRecord", "TimingRecord", "read_timing_log",
    "Trace", "load_traces", "dump_traces", "load_length_examples",
    "synthetic_traces", "sample_output_length", "poisson_arrivals",
]
