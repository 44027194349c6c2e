"""One job's timeline from the timing log of several runs (Ctrl-C, then `--resume`, ...).

Each run's times are seconds on its own loop clock, which starts at 0, so a resumed job's log
holds two timelines that both begin at 0. Every record also carries `run_epoch`, the Unix time of
its run's clock zero. `place_runs` puts the runs on one axis: runs that overlapped in wall time
(the shard processes of one `--num-processes` run) keep their real offsets to each other, and
runs that did not overlap (a run, then its resume) follow one another with the idle time
between them left out. The makespan of the placed records is then the time the job really
worked, and plots show the runs one after the other.

Logs written before `run_epoch` existed have none: their records are one run and stay as they
are. All times of a record move by its run's offset, so its latency, TTFT and queue wait (each
measured within the run that finished it) do not change.
"""
from __future__ import annotations

from dataclasses import dataclass, is_dataclass, replace
from typing import Any, TypeVar

Record = TypeVar("Record")  # a TimingRecord, or its JSON line as a dict

TIME_KEYS = ("arrival", "admitted", "start", "first_token", "finish")


@dataclass(frozen=True)
class PlacedRun:
    epoch: float | None  # Unix time of the run's clock zero (None: a log without epochs)
    offset: float        # where its t = 0 lies on the job's axis
    requests: int


def place_runs(records: list[Record]) -> tuple[list[Record], list[PlacedRun]]:
    """(records with every time shifted onto the job's axis, the runs in axis order)."""
    groups: dict[float | None, list[Record]] = {}
    for record in records:
        groups.setdefault(_epoch(record), []).append(record)
    offsets = _offsets({epoch: _end(group) for epoch, group in groups.items()})
    runs = [PlacedRun(epoch, offsets[epoch], len(groups[epoch])) for epoch in offsets]
    placed = [_shifted(record, offsets[_epoch(record)]) for record in records]
    return placed, runs


def _offsets(ends: dict[float | None, float]) -> dict[float | None, float]:
    """Each run's offset; `ends` maps a run's epoch to the last finish on its own clock."""
    offsets: dict[float | None, float] = {}
    axis = 0.0  # where the next non-overlapping run starts
    if None in ends:  # records without an epoch: the oldest run, from 0
        offsets[None], axis = 0.0, ends[None]
    cluster_start = cluster_end = None  # wall-clock span of the runs that overlap each other
    for epoch in sorted(e for e in ends if e is not None):
        if cluster_end is None or epoch > cluster_end:  # after the previous runs: idle gap dropped
            if cluster_end is not None:
                axis += cluster_end - cluster_start
            cluster_start = cluster_end = epoch
        offsets[epoch] = axis + epoch - cluster_start
        cluster_end = max(cluster_end, epoch + ends[epoch])
    return offsets


def _value(record: Any, key: str):
    return getattr(record, key) if is_dataclass(record) else record.get(key)


def _epoch(record: Any) -> float | None:
    value = _value(record, "run_epoch")
    return float(value) if value is not None else None


def _end(records: list[Any]) -> float:
    return max((float(_value(r, key)) for r in records for key in TIME_KEYS if _value(r, key) is not None), default=0.0)


def _shifted(record: Record, offset: float) -> Record:
    if offset == 0.0:
        return record
    moved = {key: float(_value(record, key)) + offset for key in TIME_KEYS if _value(record, key) is not None}
    return replace(record, **moved) if is_dataclass(record) else {**record, **moved}
