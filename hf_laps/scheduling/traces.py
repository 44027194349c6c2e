"""Per-request traces: the job runner's timing log, read back for the simulator and predictors.

One JSON object per line; keys other than these are ignored, records whose "error" is set
(failed requests) are skipped, and when a custom_id appears more than once (a request re-run
after a crash) its last record counts, as in jobs.summary:

    {"custom_id": str, "arrival": float, "prompt_tokens": int, "max_new_tokens": int,
     "output_tokens": int, "prompt": str (optional),
     "rounds": [[drafted, accepted, seconds], ...]}   # optional 4th element: draft_seconds;
                                                      # the first round includes the prefill
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Union

from .types import RequestSpec

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class TraceRound:
    """One recorded round: drafted, accepted, its seconds and (if measured) the draft part."""

    drafted: int
    accepted: int
    seconds: float
    draft_seconds: float | None = None


@dataclass(frozen=True)
class Trace:
    """One request's recorded run; under greedy decoding its rounds do not depend on the schedule."""

    custom_id: str
    arrival: float
    prompt_tokens: int
    max_new_tokens: int
    output_tokens: int
    rounds: tuple[TraceRound, ...]
    prompt: str | None = None

    def __post_init__(self) -> None:
        if not self.rounds:
            raise ValueError(f"trace {self.custom_id!r} has no rounds")

    @property
    def service_seconds(self) -> float:
        """Total execution seconds: prefill plus every round."""
        return sum(r.seconds for r in self.rounds)

    def to_request(self) -> RequestSpec:
        """The RequestSpec a driver admits, truth included (for oracle policies / predictors)."""
        return RequestSpec(self.custom_id, self.arrival, self.prompt_tokens, self.max_new_tokens,
                           prompt=self.prompt, true_output_tokens=self.output_tokens,
                           true_service_seconds=self.service_seconds)

    def with_arrival(self, arrival: float) -> "Trace":
        return replace(self, arrival=arrival)

    def to_json(self) -> dict:
        rounds = [[r.drafted, r.accepted, r.seconds] + ([r.draft_seconds]
                  if r.draft_seconds is not None else []) for r in self.rounds]
        out = {"custom_id": self.custom_id, "arrival": self.arrival,
               "prompt_tokens": self.prompt_tokens, "max_new_tokens": self.max_new_tokens,
               "output_tokens": self.output_tokens, "rounds": rounds}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        return out


def _paths(path_or_paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(path_or_paths, (str, os.PathLike)):
        return [Path(path_or_paths)]
    return [Path(p) for p in path_or_paths]


def iter_records(path_or_paths: PathLike | Iterable[PathLike]) -> Iterator[tuple[str, dict]]:
    """(location "file:line", record) for every non-blank, non-error line."""
    for path in _paths(path_or_paths):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where}: not a JSON object ({exc})") from None
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
                if record.get("error"):
                    continue
                yield where, record


def _get(record: dict, key: str, where: str, kind: type):
    if key not in record or record[key] is None:
        raise ValueError(f"{where}: missing key {key!r}")
    try:
        return kind(record[key])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key!r} must be {kind.__name__}, got {record[key]!r}") from None


def _rounds(record: dict, where: str) -> tuple[TraceRound, ...]:
    raw = record.get("rounds")
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: 'rounds' must be a non-empty list of "
                         "[drafted, accepted, seconds(, draft_seconds)]")
    rounds = []
    for i, item in enumerate(raw):
        if not isinstance(item, (list, tuple)) or len(item) not in (3, 4):
            raise ValueError(f"{where}: rounds[{i}] must be [drafted, accepted, seconds"
                             f"(, draft_seconds)], got {item!r}")
        drafted, accepted, seconds = int(item[0]), int(item[1]), float(item[2])
        if not 0 <= accepted <= max(drafted, 0) or seconds < 0:
            raise ValueError(f"{where}: rounds[{i}] = {item!r} needs 0 <= accepted <= drafted "
                             "and seconds >= 0")
        draft_s = float(item[3]) if len(item) == 4 and item[3] is not None else None
        rounds.append(TraceRound(drafted, accepted, seconds, draft_s))
    return tuple(rounds)


def load_traces(path_or_paths: PathLike | Iterable[PathLike]) -> list[Trace]:
    """Read timing-log JSONL file(s) into Traces, in file order.

    Raises:
        ValueError: "file:line: ..." for a malformed record.
    """
    traces: dict[str, Trace] = {}
    for where, record in iter_records(path_or_paths):
        custom_id = _get(record, "custom_id", where, str)
        prompt = record.get("prompt")
        traces.pop(custom_id, None)          # a re-run: the last record counts, in its place
        traces[custom_id] = (Trace(
            custom_id=custom_id,
            arrival=float(record.get("arrival") or 0.0),
            prompt_tokens=_get(record, "prompt_tokens", where, int),
            max_new_tokens=_get(record, "max_new_tokens", where, int),
            output_tokens=_get(record, "output_tokens", where, int),
            rounds=_rounds(record, where),
            prompt=prompt if isinstance(prompt, str) else None))
    return list(traces.values())


def load_length_examples(path_or_paths: PathLike | Iterable[PathLike]
                         ) -> list[tuple[RequestSpec, int]]:
    """(request, output_tokens) pairs from timing logs, for fitting a length predictor.

    Only prompt_tokens, max_new_tokens, output_tokens (and the optional prompt) are needed;
    rounds are not read.
    """
    examples: dict[object, tuple[RequestSpec, int]] = {}
    for number, (where, record) in enumerate(iter_records(path_or_paths)):
        prompt = record.get("prompt")
        spec = RequestSpec(
            request_id=str(record.get("custom_id", where)), arrival=0.0,
            prompt_tokens=_get(record, "prompt_tokens", where, int),
            max_new_tokens=_get(record, "max_new_tokens", where, int),
            prompt=prompt if isinstance(prompt, str) else None)
        key = record.get("custom_id", ("#", number))
        examples.pop(key, None)              # a re-run: the last record counts
        examples[key] = (spec, _get(record, "output_tokens", where, int))
    return list(examples.values())


def dump_traces(traces: Iterable[Trace], path: PathLike) -> None:
    """Write traces as timing-log JSONL (what load_traces reads back)."""
    with open(path, "w", encoding="utf-8") as handle:
        for trace in traces:
            handle.write(json.dumps(trace.to_json()) + "\n")
