"""An unknown hub id without network fails in seconds with one line, not after a retry storm
(hf_laps.models.hub_check)."""
from __future__ import annotations

import json
import time

import pytest

from cli_subprocess import hf_laps

# seconds: the CLI's own start (imports) is ~5 s on a busy 2-core machine; the retry storm 28-46 s
FAST = 20


@pytest.mark.parametrize("env, why", [
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE"),
    # no offline flag, an endpoint that refuses connections: one attempt, then the cache
    ({"HF_HUB_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot reach http://127.0.0.1:9"),
])
def test_an_uncached_hub_id_without_network_fails_fast(tmp_path, env, why):
    job = tmp_path / "job.jsonl"
    job.write_text(json.dumps({"custom_id": "a", "prompt": "Hi"}) + "\n")
    began = time.monotonic()
    proc = hf_laps("run", job, "-o", tmp_path / "out.jsonl", "--model", "no-such-org/no-such-model",
                   env={**env, "HF_HOME": str(tmp_path / "hf-home")})
    elapsed = time.monotonic() - began
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0] and "not in the local Hugging Face cache" in lines[0], proc.stderr
    assert elapsed < FAST, f"{elapsed:.1f} s"
    assert not (tmp_path / "out.jsonl").exists()
