"""What one round costs: seconds as a function of the rows in it and the tokens it verifies.

A round runs one target forward over every row of the batch. On the hardware hf-laps runs on that
forward is memory-bound: reading the weights is paid once per forward, whatever it holds, and each
token fed adds a little. So, in seconds,

    c(rows, tokens) = a + b * tokens + c * rows

- `a`: the fixed part (reading the weights, kernel launches, the loop's own work per round);
- `b`: one more position in the forward (matmul work, growing with the positions computed);
- `c`: one more row (its own KV reads, its drafting and acceptance bookkeeping); 0 unless the data
  says otherwise.

`tokens` is what the round feeds the target, summed over its rows: each row's unseen committed
tokens (the whole prompt on its first round, the last round's bonus token after it) plus its
drafts. docs/design.md#round-cost-planner has the measured numbers behind the priors and the
planner that uses the model.

`RoundCostModel` starts from a prior per device kind (`prior_for`) and learns online from the
job's own rounds (`observe(rows, tokens, seconds)`): an exponentially weighted least-squares fit
(old rounds forgotten at `decay` per round: load on a shared machine drifts), anchored by the
prior's points, which keep a fixed small weight so that a fit over rounds of one shape (every row
feeding the same tokens) cannot send a slope anywhere. A slope that comes out negative (more work
cannot take less time) is dropped and the rest refitted. Pure Python: the scheduling core never
imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from hf_laps.stats import solve_linear

# Measured on this project's 2-core CPU, embedded SmolLM2-135M, fp32, 2 threads, 200-token
# contexts (median of 15 forwards each): (rows, tokens, seconds). Decode 1 row x 1 token 62-84 ms,
# 8 rows 108-113 ms, 32 rows 243 ms; verify 1 x 11 tokens 132 ms, 8 x 11 tokens 413 ms.
CPU_PRIOR_POINTS = ((1, 1, 0.073), (8, 8, 0.110), (32, 32, 0.243), (1, 11, 0.132), (8, 88, 0.413))
# A 7B target in eager transformers on one data-centre GPU: a ~ 22 ms per forward (the weight
# read plus kernel launches; 21-25 ms measured on an H200 for one verify), b ~ 0.02 ms per token
# while a forward holds up to a few hundred tokens.
CUDA_PRIOR_A, CUDA_PRIOR_B = 0.022, 0.00002
CUDA_PRIOR_POINTS = tuple((rows, tokens, CUDA_PRIOR_A + CUDA_PRIOR_B * tokens)
                          for rows, tokens in ((1, 1), (8, 8), (32, 32), (1, 11), (8, 88), (32, 352)))
PRIORS = {"cpu": CPU_PRIOR_POINTS, "cuda": CUDA_PRIOR_POINTS}


def prior_for(device_kind: str) -> tuple[tuple[int, int, float], ...]:
    """The prior points of a device kind ("cpu", "cuda", "cuda:1", "mps", ...); anything that is
    not a CPU is priced like a GPU (the weight read dominates; tokens are nearly free)."""
    kind = str(device_kind).split(":")[0]
    return PRIORS["cpu"] if kind == "cpu" else PRIORS["cuda"]


@dataclass(frozen=True)
class RoundCost:
    """A fitted line: seconds = a + b * tokens + c * rows."""

    a: float
    b: float
    c: float = 0.0

    def seconds(self, rows: int, tokens: int) -> float:
        return self.a + self.b * tokens + self.c * rows

    def marginal(self, tokens: int) -> float:
        """What adding one row that feeds `tokens` tokens adds to the round."""
        return self.b * tokens + self.c


class RoundCostModel:
    """a + b * tokens + c * rows, fitted online on a prior's points and the rounds observed.

    Args:
        prior: (rows, tokens, seconds) points the fit starts from (`prior_for(device)`).
        prior_weight: the weight of each prior point, fixed; an observed round weighs 1 when
            new and decays by `decay` per later round (so the rounds outweigh the prior after a
            handful of them, and their total weight saturates at 1 / (1 - decay)).
        decay: per observed round.
    """

    def __init__(self, prior: Sequence[tuple[int, int, float]] = CPU_PRIOR_POINTS, *, prior_weight: float = 0.1,
                 decay: float = 0.97) -> None:
        if not prior:
            raise ValueError("the round-cost model needs at least one prior point")
        if not 0 < decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay = decay
        self.observed = 0
        self._prior = self._moments(prior, prior_weight)
        self._data = [[0.0] * 4 for _ in range(3)]  # decayed X^T X | X^T y over (1, tokens, rows)
        self.line = self._fit()

    @classmethod
    def for_device(cls, device_kind: str, **kwargs) -> "RoundCostModel":
        return cls(prior_for(device_kind), **kwargs)

    # ---- the interface -----------------------------------------------------------------
    def seconds(self, rows: int, tokens: int) -> float:
        """Predicted seconds of a round of `rows` rows feeding `tokens` tokens (>= 0)."""
        return max(self.line.seconds(rows, tokens), 0.0)

    def marginal(self, tokens: int) -> float:
        return max(self.line.marginal(tokens), 0.0)

    def observe(self, rows: int, tokens: int, seconds: float) -> None:
        """One round that ran: `rows` rows fed `tokens` tokens and took `seconds`."""
        if rows < 1 or tokens < 0 or not math.isfinite(seconds) or seconds < 0:
            return  # nothing to learn from (a round that raised, a clock that jumped)
        x = (1.0, float(tokens), float(rows))
        for i in range(3):
            row = self._data[i]
            for j in range(3):
                row[j] = self.decay * row[j] + x[i] * x[j]
            row[3] = self.decay * row[3] + x[i] * seconds
        self.observed += 1
        self.line = self._fit()

    # ---- the fit -----------------------------------------------------------------------
    @staticmethod
    def _moments(points: Iterable[tuple[int, int, float]], weight: float) -> list[list[float]]:
        m = [[0.0] * 4 for _ in range(3)]
        for rows, tokens, seconds in points:
            x = (1.0, float(tokens), float(rows))
            for i in range(3):
                for j in range(3):
                    m[i][j] += weight * x[i] * x[j]
                m[i][3] += weight * x[i] * seconds
        return m

    def _fit(self) -> RoundCost:
        system = [[p + d for p, d in zip(prow, drow)] for prow, drow in zip(self._prior, self._data)]
        for columns in ((0, 1, 2), (0, 1), (0, 2), (0,)):
            augmented = [[system[i][j] for j in columns] + [system[i][3]] for i in columns]
            diagonal = max(abs(augmented[i][i]) for i in range(len(columns))) or 1.0
            coef = solve_linear(augmented, 1e-12 * diagonal)
            if coef is None or any(c < 0 for c in coef[1:]):
                continue
            full = dict(zip(columns, coef))
            return RoundCost(max(full.get(0, 0.0), 0.0), full.get(1, 0.0), full.get(2, 0.0))
        return RoundCost(0.0, 0.0, 0.0)

    def summary(self) -> dict:
        """JSON-able state: the current line and how many rounds it has seen."""
        return {"a": self.line.a, "b": self.line.b, "c": self.line.c, "observed": self.observed}
