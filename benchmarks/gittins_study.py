"""The prior-informed Gittins policy against every baseline, replaying the real recordings.

    python benchmarks/gittins_study.py benchmarks/data/natural.features.jsonl \\
        [benchmarks/data/*.fcfs.timing.jsonl] [--history] [--cells] [--predictors a,b,..]

Each log is a real run (greedy: a request's rounds do not depend on the schedule), replayed
under every policy in the same scenarios:
  * bursts of the first 10 and of all requests, each in 3 arrival orders (shuffles, seeds 0-2);
  * Poisson arrivals at utilisation 0.5 / 0.7 / 0.9 (rate = U / mean service), seeds 0-2;
and predictors:
  * learned: hashed prompt words, trained online on the job's finished requests;
  * hidden: cheap features + the target's prefill hidden state (the log's "features" blob,
    reported on the request's first round as in a live run), trained online;
  * hidden+history (--history): hidden, also fitted before the job on the OTHER requests of the
    recording, k-fold by request id (k = 5): the model that answers for a request never saw it,
    as `--history earlier_job.timing.jsonl` would be; gittins also gets the out-of-fold
    (prediction, length) pairs as its calibration history;
  * noisy-0.5 (true length x exp(N(0, 0.25))), oracle: for reference.
A live run tells the predictor whether a request has stop strings and is a chat prompt; a replay's
specs do not carry those flags, so the study adds them from the log (`WithLogFlags`).
A cell = (recording, scenario, predictor); its mean latency is the mean over its arrival sets.
Per cell: mean latency / best baseline (fcfs, las, lp-sjf, laps-sd, same predictor),
/ srpt-oracle, p99 / fcfs's p99 (starvation), preemptions per arrival set. Printed: one table
per scenario, the summary (geometric means and worst cell per predictor), and the goal check of
the candidate default (gittins) per cell.
Policies beyond the baselines: gittins; gittins-blind (every request priced at the job's seconds
per token: acceptance-blind); laps-sd-noprobe (the paper's policy, perceptible at admission).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import random
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from hf_laps.replay.replayer import simulate
from hf_laps.scheduling import LearnedPredictor, SchedulerConfig, make_policy, make_predictor
from hf_laps.replay.traces import load_traces
from hf_laps.scheduling.predictors.feature_codec import decode_features
from hf_laps.scheduling.policies.gittins import GittinsConfig, GittinsPolicy
from hf_laps.scheduling.predictors.hidden import HiddenStatePredictor
from hf_laps.scheduling.predictors.base import LengthPredictor
from hf_laps.scheduling.types import RequestSpec
from hf_laps.stats import percentile
from hf_laps.workloads import poisson_arrivals

BASELINES = ("fcfs", "las", "lp-sjf", "laps-sd")
EXTRA = ("gittins", "gittins-blind", "laps-sd-noprobe")
POLICIES = BASELINES + ("srpt-oracle",) + EXTRA
PREDICTORS = ("learned", "hidden", "noisy-0.5", "oracle")
HISTORY = "hidden+history"
FOLDS = 5
SEEDS = (0, 1, 2)
UTILISATIONS = (0.5, 0.7, 0.9)
CANDIDATE = "gittins"
# the goal: Poisson <= 0.85x the best baseline, bursts <= 1.00x, <= 1.15x srpt-oracle on
# average, p99 <= 1.5x fcfs's p99
GOAL_POISSON, GOAL_BURST, GOAL_SRPT, GOAL_P99 = 0.85, 1.00, 1.15, 1.5


class WithLogFlags(LengthPredictor):
    """The inner predictor, seeing each request's has_stop / is_chat as a live run reports them
    (the replayer's specs leave them False); the flags come from the recording."""

    def __init__(self, inner: LengthPredictor, flags: dict[str, tuple[bool, bool]]) -> None:
        self.inner, self.flags = inner, flags
        self.name = inner.name

    def _spec(self, request: RequestSpec) -> RequestSpec:
        flags = self.flags.get(request.request_id)
        if flags is None:
            return request
        return replace(request, has_stop=flags[0], is_chat=flags[1])

    def predict(self, request: RequestSpec) -> float:
        return self.inner.predict(self._spec(request))

    def observe(self, request: RequestSpec, output_tokens: int) -> None:
        self.inner.observe(self._spec(request), output_tokens)

    def predict_quantiles(self, request: RequestSpec, qs):
        return self.inner.predict_quantiles(self._spec(request), qs)


class LeaveFoldOut(LengthPredictor):
    """k models, model f fitted on the examples outside fold f; a request is answered by the
    model of its own fold, so no request predicts itself. Online, every model learns every
    finished request (those are the job's own, as with any predictor)."""

    def __init__(self, models: Sequence[LengthPredictor], fold_of: dict[str, int]) -> None:
        self.models, self.fold_of = list(models), fold_of
        self.name = self.models[0].name

    def predict(self, request: RequestSpec) -> float:
        return self.models[self.fold_of.get(request.request_id, 0)].predict(request)

    def observe(self, request: RequestSpec, output_tokens: int) -> None:
        for model in self.models:
            model.observe(request, output_tokens)

    def predict_quantiles(self, request: RequestSpec, qs):
        return self.models[self.fold_of.get(request.request_id, 0)].predict_quantiles(request, qs)


@dataclass
class Recording:
    """One log: its traces, the flags of its requests and (with --history) the folded models."""

    name: str
    traces: list
    flags: dict[str, tuple[bool, bool]]
    folded: LeaveFoldOut | None = None
    calibration_history: tuple[tuple[float, float], ...] = ()

    @classmethod
    def load(cls, path: str, history: bool) -> "Recording":
        traces = load_traces(path)
        with open(path, encoding="utf-8") as handle:
            raw = [json.loads(line) for line in handle if line.strip()]
        flags = {r["custom_id"]: (bool(r.get("has_stop", False)), bool(r.get("is_chat", False)))
                 for r in raw}
        out = cls(Path(path).name.split(".")[0], traces, flags)
        if history:
            out.folded, out.calibration_history = fold_history(traces, flags)
        return out


def fold_history(traces, flags) -> tuple[LeaveFoldOut, tuple[tuple[float, float], ...]]:
    """The leave-fold-out hidden predictor of a recording and its out-of-fold (L_hat, L) pairs."""
    examples = [(replace(t.to_request(), features=decode_features(t.features) if t.features else None,
                         has_stop=flags.get(t.custom_id, (False, False))[0],
                         is_chat=flags.get(t.custom_id, (False, False))[1],
                         true_output_tokens=None, true_service_seconds=None), t.output_tokens)
                for t in traces]
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    fold_of = {examples[i][0].request_id: f for f in range(FOLDS) for i in order[f::FOLDS]}
    models = [HiddenStatePredictor().fit(e for e in examples if fold_of[e[0].request_id] != f)
              for f in range(FOLDS)]
    folded = LeaveFoldOut(models, fold_of)
    pairs = tuple((folded.predict(spec), float(length)) for spec, length in examples)
    return folded, pairs


def predictor(name: str, seed: int, recording: Recording) -> LengthPredictor:
    if name == "learned":
        return LearnedPredictor()
    if name == "hidden":
        return WithLogFlags(HiddenStatePredictor(), recording.flags)
    if name == HISTORY:
        return WithLogFlags(copy.deepcopy(recording.folded), recording.flags)
    if name.startswith("noisy-"):
        return make_predictor("noisy-oracle", sigma=float(name[6:]), seed=seed)
    return make_predictor(name)


def build(policy: str, pred: str, seed: int, recording: Recording):
    history = recording.calibration_history if pred == HISTORY else ()
    if policy == "gittins":
        return GittinsPolicy(GittinsConfig(), predictor(pred, seed, recording), history)
    if policy == "gittins-blind":
        return GittinsPolicy(GittinsConfig(per_request_speed=False), predictor(pred, seed, recording),
                             history)
    if policy == "laps-sd-noprobe":
        return make_policy("laps-sd", SchedulerConfig(probe=False), predictor(pred, seed, recording))
    uses = policy in ("lp-sjf", "laps-sd")
    return make_policy(policy, predictor=predictor(pred, seed, recording) if uses else None)


def scenarios(traces) -> dict[str, list]:
    """scenario -> arrival sets (3 each)."""
    out: dict[str, list] = {"burst 10": [], f"burst {len(traces)}": []}
    for seed in SEEDS:
        order = list(traces)
        random.Random(seed).shuffle(order)
        burst = [t.with_arrival(0.0) for t in order]
        out["burst 10"].append(burst[:10])
        out[f"burst {len(traces)}"].append(burst)
    service = statistics.fmean(t.service_seconds for t in traces)
    for u in UTILISATIONS:
        out[f"poisson {u}"] = [
            [t.with_arrival(a) for t, a in zip(traces, poisson_arrivals(len(traces), u / service, s))]
            for s in SEEDS]
    return out


def cell(sets, pred: str, recording: Recording) -> dict[str, tuple[float, float, float]]:
    """policy -> (mean latency, p99 latency, preemptions), each averaged over the sets."""
    out = {}
    for policy in POLICIES:
        runs = [simulate(ts, build(policy, pred, seed, recording), record_events=False)
                for seed, ts in enumerate(sets)]
        out[policy] = (statistics.fmean(r.mean_latency for r in runs),
                       statistics.fmean(percentile(r.latencies, 99) for r in runs),
                       statistics.fmean(r.preemptions for r in runs))
    return out


def ratios(result) -> dict[str, tuple[float, float, float, float]]:
    """policy -> (/best baseline, /srpt-oracle, p99 / fcfs p99, preemptions)."""
    best = min(result[b][0] for b in BASELINES)
    srpt, fcfs_p99 = result["srpt-oracle"][0], result["fcfs"][1]
    return {p: (m / best, m / srpt, p99 / fcfs_p99, pre) for p, (m, p99, pre) in result.items()}


def geomean(values) -> float:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values))


def print_scenarios(cells, predictors) -> None:
    print("per scenario: mean latency / best baseline (p99 / fcfs p99), geometric mean over recordings")
    for label in dict.fromkeys(label for (_, label, _) in cells):
        print(f"\n{label}\n{'policy':<17}" + "".join(f"{p:>20}" for p in predictors))
        for policy in POLICIES:
            row = f"{policy:<17}"
            for pred in predictors:
                rs = [r[policy] for (_, l, p), r in cells.items() if l == label and p == pred]
                row += f"{geomean(x[0] for x in rs):>12.3f} ({geomean(x[2] for x in rs):.2f})"
            print(row)


def print_summary(cells, predictors) -> None:
    recordings = len({name for (name, _, _) in cells})
    print(f"\n{len(cells)} cells = {recordings} recordings x "
          f"{len(cells) // max(recordings, 1) // len(predictors)} scenarios x {len(predictors)} "
          f"predictors; geometric means (worst cell)")
    head = f"{'policy':<17}{'predictor':<16}{'/best (worst)':>16}{'/srpt':>7}{'p99/fcfs':>9}{'preempt':>8}"
    print(head + "\n" + "-" * len(head))
    for policy in POLICIES:
        for pred in predictors:
            rs = [r[policy] for (_, _, p), r in cells.items() if p == pred]
            best = [x[0] for x in rs]
            print(f"{policy:<17}{pred:<16}{geomean(best):>8.3f} ({max(best):.3f})"
                  f"{geomean(x[1] for x in rs):>7.3f}{geomean(x[2] for x in rs):>9.3f}"
                  f"{statistics.fmean(x[3] for x in rs):>8.1f}")


def print_goal(cells, predictors) -> None:
    """Per cell of the candidate: the goal's three per-cell tests, and the /srpt average."""
    print(f"\ngoal check, {CANDIDATE}: /best (<= {GOAL_POISSON} Poisson, <= {GOAL_BURST} burst), "
          f"p99/fcfs (<= {GOAL_P99}); /srpt averaged (<= {GOAL_SRPT})")
    for pred in predictors:
        mine = {(n, l): r[CANDIDATE] for (n, l, p), r in cells.items() if p == pred}
        failed = []
        for (name, label), (best, _, p99, _) in mine.items():
            limit = GOAL_POISSON if label.startswith("poisson") else GOAL_BURST
            if best > limit:
                failed.append(f"{name}/{label} /best {best:.3f}")
            if p99 > GOAL_P99:
                failed.append(f"{name}/{label} p99 {p99:.2f}")
        srpt = statistics.fmean(x[1] for x in mine.values())
        verdict = "MET" if not failed and srpt <= GOAL_SRPT else "not met"
        print(f"  {pred:<16}{verdict:<8} /srpt mean {srpt:.3f}; misses: {', '.join(failed) or 'none'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--cells", action="store_true", help="print every cell of gittins")
    parser.add_argument("--history", action="store_true",
                        help=f"add {HISTORY}: hidden fitted on the other folds of the recording")
    parser.add_argument("--predictors", default=",".join(PREDICTORS))
    args = parser.parse_args(argv)
    predictors = tuple(args.predictors.split(",")) + ((HISTORY,) if args.history else ())
    cells: dict[tuple[str, str, str], dict] = {}
    for log in args.logs:
        recording = Recording.load(log, args.history)
        for label, sets in scenarios(recording.traces).items():
            for pred in predictors:
                cells[(recording.name, label, pred)] = ratios(cell(sets, pred, recording))
    if args.cells:
        print(f"per cell: {CANDIDATE} / best baseline | / srpt-oracle | p99 / fcfs p99 | preemptions")
        for (name, label, pred), r in cells.items():
            g = r[CANDIDATE]
            print(f"{name:<14}{label:<14}{pred:<16}{g[0]:>7.3f}{g[1]:>8.3f}{g[2]:>8.3f}{g[3]:>7.1f}")
    print_scenarios(cells, predictors)
    print_summary(cells, predictors)
    print_goal(cells, predictors)


if __name__ == "__main__":
    main()
