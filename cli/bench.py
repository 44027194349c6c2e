"""`hf-laps bench`: every scheduling policy on the same job, for real and replayed (hf_laps.jobs.bench)."""
from __future__ import annotations

import sys

import click

from hf_laps.cli.options import config_from_options, dataclass_options, model_options, predictor_options
from hf_laps.engine_config import EngineConfig
from hf_laps.scheduling import SchedulerConfig



@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--policies", default=None, help="Comma-separated policies to compare. Default: every registered policy.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True, help="Real runs per policy (interleaved).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write every number (per run and per policy) as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Latency CDF per policy, real and replayed (PNG; needs matplotlib).")
@click.option("--out-dir", default="bench-out", show_default=True, type=click.Path(file_okay=False), help="Where the results and timing logs of every run go.")
@click.option("--record", type=click.Path(exists=True, dir_okay=False), default=None, help="Use this timing log of the same job as the truth instead of recording one (fcfs) first.")
@click.option("--replay-only", is_flag=True, help="Only replay the recorded traces in the simulator (no real policy runs; with --record, no model is loaded).")
@predictor_options
@dataclass_options(SchedulerConfig)
@dataclass_options(EngineConfig)
@click.option("--replay-switch-seconds", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Switch cost per resume in the replay (recorded cost model).")
@click.option("--replay-cost", type=click.Choice(["recorded", "paper-pair-gpu"]), default="recorded", show_default=True, help="Cost model of the replay: the recorded seconds, or LLaMA-7B/68M on one H200 (parametric).")
@model_options
def bench(input_path, policies, repeats, json_path, plot_path, out_dir, record, replay_only, predictor, predictor_sigma,
          history, kv_budget_bytes, replay_switch_seconds, replay_cost, **options):
    """Compare scheduling policies on the job INPUT: one recorded fcfs run gives the truth
    (output lengths, per-round acceptance and seconds), every policy then runs for real in this
    process (interleaved repetitions) and is replayed in the simulator. Prints one table."""
    from hf_laps.jobs.bench import BenchConfig, format_bench_table, run_bench, write_json
    from hf_laps.models import ModelLoadError

    try:
        scheduler = config_from_options(SchedulerConfig, options)
        options["engine"] = config_from_options(EngineConfig, options)
        chosen = {} if policies is None else {"policies": tuple(p.strip() for p in policies.split(",") if p.strip())}
        config = BenchConfig(
            input=input_path, repeats=repeats, out_dir=out_dir, record=record, replay_only=replay_only,
            predictor=predictor, predictor_sigma=predictor_sigma, history=tuple(history), scheduler=scheduler,
            replay_switch_seconds=replay_switch_seconds, replay_cost=replay_cost,
            job_options=dict(options, kv_budget_bytes=kv_budget_bytes), **chosen,
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
        from hf_laps.cli.plots import plot_cdfs

        curves = {f"{name} (real)": row["latencies"] for name, row in result["real"].items()}
        curves |= {f"{name} (replay)": row["latencies"] for name, row in result["replay"].items()}
        plot_cdfs(curves, plot_path, title=f"{input_path}: latency CDF per policy")
        click.echo(f"plot: {plot_path}")
