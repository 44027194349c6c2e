"""`hf-laps run`: the JSONL batch job (see hf_laps.jobs.runner for what it writes)."""
from __future__ import annotations

import sys

import click

from hf_laps.scheduling import POLICY_NAMES, PREDICTOR_NAMES


def model_options(function):
    """The model flags `run` and `bench` share."""
    options = [
        click.option("--model", default=None, help="Target: hub id, local dir or .gguf file. Default: the embedded SmolLM2-135M-Instruct."),
        click.option("--assistant", default=None, help="Draft model (hub id, dir or .gguf), e.g. JackFram/llama-68m. Default: prompt lookup."),
        click.option("--prompt-lookup", "prompt_lookup", type=click.IntRange(min=1), default=10, show_default=True, help="Draft length n of prompt-lookup drafting (used when no --assistant)."),
        click.option("--num-assistant-tokens", type=click.IntRange(min=1), default=5, show_default=True, help="Draft length n of the --assistant model."),
        click.option("--max-new-tokens", type=click.IntRange(min=0), default=128, show_default=True, help="Default cap on generated tokens (a line's max_tokens wins)."),
        click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True, help="Default temperature (0 = greedy; a line's temperature wins)."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ..."),
        click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True, help="auto = float32 on CPU, bfloat16 on CUDA."),
        click.option("--trust-remote-code", is_flag=True, help="Allow model repos to run their own code (off by default)."),
        click.option("--seed", type=int, default=None, help="Seed for sampled requests without their own seed."),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch. Default: the idle cores (cores - load average), 1 to 4."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def policy_options(function):
    options = [
        click.option("--policy", type=click.Choice(POLICY_NAMES), default="laps-sd", show_default=True, help="Scheduling policy."),
        click.option("--predictor", type=click.Choice(PREDICTOR_NAMES), default="learned", show_default=True, help="Output-length predictor of lp-sjf / laps-sd (oracles need --truth)."),
        click.option("--predictor-sigma", type=float, default=None, help="noisy-oracle: std of the log-normal error (default 0.5)."),
        click.option("--history", multiple=True, type=click.Path(exists=True, dir_okay=False), help="Timing logs of earlier jobs to fit the learned predictor on (repeatable)."),
        click.option("--truth", type=click.Path(exists=True, dir_okay=False), default=None, help="Timing log of an earlier run of this job: true lengths and times for srpt-oracle / oracle predictors."),
        click.option("--kv-budget-bytes", type=click.IntRange(min=0), default=None, help="Device bytes for paused requests' KV caches; beyond it the least recently run are parked in CPU memory. Default: keep all."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def quiet_progress_bars() -> None:
    """--no-progress also silences transformers' weight-loading and GGUF conversion bars."""
    import os

    os.environ["TQDM_DISABLE"] = "1"  # tqdm reads TQDM_* defaults (the GGUF converter's bar)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@click.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("-o", "--output", "results", required=True, type=click.Path(dir_okay=False), help="Results JSONL (OpenAI batch output shape).")
@click.option("--timing-log", type=click.Path(dir_okay=False), default=None, help="Per-request timing JSONL. Default: <output>.timing.jsonl")
@click.option("--summary", type=click.Path(dir_okay=False), default=None, help="Summary JSON. Default: <output>.summary.json")
@policy_options
@model_options
@click.option("--resume", is_flag=True, help="Keep the outputs and skip custom_ids already in the results file.")
@click.option("--ignore-arrivals", is_flag=True, help="Treat every line as arriving at time 0 (ignore arrival_time).")
@click.option("--arrival-rate", type=float, default=None, help="Poisson arrivals at this many requests/s, in input order (seeded by --seed); overrides arrival_time.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def run(input_path, results, no_progress, **options):
    """Run every request of INPUT (a JSONL file, or a dataset saved with save_to_disk) through
    speculative decoding, scheduled by --policy. Streams results and timing logs as requests
    finish; bad lines become error records; Ctrl-C stops at a round boundary (then --resume).

    Exit codes: 0 all succeeded, 2 usage or model error, 3 some requests have error records,
    4 an output file could not be written, 130 interrupted.
    """
    from hf_laps.jobs.runner import EXIT_INTERRUPTED, EXIT_USAGE, JobConfig, print_summary, run_job
    from hf_laps.models import ModelLoadError

    if no_progress:
        quiet_progress_bars()

    try:
        config = JobConfig(input=input_path, results=results, progress=not no_progress, **options)
        outcome = run_job(config)
        if outcome.summary is not None:
            click.echo(print_summary(outcome.summary))
        click.echo(
            f"{outcome.succeeded} succeeded, {outcome.failed} failed, {outcome.skipped} already done; "
            f"results: {config.results}  timing log: {config.timing_log}  summary: {config.summary}"
        )
        if outcome.message:
            click.echo(outcome.message, err=True)
    except (ValueError, ModelLoadError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:  # a second Ctrl-C, also one just after the job returned
        click.echo("aborted; rerun with --resume to finish", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(outcome.exit_code)
