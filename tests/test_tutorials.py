"""The CPU-runnable tutorials run as written, at a small size: each page's ```bash runnable
blocks execute in order (`bash -e`) in one scratch directory, with `hf-laps run` / `hf-laps bench`
pointed at the tiny random model directory (`--model DIR`), `-n` at 3, `--max-tokens` at 8 and
`--repeats` at 1. Pages whose blocks generate workloads skip when a data package is missing."""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_laps.workloads import INSTALL_ALL, PACKAGES

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```bash runnable\n(.*?)```", re.S)
PAGES = ["tutorial-benchmark-your-workload.md", "tutorial-choosing-a-policy.md", "tutorial-reading-timing-logs.md"]


def small(code: str, model_dir: Path) -> str:
    code = re.sub(r"hf-laps (run|bench) ", rf"hf-laps \1 --model {model_dir} ", code)
    code = re.sub(r"(?<=\s)-n \d+", "-n 3", code)
    code = re.sub(r"--max-tokens \d+", "--max-tokens 8", code)
    return re.sub(r"--repeats \d+", "--repeats 1", code)


@pytest.mark.parametrize("page", PAGES)
def test_tutorial_runs(page, tmp_path, tiny_model_dir):
    blocks = BLOCK.findall((REPO / "docs" / page).read_text(encoding="utf-8"))
    assert blocks, f"{page} has no runnable blocks"
    if any("hf-laps workload" in b for b in blocks) and any(importlib.util.find_spec(m) is None for m, _ in PACKAGES.values()):
        pytest.skip(f"data packages missing: {INSTALL_ALL}")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for code in blocks:
        code = small(code, tiny_model_dir)
        proc = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{page} block failed:\n{code}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.torchfree
def test_small_rewrites_only_the_size():
    code = "hf-laps workload code -n 30 --max-tokens 128 -o x\nhf-laps bench x --repeats 2\nhf-laps report a"
    assert small(code, Path("/m")) == ("hf-laps workload code -n 3 --max-tokens 8 -o x\n"
                                       "hf-laps bench --model /m x --repeats 1\nhf-laps report a")
