"""Per-request traces: the rounds of a recorded run, which the trace replayer plays back.

Under greedy decoding a request's rounds (drafted, accepted) do not depend on the schedule, so
a timing log (hf_laps.timing_log) recorded under one policy can be replayed under any
other. `load_traces` reads logs through the one timing-log reader (its rules: error records
skipped, last record per custom_id, torn tail tolerated); records without rounds (a request
with max_tokens = 0 never ran one) have nothing to replay and are left out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Iterable

from hf_laps.timing_log import PathLike, RoundRecord, TimingRecord, read_timing_log
from hf_laps.scheduling.types import RequestSpec


@dataclass(frozen=True)
class Trace:
    """One request's recorded run; under greedy decoding its rounds do not depend on the schedule."""

    custom_id: str
    arrival: float
    prompt_tokens: int
    max_new_tokens: int
    output_tokens: int
    rounds: tuple[RoundRecord, ...]
    prompt: str | None = None
    admit_seconds: float = 0.0        # recorded admission cost (tokenising, validation)
    admitted: float | None = None     # recorded admission time: the order of ties in arrival
    finish_reason: str | None = None
    features: dict | None = None      # the length predictor's features, as logged
    has_stop: bool = False            # the request had stop strings (logged)
    is_chat: bool = False             # its prompt was chat-templated (logged)

    def __post_init__(self) -> None:
        if not self.rounds:
            raise ValueError(f"trace {self.custom_id!r} has no rounds")

    @classmethod
    def from_record(cls, record: TimingRecord) -> "Trace":
        return cls(custom_id=record.custom_id, arrival=record.arrival,
                   prompt_tokens=record.prompt_tokens, max_new_tokens=record.max_new_tokens,
                   output_tokens=record.output_tokens, rounds=record.rounds, prompt=record.prompt,
                   admit_seconds=record.admit_seconds, admitted=record.admitted,
                   finish_reason=record.finish_reason,
                   features=record.features, has_stop=record.has_stop, is_chat=record.is_chat)

    @property
    def service_seconds(self) -> float:
        """Total execution seconds: prefill plus every round."""
        return sum(r.seconds for r in self.rounds)

    def to_request(self) -> RequestSpec:
        """The RequestSpec a driver admits, truth included (for oracle policies / predictors)."""
        return RequestSpec(self.custom_id, self.arrival, self.prompt_tokens, self.max_new_tokens,
                           prompt=self.prompt, true_output_tokens=self.output_tokens,
                           true_service_seconds=self.service_seconds, has_stop=self.has_stop, is_chat=self.is_chat)

    def with_arrival(self, arrival: float) -> "Trace":
        return replace(self, arrival=arrival)

    def to_json(self) -> dict:
        out = {"custom_id": self.custom_id, "arrival": self.arrival,
               "prompt_tokens": self.prompt_tokens, "max_new_tokens": self.max_new_tokens,
               "output_tokens": self.output_tokens, "rounds": [r.to_json() for r in self.rounds]}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        out |= {name: True for name in ("has_stop", "is_chat") if getattr(self, name)}
        return out


def load_traces(path_or_paths: PathLike | Iterable[PathLike]) -> list[Trace]:
    """Read timing-log JSONL file(s) into Traces, in file order.

    Raises:
        ValueError: "file:line: ..." for a malformed record.
    """
    return [Trace.from_record(r) for r in read_timing_log(path_or_paths) if r.rounds]


def dump_traces(traces: Iterable[Trace], path: PathLike) -> None:
    """Write traces as a minimal timing log (the fields load_traces needs)."""
    with open(path, "w", encoding="utf-8") as handle:
        for trace in traces:
            handle.write(json.dumps(trace.to_json()) + "\n")
