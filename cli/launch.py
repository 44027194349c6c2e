"""`hf-laps run --num-processes N`: start the same command under accelerate's launcher.

    hf-laps run job.jsonl -o out/results.jsonl --num-processes 2
    # runs: python -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1
    #           --mixed_precision no --dynamo_backend no -m hf_laps.cli run job.jsonl -o ... --num-processes 2

`--multi_gpu` selects accelerate's torchrun launcher, the one that starts N processes; on a
machine without GPUs accelerate's plain launcher would start only one, and the processes use
gloo on the CPU all the same. The flags given explicitly keep accelerate from warning about its
defaults; a saved `accelerate config` is not needed. For several machines, run
`accelerate launch` yourself on each (docs/tutorial-multi-device.md).
"""
from __future__ import annotations

import subprocess
import sys

import click


def accelerate_command(num_processes: int, run_args: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", str(num_processes), "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no",
            "-m", "hf_laps.cli", "run", *run_args]


def run_arguments() -> list[str]:
    """This command's own arguments: those after `run` (the group takes no options of its own)."""
    if len(sys.argv) < 2 or sys.argv[1] != "run":
        raise click.UsageError("--num-processes needs to be given on the `hf-laps run` command line")
    return sys.argv[2:]


def relaunch(num_processes: int, results: str) -> int:
    """Run this command in N processes; return the run's exit code.

    The launcher reports any failed worker as 1; the main process records the run's own exit
    code (0, 3 request errors, 4 output error, 130 interrupted, ...) in the manifest, which is
    returned instead when it is there.
    """
    from hf_laps.jobs.manifest import read_manifest, record_exit_code
    from hf_laps.jobs.shard import manifest_path

    record_exit_code(manifest_path(results), None)  # an earlier run's code must not be reported
    process = subprocess.Popen(accelerate_command(num_processes, run_arguments()))
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:  # the launcher got the Ctrl-C too and stops its workers
            continue
    manifest = read_manifest(manifest_path(results))
    if code != 0 and manifest is not None and manifest.exit_code:
        return manifest.exit_code
    return code
