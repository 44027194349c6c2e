"""CPU threads for torch: a default that does not oversubscribe a shared machine.

torch starts one intra-op thread per core and its OpenMP workers spin while they wait for each
other. When other processes already keep the cores busy, every forward waits for the slowest,
descheduled worker: on a 2-core machine with a load average of ~8, one forward of the embedded
SmolLM2 took several times longer with torch's default 2 threads than with 1 (numbers in
docs/quickstart.md). Batch size 1 decoding of a small model gains little from more threads
anyway, so the default is the number of cores nobody else is using, at least 1, at most 4:

    threads = clamp(floor(usable cores - 1-minute load average), 1, min(usable cores, 4))

`--threads N` (CLI) / `threads=N` (`LapsGenerator.from_pretrained`) overrides it.
"""
from __future__ import annotations

import math
import os

MAX_DEFAULT_THREADS = 4  # beyond this, batch-1 decoding of small models stops getting faster


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average: assume an idle machine
        return 0.0


def default_cpu_threads(cores: int | None = None, load: float | None = None) -> int:
    """The idle cores, at least 1, at most min(cores, MAX_DEFAULT_THREADS)."""
    cores = usable_cores() if cores is None else cores
    load = load_average() if load is None else load
    idle = math.floor(cores - load)
    return max(1, min(idle, cores, MAX_DEFAULT_THREADS))


def set_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to `threads` (None: `default_cpu_threads()`); returns it."""
    import torch

    if threads is None:
        threads = default_cpu_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)
    return threads
