"""The docs run as written: each page's ```bash and ```python blocks execute in order in a
scratch directory holding a copy of examples/ (bash blocks with `bash -e`, python blocks as one
script per block in one process per page, sharing state like a notebook)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```(bash|python)\n(.*?)```", re.S)


def blocks(page: str):
    return BLOCK.findall((REPO / "docs" / page).read_text(encoding="utf-8"))


def run_page(page: str, workdir: Path) -> None:
    shutil.copytree(REPO / "examples", workdir / "examples")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    python_parts = []
    for kind, code in blocks(page):
        if kind == "bash":
            proc = subprocess.run(["bash", "-e", "-c", code], cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, f"{page} bash block failed:\n{code}\n{proc.stdout}\n{proc.stderr}"
        else:
            python_parts.append(code)
    if python_parts:
        script = workdir / "page.py"
        script.write_text("\n".join(python_parts), encoding="utf-8")
        proc = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{page} python blocks failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("page", ["quickstart.md", "python-api.md"])
def test_page_runs_as_written(page, tmp_path):
    assert blocks(page), f"{page} has no code blocks"
    run_page(page, tmp_path)
