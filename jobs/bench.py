"""The policy benchmark behind `hf-laps bench`: every policy on real models and real prompts.

It runs whole jobs (hf_laps.jobs.runner), so it lives with the jobs, not in the library.

    result = run_bench(BenchConfig(input="prompts.jsonl", policies=("fcfs", "laps-sd")))
    print(format_bench_table(result))

1. RECORD: one real run under fcfs. Its timing log is the truth: every request's output length
   and per-round (drafted, accepted, seconds). Greedy outputs do not depend on the schedule, so
   the truth holds for every policy; srpt-oracle and the oracle predictors read it.
2. REAL: every policy runs for real in this process on the same loaded models, repetitions
   interleaved (rep 0 in the given order, rep 1 in reverse, ...) so machine drift hits all alike.
3. REPLAY: the recorded traces go through `simulate` (the serving loop on a virtual clock) under
   every policy; real / replayed mean latency per policy validates the cost model.

Estimation errors come from a thin wrapper around each policy (`Probe`): the length predictor's
prediction at admission (MAPE against the true length) and, for laps-sd, T_rem at the round a
request became perceptible (MAPE against the seconds its remaining rounds really took).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hf_laps.jobs.requests import load_requests
from hf_laps.jobs.runner import JobConfig, build_generator, run_job
from hf_laps.jobs.summary import summarize
from hf_laps.replay.headline import REFERENCE, best_of_names
from hf_laps.replay.replayer import ParametricCost, simulate
from hf_laps.replay.traces import load_traces
from hf_laps.scheduling import Policy, SchedulerConfig, baseline_names, make_policy, mape, policy_entry, policy_names
from hf_laps.scheduling.predictors.registry import predictor_factory
from hf_laps.timing_log import read_timing_log



@dataclass
class BenchConfig:
    """`hf-laps bench` options (model options as `hf-laps run`)."""

    input: str
    policies: tuple[str, ...] = field(default_factory=policy_names)
    repeats: int = 1
    out_dir: str = "bench-out"
    record: str | None = None  # an existing timing log of this job: skip the recording run
    replay_only: bool = False
    predictor: str = "learned"
    predictor_sigma: float | None = None
    history: tuple[str, ...] = ()
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    replay_switch_seconds: float = 0.0
    replay_cost: str = "recorded"  # or "paper-pair-gpu": ParametricCost.paper_pair_gpu()
    job_options: dict = field(default_factory=dict)  # model options of JobConfig

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        unknown = [p for p in self.policies if p not in policy_names()]
        if unknown or not self.policies:
            raise ValueError(f"unknown policies {unknown}; choose from {','.join(policy_names())}")


class Probe(Policy):
    """Delegates to a policy; records predictions at admission and T_rem once perceptible."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.name = inner.name
        self.predicted: dict[str, float] = {}
        self.rounds: dict[str, int] = {}
        self.estimate: dict[str, tuple[int, float, float]] = {}  # id -> (rounds done, t_rem, l_hat)

    def admit(self, request, now):
        predictor = getattr(self.inner, "predictor", None)
        if predictor is not None:
            self.predicted[request.request_id] = predictor.predict(request)
        self.inner.admit(request, now)

    def pick(self, now):
        return self.inner.pick(now)

    def pick_batch(self, now, size):
        return self.inner.pick_batch(now, size)

    def ranked(self, count):
        return self.inner.ranked(count)

    def on_round(self, report, now):
        rid = report.request_id
        self.rounds[rid] = self.rounds.get(rid, 0) + 1
        self.inner.on_round(report, now)
        if not report.finished and rid not in self.estimate:
            why = self.inner.explain(rid)
            if why.get("perceptible") and why.get("t_rem") is not None:
                self.estimate[rid] = (self.rounds[rid], why["t_rem"], why["l_hat"])

    def explain(self, request_id):
        return self.inner.explain(request_id)

    def drain_events(self):
        return self.inner.drain_events()

    def __len__(self):
        return len(self.inner)

    def errors(self, truth: dict) -> dict:
        """{'length_mape', 't_rem_mape', 'perceptible'} against truth: id -> (tokens, round seconds)."""
        ids = [i for i in self.predicted if i in truth]
        out = {"length_mape": mape([self.predicted[i] for i in ids], [truth[i][0] for i in ids]) if ids else None}
        pairs = [(t_rem, sum(truth[i][1][k:])) for i, (k, t_rem, _) in self.estimate.items() if i in truth]
        pairs = [(e, t) for e, t in pairs if t > 0]
        out["t_rem_mape"] = mape([e for e, _ in pairs], [t for _, t in pairs]) if pairs else None
        out["perceptible"] = len(self.estimate)
        return out


def truth_of(traces) -> dict:
    """custom_id -> (output tokens, [round seconds]) of recorded traces."""
    return {t.custom_id: (t.output_tokens, [r.seconds for r in t.rounds]) for t in traces}


def make_length_predictor(cfg: BenchConfig, exclude: set[str]):
    """A fresh predictor from the one registry (history minus this job's own requests)."""
    return predictor_factory(cfg.predictor, history=cfg.history, exclude=exclude, sigma=cfg.predictor_sigma)()


def new_probe(name: str, cfg: BenchConfig, exclude: set[str]) -> Probe:
    config = cfg.scheduler
    predictor = make_length_predictor(cfg, exclude) if policy_entry(name).needs_predictor else None
    return Probe(make_policy(name, config, predictor))


def replay(traces, cfg: BenchConfig) -> dict[str, dict]:
    """Every policy on the recorded traces: simulate summary + estimation errors."""
    ids, truth, out = {t.custom_id for t in traces}, truth_of(traces), {}
    for name in cfg.policies:
        probe = new_probe(name, cfg, ids)
        result = simulate(traces, probe, cfg.replay_switch_seconds, cost=replay_cost_model(cfg), record_events=False,
                          max_batch_size=batch_size(cfg))
        out[name] = result.summary() | probe.errors(truth) | {"latencies": result.latencies}
    return out


def batch_size(cfg: BenchConfig) -> int | str:
    """The B cap of the real runs, which the replays use too (`--max-batch-size`; "auto" by
    default, as `hf-laps run`), so a replay's batch planner decides as the real run's did."""
    return cfg.job_options.get("max_batch_size", "auto")


def replay_cost_model(cfg: BenchConfig):
    """None (the recorded seconds) or the parametric GPU model of the paper's pair."""
    if cfg.replay_cost == "recorded":
        return None
    if cfg.replay_cost == "paper-pair-gpu":
        return ParametricCost.paper_pair_gpu()
    raise ValueError(f"unknown replay cost model {cfg.replay_cost!r}")


def _job_config(cfg: BenchConfig, results: Path, policy: str, truth: str | None) -> JobConfig:
    return JobConfig(input=cfg.input, results=str(results), policy=policy, truth=truth, progress=False,
                     scheduler=cfg.scheduler, **cfg.job_options)


def real_run(cfg: BenchConfig, generator, name: str, tag: str, truth_path: str | None, exclude: set[str]) -> dict:
    """One real run of the job under `name`; its summary, estimation errors and timing log path."""
    out = Path(cfg.out_dir)
    job = _job_config(cfg, out / f"{tag}.results.jsonl", name, truth_path)
    for path in (job.results, job.timing_log, job.summary):
        Path(path).unlink(missing_ok=True)
    probe = new_probe(name, cfg, exclude)
    started = time.perf_counter()
    outcome = run_job(job, generator=generator, policy=probe)
    wall = time.perf_counter() - started
    if outcome.exit_code != 0:
        raise RuntimeError(f"{name} run failed (exit {outcome.exit_code}): {outcome.message}; see {job.results}")
    records = read_timing_log(job.timing_log)
    summary = summarize(records, wall_seconds=wall)
    # the replayer on this run's own rounds, same policy: real / self-replay isolates the cost
    # model's fidelity from the machine's drift between the recording and this run
    traces = load_traces(job.timing_log)
    summary["self_replay_mean"] = simulate(traces, new_probe(name, cfg, exclude), record_events=False,
                                           max_batch_size=batch_size(cfg)).mean_latency
    summary["latencies"] = [r.latency for r in records]
    summary["timing_log"] = str(job.timing_log)
    return summary | probe.errors(truth_of(traces))


def run_bench(cfg: BenchConfig, generator=None, log=print) -> dict:
    """Record, run every policy for real (unless replay_only), replay; returns the result dict."""
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    requests, errors = load_requests(cfg.input)
    if errors:
        raise ValueError(f"{cfg.input}: {len(errors)} invalid lines (first: {errors[0]})")
    exclude = {r.custom_id for r in requests}
    if generator is None and (cfg.record is None or not cfg.replay_only):
        started = time.perf_counter()
        generator = build_generator(_job_config(cfg, Path(cfg.out_dir) / "load.jsonl", "fcfs", None))
        log(f"models loaded in {time.perf_counter() - started:.1f} s")
    record = cfg.record
    if record is None:
        log("recording the truth: one fcfs run")
        record = real_run(cfg, generator, "fcfs", "record", None, exclude)["timing_log"]
    # the recorded rounds are the truth; arrivals are the job's own (a record of a burst can be
    # replayed at the Poisson arrival times of the same prompts)
    arrivals = {r.custom_id: r.arrival_time or 0.0 for r in requests}
    traces = [t.with_arrival(arrivals[t.custom_id]) for t in load_traces(record) if t.custom_id in arrivals]
    if len(traces) != len(arrivals):
        raise ValueError(f"{record} has {len(traces)} of the {len(arrivals)} requests of {cfg.input}")
    result = {"config": _public(cfg), "record": record, "requests": len(traces), "real": {}, "runs": [],
              "replay": replay(traces, cfg)}
    if not cfg.replay_only:
        for rep in range(cfg.repeats):
            order = list(cfg.policies) if rep % 2 == 0 else list(reversed(cfg.policies))
            for name in order:
                run = real_run(cfg, generator, name, f"{name}.r{rep}", record, exclude)
                log(f"rep {rep} {name:<12} mean latency {run['latency_mean']:.3f} s  ({run['wall_seconds']:.1f} s wall)")
                result["runs"].append({"policy": name, "repeat": rep} | run)
        result["real"] = {name: _mean_runs([r for r in result["runs"] if r["policy"] == name]) for name in cfg.policies}
    result["headline"] = headline(result)
    return result


def _public(cfg: BenchConfig) -> dict:
    out = asdict(cfg)
    out["scheduler"] = cfg.scheduler.as_dict()
    out["policies"] = list(cfg.policies)
    return out


NUMERIC = ("self_replay_mean", "latency_mean", "latency_p50", "latency_p90", "latency_p99", "ttft_mean", "makespan",
           "tokens_per_second", "preemptions", "preemption_overhead", "length_mape", "t_rem_mape", "wall_seconds")


def _mean_runs(runs: list[dict]) -> dict:
    out = {"repeats": len(runs)}
    for key in NUMERIC:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = sum(values) / len(values) if values else None
    out["latency_mean_runs"] = [r["latency_mean"] for r in runs]
    out["latencies"] = runs[0]["latencies"] if runs else []
    return out


# the fcfs -> srpt-oracle gap is a denominator: below this share of fcfs's mean latency it is
# within run-to-run noise (one CPU run of a small job varies by several %), so no ratio is shown
GAP_MIN_SHARE = 0.10


def headline(result: dict) -> dict:
    """laps-sd / best baseline, laps-sd / srpt-oracle, share of the fcfs -> srpt-oracle gap closed;
    and under "beyond", every policy that is neither a baseline nor laps-sd nor srpt-oracle (the
    policies beyond the paper) against the best of the baselines AND laps-sd, as the headline
    table (hf_laps.replay.headline) compares them."""
    out = {}
    for source in ("real", "replay"):
        means = {name: row["latency_mean"] for name, row in result[source].items()}
        h = _laps_headline(means) if "laps-sd" in means else {}
        beyond = _beyond_headline(means)
        if beyond:
            h["beyond"] = beyond
        if h:
            out[source] = h
    return out


def _laps_headline(means: dict) -> dict:
    laps, h = means["laps-sd"], {}
    baselines = {b: means[b] for b in baseline_names() if b in means}
    if baselines:
        best = min(baselines, key=baselines.get)
        h["best_baseline"], h["laps_over_best"] = best, laps / baselines[best]
    if "srpt-oracle" in means:
        h["laps_over_srpt"] = laps / means["srpt-oracle"]
        if "fcfs" in means:
            gap = means["fcfs"] - means["srpt-oracle"]
            if gap >= GAP_MIN_SHARE * means["fcfs"]:
                h["gap_closed"] = (means["fcfs"] - laps) / gap
            else:  # a ratio over run-to-run noise (e.g. -1976 % on a tiny job) says nothing
                h["gap_too_small"] = gap / means["fcfs"]
    return h


def _beyond_headline(means: dict) -> dict:
    """policy -> {best_baseline, over_best, over_srpt} for the policies beyond the paper."""
    compared = {b: means[b] for b in best_of_names() if b in means}
    if not compared:
        return {}
    best = min(compared, key=compared.get)
    out = {}
    for name, mean_latency in means.items():
        if name in best_of_names() or name == REFERENCE:
            continue
        out[name] = {"best_baseline": best, "over_best": mean_latency / compared[best],
                     "over_srpt": mean_latency / means[REFERENCE] if REFERENCE in means else None}
    return out


def _f(value, spec=".2f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def format_bench_table(result: dict) -> str:
    """ONE table: a row per policy (real, replay and their agreement), then the headline ratios."""
    real, rep = result["real"], result["replay"]
    head = (f"{'policy':<12}{'mean':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'TTFT':>8}{'makespan':>9}{'tok/s':>7}"
            f"{'preempt':>8}{'ovh %':>6}{'replay':>8}{'real/rep':>9}{'real/self':>10}{'L MAPE%':>8}{'T MAPE%':>8}")
    lines = [f"{result['requests']} requests; real: mean over {result['config']['repeats']} interleaved run(s) per policy"
             if real else f"{result['requests']} requests; replay only (no real runs)", head, "-" * len(head)]
    for name in result["config"]["policies"]:
        r, s = real.get(name), rep[name]
        if r:
            cells = [r["latency_mean"], r["latency_p50"], r["latency_p90"], r["latency_p99"], r["ttft_mean"], r["makespan"]]
            row = "".join(f"{_f(v, '.2f'):>8}" for v in cells[:5]) + f"{_f(cells[5], '.1f'):>9}"
            row += f"{_f(r['tokens_per_second'], '.1f'):>7}{_f(r['preemptions'], '.0f'):>8}"
            row += f"{_f(None if r['preemption_overhead'] is None else 100 * r['preemption_overhead'], '.2f'):>6}"
            agree = r["latency_mean"] / s["latency_mean"] if s["latency_mean"] else None
            self_agree = r["latency_mean"] / r["self_replay_mean"] if r.get("self_replay_mean") else None
            lmape, tmape = r.get("length_mape"), r.get("t_rem_mape")
        else:
            row = "".join(f"{_f(s[k], '.2f'):>8}" for k in ("latency_mean", "latency_p50", "latency_p90", "latency_p99", "ttft_mean"))
            row += f"{_f(s['makespan'], '.1f'):>9}{_f(s['tokens_per_second'], '.1f'):>7}{s['preemptions']:>8}{'-':>6}"
            agree = self_agree = None
            lmape, tmape = s.get("length_mape"), s.get("t_rem_mape")
        lines.append(f"{name:<12}{row}{_f(s['latency_mean']):>8}{_f(agree, '.3f'):>9}{_f(self_agree, '.3f'):>10}"
                     f"{_f(lmape, '.1f'):>8}{_f(tmape, '.1f'):>8}")
    for source, h in result["headline"].items():
        parts = []
        if "laps_over_best" in h:
            parts.append(f"laps-sd / best baseline ({h['best_baseline']}) = {h['laps_over_best']:.3f}")
        if "laps_over_srpt" in h:
            parts.append(f"laps-sd / srpt-oracle = {h['laps_over_srpt']:.3f}")
        if "gap_closed" in h:
            parts.append(f"fcfs->srpt-oracle gap closed = {100 * h['gap_closed']:.0f} %")
        elif "gap_too_small" in h:
            parts.append(f"fcfs->srpt-oracle gap {100 * h['gap_too_small']:.0f} % of fcfs: too small to measure a "
                         "share closed (noise; on a job this small even srpt-oracle can trail a baseline)")
        if parts:
            lines.append(f"{source + ':':<8}" + "   ".join(parts))
        for name, b in h.get("beyond", {}).items():
            srpt = "" if b["over_srpt"] is None else f"   {name} / srpt-oracle = {b['over_srpt']:.3f}"
            lines.append(f"{source + ':':<8}{name} / best of {','.join(best_of_names())} ({b['best_baseline']}) = "
                         f"{b['over_best']:.3f}{srpt}")
    lines.append("times in seconds; TTFT = mean; replay = simulated mean latency on the recorded traces (real/rep: the real "
                 "mean over it); real/self = real mean over the simulator replaying that run's own rounds; L MAPE = length "
                 "predictor at admission; T MAPE = laps-sd T_rem when perceptible vs the true remaining seconds")
    return "\n".join(lines)


def write_json(result: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1, default=float)
