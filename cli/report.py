"""`hf-laps report`: summary tables of timing logs, a latency CDF and per-request timelines.

    hf-laps report fcfs.timing.jsonl laps.timing.jsonl -o report.png

The plot (matplotlib) has two panels: the latency CDF of every log, and one timeline per log.
Up to TIMELINE_ROWS requests, the timeline has a row per request, labelled by custom_id and
sorted by arrival: a thin line from arrival to its first round, a thick bar from its first round
to its finish, a tick at its first token. Requests that were preempted show a long thick bar
with few tokens: that is where a policy made them wait mid-way. Beyond TIMELINE_ROWS requests,
rows would be thinner than a pixel, so the timeline shows counts over time instead: requests
waiting (arrived, no round yet) and in progress (first round run, not finished).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from hf_laps.cli.plots import plot_report
from hf_laps.runs import place_runs
from hf_laps.timing_log import read_timing_log as records_of


def read_timing_log(path: str) -> list[dict]:
    """The finished requests of a log as dicts, read by the one timing-log reader (error records
    skipped, last record per custom_id, torn tail tolerated), the runs of a resumed job placed
    one after the other (hf_laps.runs)."""
    return place_runs([r.to_json() for r in records_of(path) if r.finish is not None])[0]


def not_a_timing_log(path: str) -> str | None:
    """What to say when `path` is `hf-laps run`'s results file, the usual mix-up, else None."""
    import json

    with open(path, encoding="utf-8", errors="replace") as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return None
    if not (isinstance(record, dict) and "custom_id" in record and ("response" in record or "error" in record)
            and "rounds" not in record):
        return None
    timing = str(Path(path).with_suffix("")) + ".timing.jsonl"
    return (f"{path} is a results file (hf-laps run -o); hf-laps report reads the timing log written next "
            f"to it: {timing}")


@click.command()
@click.argument("timing_logs", metavar="TIMING_LOG...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write the latency CDF and timelines here (PNG).")
def report(timing_logs, plot_path):
    """Print the summary table of each TIMING_LOG (as `hf-laps run` prints it) and, with -o,
    plot the latency CDF of every log and a per-request timeline of each."""
    from hf_laps.jobs.summary import format_summary_table, summarize

    logs = {}
    for path in timing_logs:
        try:
            records = read_timing_log(path)
        except ValueError as exc:
            click.echo(f"error: {not_a_timing_log(path) or exc}", err=True)
            sys.exit(2)
        label = Path(path).name.removesuffix(".jsonl").removesuffix(".timing")
        if label in logs:
            label = path
        logs[label] = records
        policies = sorted({str(r.get("policy")) for r in records if r.get("policy")})
        runs = len({r.get("run_epoch") for r in records})
        resumed = f"; {runs} runs, one after the other" if runs > 1 else ""
        click.echo(f"== {path}  ({len(records)} requests; policy {', '.join(policies) or '?'}{resumed})")
        if not records:
            click.echo("no finished requests in this log\n")
            continue
        click.echo(format_summary_table(summarize(records)))
        click.echo("")
    if plot_path:
        if not any(logs.values()):
            click.echo("error: nothing to plot", err=True)
            sys.exit(2)
        plot_report(logs, plot_path)
        click.echo(f"plot: {plot_path}")
