"""One mean acceptance length (tokens per target forward) in the results, the summary, the
printed table and the progress bar, also after `--resume`; the bar moves per round."""
from __future__ import annotations

import io
import json
import re

import pytest

from hf_laps import LapsGenerator
from hf_laps.metrics import SpecMetrics, mean_acceptance_length
from hf_laps.serving.progress import BatchProgress
from helpers import EXAMPLES, hf_laps
from tiny_models import prompts, tiny_target


def test_the_definition_counts_every_target_forward():
    metrics = SpecMetrics()
    for drafted, accepted in [(0, 0), (4, 3), (0, 0), (4, 1)]:  # prefill, then 3 rounds
        metrics.record(drafted, accepted)
    # 4 forwards emitted 1 + 4 + 1 + 2 = 8 tokens
    assert metrics.mean_acceptance_length == mean_acceptance_length(4, 4) == 8 / 4
    both = SpecMetrics.from_rounds([[2, 2, 0.1, 0.0]]).merge(metrics)
    assert (both.num_spec_steps, both.num_accepted_draft_tokens) == (5, 6)
    assert both.acceptance_histogram == [2, 1, 1, 1]


def test_summary_table_and_results_agree_after_resume(tmp_path, tiny_model_dir):
    lines = EXAMPLES.read_text().splitlines()
    first, job = tmp_path / "first.jsonl", tmp_path / "job.jsonl"
    first.write_text("\n".join(lines[:3]) + "\n")
    job.write_text("\n".join(lines[:6]) + "\n")
    out = tmp_path / "r.jsonl"
    common = ["--model", tiny_model_dir, "--no-progress", "--policy", "fcfs"]
    assert hf_laps("run", first, "-o", out, *common).returncode == 0
    proc = hf_laps("run", job, "-o", out, "--resume", *common)
    assert proc.returncode == 0, proc.stderr
    assert "3 succeeded" in proc.stdout and "3 already done" in proc.stdout

    per_request = SpecMetrics()
    results = [json.loads(line) for line in out.read_text().splitlines()]
    for record in results:
        per_request.merge(SpecMetrics.from_dict(record["response"]["body"]["hf_laps"]["metrics"]))
    output_tokens = sum(r["response"]["body"]["usage"]["completion_tokens"] for r in results)
    summary = json.loads((tmp_path / "r.summary.json").read_text())
    timing = [json.loads(line) for line in (tmp_path / "r.timing.jsonl").read_text().splitlines()]
    assert any(round_[0] == 0 for t in timing for round_ in t["rounds"])  # rounds that drafted nothing
    assert summary["requests"] == 6
    assert summary["num_spec_steps"] == per_request.num_spec_steps
    assert summary["mean_acceptance_length"] == pytest.approx(per_request.mean_acceptance_length)
    assert summary["mean_acceptance_length"] == pytest.approx(output_tokens / summary["num_spec_steps"])
    shown = re.search(r"mean acceptance len\s+([\d.]+)", proc.stdout).group(1)
    assert shown == f"{summary['mean_acceptance_length']:.2f}"


def test_progress_bar_moves_per_round_and_reports_the_same_acceptance(capsys):
    gen = LapsGenerator(tiny_target(), policy="fcfs", progress=True)
    results = gen.generate(prompts(2), max_new_tokens=40, do_sample=False)
    err = capsys.readouterr().err
    # a line drawn while the first request was still running shows its tokens
    assert re.search(r"0/2 \[[^\]]*tokens=[1-9]", err), err
    total = SpecMetrics()
    for result in results:
        total.merge(SpecMetrics.from_dict(result.metrics))
    assert re.findall(r"accept_len=([\d.]+)", err)[-1] == f"{total.mean_acceptance_length:.2f}"
    assert re.findall(r"tokens=(\d+)", err)[-1] == str(sum(r.output_tokens for r in results))


def test_bar_postfix_counts_rounds():
    from hf_laps.engine.state import RoundResult

    ticks = iter([0.0, 1.0, 2.0, 2.0])  # start, round, postfix
    bar = BatchProgress(1, file=io.StringIO(), clock=lambda: next(ticks))
    bar.on_round(RoundResult("a", 4, 3, (1, 2, 3, 4), False, None, 0.1, 0.1, True, 8))
    assert bar.postfix() == {"tokens": "4", "tok_s": "2.0", "accept_len": "4.00"}
    bar.close()
