"""Merge overhead of a sharded run: synthesise N shards of tiny records, time the merge only.

    python -m benchmarks.shard_merge --records 100000 --shards 2   # from the repository root

Each record is a minimal success record and a timing line with one round (what a 1-token
request writes); the merge reads every results line once (key check), copies the timing lines
and summarises the merged timing log through the one timing-log reader.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hf_laps.jobs.merge import merge_lines, merge_results, merge_shards
from hf_laps.jobs.shard import ShardSpec


def synthesise(results: Path, records: int, shards: int) -> None:
    for k in range(shards):
        spec = ShardSpec(k, shards)
        ids = range(k, records, shards)
        with open(spec.results_path(str(results)), "w") as out:
            for i in ids:
                out.write(json.dumps({"id": f"batch_req_{i}", "custom_id": f"r{i}", "error": None,
                                      "response": {"status_code": 200, "body": {"choices": [{"text": "ok"}]}}}) + "\n")
        with open(spec.timing_path(str(results)), "w") as out:
            for i in ids:
                out.write(json.dumps({"custom_id": f"r{i}", "prompt_tokens": 4, "output_tokens": 1,
                                      "max_new_tokens": 1, "arrival": 0.0, "start": 0.0, "first_token": 0.01,
                                      "finish": 0.01 * (i + 1), "finish_reason": "length",
                                      "rounds": [[0, 0, 0.01]]}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = Path(folder) / "results.jsonl"
        synthesise(results, args.records, args.shards)
        specs = [ShardSpec(k, args.shards) for k in range(args.shards)]
        started = time.perf_counter()  # the copy alone: what a single process does not do
        merge_results([s.results_path(str(results)) for s in specs], f"{folder}/copy.jsonl")
        merge_lines([s.timing_path(str(results)) for s in specs], f"{folder}/copy.timing.jsonl")
        copy_seconds = time.perf_counter() - started
        started = time.perf_counter()
        summary = merge_shards(results=str(results), timing_log=f"{folder}/results.timing.jsonl",
                               summary=f"{folder}/results.summary.json", count=args.shards, policy="fcfs",
                               wall_seconds=None)
        seconds = time.perf_counter() - started
        assert summary["requests"] == args.records
        print(f"merged {args.records} records from {args.shards} shards in {seconds:.2f} s "
              f"({1e6 * seconds / args.records:.1f} us per record); of which copying results and timing "
              f"lines with the key check {copy_seconds:.2f} s, the rest is the summary a single process "
              "computes too")


if __name__ == "__main__":
    main()
