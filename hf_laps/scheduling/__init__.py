"""hf_laps.scheduling: the pure-Python scheduling core (stdlib only; no torch, no numpy).

Policies decide which request runs the next speculative round; the simulator replays recorded
rounds under any of them. See docs/scheduling.md.

    policy = make_policy("laps-sd", SchedulerConfig(), make_predictor("learned", history=logs))
    policy.admit(spec, now); rid = policy.pick(now); ...; policy.on_round(report, now)
"""
from .config import SchedulerConfig
from .factory import POLICY_NAMES, make_policy
from .fcfs import FCFSPolicy
from .laps_sd import LapsSDPolicy
from .las import LASPolicy
from .learned import LearnedPredictor
from .lp_sjf import LPSJFPolicy
from .policy import Policy
from .predictors import (PREDICTOR_NAMES, LengthPredictor, NoisyOraclePredictor,
                         OraclePredictor, make_predictor, mape)
from .simulator import RequestOutcome, SimulationResult, linear_switch_cost, simulate
from .srpt_oracle import SRPTOraclePolicy
from .synthetic import poisson_arrivals, sample_output_length, synthetic_traces
from .traces import (Trace, TraceRound, dump_traces, load_length_examples, load_traces)
from .types import RequestSpec, RoundReport

__all__ = [
    "RequestSpec", "RoundReport", "Policy", "SchedulerConfig", "POLICY_NAMES", "make_policy",
    "FCFSPolicy", "LASPolicy", "LPSJFPolicy", "SRPTOraclePolicy", "LapsSDPolicy",
    "LengthPredictor", "OraclePredictor", "NoisyOraclePredictor", "LearnedPredictor",
    "PREDICTOR_NAMES", "make_predictor", "mape",
    "simulate", "SimulationResult", "RequestOutcome", "linear_switch_cost",
    "Trace", "TraceRound", "load_traces", "dump_traces", "load_length_examples",
    "synthetic_traces", "sample_output_length", "poisson_arrivals",
]
