"""A resumed job's runs on one axis: each timing record carries its run's epoch, and the
summary's makespan and `hf-laps report` place the runs one after the other."""
from __future__ import annotations

import json

import pytest

from hf_laps.runs import place_runs
from cli_subprocess import hf_laps


def record(cid: str, arrival: float, finish: float, epoch: float | None) -> dict:
    return {"custom_id": cid, "arrival": arrival, "start": arrival, "first_token": finish, "finish": finish,
            "run_epoch": epoch}


def test_runs_follow_one_another_and_overlapping_shards_keep_their_offsets():
    records = [record("a", 0.0, 4.0, 1000.0),     # run 1, 4 s
               record("b", 0.0, 3.0, 1001.0),     # its other shard, started 1 s later
               record("c", 0.0, 2.0, 5000.0)]     # the resume, an hour later
    placed, runs = place_runs(records)
    assert [(r["arrival"], r["finish"]) for r in placed] == [(0.0, 4.0), (1.0, 4.0), (4.0, 6.0)]
    assert [run.offset for run in runs] == [0.0, 1.0, 4.0]
    assert [r["finish"] - r["arrival"] for r in placed] == [4.0, 3.0, 2.0]  # latencies unchanged
    old = [record("x", 0.0, 1.0, None), record("y", 0.5, 2.0, None)]
    assert place_runs(old)[0] == old  # a log without epochs is one run


@pytest.fixture(scope="module")
def resumed_job(tmp_path_factory, tiny_model_dir):
    """A job run twice: the second run (--resume) does the line added after the first."""
    tmp = tmp_path_factory.mktemp("resumed")
    job, out = tmp / "job.jsonl", tmp / "results.jsonl"
    lines = [json.dumps({"custom_id": cid, "prompt": f"Hello {cid}", "max_tokens": 24}) + "\n" for cid in "ab"]
    for count, flags in ((1, []), (2, ["--resume"])):
        job.write_text("".join(lines[:count]))
        proc = hf_laps("run", job, "-o", out, "--model", tiny_model_dir, "--no-progress", *flags)
        assert proc.returncode == 0, proc.stderr
    return tmp


def test_the_summary_makespan_covers_both_runs(resumed_job):
    # before: the makespan was the longer run's alone (both runs' times start at 0)
    timing = [json.loads(line) for line in (resumed_job / "results.timing.jsonl").read_text().splitlines()]
    assert len({r["run_epoch"] for r in timing}) == 2
    summary = json.loads((resumed_job / "results.summary.json").read_text())
    assert summary["runs"] == 2
    spans = [r["finish"] - r["arrival"] for r in timing]
    assert summary["makespan"] == pytest.approx(sum(spans), abs=1e-3)
    assert summary["makespan"] > max(spans)


def test_report_places_the_runs_one_after_the_other(resumed_job):
    proc = hf_laps("report", resumed_job / "results.timing.jsonl", "-o", resumed_job / "plot.png")
    assert proc.returncode == 0, proc.stderr
    assert "2 runs, one after the other" in proc.stdout
    assert (resumed_job / "plot.png").stat().st_size > 0
    from hf_laps.cli.report import read_timing_log

    first, second = read_timing_log(str(resumed_job / "results.timing.jsonl"))
    assert second["arrival"] == pytest.approx(first["finish"], abs=1e-3)  # not on top of run 1 from 0
