"""Run `hf-laps` as a user does: a subprocess of the installed package (conftest sets PYTHONSAFEPATH, so
the working folder, even the checkout's root, never shadows it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def hf_laps(*args, timeout: float = 300, env: dict | None = None, cwd: Path | None = None):
    environ = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "hf_laps.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=environ, cwd=str(cwd or REPO),
    )
