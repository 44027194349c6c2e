"""The scheduling core is pure Python: importing it must not load torch (or numpy)."""
import pathlib
import re
import subprocess
import sys

import pytest

import hf_laps.scheduling as scheduling

pytestmark = pytest.mark.torchfree

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_import_does_not_load_torch_or_numpy():
    # benchmarks/ is not installed: appended last, so hf_laps still resolves to the installed package
    code = (f"import sys; sys.path.append({str(REPO)!r});"
            "import hf_laps.scheduling, hf_laps.replay.replayer, benchmarks.scheduler_cost, benchmarks.sim_study;"
            "bad = [m for m in ('torch', 'numpy', 'transformers') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_heavy_import_in_source():
    root = pathlib.Path(scheduling.__file__).parent
    pattern = re.compile(r"^\s*(import|from)\s+(torch|numpy|transformers)\b", re.M)
    offenders = [p.name for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_public_api():
    for name in ("RequestSpec", "RoundReport", "Policy", "SchedulerConfig", "POLICY_NAMES",
                 "make_policy", "LengthPredictor", "make_predictor", "PREDICTOR_NAMES",
                 "register_policy", "baseline_names", "mape"):
        assert hasattr(scheduling, name), name
    # the timing-log format and replay traces are not scheduling: they live beside it, in replay/ and timing_log
    for name in ("load_traces", "TimingRecord", "read_timing_log", "synthetic_traces"):
        assert not hasattr(scheduling, name), name
    assert scheduling.POLICY_NAMES == ("fcfs", "las", "lp-sjf", "srpt-oracle", "laps-sd", "gittins", "robust-srpt")
    assert scheduling.PREDICTOR_NAMES == ("oracle", "noisy-oracle", "learned", "hidden")
