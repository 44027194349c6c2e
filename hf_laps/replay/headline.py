"""The headline table: every policy x every predictor on replayed recordings.

    result = run_headline({"natural": load_recording("natural.features.jsonl")}, HeadlineConfig())
    print(format_headline(result))            # hf_laps.replay.headline_table

A cell is (recording, scenario, predictor); in it every registered policy is replayed on every
arrival set of the scenario (hf_laps.replay.scenarios) and its mean latency, p99 latency
and preemptions are averaged over the sets. A policy that takes no predictor (the registry's
`needs_predictor`) runs once per scenario and appears in every predictor's cell. Ratios:

    over_best  = mean / min(mean of the best-of policies with the SAME predictor): the registry's
                 baselines (fcfs, las, lp-sjf) and the paper's laps-sd
    over_srpt  = mean / mean of srpt-oracle
    p99_over_fcfs = p99 / p99 of fcfs                (starvation: nobody waits far longer)

Every predictor is fresh per replay (online refits must not leak between policies or sets);
`history` timing logs fit learned / hidden first, minus the replayed requests themselves.
Pure replay on the virtual clock: no model is loaded.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Sequence

from hf_laps.replay.replayer import simulate
from hf_laps.replay.scenarios import Scenario, build_scenarios
from hf_laps.replay.traces import Trace
from hf_laps.scheduling import (PREDICTOR_NAMES, LengthPredictor, SchedulerConfig, baseline_names, make_policy,
                                policy_entry, policy_names)
from hf_laps.scheduling.predictors.registry import NOISY_SIGMA, PredictorFactory, predictor_factory  # noqa: F401
from hf_laps.stats import percentile

PAPER = "laps-sd"                  # the paper's policy: other policies are measured against it too
REFERENCE = "srpt-oracle"          # the lower bound every ratio is also taken to
PREDICTORS = ("learned", "hidden", "oracle")


def best_of_names() -> tuple[str, ...]:
    """The policies `over_best` takes the best of: the registry's baselines and the paper's policy."""
    return tuple(dict.fromkeys(baseline_names() + (PAPER,)))


@dataclass(frozen=True)
class HeadlineConfig:
    """What to replay: policies, predictors, scenarios and seeds."""

    policies: tuple[str, ...] = field(default_factory=policy_names)
    predictors: tuple[str, ...] = PREDICTORS
    bursts: tuple[int, ...] = (10, 30)
    utilisations: tuple[float, ...] = (0.5, 0.7, 0.9)
    poisson_requests: int = 200
    seeds: tuple[int, ...] = (0, 1, 2)
    history: tuple[str, ...] = ()
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    max_batch_size: int | str = 1   # the batch cap of every replay (as `simulate`; "auto" = the run's default)

    def __post_init__(self) -> None:
        unknown = [p for p in self.policies if p not in policy_names()]
        if unknown:
            raise ValueError(f"unknown policies {unknown}; choose from {','.join(policy_names())}")
        bad = [p for p in self.predictors if p not in PREDICTOR_NAMES]
        if bad:
            raise ValueError(f"unknown predictors {bad}; choose from {','.join(PREDICTOR_NAMES)}")
        if not self.seeds or not self.predictors:
            raise ValueError("the headline needs at least one seed and one predictor")
        if self.poisson_requests < 1 or any(b < 1 for b in self.bursts):
            raise ValueError("burst sizes and poisson_requests must be >= 1")

    def compared(self) -> tuple[str, ...]:
        """The asked policies plus the ones every ratio needs (baselines, srpt-oracle, fcfs)."""
        needed = [p for p in best_of_names() + (REFERENCE,) if p in policy_names()]
        return tuple(dict.fromkeys(list(self.policies) + needed))


@dataclass(frozen=True)
class Outcome:
    """One policy on one scenario (means over its arrival sets)."""

    mean: float
    p99: float
    preemptions: float


@dataclass(frozen=True)
class Row:
    """One line of the headline table."""

    recording: str
    scenario: str
    kind: str
    predictor: str
    policy: str
    uses_predictor: bool
    mean: float
    p99: float
    preemptions: float
    best_baseline: str
    over_best: float
    over_srpt: float
    p99_over_fcfs: float


@dataclass
class HeadlineResult:
    config: HeadlineConfig
    recordings: dict[str, dict]          # name -> {"requests", "resampled_poisson"}
    rows: list[Row]


# ---- predictors and policies ----------------------------------------------------------------
def new_predictor(name: str, factory: PredictorFactory, seed: int) -> LengthPredictor:
    """A fresh predictor of the registry's recipe (history already read by the factory)."""
    return factory(seed)


def history_examples(cfg: HeadlineConfig, predictor: str, exclude: set[str]) -> PredictorFactory:
    """The registry's factory for `predictor`: --history minus the replayed requests, the same
    rule as `hf-laps run` and `hf-laps bench` (hf_laps.scheduling.predictor_registry)."""
    return predictor_factory(predictor, history=cfg.history, exclude=exclude)


def replay_policy(sets: Sequence[Sequence[Trace]], policy: str, predictor: str | None,
                  cfg: HeadlineConfig, history: PredictorFactory | None) -> Outcome:
    """`policy` on every arrival set (a fresh policy and predictor each); means over the sets."""
    means, p99s, preemptions = [], [], []
    for seed, traces in enumerate(sets):
        fresh = new_predictor(predictor, history, seed) if predictor is not None else None
        result = simulate(traces, make_policy(policy, cfg.scheduler, fresh), record_events=False,
                          max_batch_size=cfg.max_batch_size)
        means.append(result.mean_latency)
        p99s.append(percentile(result.latencies, 99))
        preemptions.append(result.preemptions)
    return Outcome(statistics.fmean(means), statistics.fmean(p99s), statistics.fmean(preemptions))


# ---- cells and rows -------------------------------------------------------------------------
def scenario_outcomes(scenario: Scenario, cfg: HeadlineConfig, histories: dict[str, PredictorFactory]
                      ) -> dict[str, dict[str, Outcome]]:
    """predictor -> policy -> Outcome; predictor-free policies replayed once and shared."""
    shared = {p: replay_policy(scenario.arrival_sets, p, None, cfg, None)
              for p in cfg.compared() if not policy_entry(p).needs_predictor}
    out = {}
    for predictor in cfg.predictors:
        own = {p: replay_policy(scenario.arrival_sets, p, predictor, cfg, histories[predictor])
               for p in cfg.compared() if policy_entry(p).needs_predictor}
        out[predictor] = {p: shared[p] if p in shared else own[p] for p in cfg.compared()}
    return out


def cell_rows(recording: str, scenario: Scenario, predictor: str, outcomes: dict[str, Outcome]) -> list[Row]:
    """The rows of one cell: every policy with its ratios to this cell's references."""
    baselines = {b: outcomes[b].mean for b in best_of_names() if b in outcomes}
    best = min(baselines, key=baselines.get)
    srpt, fcfs_p99 = outcomes[REFERENCE].mean, outcomes["fcfs"].p99
    return [Row(recording=recording, scenario=scenario.name, kind=scenario.kind, predictor=predictor,
                policy=policy, uses_predictor=policy_entry(policy).needs_predictor, mean=o.mean, p99=o.p99,
                preemptions=o.preemptions, best_baseline=best, over_best=o.mean / baselines[best],
                over_srpt=o.mean / srpt, p99_over_fcfs=o.p99 / fcfs_p99)
            for policy, o in outcomes.items()]


def run_headline(recordings: dict[str, Sequence[Trace]], cfg: HeadlineConfig, log=None) -> HeadlineResult:
    """Every scenario of every recording under every policy x predictor."""
    rows: list[Row] = []
    meta: dict[str, dict] = {}
    for name, traces in recordings.items():
        ids = {t.custom_id for t in traces}
        histories = {p: history_examples(cfg, p, ids) for p in cfg.predictors}
        scenarios = build_scenarios(traces, cfg.bursts, cfg.utilisations, cfg.poisson_requests, cfg.seeds)
        meta[name] = {"requests": len(traces), "resampled_poisson": any(s.resampled for s in scenarios)}
        for scenario in scenarios:
            if log is not None:
                log(f"{name}: {scenario.name}")
            for predictor, outcomes in scenario_outcomes(scenario, cfg, histories).items():
                rows.extend(cell_rows(name, scenario, predictor, outcomes))
    return HeadlineResult(cfg, meta, rows)
