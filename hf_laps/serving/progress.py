"""The batch progress bar: requests done, and per round the tokens, tokens/s and acceptance.

A bar that moves only when a request finishes looks frozen while one long request runs alone,
so the serving loop calls `BatchProgress.on_round` after every speculative round and the bar's
postfix shows the live totals of this run:

    hf-laps:  40%|████      | 2/5 [00:07<00:10, tokens=311, tok_s=44.2, accept_len=1.71]

accept_len is the job summary's mean acceptance length (tokens per target forward,
`hf_laps.metrics.mean_acceptance_length`) over the rounds this run has executed.
"""
from __future__ import annotations

import math
import time
from typing import Callable, TextIO

from hf_laps.metrics import SpecMetrics
from hf_laps.scheduling import RoundReport

# redraw at most this often: a round can take well under a millisecond on a small model, and
# tqdm's redraw would then dominate
REFRESH_SECONDS = 0.2


class BatchProgress:
    """A tqdm bar over `total` requests whose postfix is updated per round.

    Args:
        total: requests in the batch.
        file: where tqdm writes (default stderr).
        clock: seconds, monotonic.
    """

    def __init__(self, total: int, file: TextIO | None = None, clock: Callable[[], float] = time.perf_counter):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="req", desc="hf-laps", file=file)
        self.clock = clock
        self.started = clock()
        self.last_refresh = -math.inf  # the first round always shows
        self.tokens = 0
        self.spec = SpecMetrics()

    def on_round(self, result: RoundReport) -> None:
        """Count one round (the serving loop's `on_round` hook); redraw when due."""
        self.tokens += result.emitted
        self.spec.record(result.drafted, result.accepted)
        now = self.clock()
        if now - self.last_refresh >= REFRESH_SECONDS:
            self.last_refresh = now
            self.bar.set_postfix(self.postfix(), refresh=True)

    def on_completion(self) -> None:
        """One request left the loop (finished or failed)."""
        self.bar.set_postfix(self.postfix(), refresh=False)
        self.bar.update(1)

    def postfix(self) -> dict[str, str]:
        elapsed = max(self.clock() - self.started, 1e-9)
        accept = self.spec.mean_acceptance_length
        return {
            "tokens": str(self.tokens),
            "tok_s": f"{self.tokens / elapsed:.1f}",
            "accept_len": "-" if math.isnan(accept) else f"{accept:.2f}",
        }

    def close(self) -> None:
        self.bar.close()


def batch_progress(total: int, enabled: bool) -> BatchProgress | None:
    return BatchProgress(total) if enabled else None
