"""The end-of-job summary: latency / TTFT percentiles, throughput, acceptance, preemption cost.

Input is the timing log's records (`TimingRecord`, times in seconds since job start), as the one
reader returns them. Values that are undefined (no records, zero makespan, no drafted tokens) are
None, so `json.dumps(summary)` is strict JSON; `format_summary_table` prints them as "-".

    summary = summarize(read_timing_log("timing.jsonl"), wall_seconds=12.5)
    print(format_summary_table(summary))
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable

from hf_laps.metrics import SpecMetrics
from hf_laps.runs import place_runs
from hf_laps.stats import latency_summary
from hf_laps.timing_log import TimingRecord

PERCENTILE_KEYS = ("mean", "p50", "p90", "p99")


def _defined(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _spread(values: list[float], prefix: str) -> dict[str, float | None]:
    return {k: _defined(v) for k, v in latency_summary(values, prefix).items()}


def _drafting(record: TimingRecord) -> SpecMetrics:
    """One request's speculative counters: from its rounds when it has any (every round is a
    target forward, hence a step, drafted or not), otherwise from its vLLM-style `metrics`,
    which count the same rounds."""
    if record.rounds:
        return SpecMetrics.from_rounds([(r.drafted, r.accepted) for r in record.rounds])
    m = record.metrics or {}
    return SpecMetrics(
        num_spec_steps=int(m.get("num_spec_steps", 0)),
        num_draft_tokens=int(m.get("num_draft_tokens", 0)),
        num_accepted_draft_tokens=int(m.get("num_accepted_draft_tokens", 0)),
        acceptance_histogram=[int(c) for c in m.get("acceptance_histogram") or []],
    )


def summarize(timing_records: Iterable[TimingRecord | dict], *, wall_seconds: float | None = None,
              batched_round_failures: int | None = None) -> dict[str, Any]:
    """Aggregate a job's timing records.

    Args:
        timing_records: one TimingRecord per finished request, as
            `hf_laps.timing_log.read_timing_log` returns them (it keeps the last record of a
            custom_id logged twice: the one place that rule lives). A dict (a log line's JSON)
            is parsed with `TimingRecord.from_json`.
        wall_seconds: the job's wall-clock time, if known (adds wall_tokens_per_second).
        batched_round_failures: batched rounds that raised and whose rows were rerun one by
            one (the serving loop's count, logged with their causes); None when not known.

    Returns:
        requests; latency_/ttft_/queue_wait_ mean, p50, p90, p99 (seconds); makespan
        (max finish - min arrival, the runs of a resumed job placed one after the other,
        hf_laps.runs); runs (how many runs wrote the log); prompt_tokens, output_tokens; tokens_per_second
        (output tokens / makespan); num_spec_steps, num_draft_tokens,
        num_accepted_draft_tokens, mean_acceptance_length, draft_acceptance_rate,
        acceptance_histogram; preemptions, busy_seconds, switch_seconds,
        preemption_overhead; finish_reasons; wall_seconds, wall_tokens_per_second;
        batched_round_failures.
    """
    recs = [r if isinstance(r, TimingRecord) else TimingRecord.from_json(r) for r in timing_records]
    # a resumed job's runs each start at 0 on their own clock: one after the other on one axis
    recs, runs = place_runs(recs)
    finishes = [r.finish for r in recs if r.finish is not None]
    latencies = [r.latency for r in recs if r.latency is not None]
    ttfts = [r.ttft for r in recs if r.ttft is not None]  # undefined without a token (max_tokens = 0)
    waits = [r.queue_wait for r in recs if r.queue_wait is not None]
    makespan = max(finishes) - min(r.arrival for r in recs) if finishes else None
    output_tokens = sum(r.output_tokens for r in recs)

    spec = SpecMetrics()
    for r in recs:
        spec.merge(_drafting(r))
    busy = sum(r.busy_seconds for r in recs)
    switch = sum(r.switch_seconds for r in recs)

    summary: dict[str, Any] = {"requests": len(recs), "runs": len(runs)}
    summary |= _spread(latencies, "latency")
    summary |= _spread(ttfts, "ttft")
    summary |= _spread(waits, "queue_wait")
    summary |= {
        "makespan": makespan,
        "prompt_tokens": sum(r.prompt_tokens for r in recs),
        "output_tokens": output_tokens,
        "tokens_per_second": _ratio(output_tokens, makespan or 0.0),
        # tokens per target forward, over every round of every request (hf_laps.metrics)
        **spec.to_dict(),
        "preemptions": sum(r.preemptions for r in recs),
        "busy_seconds": busy,
        "switch_seconds": switch,
        # share of device time spent switching requests rather than decoding
        "preemption_overhead": _ratio(switch, busy + switch),
        "finish_reasons": dict(Counter(str(r.finish_reason) for r in recs)),
        "wall_seconds": wall_seconds,
        "wall_tokens_per_second": _ratio(output_tokens, wall_seconds or 0.0),
        "batched_round_failures": batched_round_failures,
    }
    return summary


def _fmt(value: Any, spec: str = ".3f", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:{spec}}{unit}"


def _pairs(rows: Iterable[tuple[str, str, str, str]]) -> list[str]:
    return [f"{a:<22}{b:>12}    {c:<22}{d:>12}" for a, b, c, d in rows]


def format_summary_table(summary: dict[str, Any]) -> str:
    """A plain-text table of a `summarize` result for the terminal."""
    s = summary
    lines = _pairs([
        ("requests", str(s["requests"]), "output tokens", str(s["output_tokens"])),
        ("makespan", _fmt(s["makespan"], ".3f", " s"),
         "tokens/s", _fmt(s["tokens_per_second"], ".1f")),
        ("mean acceptance len", _fmt(s["mean_acceptance_length"], ".2f"),
         "draft acceptance", _fmt(_pct(s["draft_acceptance_rate"]), ".1f", " %")),
        ("preemptions", str(s["preemptions"]),
         "preemption overhead", _fmt(_pct(s["preemption_overhead"]), ".2f", " %")),
    ])
    if s.get("batched_round_failures"):
        lines += _pairs([("batched round failures", str(s["batched_round_failures"]), "", "")])
    if s.get("wall_seconds") is not None:
        lines += _pairs([("wall time", _fmt(s["wall_seconds"], ".3f", " s"),
                          "wall tokens/s", _fmt(s["wall_tokens_per_second"], ".1f"))])
    lines.append("")
    lines.append(f"{'seconds':<14}" + "".join(f"{k:>10}" for k in PERCENTILE_KEYS))
    for label, prefix in (("latency", "latency"), ("TTFT", "ttft"), ("queue wait", "queue_wait")):
        lines.append(f"{label:<14}" + "".join(f"{_fmt(s[f'{prefix}_{k}']):>10}"
                                                for k in PERCENTILE_KEYS))
    hist = s.get("acceptance_histogram") or []
    if hist:
        lines.append("")
        lines.append("accepted per step: " + "  ".join(f"{i}:{c}" for i, c in enumerate(hist)))
    return "\n".join(lines)


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value
