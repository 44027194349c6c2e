"""The end-of-job summary: latency / TTFT percentiles, throughput, acceptance, preemption cost.

Input is the timing log the runner writes (one dict per finished request, times in seconds
since job start). Values that are undefined (no records, zero makespan, no drafted tokens) are
None, so `json.dumps(summary)` is strict JSON; `format_summary_table` prints them as "-".

    records = [r.to_json() for r in read_timing_log("timing.jsonl")]
    summary = summarize(records, wall_seconds=12.5)
    print(format_summary_table(summary))
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable

from hf_laps.metrics import SpecMetrics
from hf_laps.stats import latency_summary

PERCENTILE_KEYS = ("mean", "p50", "p90", "p99")


def _defined(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _spread(values: list[float], prefix: str) -> dict[str, float | None]:
    return {k: _defined(v) for k, v in latency_summary(values, prefix).items()}


def _drafting(record: dict) -> SpecMetrics:
    """One request's speculative counters: from its rounds [drafted, accepted, seconds,
    draft_seconds] when present (every round is a target forward, hence a step, drafted or
    not), otherwise from its vLLM-style `metrics`, which count the same rounds."""
    rounds = record.get("rounds") or []
    if rounds:
        return SpecMetrics.from_rounds(rounds)
    m = record.get("metrics") or {}
    return SpecMetrics(
        num_spec_steps=int(m.get("num_spec_steps", 0)),
        num_draft_tokens=int(m.get("num_draft_tokens", 0)),
        num_accepted_draft_tokens=int(m.get("num_accepted_draft_tokens", 0)),
        acceptance_histogram=[int(c) for c in m.get("acceptance_histogram") or []],
    )


def summarize(timing_records: list[dict], *, wall_seconds: float | None = None,
              batched_round_failures: int | None = None) -> dict[str, Any]:
    """Aggregate a job's timing records.

    Args:
        timing_records: one dict per finished request (fields as in the timing log). When a
            custom_id appears more than once, read the log with
            `hf_laps.scheduling.read_timing_log` first: it keeps the last record of each (the
            one place that rule lives).
        wall_seconds: the job's wall-clock time, if known (adds wall_tokens_per_second).
        batched_round_failures: batched rounds that raised and whose rows were rerun one by
            one (the serving loop's count, logged with their causes); None when not known.

    Returns:
        requests; latency_/ttft_/queue_wait_ mean, p50, p90, p99 (seconds); makespan
        (max finish - min arrival); prompt_tokens, output_tokens; tokens_per_second
        (output tokens / makespan); num_spec_steps, num_draft_tokens,
        num_accepted_draft_tokens, mean_acceptance_length, draft_acceptance_rate,
        acceptance_histogram; preemptions, busy_seconds, switch_seconds,
        preemption_overhead; finish_reasons; wall_seconds, wall_tokens_per_second;
        batched_round_failures.
    """
    recs = list(timing_records)
    arrivals = [float(r.get("arrival", 0.0)) for r in recs]
    finishes = [float(r["finish"]) for r in recs if r.get("finish") is not None]
    latencies = [float(r["latency"]) if r.get("latency") is not None
                 else float(r["finish"]) - float(r.get("arrival", 0.0))
                 for r in recs if r.get("latency") is not None or r.get("finish") is not None]
    # TTFT is undefined for a request that produced no token (max_tokens = 0)
    ttfts = [float(r["first_token"]) - float(r.get("arrival", 0.0))
             for r in recs if r.get("first_token") is not None]
    waits = [float(r["queue_wait"]) for r in recs if r.get("queue_wait") is not None]
    makespan = max(finishes) - min(arrivals) if finishes else None
    output_tokens = sum(int(r.get("output_tokens", 0)) for r in recs)

    spec = SpecMetrics()
    for r in recs:
        spec.merge(_drafting(r))
    busy = sum(float(r.get("busy_seconds", 0.0)) for r in recs)
    switch = sum(float(r.get("switch_seconds", 0.0)) for r in recs)

    summary: dict[str, Any] = {"requests": len(recs)}
    summary |= _spread(latencies, "latency")
    summary |= _spread(ttfts, "ttft")
    summary |= _spread(waits, "queue_wait")
    summary |= {
        "makespan": makespan,
        "prompt_tokens": sum(int(r.get("prompt_tokens", 0)) for r in recs),
        "output_tokens": output_tokens,
        "tokens_per_second": _ratio(output_tokens, makespan or 0.0),
        # tokens per target forward, over every round of every request (hf_laps.metrics)
        **spec.to_dict(),
        "preemptions": sum(int(r.get("preemptions", 0)) for r in recs),
        "busy_seconds": busy,
        "switch_seconds": switch,
        # share of device time spent switching requests rather than decoding
        "preemption_overhead": _ratio(switch, busy + switch),
        "finish_reasons": dict(Counter(str(r.get("finish_reason")) for r in recs)),
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
