"""LengthCalibration: turn a predictor's point prediction into a distribution of output length.

A length predictor gives one number L_hat; a scheduler that must decide what to do with a
request that has already outrun L_hat needs a distribution. The model is log-linear with an
empirical residual:

    log L = alpha + beta * log L_hat + e,        e ~ the residuals seen so far

alpha, beta: weighted least squares of y = log L on x = log L_hat over
    * PRIOR_PAIRS pseudo-pairs on the identity line (x = y at log 4 .. log 1024, weight
      `pseudo_weight` each): with no data the prediction is taken at face value (alpha 0,
      beta 1), and a few real pairs cannot swing the slope wildly;
    * earlier jobs' pairs (`history`, out of sample), total weight at most `history_weight`;
    * this job's finished pairs, weight 1 each (the prediction made before the request finished
      against its true length).
Closed form from five running sums (O(1) per pair):
    beta = (Sw Swxy - Swx Swy) / (Sw Swxx - Swx^2),   alpha = (Swy - beta Swx) / Sw.

Residuals: `quantiles` equal-weight quantiles e_1 <= ... <= e_n of the weighted mixture
    {N(0, 1) quantiles, total weight `prior_residual_weight`} U history residuals U job residuals,
so the spread starts at a broad factor of e (one log unit) and narrows to what the predictor
really achieves as pairs accumulate. Recomputing them costs O(M log M) for M pairs, so they are
refreshed only when the number of job pairs has grown by `refresh_fraction` since the last
refresh (amortised O(log M) per pair); alpha and beta are always current. `version` increments
whenever the support can change, so a policy knows when ranks computed earlier are stale.

Support of a request with prediction L_hat and cap c (the policy's distribution of L):
    x_k = min(exp(alpha + beta log L_hat + e_k), c),   k = 1..n   (ascending, equal weight 1/n).
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Iterable, Sequence

# x = y pseudo-pairs at log 4, log 8, ..., log 1024 (doubling lengths): a prior centred on
# "the predictor is right", spread over the lengths batch jobs produce.
PRIOR_LENGTHS = tuple(4.0 * 2 ** (k * 8 / 9) for k in range(10))   # 4 .. 1024, 10 points


class LengthCalibration:
    """alpha, beta and the residual quantiles of log L on log L_hat; see the module docstring.

    Args:
        history: (l_hat, length) pairs from earlier jobs, predictions made out of sample.
        quantiles: n, support points per request (64).
        pseudo_weight: weight of each identity pseudo-pair (5; 10 pairs = 50 in all).
        history_weight: cap on the total weight of `history` (50).
        prior_residual_weight: total weight of the N(0, 1) residual prior (10).
        refresh_fraction: refresh the residual quantiles when job pairs grew by this fraction.
    """

    def __init__(self, history: Iterable[tuple[float, float]] = (), *, quantiles: int = 64,
                 pseudo_weight: float = 5.0, history_weight: float = 50.0,
                 prior_residual_weight: float = 10.0, refresh_fraction: float = 0.05) -> None:
        self.quantiles = quantiles
        self.refresh_fraction = refresh_fraction
        self._sums = [0.0] * 5                      # Sw, Swx, Swy, Swxx, Swxy
        for length in PRIOR_LENGTHS:
            x = math.log(length)
            self._add(x, x, pseudo_weight)
        pairs = [(_log(l_hat), _log(length)) for l_hat, length in history]
        self._history_w = min(1.0, history_weight / len(pairs)) if pairs else 0.0
        for x, y in pairs:
            self._add(x, y, self._history_w)
        self._history = pairs
        self._job: list[tuple[float, float]] = []
        norm = NormalDist()
        self._prior = [norm.inv_cdf((k + 0.5) / quantiles) for k in range(quantiles)]
        self._prior_w = prior_residual_weight / quantiles
        self._refreshed_at = -1                      # job pairs at the last residual refresh
        self.version = 0
        self._residuals: list[float] = []
        self._exp_residuals: list[float] = []
        self._refresh()

    # --- data ----------------------------------------------------------------------------
    def observe(self, l_hat: float, length: float) -> None:
        """A request predicted at `l_hat` finished with `length` tokens."""
        x, y = _log(l_hat), _log(length)
        self._job.append((x, y))
        self._add(x, y, 1.0)
        self.version += 1                            # alpha / beta moved
        if len(self._job) - self._refreshed_at >= max(1.0, self.refresh_fraction * len(self._job)):
            self._refresh()

    @property
    def pairs(self) -> int:
        """This job's finished pairs so far."""
        return len(self._job)

    # --- the fit -------------------------------------------------------------------------
    def coefficients(self) -> tuple[float, float]:
        """(alpha, beta) of the weighted least squares fit (always current)."""
        sw, swx, swy, swxx, swxy = self._sums
        det = sw * swxx - swx * swx
        beta = (sw * swxy - swx * swy) / det if det > 1e-12 else 1.0
        return (swy - beta * swx) / sw, beta

    @property
    def residuals(self) -> list[float]:
        """e_1 <= ... <= e_n (as of the last refresh)."""
        return list(self._residuals)

    @property
    def exp_residuals(self) -> list[float]:
        """exp(e_k), ascending: the support of L / exp(alpha + beta log L_hat)."""
        return self._exp_residuals

    def median_scale(self, l_hat: float) -> float:
        """m = exp(alpha + beta log L_hat): the support is min(m * exp(e_k), cap)."""
        alpha, beta = self.coefficients()
        return math.exp(min(alpha + beta * _log(l_hat), 30.0))

    def support(self, l_hat: float, cap: float) -> list[float]:
        """x_1 <= ... <= x_n: the calibrated distribution of L (equal weights)."""
        m = self.median_scale(l_hat)
        return [min(m * u, cap) for u in self._exp_residuals]

    # --- internals -----------------------------------------------------------------------
    def _add(self, x: float, y: float, w: float) -> None:
        s = self._sums
        s[0] += w
        s[1] += w * x
        s[2] += w * y
        s[3] += w * x * x
        s[4] += w * x * y

    def _refresh(self) -> None:
        """Recompute the residual quantiles against the current alpha, beta: O(M log M)."""
        alpha, beta = self.coefficients()
        points = [(e, self._prior_w) for e in self._prior]
        points += [(y - alpha - beta * x, self._history_w) for x, y in self._history]
        points += [(y - alpha - beta * x, 1.0) for x, y in self._job]
        self._residuals = weighted_quantiles(points, self.quantiles)
        self._exp_residuals = [math.exp(e) for e in self._residuals]
        self._refreshed_at = len(self._job)
        self.version += 1


def weighted_quantiles(points: Sequence[tuple[float, float]], n: int) -> list[float]:
    """The n equal-weight quantiles of a weighted sample: value at cumulative weight
    (k + 0.5) / n of the total, k = 0..n-1 (ascending). Needs at least one positive weight."""
    ordered = sorted(p for p in points if p[1] > 0)
    total = sum(w for _, w in ordered)
    out, cumulative, i = [], 0.0, 0
    for k in range(n):
        target = (k + 0.5) / n * total
        while i < len(ordered) - 1 and cumulative + ordered[i][1] < target:
            cumulative += ordered[i][1]
            i += 1
        out.append(ordered[i][0])
    return out


def _log(value: float) -> float:
    return math.log(max(float(value), 1.0))
