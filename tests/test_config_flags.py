"""Every scheduler setting is a flag of `run` and `bench`, generated from the config dataclasses."""
from __future__ import annotations

import click
from click.testing import CliRunner
import pytest

from hf_laps.cli.bench import bench
from hf_laps.cli.options import _leaf_fields, config_from_options, dataclass_options
from hf_laps.cli.run import run
from hf_laps.scheduling import SchedulerConfig
from hf_laps.scheduling.config import GittinsConfig

pytestmark = pytest.mark.torchfree


def flags_of(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", [])}


def test_every_scheduler_field_is_a_flag_of_run_and_bench_with_its_help():
    leaves = list(_leaf_fields(SchedulerConfig))
    assert {dest for dest, _, _ in leaves} >= {"num_queues", "stability_window", "probe", "gittins_kappa",
                                               "gittins_hysteresis", "gittins_per_request_speed"}
    for command in (run, bench):
        flags = flags_of(command)
        for dest, f, _ in leaves:
            assert "--" + dest.replace("_", "-") in flags, (command.name, dest)
            assert f.metadata.get("help"), dest          # the dataclass documents every knob


def test_flags_rebuild_the_nested_config():
    @click.command()
    @dataclass_options(SchedulerConfig)
    def show(**options):
        config = config_from_options(SchedulerConfig, options)
        click.echo(repr(config))
        assert options == {}                              # every flag was consumed

    out = CliRunner().invoke(show, ["--num-queues", "2", "--no-probe", "--gittins-kappa", "100",
                                    "--no-gittins-per-request-speed"])
    assert out.exit_code == 0, out.output
    expected = SchedulerConfig(num_queues=2, probe=False,
                               gittins=GittinsConfig(kappa=100.0, per_request_speed=False))
    assert out.output.strip() == repr(expected)
    defaults = CliRunner().invoke(show, [])
    assert defaults.output.strip() == repr(SchedulerConfig())


def test_a_bad_value_is_refused_by_the_config():
    @click.command()
    @dataclass_options(SchedulerConfig)
    def show(**options):
        config_from_options(SchedulerConfig, options)

    out = CliRunner().invoke(show, ["--gittins-hysteresis", "1.5"])
    assert isinstance(out.exception, ValueError) and "hysteresis" in str(out.exception)
