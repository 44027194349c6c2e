"""`python -m hf_laps.cli`: the `hf-laps` command, as `accelerate launch -m hf_laps.cli run ...` starts it."""
from hf_laps.cli.main import cli

cli(prog_name="hf-laps")
