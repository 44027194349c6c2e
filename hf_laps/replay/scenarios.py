"""The headline scenarios: arrival sets built from one recording (bursts and Poisson streams).

A recording is a timing log of a real run (greedy: a request's rounds do not depend on the
schedule), so its traces can be re-timed at will:

* burst B: B requests arriving at t = 0, the first B of a seeded shuffle, one set per seed
  (the same recording in several orders; B larger than the recording = all of it);
* poisson U: a stream of at least `count` requests at rate U / (mean service seconds of the
  stream), one set per seed. A recording with fewer requests is resampled in epochs (each epoch a
  seeded permutation of every request, copies renamed "id~epoch"), so every request appears
  equally often; a repeated prompt can be learned by the online predictors from its earlier copy,
  which flatters `learned` and `hidden` there (tables say when streams were resampled).

`hide_cap` is how the reference-length convention is replayed: such a job is recorded with
max_tokens = the reference reply's length, a cap the scheduler must not see, so every trace's
max_new_tokens becomes one large constant while its recorded rounds (and true length) stay.
"""
from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, replace
from typing import Sequence

from hf_laps.replay.traces import Trace, load_traces
from hf_laps.workloads import poisson_arrivals

HIDDEN_CAP = 4096   # the cap every request shows the scheduler when the real one is hidden


@dataclass(frozen=True)
class Scenario:
    """A named family of arrival sets; a cell's numbers are means over its sets."""

    name: str                              # "burst 10", "poisson 0.7"
    kind: str                              # "burst" | "poisson"
    arrival_sets: tuple[tuple[Trace, ...], ...]
    resampled: bool = False                # a Poisson stream longer than the recording


def hide_cap(traces: Sequence[Trace], cap: int = HIDDEN_CAP) -> list[Trace]:
    """Each trace with max_new_tokens = `cap` (>= its recorded length); rounds untouched."""
    longest = max((t.output_tokens for t in traces), default=0)
    if cap < longest:
        raise ValueError(f"hidden cap {cap} is below a recorded length ({longest} tokens)")
    return [replace(t, max_new_tokens=cap) for t in traces]


def load_recording(path, hidden_cap: int | None = None) -> list[Trace]:
    """The traces of a timing log (or a record_features.py recording), the cap hidden if asked."""
    traces = load_traces(path)
    if not traces:
        raise ValueError(f"{path}: no request with recorded rounds")
    return hide_cap(traces, hidden_cap) if hidden_cap is not None else traces


def shuffled(traces: Sequence[Trace], tag: str, seed: int) -> list[Trace]:
    order = list(traces)
    random.Random(f"{tag}:{seed}").shuffle(order)
    return order


def burst_sets(traces: Sequence[Trace], size: int, seeds: Sequence[int]) -> tuple[tuple[Trace, ...], ...]:
    """`size` requests at t = 0, one seeded order per seed."""
    return tuple(tuple(t.with_arrival(0.0) for t in shuffled(traces, "burst", seed)[:size]) for seed in seeds)


def resampled_stream(traces: Sequence[Trace], count: int, seed: int) -> list[Trace]:
    """At least `count` requests: the whole recording once when it is long enough, otherwise
    seeded permutations (epochs) of it, truncated to `count`, copies with unique ids."""
    if len(traces) >= count:
        return shuffled(traces, "stream", seed)
    stream: list[Trace] = []
    epoch = 0
    while len(stream) < count:
        for t in shuffled(traces, f"stream-epoch{epoch}", seed):
            stream.append(t if epoch == 0 else replace(t, custom_id=f"{t.custom_id}~{epoch}"))
        epoch += 1
    return stream[:count]


def poisson_sets(traces: Sequence[Trace], utilisation: float, count: int,
                 seeds: Sequence[int]) -> tuple[tuple[Trace, ...], ...]:
    """Poisson streams at offered load `utilisation`: rate = U / mean service seconds."""
    sets = []
    for seed in seeds:
        stream = resampled_stream(traces, count, seed)
        rate = utilisation / statistics.fmean(t.service_seconds for t in stream)
        arrivals = poisson_arrivals(len(stream), rate, seed)
        sets.append(tuple(t.with_arrival(a) for t, a in zip(stream, arrivals)))
    return tuple(sets)


def build_scenarios(traces: Sequence[Trace], bursts: Sequence[int], utilisations: Sequence[float],
                    poisson_requests: int, seeds: Sequence[int]) -> list[Scenario]:
    """Bursts (sizes capped at the recording's size, duplicates dropped), then Poisson streams."""
    out: list[Scenario] = []
    for size in dict.fromkeys(min(b, len(traces)) for b in bursts):
        out.append(Scenario(f"burst {size}", "burst", burst_sets(traces, size, seeds)))
    for u in utilisations:
        out.append(Scenario(f"poisson {u:g}", "poisson", poisson_sets(traces, u, poisson_requests, seeds),
                            resampled=len(traces) < poisson_requests))
    return out
