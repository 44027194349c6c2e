"""docs/cli.md lists every command and every option of `hf-laps`, checked against the commands
themselves (what `--help` prints). Regenerate the reference part after adding an option:

    python tests/test_docs_cli.py > /tmp/cli.md    # then merge its tables into docs/cli.md
"""
from __future__ import annotations

from pathlib import Path

import click
import pytest

from hf_laps.cli.main import cli

pytestmark = pytest.mark.torchfree
DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def commands(group: click.Group = cli, prefix: str = "hf-laps"):
    """(full name, command) of every command, subcommands of groups included."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield f"{prefix} {name}", command
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix} {name}")


def flags(command: click.Command) -> list[str]:
    return [max(p.opts, key=len) for p in command.params if isinstance(p, click.Option) and not p.hidden]


def _default(option: click.Option) -> str:
    value = option.default
    if value is None or callable(value) or "Sentinel" in repr(value) or value in ((), []) \
            or (option.is_flag and value is False):
        return ""
    return f"`{value}`"


def render() -> str:
    """The reference tables of docs/cli.md, from the commands' own parameters and help."""
    out = []
    for name, command in commands():
        out += [f"## `{name}`", "", " ".join((command.help or "").strip().split("\n\n")[0].split()), ""]
        arguments = [p.human_readable_name for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            out += [f"Arguments: {' '.join(arguments)}", ""]
        options = [p for p in command.params if isinstance(p, click.Option) and not p.hidden]
        if options:
            out += ["| option | default | meaning |", "|---|---|---|"]
            for p in options:
                names = " / ".join(f"`{o}`" for o in p.opts + p.secondary_opts)
                out.append(f"| {names} | {_default(p)} | {' '.join((p.help or '').replace('|', '/').split())} |")
            out.append("")
    return "\n".join(out)


def test_every_command_and_option_is_documented():
    text = DOC.read_text(encoding="utf-8")
    missing = [f"{name}: `{name}`" for name, _ in commands() if f"`{name}`" not in text]
    for name, command in commands():
        section = text.split(f"## `{name}`", 1)[-1].split("\n## `", 1)[0]
        missing += [f"{name}: {flag}" for flag in flags(command) if f"`{flag}`" not in section]
    assert not missing, "not in docs/cli.md (python tests/test_docs_cli.py renders it):\n" + "\n".join(missing)


if __name__ == "__main__":
    print(render())
