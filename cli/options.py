"""Click options shared by `run` and `bench`, some generated from the config dataclasses.

`dataclass_options(SchedulerConfig)` adds one flag per field (`num_queues` -> `--num-queues`),
typed from the annotation, defaulting to the field's default, with the field's help text; the
command then rebuilds the config with `config_from_options(SchedulerConfig, options)`. So a new
knob is one dataclass field, and every command that takes the config gets its flag.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import click

from hf_laps.scheduling import PREDICTOR_NAMES, policy_entry, policy_names


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _click_type(hint) -> tuple[object, bool]:
    """(click type, is a bool flag) for a field annotation such as `int`, `float | None`."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    if base is bool:
        return bool, True
    if base in (int, float, str):
        return base, False
    raise TypeError(f"no CLI type for {hint!r}")


def _leaf_fields(cls, prefix: str = ""):
    """(dest, field, type hint) of every non-dataclass field, nested dataclasses flattened with
    their field name as prefix: SchedulerConfig.gittins.kappa -> dest "gittins_kappa"."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from _leaf_fields(hint, f"{prefix}{f.name}_")
        else:
            yield f"{prefix}{f.name}", f, hint


def dataclass_options(cls, *, exclude: tuple[str, ...] = ()):
    """Decorator: a click option for every field of the dataclass `cls` (except `exclude`)."""

    def decorate(function):
        for dest, f, hint in reversed(list(_leaf_fields(cls))):
            if dest in exclude:
                continue
            kind, is_flag = _click_type(hint)
            help_text = f.metadata.get("help", "")
            if is_flag:
                option = click.option(f"{_flag(dest)}/--no-{dest.replace('_', '-')}", dest,
                                      default=f.default, show_default=True, help=help_text)
            else:
                default = f.default if not (isinstance(f.default, float) and math.isinf(f.default)) else None
                option = click.option(_flag(dest), dest, type=kind, default=default,
                                      show_default=f.default is not None, help=help_text)
            function = option(function)
        return function

    return decorate


def config_from_options(cls, options: dict, prefix: str = ""):
    """Pop `cls`'s fields (nested ones by their prefixed names) out of the parsed `options` and
    build it; unset fields keep their defaults."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        dest = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = config_from_options(hints[f.name], options, f"{dest}_")
        elif dest in options:
            value = options.pop(dest)
            if value is not None:
                values[f.name] = value
    return cls(**values)


def model_options(function):
    """The model flags `run` and `bench` share."""
    options = [
        click.option("--model", default=None, help="Target: hub id, local dir or .gguf file. Default: the embedded SmolLM2-135M-Instruct."),
        click.option("--assistant", default=None, help="Draft model (hub id, dir or .gguf), e.g. JackFram/llama-68m. Default: prompt lookup."),
        click.option("--max-new-tokens", type=click.IntRange(min=0), default=128, show_default=True, help="Default cap on generated tokens (a line's max_tokens wins); 0 gives empty completions."),
        click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True, help="Default temperature (0 = greedy; a line's temperature wins)."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1, ..."),
        click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto", show_default=True, help="auto = float32 on CPU, bfloat16 on CUDA."),
        click.option("--trust-remote-code", is_flag=True, help="Allow model repos to run their own code (off by default)."),
        click.option("--seed", type=int, default=None, help="Seed for sampled requests without their own seed."),
        click.option("--max-batch-size", type=BatchSize(), default="auto", show_default=True, help="The most requests per speculative round (a cap). Every round the scheduler chooses which of --policy's ranked requests share one target verify forward, by a round-cost model it learns from the job's own rounds. auto = up to 32, fewer when --kv-capacity-bytes admits fewer (1 for models whose cache cannot be batched); 1 = one request per round, exactly as before batching existed."),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch. Default: the idle cores (cores - load average), 1 to 4."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


class BatchSize(click.ParamType):
    """--max-batch-size: an integer >= 1, or "auto"."""

    name = "INTEGER|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        text = str(value).strip()
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(f"{value!r} is not an integer >= 1 or 'auto'", param, ctx)


class PolicyChoice(click.ParamType):
    """--policy: any registered policy, read when the option is parsed (so a policy registered
    after import, by a plugin or a test, is accepted)."""

    name = "policy"

    def convert(self, value, param, ctx):
        try:
            return policy_entry(value).name
        except ValueError as exc:
            self.fail(str(exc), param, ctx)

    def get_metavar(self, param, ctx=None):
        return "[" + "|".join(policy_names()) + "]"


def policy_options(function):
    """The scheduling flags of `run` (bench takes a list of policies instead)."""
    options = [
        click.option("--policy", type=PolicyChoice(), default="laps-sd", show_default=True,
                     help="Scheduling policy (any registered one)."),
        *predictor_option_list(),
        click.option("--truth", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="Timing log of an earlier run of this job: true lengths and times for srpt-oracle / "
                     "oracle predictors."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def predictor_option_list() -> list:
    return [
        click.option("--predictor", type=click.Choice(PREDICTOR_NAMES), default="learned", show_default=True,
                     help="Output-length predictor of the policies that use one (oracle / noisy-oracle need the true lengths: "
                     "an earlier run's timing log)."),
        click.option("--predictor-sigma", type=float, default=None,
                     help="noisy-oracle: std of the log-normal error (default 0.5)."),
        click.option("--history", multiple=True, type=click.Path(exists=True, dir_okay=False),
                     help="Timing logs of earlier jobs to fit the learned and hidden predictors on (repeatable)."),
        click.option("--kv-budget-bytes", type=click.IntRange(min=0), default=None,
                     help="Device bytes for paused requests' KV caches; beyond it the least recently run are "
                     "parked in CPU memory. Default: keep all."),
    ]


def predictor_options(function):
    for option in reversed(predictor_option_list()):
        function = option(function)
    return function
