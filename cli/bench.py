"""`hf-laps bench`: every scheduling policy on the same job, for real and replayed (hf_laps.jobs.bench)."""
from __future__ import annotations

import sys

import click

from hf_laps.cli.options import config_from_options, dataclass_options, model_options, predictor_options
from hf_laps.serving import EngineConfig
from hf_laps.scheduling import SchedulerConfig



def _csv(cast):
    """A click callback: "a,b,c" -> tuple of cast(item) (None stays None)."""
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            return tuple(cast(item.strip()) for item in value.split(",") if item.strip())
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return parse


@click.command()
@click.argument("input_path", metavar="INPUT", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--replay", "replays", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Headline mode (no INPUT, no model): replay this recording (a timing log) under every policy x "
              "predictor in bursts and Poisson streams; repeatable.")
@click.option("--hide-cap", is_flag=True, help="Headline mode: show the scheduler max_new_tokens = 4096 instead of the "
              "recorded caps (reference-length recordings, whose cap is the true length).")
@click.option("--predictors", default="learned,hidden,oracle", show_default=True, callback=_csv(str),
              help="Headline mode: predictors compared (registry names).")
@click.option("--bursts", default="10,30", show_default=True, callback=_csv(int), help="Headline mode: burst sizes.")
@click.option("--utilisations", default="0.5,0.7,0.9", show_default=True, callback=_csv(float),
              help="Headline mode: Poisson offered loads (rate = U / mean service seconds).")
@click.option("--poisson-requests", type=click.IntRange(min=1), default=200, show_default=True,
              help="Headline mode: requests per Poisson stream (a smaller recording is resampled).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Headline mode: arrival sets per scenario (burst orders / Poisson streams).")
@click.option("--headline", "with_headline", is_flag=True, help="With INPUT: also replay its recording in the headline "
              "scenarios (the --replay table; in the JSON as \"headline_table\").")
@click.option("--cells/--no-cells", default=True, show_default=True, help="Headline mode: print every cell, not "
              "only the summary per policy x predictor.")
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
def bench(input_path, replays, hide_cap, predictors, bursts, utilisations, poisson_requests, seeds, with_headline,
          cells, policies,
          repeats, json_path, plot_path, out_dir, record, replay_only, predictor, predictor_sigma,
          history, kv_budget_bytes, replay_switch_seconds, replay_cost, **options):
    """Compare scheduling policies on the job INPUT: one recorded fcfs run gives the truth
    (output lengths, per-round acceptance and seconds), every policy then runs for real in this
    process (interleaved repetitions) and is replayed in the simulator. Prints one table.

    With --replay REC (and no INPUT): the headline table of recordings, replayed only (no model):
    every policy x predictor in bursts and Poisson streams, ratios to the best baseline and to
    srpt-oracle, p99 and preemptions, summarised per policy by its worst cells."""
    headline_options = dict(hide_cap=hide_cap, predictors=predictors, bursts=bursts, utilisations=utilisations,
                            poisson_requests=poisson_requests, seeds=seeds, cells=cells, policies=policies,
                            history=history, json_path=json_path)
    if replays:
        if input_path is not None:
            click.echo("error: give INPUT (a job to run) or --replay recordings, not both", err=True)
            sys.exit(2)
        sys.exit(_headline(replays, headline_options, dict(options)))
    if input_path is None:
        click.echo("error: give INPUT (a job file) or --replay REC (a recording to replay)", err=True)
        sys.exit(2)
    from hf_laps.jobs.bench import BenchConfig, format_bench_table, run_bench, write_json
    from hf_laps.serving.generator import ModelLoadError

    scheduler_options = dict(options)   # before options gains the engine config
    try:
        if with_headline:
            _headline_config(headline_options, dict(options))     # bad headline options fail before any run
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
    if with_headline:
        from hf_laps.replay.headline_table import format_headline, headline_json

        table = _run_headline([result["record"]], headline_options, scheduler_options)
        click.echo("\n" + format_headline(table, cells=cells))
        result["headline_table"] = headline_json(table)
    if json_path:
        write_json(result, json_path)
        click.echo(f"json: {json_path}")
    if plot_path:
        from hf_laps.cli.plots import plot_cdfs

        curves = {f"{name} (real)": row["latencies"] for name, row in result["real"].items()}
        curves |= {f"{name} (replay)": row["latencies"] for name, row in result["replay"].items()}
        plot_cdfs(curves, plot_path, title=f"{input_path}: latency CDF per policy")
        click.echo(f"plot: {plot_path}")


def _headline_config(opts: dict, options: dict):
    from hf_laps.replay.headline import HeadlineConfig

    chosen = {} if opts["policies"] is None else {
        "policies": tuple(p.strip() for p in opts["policies"].split(",") if p.strip())}
    return HeadlineConfig(predictors=opts["predictors"], bursts=opts["bursts"], utilisations=opts["utilisations"],
                          poisson_requests=opts["poisson_requests"], seeds=tuple(range(opts["seeds"])),
                          history=tuple(opts["history"]), scheduler=config_from_options(SchedulerConfig, options),
                          max_batch_size=options.get("max_batch_size", "auto"), **chosen)


def _run_headline(replays, opts: dict, options: dict):
    """The headline result of recordings (hf_laps.replay.headline): pure replay, no model."""
    from pathlib import Path

    from hf_laps.replay.headline import run_headline
    from hf_laps.replay.scenarios import HIDDEN_CAP, load_recording

    config = _headline_config(opts, options)
    recordings = {}
    for path in replays:
        name = Path(path).name.split(".")[0]
        name = name if name not in recordings else f"{name}-{len(recordings)}"
        recordings[name] = load_recording(path, HIDDEN_CAP if opts["hide_cap"] else None)
    return run_headline(recordings, config, log=lambda message: click.echo(message, err=True))


def _headline(replays, opts: dict, options: dict) -> int:
    """--replay: print the headline table (and write its JSON); the exit code."""
    import json

    from hf_laps.replay.headline_table import format_headline, headline_json

    try:
        result = _run_headline(replays, opts, options)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    click.echo(format_headline(result, cells=opts["cells"]))
    if opts["json_path"]:
        with open(opts["json_path"], "w", encoding="utf-8") as handle:
            json.dump(headline_json(result), handle, indent=1, allow_nan=False)
        click.echo(f"json: {opts['json_path']}")
    return 0
