"""Leave-one-recording-out: every policy / predictor / knob judged on a recording it was not tuned on.

For each held-out recording H (natural, reference with the cap hidden, long, mixed-512):

1. the learned and hidden predictors are fitted on every OTHER recording (their caps as the
   scheduler saw them: the reference's hidden cap stays hidden in the history too);
2. every setting (policy + predictor + knobs) is replayed on every recording with that
   recording's own leave-one-out history, in bursts of 10 / 30 / all and Poisson streams at
   utilisation 0.5 / 0.7 / 0.9, at batch size B = 1 and B = 8 (simulate's max_batch_size);
3. on H, the knob of each policy and the default policy + predictor are the ones with the best
   geometric mean of (mean latency / best baseline) over the OTHER recordings' cells: chosen
   without looking at H. H's numbers are reported as held-out, the others' as tuned.
   (The tuning recordings' replays used a history that includes H: the predictors of the
   tuning runs saw H's lengths, the knob choice never saw H's replay.)
4. predictor quality on H, out of sample: each request predicted before the predictor learns it
   (online, in recording order), Spearman of L_hat with the true length overall and within each
   kind of request (the custom_id prefix), and coverage of the 80 % interval [Q(0.1), Q(0.9)]
   (hidden: its own quantiles; learned: the online calibration a policy would use).

    OMP_NUM_THREADS=1 python benchmarks/cross_workload.py --json cross.json > cross.md

Ratios as in the headline (hf_laps.replay.headline): best baseline = the best of fcfs / las /
lp-sjf / laps-sd with the same predictor, p99 over fcfs's p99, mean over srpt-oracle's.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from hf_laps.replay.scenarios import build_scenarios, load_recording
from hf_laps.replay.replayer import simulate
from hf_laps.scheduling import LengthPredictor, make_policy
from hf_laps.scheduling.predictors.calibration import LengthCalibration
from hf_laps.scheduling.predictors.registry import examples_of, factory_from_examples, features_model_of
from hf_laps.scheduling.policies.robust_srpt import RobustSRPTConfig, RobustSRPTPolicy
from hf_laps.stats import percentile

DATA = Path(__file__).parent / "data"
RECORDINGS = {  # name -> (file, hide the cap)
    "natural": ("natural.features.jsonl", False),
    "reference": ("reference.features.jsonl", True),
    "long": ("long.features.jsonl", False),
    "mixed-512": ("mixed-30-512.fcfs.timing.jsonl", False),
}
BASELINES = ("fcfs", "las", "lp-sjf", "laps-sd")
PREDICTORS = ("learned", "hidden")
AGINGS = (0.0, 0.1, 0.5)           # robust-srpt's knob, chosen leave-one-out
BURSTS = (10, 30, 10 ** 6)          # 10**6: all of the recording


@dataclass(frozen=True)
class Setting:
    """A policy + predictor + knobs, and how to build a fresh policy for it."""

    policy: str
    predictor: str | None
    knob: str = ""

    @property
    def label(self) -> str:
        return self.policy + (f"[{self.knob}]" if self.knob else "") + (f" + {self.predictor}" if self.predictor else "")


def settings() -> list[Setting]:
    out = [Setting(p, None) for p in ("fcfs", "las", "srpt-oracle")]
    for predictor in PREDICTORS:
        out += [Setting(p, predictor) for p in ("lp-sjf", "laps-sd", "gittins")]
        out += [Setting("robust-srpt", predictor, f"aging={a:g}") for a in AGINGS]
    return out


def build_policy(setting: Setting, predictor: LengthPredictor | None):
    if setting.policy == "robust-srpt":
        aging = float(setting.knob.split("=")[1])
        return RobustSRPTPolicy(RobustSRPTConfig(aging=aging), predictor)
    return make_policy(setting.policy, predictor=predictor)


# ---- replay ---------------------------------------------------------------------------------
def replay_cell(sets, setting: Setting, factory, batch: int) -> tuple[float, float]:
    """Mean latency and p99, averaged over the arrival sets (fresh policy + predictor each)."""
    means, p99s = [], []
    for seed, traces in enumerate(sets):
        predictor = factory(seed) if setting.predictor else None
        result = simulate(traces, build_policy(setting, predictor), record_events=False, max_batch_size=batch)
        means.append(result.mean_latency)
        p99s.append(percentile(result.latencies, 99))
    return statistics.fmean(means), statistics.fmean(p99s)


def replay_recording(name: str, traces, history: list, features_model, args) -> list[dict]:
    """Every setting on every scenario of one recording at each batch size: one row per cell."""
    factories = {p: factory_from_examples(p, history, features_model=features_model) for p in PREDICTORS}
    scenarios = build_scenarios(traces, BURSTS, args.utilisations, args.poisson_requests, args.seeds)
    rows = []
    for batch in args.batches:
        for scenario in scenarios:
            outcome = {s: replay_cell(scenario.arrival_sets, s, factories.get(s.predictor), batch) for s in settings()}
            rows += cell_rows(name, scenario.name, batch, outcome)
    return rows


def cell_rows(name: str, scenario: str, batch: int, outcome: dict[Setting, tuple[float, float]]) -> list[dict]:
    by_label = {(s.policy, s.predictor): v for s, v in outcome.items() if not s.knob}
    fcfs_mean, fcfs_p99 = by_label[("fcfs", None)]
    srpt = by_label[("srpt-oracle", None)][0]
    rows = []
    for setting, (mean, p99) in outcome.items():
        predictor = setting.predictor or "learned"        # predictor-free policies: same in every cell
        best = min(by_label.get((b, predictor), by_label.get((b, None), (math.inf,)))[0] for b in BASELINES)
        rows.append({"recording": name, "scenario": scenario, "batch": batch, "setting": setting.label,
                     "policy": setting.policy, "predictor": setting.predictor, "knob": setting.knob,
                     "mean": mean, "p99": p99, "over_best": mean / best, "over_srpt": mean / srpt,
                     "p99_over_fcfs": p99 / fcfs_p99, "fcfs_mean": fcfs_mean})
    return rows


# ---- leave-one-out choices ------------------------------------------------------------------
def geomean(values) -> float:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


def choose(rows: list[dict], held_out: str, batch: int, candidates: list[str]) -> str:
    """The candidate label with the best geometric mean over_best on the other recordings."""
    scores = {c: geomean(r["over_best"] for r in rows if r["setting"] == c and r["batch"] == batch
                         and r["recording"] != held_out) for c in candidates}
    return min(scores, key=scores.get)


def held_out_choices(rows: list[dict], held_out: str, batch: int) -> dict[str, str]:
    """Per policy + predictor: its knob chosen without H; and the default among all of them."""
    labels = sorted({r["setting"] for r in rows})
    families: dict[str, list[str]] = {}
    for label in labels:
        families.setdefault(label.split("[")[0] + label.split("]")[-1] if "[" in label else label, []).append(label)
    chosen = {family: choose(rows, held_out, batch, members) for family, members in families.items()}
    learners = [c for f, c in chosen.items() if not f.startswith(("fcfs", "las", "srpt-oracle"))]
    chosen["DEFAULT"] = choose(rows, held_out, batch, learners)
    return chosen


def summarise(rows: list[dict], recording: str, batch: int, label: str) -> dict:
    cells = [r for r in rows if r["recording"] == recording and r["batch"] == batch and r["setting"] == label]
    return {"cells": {r["scenario"]: round(r["over_best"], 3) for r in cells},
            "geomean_over_best": geomean(r["over_best"] for r in cells),
            "geomean_over_srpt": geomean(r["over_srpt"] for r in cells),
            "worst_p99_over_fcfs": max(r["p99_over_fcfs"] for r in cells)}


# ---- predictor quality ----------------------------------------------------------------------
def spearman(xs, ys) -> float:
    if len(xs) < 3:
        return math.nan
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else math.nan


def _ranks(values) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2
        i = j + 1
    return ranks


def predictor_quality(traces, history: list, features_model, name: str) -> dict:
    """Out-of-sample predictions in recording order: Spearman overall / per kind, 80 % coverage."""
    predictor = factory_from_examples(name, history, features_model=features_model)()
    calibration = LengthCalibration()
    rows = []
    for spec, truth in examples_of(traces, features_model):
        l_hat = predictor.predict(spec)
        band = predictor.predict_quantiles(spec, (0.1, 0.9))
        if band is None:                       # the calibration a policy would wrap it in
            support = calibration.support(l_hat, spec.max_new_tokens)
            band = (support[len(support) // 10], support[(9 * len(support)) // 10 - 1])
        rows.append((spec.request_id.split("-")[0], l_hat, truth, band[0] <= truth <= band[1]))
        calibration.observe(l_hat, truth)
        predictor.observe(spec, truth)
    kinds = sorted({k for k, *_ in rows})
    return {"spearman": spearman([r[1] for r in rows], [r[2] for r in rows]),
            "coverage80": statistics.fmean(r[3] for r in rows),
            "by_kind": {k: spearman([r[1] for r in rows if r[0] == k], [r[2] for r in rows if r[0] == k])
                        for k in kinds}}


# ---- main -----------------------------------------------------------------------------------
def load_all(names) -> dict[str, list]:
    return {name: load_recording(DATA / RECORDINGS[name][0], 4096 if RECORDINGS[name][1] else None)
            for name in names}


def history_for(recordings: dict[str, list], held_out: str, features_model) -> list:
    return [e for name, traces in recordings.items() if name != held_out
            for e in examples_of(traces, features_model)]


def run(args, log: Callable[[str], None]) -> dict:
    recordings = load_all(args.recordings)
    rows, quality = [], {}
    for name, traces in recordings.items():
        model = features_model_of(t.features for t in traces) or features_model_of(
            t.features for other in recordings.values() for t in other)
        history = history_for(recordings, name, model)
        started = time.time()
        rows += replay_recording(name, traces, history, model, args)
        quality[name] = {p: predictor_quality(traces, history, model, p) for p in PREDICTORS}
        log(f"{name}: {len(traces)} requests, history {len(history)}, {time.time() - started:.0f} s")
    held = {}
    for name in recordings:
        for batch in args.batches:
            chosen = held_out_choices(rows, name, batch)
            held[f"{name}@B{batch}"] = {family: {"chosen": label, **summarise(rows, name, batch, label)}
                                        for family, label in chosen.items()}
    return {"rows": rows, "quality": quality, "held_out": held,
            "config": {k: v for k, v in vars(args).items() if k != "json"}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", default=",".join(RECORDINGS), type=lambda s: s.split(","))
    parser.add_argument("--batches", default="1,8", type=lambda s: [int(b) for b in s.split(",")])
    parser.add_argument("--utilisations", default="0.5,0.7,0.9", type=lambda s: [float(u) for u in s.split(",")])
    parser.add_argument("--poisson-requests", type=int, default=100)
    parser.add_argument("--seeds", default="0,1", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args, lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    print(format_report(result))


def format_report(result: dict) -> str:
    lines = ["## Held-out (each recording judged with choices made on the others)", ""]
    header = "| held-out @ B | family | chosen | cells (over best) | geomean | / srpt | p99 / fcfs |"
    lines += [header, "|---|---|---|---|---|---|---|"]
    for where, families in result["held_out"].items():
        for family, s in families.items():
            if family.startswith(("fcfs", "las", "srpt-oracle")):
                continue
            cells = " ".join(f"{k.replace('poisson ', 'U')}:{v:.2f}" for k, v in s["cells"].items())
            lines.append(f"| {where} | {family} | {s['chosen']} | {cells} | {s['geomean_over_best']:.3f} | "
                         f"{s['geomean_over_srpt']:.3f} | {s['worst_p99_over_fcfs']:.2f} |")
    lines += ["", "## Predictor quality on each held-out recording (fitted on the others, online)", "",
              "| recording | predictor | Spearman | 80 % coverage | Spearman by kind |", "|---|---|---|---|---|"]
    for name, by_predictor in result["quality"].items():
        for predictor, q in by_predictor.items():
            kinds = ", ".join(f"{k} {v:.2f}" for k, v in q["by_kind"].items())
            lines.append(f"| {name} | {predictor} | {q['spearman']:.2f} | {q['coverage80']:.2f} | {kinds} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
