"""max_new_tokens / max_tokens 0 is an empty completion with finish_reason "length", on the
Python API (one request per round and batched), a job line's `max_tokens` and the job's
`--max-new-tokens` (docs/guarantees.md)."""
from __future__ import annotations

import json

import pytest

from hf_laps import LapsGenerator
from cli_subprocess import hf_laps
from tiny_models import prompts


@pytest.mark.parametrize("batch", [1, 2])
def test_generate_with_zero_new_tokens_is_an_empty_length_completion(target, batch):
    # before: result.error carried transformers' "`max_new_tokens` must be greater than 0"
    gen = LapsGenerator(target, policy="fcfs", progress=False, max_batch_size=batch)
    results = gen.generate(prompts(2), max_new_tokens=0, do_sample=False)
    assert [(r.error, r.text, r.token_ids, r.finish_reason) for r in results] == [(None, "", [], "length")] * 2


def test_a_job_with_zero_tokens_gives_empty_completions(tmp_path, tiny_model_dir):
    # before: each line a 400 on field 'prompt' with transformers' own text
    lines = [{"custom_id": "zero", "prompt": "Hello there", "max_tokens": 0},
             {"custom_id": "default", "prompt": "Hello again"}]
    job = tmp_path / "job.jsonl"
    job.write_text("".join(json.dumps(line) + "\n" for line in lines))
    for flags in ([], ["--max-new-tokens", "0"]):
        out = tmp_path / f"out{len(flags)}.jsonl"
        proc = hf_laps("run", job, "-o", out, "--model", tiny_model_dir, "--no-progress", *flags)
        assert proc.returncode == 0, proc.stderr
        records = {r["custom_id"]: r for r in map(json.loads, out.read_text().splitlines())}
        empty = [cid for cid, r in records.items() if r["error"] is None
                 and r["response"]["body"]["choices"][0]["text"] == ""
                 and r["response"]["body"]["choices"][0]["finish_reason"] == "length"]
        assert empty == (["zero"] if not flags else ["zero", "default"]), records
