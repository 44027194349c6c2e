"""Merge the shard files of a completed sharded run into the files a single process writes.

    summary = merge_shards(results="out/results.jsonl", timing_log="out/results.timing.jsonl",
                           summary="out/results.summary.json", count=2, policy="laps-sd",
                           wall_seconds=12.0)

Order: shard 0's records, then shard 1's, ... each shard's in the order it wrote them
(completion order within the shard; shard 0 also holds every invalid line's error record, which
it writes first). So the merged results are not one global completion order: join on
`custom_id`, as for any results file.

Exactly once: the shards partition the requests (hf_laps.jobs.shard), and each shard's results
file holds each of its keys once (the sink and --resume guarantee it); the merge checks that no
key appears twice across shards, and copies only complete lines (a shard file is complete when
its process exited 0 or 3). The timing logs are concatenated line for line, re-run duplicates
included, as a single process leaves them (readers keep a custom_id's last record). The summary
is computed from the merged timing log, as `hf-laps run` computes it, plus `processes`: N.

Each merged file is written to a temporary file, fsynced and renamed over the target, so a
crash during the merge leaves either the earlier file or the complete new one.
"""
from __future__ import annotations

import json
import os
from typing import Iterator

from hf_laps.jobs.records import record_key
from hf_laps.jobs.shard import ShardSpec
from hf_laps.jobs.summary import summarize
from hf_laps.timing_log import read_timing_log


class MergeError(RuntimeError):
    """The shard files do not add up to one job (a key twice): nothing was replaced."""


def complete_lines(path: str) -> Iterator[bytes]:
    """The lines of `path` that end in a newline (a torn last line is left out)."""
    with open(path, "rb") as handle:
        for line in handle:
            if line.endswith(b"\n"):
                yield line


def merge_results(shard_paths: list[str], target: str) -> int:
    """Concatenate the shards' results into `target`; returns the number of records."""
    seen: set[str] = set()
    with _atomic(target) as out:
        for path in shard_paths:
            for line in complete_lines(path):
                key = record_key(json.loads(line))
                if key in seen:
                    raise MergeError(f"{key!r} is in more than one shard's results ({path}); "
                                     "the shard files are not from one run")
                seen.add(key)
                out.write(line)
    return len(seen)


def merge_lines(shard_paths: list[str], target: str) -> None:
    """Concatenate the complete lines of the shard files into `target` (the timing logs)."""
    with _atomic(target) as out:
        for path in shard_paths:
            if os.path.exists(path):
                for line in complete_lines(path):
                    out.write(line)


def merge_shards(*, results: str, timing_log: str, summary: str, count: int, policy: str,
                 wall_seconds: float | None) -> dict:
    """Write the merged results, timing log and summary; return the summary."""
    specs = [ShardSpec(k, count) for k in range(count)]
    merge_results([spec.results_path(results) for spec in specs], results)
    merge_lines([spec.timing_path(results) for spec in specs], timing_log)
    merged = summarize(read_timing_log(timing_log), wall_seconds=wall_seconds)
    merged |= {"policy": policy, "processes": count}
    with _atomic(summary) as out:
        out.write(json.dumps(merged, indent=2).encode())
    return merged


class _atomic:
    """Write `path` through `path.tmp`: fsynced and renamed on success, removed on failure."""

    def __init__(self, path: str):
        self.path, self.tmp = path, f"{path}.tmp"

    def __enter__(self):
        self.handle = open(self.tmp, "wb")
        return self.handle

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
        finally:
            self.handle.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            os.remove(self.tmp)
