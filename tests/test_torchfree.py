"""The `torchfree` marker is honest: `pytest -m torchfree` imports and runs the marked tests with
torch, transformers, numpy, ... blocked (conftest installs tests/notorch/), as tox's notorch
environment runs them without those packages installed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.torchfree
TESTS = Path(__file__).resolve().parent


def test_a_torchfree_run_blocks_torch(request):
    if (request.config.getoption("markexpr", "") or "").strip() != "torchfree":
        pytest.skip("only a `pytest -m torchfree` run blocks torch")
    for name in ("torch", "transformers", "numpy"):
        assert name not in sys.modules, name
        with pytest.raises(ImportError, match="blocked"):
            __import__(name)
    # and in the subprocesses a test starts (a CLI run)
    done = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True)
    assert done.returncode != 0 and "blocked" in done.stderr


def test_the_marked_modules_import_without_torch():
    """Collecting `-m torchfree` imports every module that marks a test, with torch blocked; the
    marked set is most of the suite's pure-Python tests, not a handful picked by file name."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run([sys.executable, "-P", "-m", "pytest", "-m", "torchfree", "--collect-only", "-q",
                           "-p", "no:cacheprovider", str(TESTS)],
                          capture_output=True, text=True, timeout=300, cwd=TESTS.parent, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    selected = [line for line in done.stdout.splitlines() if "::" in line]
    modules = {line.split("::")[0] for line in selected}
    assert len(selected) >= 400, len(selected)
    for expected in ("test_jobs_sink.py", "test_scheduling_gittins.py", "test_docs_self_contained.py", "test_packaging.py"):
        assert any(m.endswith(expected) for m in modules), expected
