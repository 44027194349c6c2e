"""Entry point of the `hf-laps` console script: one click group, one module per command.

Commands are imported lazily so `hf-laps --help` does not pay for importing torch.
"""
from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> (module, attribute)
COMMANDS = {
    "run": ("hf_laps.cli.run", "run"),
    "report": ("hf_laps.cli.report", "report"),
    "bench": ("hf_laps.cli.bench", "bench"),
    "workload": ("hf_laps.cli.workload", "workload"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(name for name in COMMANDS if self._available(name))

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name][0]
        return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup)
@click.version_option(package_name="hf-laps")
def cli():
    """hf-laps: run many prompts through speculative decoding, scheduled by LAPS-SD."""


if __name__ == "__main__":
    cli()
