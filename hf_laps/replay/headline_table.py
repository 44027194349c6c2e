"""The headline table as text and JSON, with a summary per policy x predictor: its worst cell
against the best baseline (Poisson and burst apart), its geometric mean against srpt-oracle and its
worst p99 against fcfs. (The project's targets for these numbers live with the benchmarks:
benchmarks/headline_goals.py.)
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from hf_laps.replay.headline import HeadlineResult, Row, best_of_names
from hf_laps.stats import finite_json


@dataclass(frozen=True)
class Summary:
    """One policy x predictor over every cell of one recording."""

    recording: str
    predictor: str
    policy: str
    poisson_worst: float      # worst mean / best baseline over the Poisson cells (nan: none)
    burst_worst: float        # same over the burst cells
    srpt_geomean: float       # geometric mean of mean / srpt-oracle over all cells
    p99_worst: float          # worst p99 / fcfs p99
    preemptions: float        # mean preemptions per arrival set


def geomean(values) -> float:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


def _worst(rows: list[Row], kind: str) -> float:
    ratios = [r.over_best for r in rows if r.kind == kind]
    return max(ratios) if ratios else math.nan


def summarize(result: HeadlineResult) -> list[Summary]:
    """A Summary per (recording, predictor, policy), in the table's order."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in result.rows:
        groups.setdefault((row.recording, row.predictor, row.policy), []).append(row)
    return [Summary(recording=rec, predictor=pred, policy=pol, poisson_worst=_worst(rows, "poisson"),
                    burst_worst=_worst(rows, "burst"), srpt_geomean=geomean(r.over_srpt for r in rows),
                    p99_worst=max(r.p99_over_fcfs for r in rows),
                    preemptions=statistics.fmean(r.preemptions for r in rows))
            for (rec, pred, pol), rows in groups.items()]


def _f(value: float, spec: str = ".3f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_summary(summaries: list[Summary]) -> str:
    head = (f"{'recording':<12}{'predictor':<10}{'policy':<13}{'poisson /best':>14}{'burst /best':>12}"
            f"{'/srpt':>8}{'p99/fcfs':>9}{'preempt':>9}")
    lines = [head, "-" * len(head)]
    for s in summaries:
        lines.append(f"{s.recording:<12}{s.predictor:<10}{s.policy:<13}{_f(s.poisson_worst):>14}"
                     f"{_f(s.burst_worst):>12}{_f(s.srpt_geomean):>8}{_f(s.p99_worst):>9}"
                     f"{_f(s.preemptions, '.1f'):>9}")
    lines.append(f"poisson / burst: WORST cell's mean / best of {', '.join(best_of_names())} (same predictor); "
                 f"/srpt: geometric mean over cells; p99/fcfs: worst cell (lower is better everywhere)")
    return "\n".join(lines)


def format_cells(result: HeadlineResult) -> str:
    head = (f"{'recording':<12}{'scenario':<13}{'predictor':<10}{'policy':<13}{'mean s':>9}{'/best':>7}"
            f"{'best':>9}{'/srpt':>7}{'p99 s':>9}{'p99/fcfs':>9}{'preempt':>9}")
    lines = [head, "-" * len(head)]
    for r in result.rows:
        lines.append(f"{r.recording:<12}{r.scenario:<13}{r.predictor:<10}{r.policy:<13}{r.mean:>9.2f}"
                     f"{r.over_best:>7.3f}{r.best_baseline:>9}{r.over_srpt:>7.3f}{r.p99:>9.2f}"
                     f"{r.p99_over_fcfs:>9.3f}{r.preemptions:>9.1f}")
    return "\n".join(lines)


def format_headline(result: HeadlineResult, cells: bool = True) -> str:
    """The summary per policy x predictor, then every cell unless `cells` is False."""
    cfg = result.config
    about = "; ".join(f"{name}: {m['requests']} requests" + (" (Poisson streams resampled)" if m["resampled_poisson"]
                                                                else "") for name, m in result.recordings.items())
    lines = [f"headline replay: {about}; bursts {','.join(map(str, cfg.bursts))}, Poisson U "
             f"{','.join(f'{u:g}' for u in cfg.utilisations)} with >= {cfg.poisson_requests} requests; "
             f"{len(cfg.seeds)} arrival sets per cell (means); times in seconds (virtual clock)",
             "", format_summary(summarize(result))]
    if cells:
        lines += ["", format_cells(result)]
    return "\n".join(lines)


def headline_json(result: HeadlineResult) -> dict:
    """Every number: config, recordings, cells (rows) and summaries."""
    cfg = asdict(result.config)
    cfg["scheduler"] = result.config.scheduler.as_dict()
    return finite_json({"config": cfg, "recordings": result.recordings, "cells": [asdict(r) for r in result.rows],
                    "summary": [asdict(s) for s in summarize(result)]})
