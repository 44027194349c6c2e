"""Adding a policy is one module plus one registry entry, and `hf-laps run` then runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import completion_order
from hf_laps.replay.replayer import simulate
from hf_laps.scheduling import (POLICY_NAMES, baseline_names, make_policy, policy_entry, policy_names, register_policy, unregister_policy)
from hf_laps.replay.synthetic import synthetic_traces

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "prompts.jsonl"

TOY_MODULE = '''
"""A toy policy: the latest arrival first, each request to completion."""
from hf_laps.scheduling.heap import LazyHeap
from hf_laps.scheduling.policies.base import BasePolicy
from hf_laps.scheduling.registry import PolicyEntry


class LatestFirst(BasePolicy):
    name = "latest-first"

    def __init__(self):
        super().__init__()
        self._heap = LazyHeap()

    def pick(self, now):
        return self._running if self._running is not None else self._heap.peek()

    def _admitted(self, state, now):
        self._heap.push(state.spec.request_id, (-state.spec.arrival, -state.admit_seq))

    def _finished(self, state, report, now):
        self._heap.remove(state.spec.request_id)


ENTRY = PolicyEntry("latest-first", lambda config, predictor: LatestFirst(), summary="toy: LIFO")
'''


def write_plugin(root: Path) -> Path:
    """A package with an entry point in the hf_laps.policies group, importable from `root`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "toy_policy.py").write_text(TOY_MODULE)
    info = root / "toy_policy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-policy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[hf_laps.policies]\nlatest-first = toy_policy:ENTRY\n")
    return root


@pytest.mark.torchfree
def test_the_builtin_entries_state_their_facts():
    assert POLICY_NAMES == ("fcfs", "las", "lp-sjf", "srpt-oracle", "laps-sd", "gittins", "robust-srpt")
    assert set(baseline_names()) >= {"fcfs", "las", "lp-sjf"}
    assert policy_entry("lp-sjf").needs_predictor and policy_entry("laps-sd").needs_predictor
    assert policy_entry("srpt-oracle").needs_truth and not policy_entry("fcfs").needs_predictor
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope")


@pytest.mark.torchfree
def test_a_registered_policy_replays_like_any_other(tmp_path):
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "toy_policy.py").write_text(TOY_MODULE)
    try:
        import toy_policy
        register_policy(toy_policy.ENTRY)
        assert "latest-first" in policy_names()
        with pytest.raises(ValueError, match="already registered"):
            register_policy(toy_policy.ENTRY)
        traces = synthetic_traces(6, seed=1)
        order = completion_order(simulate(traces, "latest-first"))
        # all arrive at 0: the last admitted runs first, and each runs to completion
        assert order == [t.custom_id for t in reversed(traces)]
    finally:
        unregister_policy("latest-first")
        sys.path.remove(str(tmp_path))
        sys.modules.pop("toy_policy", None)


def test_hf_laps_run_runs_a_plugin_policy(tmp_path, tiny_model_dir):
    write_plugin(tmp_path / "plugin")  # put on PYTHONPATH below
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(tmp_path / "plugin"))
    out = tmp_path / "results.jsonl"
    done = subprocess.run([sys.executable, "-m", "hf_laps.cli.main", "run", EXAMPLES, "-o", out, "--model",
                           tiny_model_dir, "--no-progress", "--policy", "latest-first", "--max-new-tokens", "4"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    timing = [json.loads(line) for line in (tmp_path / "results.timing.jsonl").read_text().splitlines()]
    assert {t["policy"] for t in timing} == {"latest-first"} and len(timing) == 8
    help_text = subprocess.run([sys.executable, "-m", "hf_laps.cli.main", "run", "--help"], capture_output=True,
                               text=True, timeout=120, env=env).stdout
    assert "latest-first" in help_text
