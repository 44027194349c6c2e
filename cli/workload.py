"""`hf-laps workload`: write a job JSONL of real prompts (chat, code, writing, mixed)."""
from __future__ import annotations

import sys

import click

from hf_laps.workloads import WORKLOADS


@click.command()
@click.argument("name", type=click.Choice(WORKLOADS))
@click.option("-n", "--count", type=click.IntRange(min=1), default=30, show_default=True, help="Number of requests.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling (and arrival) seed.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Job JSONL to write.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True, help="Each line's max_tokens.")
@click.option("--max-prompt-chars", type=click.IntRange(min=8), default=None, help="Longest prompt kept (default: chat 2000, writing 4000 characters).")
@click.option("--utilisation", type=click.FloatRange(0, 10, min_open=True, max_open=True), default=None, help="Poisson arrivals at this offered load (needs --service-seconds or --from-timing-log). Default: all at once.")
@click.option("--service-seconds", type=click.FloatRange(0, min_open=True), default=None, help="Mean measured execution seconds per request.")
@click.option("--from-timing-log", type=click.Path(exists=True, dir_okay=False), default=None, help="Timing log of a first measured pass (e.g. of the same workload without arrivals): its mean busy seconds per request.")
def workload(name, count, seed, output, max_tokens, max_prompt_chars, utilisation, service_seconds, from_timing_log):
    """Write COUNT requests of workload NAME to a job JSONL for `hf-laps run` / `hf-laps bench`.

    Arrivals: all at once (no arrival_time), or Poisson at --utilisation U with rate
    U / S, S the mean service seconds (--service-seconds S, or measured: --from-timing-log).
    """
    from hf_laps.workloads import MissingDataPackage, add_poisson_arrivals, make_workload, mean_service_seconds, write_jsonl

    if (service_seconds is not None or from_timing_log is not None) and utilisation is None:
        raise click.UsageError("--service-seconds / --from-timing-log need --utilisation")
    if utilisation is not None and (service_seconds is None) == (from_timing_log is None):
        raise click.UsageError("--utilisation needs exactly one of --service-seconds or --from-timing-log")
    try:
        requests = make_workload(name, count, seed=seed, max_tokens=max_tokens, max_prompt_chars=max_prompt_chars)
        arrivals = "all at time 0"
        if utilisation is not None:
            if from_timing_log is not None:
                service_seconds = mean_service_seconds(from_timing_log)
            rate = add_poisson_arrivals(requests, utilisation=utilisation, service_seconds=service_seconds, seed=seed)
            arrivals = (f"Poisson, utilisation {utilisation:g} x mean service {service_seconds:.3f} s: "
                        f"{rate:.3f} requests/s, last at {requests[-1]['arrival_time']:.1f} s")
        write_jsonl(requests, output)
    except MissingDataPackage as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (ValueError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"wrote {len(requests)} {name} requests to {output} (seed {seed}, max_tokens {max_tokens}; arrivals {arrivals})")
