"""Acceptance where it matters: the recordings replayed under the paper's GPU cost model.

    python benchmarks/acceptance_study.py [--part 1,2,3] LOG [LOG ...]      (LOG1+LOG2: one job of both)

Each LOG is a timing log of a real fcfs run (SmolLM2-135M, prompt-lookup drafting, CPU). Under
greedy decoding a request's rounds (drafted, accepted) do not depend on the schedule, so they
are replayed under every policy; only their seconds are replaced by the paper's pair on one H200
(`ParametricCost.paper_pair_gpu()`: LLaMA-7B verify 21-25 ms, LLaMA-68M draft 1.9 ms a token),
so a round costs ~T_target + n * 1.9 ms whatever is accepted and a request's seconds per token
      spt = (n * T_draft + T_target) / (n * A + 1)
spans ~4x between acceptance 0.05 and 0.7 at n = 10 (prompt lookup on CPU drafts for free).

  (1) acceptance-aware vs -blind ordering, pairs that know the same lengths: srpt-oracle (true
      GPU seconds) / srpt-tokens (true tokens), gittins (kappa 256 or 16) / gittins-blind (every
      request at the job's seconds per token), laps-sd / laps-sd-blind (T_rem with the job's A
      and n), with and without the probe; bursts of 10 and of all requests (3 shuffles), Poisson
      0.5 / 0.7 / 0.9 (3 seeds); learned and oracle lengths.
  (2) open question 2, adaptive K: laps-sd (and without the probe) for K = 1..8, the best K per
      cell in hindsight (the bound of any adaptive rule), K by load (the best K of the same
      scenario on the other recordings: leave one recording out) and the adaptive rule
      SchedulerConfig(adaptive_queues_cv2=0.2) with 8 queues.
  (3) open question 3, the stability test per category: when it passes (round, share of the
      request's service), how accurate T_rem is then (MAPE, oracle lengths so only acceptance
      is extrapolated) against the job's acceptance at the same point and at admission, and
      the W / delta / gamma optimum per category.
"""
from __future__ import annotations

import math
import random
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from hf_laps.replay.replayer import ParametricCost, simulate
from hf_laps.scheduling import SchedulerConfig, make_policy, make_predictor
from hf_laps.replay.traces import load_traces
from hf_laps.scheduling.policies.gittins import GittinsConfig, GittinsPolicy
from hf_laps.scheduling.predictors.learned import LearnedPredictor
from hf_laps.timing_log import RoundRecord
from hf_laps.scheduling.policies.srpt_oracle import SRPTOraclePolicy
from hf_laps.scheduling.policies.stability import StabilityTest
from hf_laps.replay.traces import Trace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gittins_study import geomean, scenarios  # noqa: E402  (bursts 10 / N x 3 shuffles, Poisson x 3 seeds)

COST = ParametricCost.paper_pair_gpu()
BASELINES = ("fcfs", "las", "lp-sjf")
# (aware, blind): the blind one knows the same lengths but prices every request at the job's speed
PAIRS = (("srpt-oracle", "srpt-tokens"), ("gittins", "gittins-blind"), ("gittins-k16", "gittins-blind"),
         ("laps-sd", "laps-sd-blind"), ("laps-sd-noprobe", "laps-sd-noprobe-blind"))
POLICIES = tuple(dict.fromkeys(BASELINES + tuple(p for pair in PAIRS for p in pair)))
PREDICTORS = ("learned", "oracle")


# ---- the GPU traces -----------------------------------------------------------------------
def recost(traces: list[Trace], cost=COST) -> list[Trace]:
    """The same rounds with the cost model's seconds. A round's cost depends only on the
    request's own context (prompt + tokens so far), which no schedule changes, so replaying
    these with their recorded seconds equals replaying the originals under `cost` (no parking),
    and srpt-oracle, Poisson rates and every policy's timing means see GPU seconds."""
    return [_recost_one(t, cost) for t in traces]


def _recost_one(trace: Trace, cost) -> Trace:
    rounds, generated = [], 0
    for k, record in enumerate(trace.rounds):
        seconds, draft = cost.round_seconds(trace, k, trace.prompt_tokens + generated)
        rounds.append(RoundRecord(drafted=record.drafted, accepted=record.accepted, seconds=seconds,
                                  draft_seconds=draft))
        generated += record.accepted + 1
    return replace(trace, rounds=tuple(rounds), admit_seconds=0.0)


def seconds_per_token(trace: Trace) -> float:
    return trace.service_seconds / trace.output_tokens


# ---- policies -----------------------------------------------------------------------------
class SRPTTokensPolicy(SRPTOraclePolicy):
    """Shortest true remaining TOKENS first: srpt-oracle's perfect length knowledge, but blind
    to each request's speed (acceptance). srpt-oracle / srpt-tokens is what knowing acceptance
    is worth at most, with exact lengths."""

    name = "srpt-tokens"

    @staticmethod
    def _remaining(state) -> float:
        return max(state.spec.true_output_tokens - state.generated, 0)


def predictor(name: str):
    return LearnedPredictor() if name == "learned" else make_predictor(name)


def build(policy: str, pred: str, config: SchedulerConfig | None = None):
    """A fresh policy; `-blind` = the job's acceptance, `-noprobe` = perceptible at admission."""
    if policy == "srpt-tokens":
        return SRPTTokensPolicy()
    if policy.startswith("gittins"):
        # gittins-k16: a request's own speed outweighs the job's after 16 tokens (default 256)
        config = GittinsConfig(per_request_speed=not policy.endswith("-blind"),
                               kappa=16.0 if policy == "gittins-k16" else GittinsConfig().kappa)
        return GittinsPolicy(config, predictor(pred))
    if policy.startswith("laps-sd"):
        config = replace(config or SchedulerConfig(), probe="-noprobe" not in policy,
                         per_request_acceptance=not policy.endswith("-blind"))
        return make_policy("laps-sd", config, predictor(pred))
    return make_policy(policy, config, predictor(pred) if policy == "lp-sjf" else None)


def mean_latency(sets, policy: str, pred: str, config=None) -> float:
    """Mean latency over the arrival sets of one scenario."""
    return statistics.fmean(simulate(ts, build(policy, pred, config), record_events=False).mean_latency
                            for ts in sets)


# ---- (1) acceptance-aware vs -blind -------------------------------------------------------
def part1(workloads: dict[str, list[Trace]]) -> None:
    print("\n(1) mean latency ratios under the GPU cost; aware/blind < 1: knowing each request's "
          "acceptance helps")
    print("columns: srpt-oracle / best of fcfs, las, lp-sjf | each pair aware / blind | each "
          "acceptance-aware policy / srpt-oracle")
    print(f"{'workload':<26}{'pred':<8}{'srpt/best':>10}" + "".join(f"{a[:11]:>12}" for a, _ in PAIRS)
          + "".join(f"{a[:11]:>12}" for a, _ in PAIRS[1:]))
    summary: dict[str, list[list[float]]] = {p: [[] for _ in PAIRS] for p in PREDICTORS}
    for name, traces in workloads.items():
        for label, sets in scenarios(traces).items():
            for pred in PREDICTORS:
                r = {p: mean_latency(sets, p, pred) for p in POLICIES}
                aware_blind = [r[a] / r[b] for a, b in PAIRS]
                for i, v in enumerate(aware_blind):
                    summary[pred][i].append(v)
                best = min(r[b] for b in BASELINES)
                print(f"{name + ' ' + label:<26}{pred:<8}{r['srpt-oracle'] / best:>10.3f}"
                      + "".join(f"{v:>12.3f}" for v in aware_blind)
                      + "".join(f"{r[a] / r['srpt-oracle']:>12.3f}" for a, _ in PAIRS[1:]))
    for pred in PREDICTORS:
        cells = summary[pred]
        print(f"{pred}, aware / blind over {len(cells[0])} cells: geomean (min..max)")
        for (a, b), v in zip(PAIRS, cells):
            print(f"  {a + ' / ' + b:<40}{geomean(v):.3f} ({min(v):.3f}..{max(v):.3f})")


# ---- (2) adaptive K -----------------------------------------------------------------------
K_RANGE = range(1, 9)
K_SCENARIOS = ("burst 10", "poisson 0.5", "poisson 0.9")   # + "burst N" (all requests)
# the adaptive rule: one queue until the predicted lengths' C^2 reaches 0.2, then 8 (K >= 5 is flat)
AUTO_K = SchedulerConfig(num_queues=8, adaptive_queues_cv2=0.2)


def k_table(workloads, policy: str) -> dict[tuple[str, str], dict[int, float]]:
    """(workload, scenario) -> {K: mean latency / srpt-oracle}, learned lengths."""
    out = {}
    for name, traces in workloads.items():
        for label, sets in scenarios(traces).items():
            if label not in K_SCENARIOS and label != f"burst {len(traces)}":
                continue
            srpt = mean_latency(sets, "srpt-oracle", "learned")
            row = {k: mean_latency(sets, policy, "learned", SchedulerConfig(num_queues=k)) / srpt for k in K_RANGE}
            row["auto"] = mean_latency(sets, policy, "learned", AUTO_K) / srpt
            out[(name, _kind(label))] = row
    return out


def _kind(label: str) -> str:
    """'burst 30' and 'burst 124' are the same scenario kind: every request at once."""
    return "burst all" if label.startswith("burst") and label != "burst 10" else label


def k_by_load(table, name: str, kind: str) -> int:
    """The K with the lowest geometric-mean ratio on this scenario kind of the OTHER recordings."""
    others = [row for (n, s), row in table.items() if s == kind and n != name]
    if not others:
        return 4
    return min(K_RANGE, key=lambda k: geomean(row[k] for row in others))


def part2(workloads) -> None:
    for policy in ("laps-sd", "laps-sd-noprobe"):
        table = k_table(workloads, policy)
        print(f"\n(2) {policy}: mean latency / srpt-oracle for K = 1..8 (GPU cost, learned lengths); "
              "hindsight = best K of the cell, by-load = leave-one-recording-out best K of the scenario")
        print(f"{'cell':<30}" + "".join(f"{'K=' + str(k):>7}" for k in K_RANGE)
              + f"{'hindsight':>12}{'by-load':>11}{'auto':>7}")
        fixed = {k: [] for k in (*K_RANGE, "auto")}
        hind, load = [], []
        for (name, kind), row in table.items():
            kb = min(K_RANGE, key=row.get)
            kl = k_by_load(table, name, kind)
            for k in fixed:
                fixed[k].append(row[k])
            hind.append(row[kb])
            load.append(row[kl])
            print(f"{name + ' ' + kind:<30}" + "".join(f"{row[k]:>7.3f}" for k in K_RANGE)
                  + f"{row[kb]:>8.3f} K={kb}{row[kl]:>7.3f} K={kl}{row['auto']:>7.3f}")
        print(f"{'geomean':<30}" + "".join(f"{geomean(fixed[k]):>7.3f}" for k in K_RANGE)
              + f"{geomean(hind):>12.3f}{geomean(load):>11.3f}{geomean(fixed['auto']):>7.3f}")


# ---- (3) the stability test per category --------------------------------------------------
STABILITY = (("W", "stability_window", (1, 2, 4, 8)), ("delta", "stability_delta", (0.02, 0.05, 0.1, 0.3)),
             ("gamma", "stability_gamma", (0.1, 0.25, 0.5, 1.0)))


def categories(workloads) -> dict[str, list[Trace]]:
    """Every workload whose ids carry one prefix, and each prefix of a mixed one (chat-, code-, ...)."""
    out = {}
    for name, traces in workloads.items():
        prefixes = sorted({t.custom_id.split("-")[0] for t in traces})
        if len(prefixes) == 1:
            out[name] = traces
            continue
        for prefix in prefixes:
            out[f"{prefix} (of {name})"] = [t for t in traces if t.custom_id.startswith(prefix + "-")]
    return out


def pass_round(trace: Trace, window: int, delta: float, gamma: float) -> int | None:
    """The 0-based round after which the test first passes; None if it never does."""
    test = StabilityTest(window, delta, gamma)
    for k, r in enumerate(trace.rounds):
        if test.update(r.drafted, r.accepted):
            return k
    return None


def remaining_estimate(trace: Trace, k: int, a_hat: float, n: float, t_target: float) -> float:
    """laps-sd's T_rem after round k with the true length: max(L - g, 1) * (n Td + Tt) / (n A + 1)."""
    g = sum(r.accepted + 1 for r in trace.rounds[:k + 1])
    return max(trace.output_tokens - g, 1) * (n * COST.t_draft + t_target) / (n * a_hat + 1)


def own_acceptance(trace: Trace, k: int) -> tuple[float, float]:
    """(A_hat, n) over rounds 0..k."""
    drafted = [r for r in trace.rounds[:k + 1] if r.drafted > 0]
    total = sum(r.drafted for r in drafted)
    return (sum(r.accepted for r in drafted) / total if total else 0.0,
            total / len(drafted) if drafted else 0.0)


def job_acceptance(traces: list[Trace]) -> tuple[float, float, float]:
    """(A, n, T_target) of the whole category: the blind estimate's constants (hindsight)."""
    rounds = [r for t in traces for r in t.rounds[1:]]
    drafted = [r for r in rounds if r.drafted > 0]
    total = sum(r.drafted for r in drafted)
    t_target = statistics.fmean(r.seconds - r.draft_seconds for r in rounds)
    return sum(r.accepted for r in drafted) / total, total / len(drafted), t_target


def ape(estimate: float, truth: float) -> float:
    return abs(estimate - truth) / truth


def stability_stats(traces: list[Trace], window=4, delta=0.05, gamma=0.25) -> dict:
    """Pass rate, pass round, share of service done, and T_rem MAPE (own / job acceptance at the
    pass, job acceptance at admission) over the requests that pass with >= 1 round left."""
    a_job, n_job, t_target = job_acceptance(traces)
    rows = []
    for t in traces:
        k = pass_round(t, window, delta, gamma)
        if k is None or k == len(t.rounds) - 1:
            continue
        truth = sum(r.seconds for r in t.rounds[k + 1:])
        a_own, n_own = own_acceptance(t, k)
        admission = t.output_tokens * (n_job * COST.t_draft + t_target) / (n_job * a_job + 1)
        own = remaining_estimate(t, k, a_own, n_own, t_target)
        rows.append((k + 1, sum(r.seconds for r in t.rounds[:k + 1]) / t.service_seconds, ape(own, truth),
                     ape(remaining_estimate(t, k, a_job, n_job, t_target), truth),
                     ape(admission, t.service_seconds - t.rounds[0].seconds), own / truth))
    return {"requests": len(traces), "passed": len(rows), "a_job": a_job,
            "rounds": statistics.median(len(t.rounds) for t in traces),
            **({} if not rows else {
                "round": statistics.median(r[0] for r in rows), "share": statistics.median(r[1] for r in rows),
                "mape_own": statistics.fmean(r[2] for r in rows), "mape_job": statistics.fmean(r[3] for r in rows),
                "mape_admit": statistics.fmean(r[4] for r in rows),
                "bias_own": statistics.median(r[5] for r in rows)})}


def part3(workloads) -> None:
    cats = categories(workloads)
    print("\n(3a) stability test at the defaults (W=4 delta=0.05 gamma=0.25), per category: passed = "
          "requests stable with rounds left; round / share = median pass round and share of the "
          "request's GPU service done by then; T_rem MAPE with oracle lengths using its own "
          "acceptance at the pass | the job's at the pass | the job's at admission (no probe); "
          "own est/true = median ratio of the own-acceptance estimate to the truth")
    print(f"{'category':<24}{'A_job':>6}{'rounds':>7}{'passed':>9}{'round':>7}{'share':>7}"
          f"{'own':>8}{'job':>8}{'admit':>8}{'own est/true':>14}")
    for name, traces in cats.items():
        s = stability_stats(traces)
        line = f"{name:<24}{s['a_job']:>6.3f}{s['rounds']:>7.0f}{s['passed']:>5}/{s['requests']:<3}"
        if s["passed"]:
            line += (f"{s['round']:>7.0f}{s['share']:>7.2f}{s['mape_own']:>8.2f}{s['mape_job']:>8.2f}"
                     f"{s['mape_admit']:>8.2f}{s['bias_own']:>14.2f}")
        print(line)
    print("\n(3b) pass rate | median pass round | own-acceptance T_rem MAPE, one knob at a time")
    for short, field, values in STABILITY:
        print(f"{short:<8}" + "".join(f"{name[:22]:>24}" for name in cats))
        for v in values:
            cells = []
            for traces in cats.values():
                s = stability_stats(traces, **{field.replace("stability_", ""): v})
                cells.append(f"{s['passed'] / s['requests']:.2f} | {s.get('round', math.nan):>3.0f} | "
                             f"{s.get('mape_own', math.nan):.2f}")
            print(f"{v:<8}" + "".join(f"{c:>24}" for c in cells))
    part3_sweep(cats)


def part3_sweep(cats) -> None:
    print("\n(3c) laps-sd / srpt-oracle under the GPU cost, each category as one burst and as Poisson 0.9 "
          "(3 seeds), oracle lengths; one knob at a time, others at the defaults; * = the category's best; "
          "noprobe = laps-sd without the probe (the limit of a shorter probe)")
    for short, field, values in STABILITY:
        print(f"{short:<8}" + "".join(f"{name[:22]:>24}" for name in cats))
        grid = {v: [] for v in values}
        for traces in cats.values():
            sets = sweep_sets(traces)
            srpt = [mean_latency(s, "srpt-oracle", "oracle") for s in sets]
            ratios = {v: laps_ratio(sets, srpt, "laps-sd", SchedulerConfig(**{field: v})) for v in values}
            best = min(values, key=ratios.get)
            for v in values:
                grid[v].append(f"{ratios[v]:.3f}{'*' if v == best else ' '}")
        for v in values:
            print(f"{v:<8}" + "".join(f"{c:>24}" for c in grid[v]))
    print(f"{'noprobe':<8}" + "".join(f"{f'{noprobe_ratio(traces):.3f} ':>24}" for traces in cats.values()))


def sweep_sets(traces) -> list[list[Trace]]:
    """The category as one burst and as Poisson 0.9 (3 seeds)."""
    return [s for label, s in scenarios(traces).items() if label in ("poisson 0.9", f"burst {len(traces)}")]


def laps_ratio(sets, srpt: list[float], policy: str, config=None) -> float:
    """Geometric mean over the scenarios of `policy` / srpt-oracle (its means `srpt`), oracle lengths."""
    return geomean(mean_latency(s, policy, "oracle", config) / m for s, m in zip(sets, srpt))


def noprobe_ratio(traces) -> float:
    sets = sweep_sets(traces)
    return laps_ratio(sets, [mean_latency(s, "srpt-oracle", "oracle") for s in sets], "laps-sd-noprobe")


# ---- main ---------------------------------------------------------------------------------
def workload_name(arg: str) -> str:
    return "+".join(Path(log).name.split(".")[0] for log in arg.split("+"))


def load_workload(arg: str) -> list[Trace]:
    """A log, or LOG1+LOG2: both recordings as one job (ids suffixed @1, @2 so they stay unique;
    interleaved by a fixed shuffle, so a burst's first 10 mix both)."""
    logs = arg.split("+")
    if len(logs) == 1:
        return load_traces(arg)
    traces = [replace(t, custom_id=f"{t.custom_id}@{i}") for i, log in enumerate(logs, 1) for t in load_traces(log)]
    random.Random(0).shuffle(traces)
    return traces


def describe(name: str, traces: list[Trace]) -> None:
    spt = [1000 * seconds_per_token(t) for t in traces]
    print(f"{name}: {len(traces)} requests, GPU ms per token min/median/max "
          f"{min(spt):.1f}/{statistics.median(spt):.1f}/{max(spt):.1f}, service s median "
          f"{statistics.median(t.service_seconds for t in traces):.2f}")


def main(argv: list[str]) -> None:
    parts = {"1", "2", "3"}
    if "--part" in argv:
        i = argv.index("--part")
        parts = set(argv[i + 1].split(","))
        argv = argv[:i] + argv[i + 2:]
    workloads = {workload_name(arg): recost(load_workload(arg)) for arg in argv}
    for name, traces in workloads.items():
        describe(name, traces)
    if "1" in parts:
        part1(workloads)
    if "2" in parts:
        part2(workloads)
    if "3" in parts:
        part3(workloads)


if __name__ == "__main__":
    main(sys.argv[1:])
