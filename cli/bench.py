"""`hf-laps bench`: every scheduling policy on the same job, for real and replayed (hf_laps.bench.policies)."""
from __future__ import annotations

import sys

import click

from hf_laps.cli.run import model_options

POLICIES = "fcfs,las,lp-sjf,laps-sd,srpt-oracle"


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--policies", default=POLICIES, show_default=True, help="Comma-separated policies to compare.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True, help="Real runs per policy (interleaved).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write every number (per run and per policy) as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Latency CDF per policy, real and replayed (PNG; needs matplotlib).")
@click.option("--out-dir", default="bench-out", show_default=True, type=click.Path(file_okay=False), help="Where the results and timing logs of every run go.")
@click.option("--record", type=click.Path(exists=True, dir_okay=False), default=None, help="Use this timing log of the same job as the truth instead of recording one (fcfs) first.")
@click.option("--replay-only", is_flag=True, help="Only replay the recorded traces in the simulator (no real policy runs; with --record, no model is loaded).")
@click.option("--predictor", type=click.Choice(["learned", "oracle", "noisy-oracle"]), default="learned", show_default=True, help="Length predictor of lp-sjf and laps-sd (the same for both).")
@click.option("--predictor-sigma", type=float, default=None, help="noisy-oracle: std of the log-normal error (default 0.5).")
@click.option("--history", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Timing logs of OTHER jobs to fit the learned predictor on (this job's own custom_ids are left out).")
@click.option("--num-queues", type=click.IntRange(min=1), default=4, show_default=True, help="K of las / laps-sd.")
@click.option("--kv-budget-bytes", type=click.IntRange(min=0), default=None, help="Device bytes for paused KV caches (0: park every paused cache in CPU memory). Default: keep all.")
@click.option("--replay-switch-seconds", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Switch cost per resume in the replay.")
@model_options
def bench(input_path, policies, repeats, json_path, plot_path, out_dir, record, replay_only, predictor, predictor_sigma,
          history, num_queues, kv_budget_bytes, replay_switch_seconds, **model):
    """Compare scheduling policies on the job INPUT: one recorded fcfs run gives the truth
    (output lengths, per-round acceptance and seconds), every policy then runs for real in this
    process (interleaved repetitions) and is replayed in the simulator. Prints one table."""
    from hf_laps.bench.policies import BenchConfig, format_bench_table, run_bench, write_json
    from hf_laps.models import ModelLoadError

    try:
        config = BenchConfig(
            input=input_path, policies=tuple(p.strip() for p in policies.split(",") if p.strip()), repeats=repeats,
            out_dir=out_dir, record=record, replay_only=replay_only, predictor=predictor, predictor_sigma=predictor_sigma,
            history=tuple(history), num_queues=num_queues, replay_switch_seconds=replay_switch_seconds,
            job_options=dict(model, kv_budget_bytes=kv_budget_bytes),
        )
        result = run_bench(config, log=lambda message: click.echo(message, err=True))
    except (ValueError, RuntimeError, ModelLoadError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(format_bench_table(result))
    if json_path:
        write_json(result, json_path)
        click.echo(f"json: {json_path}")
    if plot_path:
        from hf_laps.cli.report import plot_cdfs

        curves = {f"{name} (real)": row["latencies"] for name, row in result["real"].items()}
        curves |= {f"{name} (replay)": row["latencies"] for name, row in result["replay"].items()}
        plot_cdfs(curves, plot_path, title=f"{input_path}: latency CDF per policy")
        click.echo(f"plot: {plot_path}")
