"""The timing record: one line of a job's timing log per finished request, one writer, one reader.

The serving loop builds a `TimingRecord` for every request it finishes (real run or replay);
the job runner appends its `to_json()` to the timing log (durably, one line); traces, the oracle truth, the summary, the report
and the workload tools all read logs back through `read_timing_log`. The on-disk schema
(docs/timing-log.md) is plain JSON, one object per line:

    {"custom_id": "q1", "arrival": 0.0, "start": 0.1, "first_token": 0.4, "finish": 2.3,
     "admitted": 0.004, "latency": 2.3, "queue_wait": 0.1, "prompt_tokens": 51, "output_tokens": 128,
     "max_new_tokens": 128, "finish_reason": "length",
     "rounds": [[drafted, accepted, seconds, draft_seconds], ...],   # the first one prefilled
               # a batched round (B > 1) appends [..., batch_size, batch_tokens];
               # a round with a round id appends [..., batch_size, batch_tokens, round_id]
     "preemptions": 0, "switch_seconds": 0.0, "admit_seconds": 0.004, "busy_seconds": 2.1,
     "policy": "fcfs", "policy_final": {...}, "policy_events": [...], "metrics": {...},
     "prompt": "...", "features": {...} | null, "run_epoch": 1767225600.0}   # Unix time of the run's t = 0

Reading rules (the same for every reader): blank lines and records with an "error" key are
skipped; when a custom_id appears more than once (a request re-run after a crash) its last
record counts, in the place of its last appearance; a torn last line (a crash mid-write) is
ignored; any other malformed line is a ValueError naming "file:line". Keys this version does not
know are ignored and keys older versions did not write get their defaults, so logs written by
earlier versions stay readable.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True, kw_only=True)
class RoundRecord:
    """One speculative round as logged: what was drafted, accepted, and how long it took.

    `seconds` is the whole round (drafting + target verify + acceptance; the prefill too on a
    request's first round); `draft_seconds` its drafting part, None when not measured. A round
    that shared its target forward with other requests (max_batch_size > 1) also keeps
    `batch_size` (rows in that forward) and `batch_tokens` (their query tokens, summed); its
    `seconds` are then the shared round's. A round without a round id (one built outside the
    serving loop) is written as before round ids existed: the two batch fields appended only when
    they differ from the defaults (1, 0).

    `round_id` numbers the rounds of one run of the serving loop (0, 1, 2, ...): every row of one
    batched round logs the same id, so a replay finds a round's rows again without comparing
    measured seconds. Written as a 7th element [..., batch_size, batch_tokens, round_id]; None
    (not written) for rounds logged before it existed, which stay readable.
    """

    drafted: int
    accepted: int
    seconds: float
    draft_seconds: float | None = None
    batch_size: int = 1
    batch_tokens: int = 0
    round_id: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.accepted <= max(self.drafted, 0) or not self.seconds >= 0:
            raise ValueError(f"round {self.to_json()!r} needs 0 <= accepted <= drafted and seconds >= 0")
        if self.batch_size < 1 or self.batch_tokens < 0:
            raise ValueError(f"round {self.to_json()!r} needs batch_size >= 1 and batch_tokens >= 0")

    @property
    def batched(self) -> bool:
        """Whether the round's fields differ from a batch-1 round's (what `to_json` appends)."""
        return self.batch_size != 1 or self.batch_tokens != 0

    def to_json(self) -> list:
        out = [self.drafted, self.accepted, self.seconds]
        if self.round_id is not None:
            return out + [self.draft_seconds, self.batch_size, self.batch_tokens, self.round_id]
        if self.batched:
            return out + [self.draft_seconds, self.batch_size, self.batch_tokens]
        return out + [self.draft_seconds] if self.draft_seconds is not None else out

    @classmethod
    def from_json(cls, item: Any) -> "RoundRecord":
        if not isinstance(item, (list, tuple)) or len(item) not in (3, 4, 6, 7):
            raise ValueError("a round must be [drafted, accepted, seconds(, draft_seconds(, batch_size, "
                             f"batch_tokens(, round_id)))], got {item!r}")
        draft = float(item[3]) if len(item) >= 4 and item[3] is not None else None
        batch_size, batch_tokens = (int(item[4]), int(item[5])) if len(item) >= 6 else (1, 0)
        round_id = int(item[6]) if len(item) == 7 and item[6] is not None else None
        return cls(drafted=int(item[0]), accepted=int(item[1]), seconds=float(item[2]), draft_seconds=draft,
                   batch_size=batch_size, batch_tokens=batch_tokens, round_id=round_id)


@dataclass(frozen=True, kw_only=True)
class TimingRecord:
    """A finished request's timeline (seconds on the loop's clock) and what it produced."""

    custom_id: str
    prompt_tokens: int
    output_tokens: int
    max_new_tokens: int
    rounds: tuple[RoundRecord, ...] = ()
    arrival: float = 0.0
    admitted: float | None = None       # admission finished (ties in arrival: admission order)
    start: float | None = None          # its first round began
    first_token: float | None = None    # end of the first round that emitted a token
    finish: float | None = None
    finish_reason: str | None = None    # "eos" | "stop" (a stop string) | "length"
    preemptions: int = 0                # times another request ran while it was unfinished
    switch_seconds: float = 0.0         # moving its KV caches to / from the CPU (parking)
    admit_seconds: float = 0.0          # tokenising and validating it at admission
    policy: str | None = None
    policy_final: dict = field(default_factory=dict)
    policy_events: tuple[dict, ...] = ()
    metrics: dict = field(default_factory=dict)
    prompt: str | None = None
    features: dict | None = None        # the length predictor's hidden-state features (codec)
    has_stop: bool = False              # the request had stop strings (a length-predictor feature)
    is_chat: bool = False               # its prompt went through a chat template (one too)
    run_epoch: float | None = None      # Unix time of its run's clock zero (hf_laps.runs)

    @property
    def latency(self) -> float | None:
        return None if self.finish is None else self.finish - self.arrival

    @property
    def queue_wait(self) -> float | None:
        begun = self.start if self.start is not None else self.finish
        return None if begun is None else begun - self.arrival

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival

    @property
    def busy_seconds(self) -> float:
        """Execution seconds: prefill and every round."""
        return sum(r.seconds for r in self.rounds)

    # ---- JSON ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The log line; derived values (latency, queue_wait, busy_seconds) are written too,
        for readers that use plain JSON tools."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["rounds"] = [r.to_json() for r in self.rounds]
        out["policy_events"] = list(self.policy_events)
        out |= {"latency": self.latency, "queue_wait": self.queue_wait, "busy_seconds": self.busy_seconds}
        return out

    @classmethod
    def from_json(cls, record: dict, where: str = "record") -> "TimingRecord":
        """Parse one log object; ValueError "where: ..." when a required key is missing or bad."""
        try:
            rounds = tuple(RoundRecord.from_json(r) for r in record.get("rounds") or ())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: 'rounds': {exc}") from None
        values: dict[str, Any] = {"rounds": rounds}
        for name, kind in _REQUIRED.items():
            values[name] = _typed(record, name, kind, where)
        if values["output_tokens"] > 0 and not rounds:
            raise ValueError(f"{where}: 'rounds' must be a non-empty list of [drafted, accepted, "
                             "seconds(, draft_seconds)] for a request that generated tokens")
        for name, kind in _OPTIONAL.items():
            if record.get(name) is not None:
                values[name] = _typed(record, name, kind, where)
        values["policy_events"] = tuple(e for e in record.get("policy_events") or () if isinstance(e, dict))
        for name in ("policy_final", "metrics"):
            if isinstance(record.get(name), dict):
                values[name] = record[name]
        if isinstance(record.get("features"), dict):
            values["features"] = record["features"]
        for name in ("has_stop", "is_chat"):
            values[name] = record.get(name) is True
        return cls(**values)


_REQUIRED = {"custom_id": str, "prompt_tokens": int, "output_tokens": int, "max_new_tokens": int}
_OPTIONAL = {"arrival": float, "admitted": float, "start": float, "first_token": float, "finish": float,
             "finish_reason": str, "preemptions": int, "switch_seconds": float,
             "admit_seconds": float, "policy": str, "prompt": str, "run_epoch": float}


def _typed(record: dict, name: str, kind: type, where: str):
    value = record.get(name)
    if value is None:
        raise ValueError(f"{where}: missing key {name!r}")
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{where}: {name!r} must be a string, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name!r} must be {kind.__name__}, got {value!r}") from None


# ---- the one reader -----------------------------------------------------------------------
def _paths(path_or_paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        return [Path(path_or_paths)]
    return [Path(p) for p in path_or_paths]


def iter_log_objects(path_or_paths: PathLike | Iterable[PathLike]) -> Iterator[tuple[str, dict]]:
    """("file:line", object) for every non-blank, non-error line; a torn last line is skipped."""
    for path in _paths(path_or_paths):
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                if number == len(lines) and not line.endswith("\n"):
                    break                 # torn by a crash mid-write: the request re-runs
                raise ValueError(f"{where}: not a JSON object ({exc})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            if record.get("error"):
                continue
            yield where, record


def read_timing_log(path_or_paths: PathLike | Iterable[PathLike]) -> list[TimingRecord]:
    """Every request's last record, in the order of those last records (file order).

    Raises:
        ValueError: "file:line: ..." for a malformed line (other than a torn last line).
        OSError: a file cannot be read.
    """
    latest: dict[str, TimingRecord] = {}
    for where, obj in iter_log_objects(path_or_paths):
        record = TimingRecord.from_json(obj, where)
        latest.pop(record.custom_id, None)     # a re-run: the last record counts, in its place
        latest[record.custom_id] = record
    return list(latest.values())
