"""What a sharded run records about itself: the manifest (refuses a mixed resume) and one status
file per shard (how that shard's process ended).

Manifest, `<results stem>.shards.json`, written by the main process when a fresh run starts:

    {"hf_laps_version": "0.1.0", "job_sha256": "...", "num_processes": 2, "plan_sha256": "...",
     "input": "prompts.jsonl", "exit_code": null}

`--resume` recomputes it and refuses to go on unless version, job file hash, N and plan hash
are all equal: the shard files hold the completions of one particular split of one particular
job, and mixing them with another split or another input could run a request twice or never.
`exit_code` is the merged run's exit code, set by the main process when the run ends (null
while it runs or after a process was killed), so `hf-laps run --num-processes N` can report it
through a launcher that only says "a worker failed".

Status, `<results stem>.shard-K-of-N.status.json`, written by shard K's process when its part is
over (whatever the outcome; absent while it runs and after a kill):

    {"shard": 1, "processes": 2, "exit_code": 0, "message": "", "succeeded": 12, "failed": 0,
     "skipped": 0, "outputs_opened": true, "host": "node-1", "device": "cuda:1", "pid": 4242}

Both are written atomically (temporary file, fsync, rename): a reader sees all or nothing.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

COMPLETED_EXIT_CODES = (0, 3)  # every request has a record (3: some are error records)


class ManifestMismatch(ValueError):
    """--resume of shard files written by another job, version or number of processes."""


@dataclass(frozen=True)
class Manifest:
    hf_laps_version: str
    job_sha256: str
    num_processes: int
    plan_sha256: str
    input: str
    exit_code: int | None = None

    def check_resumable(self, earlier: "Manifest", path: str) -> None:
        """Raise ManifestMismatch naming every difference from the run that wrote `path`."""
        reasons = []
        if earlier.job_sha256 != self.job_sha256:
            reasons.append(f"the job file changed (sha256 {earlier.job_sha256[:12]}... then, "
                           f"{self.job_sha256[:12]}... now)")
        if earlier.hf_laps_version != self.hf_laps_version:
            reasons.append(f"hf-laps {earlier.hf_laps_version} wrote them, this is {self.hf_laps_version}")
        if earlier.num_processes != self.num_processes:
            reasons.append(f"they were written by {earlier.num_processes} processes, this run has "
                           f"{self.num_processes}")
        elif earlier.plan_sha256 != self.plan_sha256:
            reasons.append("the split of the requests changed (a different --max-new-tokens?)")
        if reasons:
            raise ManifestMismatch(f"cannot --resume the shard files of {path}: " + "; ".join(reasons)
                                   + ". Rerun without --resume to start over, or restore the earlier job.")


def file_sha256(path: str) -> str:
    """sha256 of a file's bytes; of a directory (a saved dataset): of every file, by path."""
    digest = hashlib.sha256()
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if root.is_dir():
            digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_json(path: str) -> dict | None:
    """The object in `path`, or None when the file does not exist."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def write_manifest(path: str, manifest: Manifest) -> None:
    write_json_atomic(path, asdict(manifest))


def read_manifest(path: str) -> Manifest | None:
    obj = read_json(path)
    if obj is None:
        return None
    try:
        return Manifest(**obj)
    except TypeError:
        raise ManifestMismatch(f"{path} is not a manifest of this hf-laps version: {sorted(obj)}") from None


def record_exit_code(path: str, exit_code: int | None) -> None:
    """Set the manifest's exit_code (None: the run is under way)."""
    manifest = read_manifest(path)
    if manifest is not None:
        write_json_atomic(path, asdict(manifest) | {"exit_code": exit_code})


@dataclass(frozen=True)
class ShardStatus:
    shard: int
    processes: int
    exit_code: int
    message: str = ""
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    outputs_opened: bool = False
    host: str = ""
    device: str = ""
    pid: int = 0

    @property
    def completed(self) -> bool:
        return self.exit_code in COMPLETED_EXIT_CODES

    def describe(self) -> str:
        where = f"process {self.shard} on {self.host or '?'}, device {self.device or '?'}, pid {self.pid}"
        return f"shard {self.shard} of {self.processes} ({where}) exited {self.exit_code}: {self.message or ('finished' if self.exit_code == 0 else 'no message')}"


def write_status(path: str, status: ShardStatus) -> None:
    write_json_atomic(path, asdict(status))


def read_status(path: str) -> ShardStatus | None:
    obj = read_json(path)
    return None if obj is None else ShardStatus(**obj)


def remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
