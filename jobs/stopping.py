"""Graceful stop of a batch job: SIGINT / SIGTERM finish the current speculative round, then
the job returns with every finished request written (exit 130, then `--resume`). A second SIGINT
aborts at once.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator


class StopHandler:
    """SIGINT / SIGTERM -> stop the loop at the next round boundary; a second SIGINT aborts."""

    def __init__(self):
        self.loop = None
        self.requested = False

    def attach(self, loop) -> None:
        self.loop = loop
        if self.requested:  # the signal came while models were loading
            loop.stop()

    def __call__(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        if self.loop is not None:
            self.loop.stop()


@contextlib.contextmanager
def graceful_stop() -> Iterator[StopHandler]:
    handler = StopHandler()
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling
        pass
    try:
        yield handler
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
