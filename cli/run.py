"""`hf-laps run`: the JSONL batch job (see hf_laps.jobs.runner for what it writes)."""
from __future__ import annotations

import sys

import click

from hf_laps.cli.options import config_from_options, dataclass_options, model_options, policy_options
from hf_laps.serving import EngineConfig
from hf_laps.scheduling import SchedulerConfig


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
@dataclass_options(SchedulerConfig)
@dataclass_options(EngineConfig)
@model_options
@click.option("--kv-capacity-bytes", type=click.IntRange(min=0), default=None,
              help="Device bytes all running requests' KV caches may reach at worst (prompt + max_new_tokens "
              "each): requests wait for admission while they do not fit; one that cannot fit alone gets an "
              "error line. Default: admit every request.")
@click.option("--resume", is_flag=True, help="Keep the outputs and skip custom_ids already in the results file.")
@click.option("--overwrite", is_flag=True, help="Start over when the results file already holds results (without "
              "--resume or --overwrite a non-empty results file is refused, and left untouched).")
@click.option("--ignore-arrivals", is_flag=True, help="Treat every line as arriving at time 0 (ignore arrival_time).")
@click.option("--arrival-rate", type=float, default=None, help="Poisson arrivals at this many requests/s, in input order (seeded by --seed); overrides arrival_time.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--num-processes", type=click.IntRange(min=1), default=1, show_default=True, help="Shard the job over N processes (one device each) with accelerate's launcher; see docs/tutorial-multi-device.md.")
def run(input_path, results, no_progress, num_processes, overwrite, **options):
    """Run every request of INPUT (a JSONL file, or a dataset saved with save_to_disk) through
    speculative decoding, scheduled by --policy. Streams results and timing logs as requests
    finish; bad lines become error records; Ctrl-C stops at a round boundary (then --resume).

    Exit codes: 0 all succeeded, 2 usage or model error, 3 some requests have error records,
    4 an output file could not be written, 130 interrupted.
    """
    from hf_laps.jobs.runner import EXIT_INTERRUPTED, EXIT_USAGE, JobConfig
    from hf_laps.jobs.sharded import launched_processes, run_sharded, run_unsharded
    from hf_laps.jobs.summary import format_summary_table
    from hf_laps.serving.generator import ModelLoadError

    if num_processes > 1 and launched_processes() not in (1, num_processes):
        raise click.UsageError(f"--num-processes {num_processes}, but the launcher started {launched_processes()}")
    if no_progress:
        quiet_progress_bars()

    try:
        scheduler = config_from_options(SchedulerConfig, options)
        engine = config_from_options(EngineConfig, options)
        config = JobConfig(input=input_path, results=results, progress=not no_progress, scheduler=scheduler,
                           engine=engine, **options)
        if launched_processes() == 1:  # a launched worker's parent (or user) already checked
            preflight(config)  # the more specific errors (options, device, model) come first
            refuse_to_truncate(results, options["resume"], overwrite)
        if num_processes > 1 and launched_processes() == 1:  # options checked: start N processes
            from hf_laps.cli.launch import relaunch
            from hf_laps.jobs.sharded import check_resumable

            from hf_laps.jobs.sink import SinkError, probe_writable

            check_resumable(config, num_processes)
            try:  # the workers would each fail on it, with tracebacks; one line here instead
                probe_writable(results)
            except SinkError as exc:
                raise ValueError(str(exc)) from None
            sys.exit(relaunch(num_processes, results))
        run_job = run_sharded if launched_processes() > 1 else run_unsharded
        outcome = run_job(config, on_warning=lambda text: click.echo(f"warning: {text}", err=True))
        if outcome.summary is not None:
            click.echo(format_summary_table(outcome.summary))
        if outcome.outputs_opened:  # a run that wrote nothing names no files
            click.echo(final_line(config, outcome))
        if outcome.message:
            click.echo(outcome.message, err=True)
    except (ValueError, ModelLoadError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:  # a second Ctrl-C, also one just after the job returned
        click.echo("aborted; rerun with --resume to finish", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(outcome.exit_code)


def preflight(config) -> None:
    """The job runner's own up-front checks (cheap, repeated there), before the results check."""
    from hf_laps.preflight import check_device, check_model_location

    check_device(config.device)
    for name in (config.model, config.assistant) if config.assistant is not None else (config.model,):
        check_model_location(name)


def refuse_to_truncate(results: str, resume: bool, overwrite: bool) -> None:
    """A finished job's results are never lost to a forgotten --resume: a non-empty results file
    is only reopened with --resume (finish it) or --overwrite (start over)."""
    from pathlib import Path

    if resume and overwrite:
        raise ValueError("--resume keeps the results file and --overwrite starts it over; give one")
    path = Path(results)
    if not (resume or overwrite) and path.is_file() and path.stat().st_size > 0:
        raise ValueError(f"{results} already holds results; rerun with --resume to finish that job "
                         "or --overwrite to start over (nothing was changed)")


def final_line(config, outcome) -> str:
    """The tally and the files; a file is named only if this run wrote it."""
    files = f"results: {config.results}  timing log: {config.timing_log}"
    files += f"  summary: {config.summary}" if outcome.summary is not None else "  (no summary written)"
    return f"{outcome.succeeded} succeeded, {outcome.failed} failed, {outcome.skipped} already done; {files}"
