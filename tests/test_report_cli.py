"""`hf-laps report`: the summary table per timing log, and the CDF + timeline plot."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hf_laps.cli.report import read_timing_log, report


def record(cid, arrival, start, finish, preemptions=0):
    return {"custom_id": cid, "arrival": arrival, "start": start, "first_token": start + 0.1, "finish": finish,
            "latency": finish - arrival, "queue_wait": start - arrival, "prompt_tokens": 5, "output_tokens": 8,
            "max_new_tokens": 8,
            "rounds": [[4, 3, 0.1, 0.01], [4, 2, 0.1, 0.01]], "preemptions": preemptions, "switch_seconds": 0.0,
            "busy_seconds": 0.2, "policy": "laps-sd", "finish_reason": "length"}


def write_log(path, records, extra_lines=()):
    path.write_text("\n".join([json.dumps(r) for r in records] + list(extra_lines)) + "\n")
    return path


def test_report_prints_one_table_per_log_and_plots(tmp_path):
    a = write_log(tmp_path / "fcfs.timing.jsonl", [record("x", 0, 0, 1), record("y", 0, 1, 2)])
    b = write_log(tmp_path / "laps.timing.jsonl", [record("x", 0, 0, 2, preemptions=1), record("y", 0, 0.5, 1)],
                  extra_lines=[json.dumps({"custom_id": "z", "error": "boom"})])
    with open(b, "a") as handle:
        handle.write('{"custom_id": "torn by a cra')   # a crash mid-write: ignored
    png = tmp_path / "r.png"
    result = CliRunner().invoke(report, [str(a), str(b), "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert result.output.count("== ") == 2 and result.output.count("latency") >= 2
    assert "2 requests; policy laps-sd" in result.output
    assert "1.500" in result.output  # mean latency of both logs
    assert png.stat().st_size > 5000


@pytest.mark.torchfree
def test_read_timing_log_keeps_the_last_record_per_id(tmp_path):
    log = write_log(tmp_path / "t.jsonl", [record("x", 0, 0, 5), record("x", 0, 0, 1)])
    assert [r["finish"] for r in read_timing_log(log)] == [1]


@pytest.mark.torchfree
def test_empty_log(tmp_path):
    log = write_log(tmp_path / "t.jsonl", [], extra_lines=[json.dumps({"custom_id": "z", "error": "boom"})])
    result = CliRunner().invoke(report, [str(log), "-o", str(tmp_path / "p.png")])
    assert result.exit_code == 2 and "no finished requests" in result.output


@pytest.mark.torchfree
def test_a_damaged_line_is_an_error_naming_file_and_line(tmp_path):
    log = write_log(tmp_path / "t.jsonl", [record("x", 0, 0, 1)], extra_lines=["garbage", json.dumps(record("y", 0, 0, 1))])
    result = CliRunner().invoke(report, [str(log)])
    assert result.exit_code == 2 and "t.jsonl:2" in result.output


def test_timeline_rows_are_labelled_by_custom_id():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_laps.cli.plots import _timeline

    fig, ax = plt.subplots()
    _timeline(ax, "laps", [record("late", 1, 1, 2), record("early", 0, 0, 1)])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["early", "late"]
    plt.close(fig)


@pytest.mark.torchfree
def test_occupancy_counts_waiting_and_in_progress():
    from hf_laps.cli.plots import occupancy

    times, waiting, running = occupancy([record("a", 0, 0, 2), record("b", 0, 2, 3), record("c", 1, 1.5, 2.5)])
    at = {t: (w, r) for t, w, r in zip(times, waiting, running)}  # the state after the last event at t
    assert at[0] == (1, 1) and at[1] == (2, 1) and at[1.5] == (1, 2) and at[2] == (0, 2) and at[2.5] == (0, 1) and at[3] == (0, 0)


def test_report_of_2000_requests_draws_an_aggregate_timeline(tmp_path):
    import os
    import subprocess
    import sys

    records = [record(f"req-{i}", i * 0.01, i * 0.01 + 1, i * 0.01 + 2, preemptions=i % 2) for i in range(2000)]
    log = write_log(tmp_path / "big.timing.jsonl", records)
    png = tmp_path / "big.png"
    proc = subprocess.run([sys.executable, "-m", "hf_laps.cli.main", "report", str(log), "-o", str(png)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))
    assert proc.returncode == 0, proc.stderr
    assert "2000 requests" in proc.stdout and png.stat().st_size > 5000

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hf_laps.cli.plots import _timeline

    fig, ax = plt.subplots()
    _timeline(ax, "big", records)
    assert len(ax.lines) == 2 and "2000 requests" in ax.get_title()  # two curves, not 6000 segments
    plt.close(fig)
