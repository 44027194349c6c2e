"""The `hidden` length predictor: online ridge on cheap features and the target's hidden state.

Features of a request:
    cheap  c = [1, log1p(prompt_tokens), log(max_new_tokens), has_stop, is_chat]
    hidden z = RequestSpec.features: the target's last-prompt-token state of a middle and the
               final layer, randomly projected (hf_laps.engine.features; about N(0, 1) each)
Two models of y = log(output tokens), each an exact ridge regression kept up to date by
recursive least squares (the update and its math are in learned.py):
    cheap model  y ~ w_c . c           (every request)
    full model   y ~ w_f . [c, z]      (requests whose features are known)
A request with features is predicted by the full model once that has seen `min_full` examples;
otherwise (features not yet reported, a log without them, another model's features) by the cheap
model. Point prediction: L_hat = clip(exp(w . x), 1, max_new_tokens), a median-like estimate.

A distribution, for policies that need one: each model keeps its recent out-of-sample residuals
r = y - w . x (computed BEFORE the example updates w, so they measure the error on unseen
requests), and the q-quantile of the length is
    Q(q) = clip(exp(w . x + quantile_q(r)), 1, max_new_tokens).
The residuals are kept per stratum s = (has_stop, is_chat) as well as pooled (the pooled ones
decide when the quantiles are trusted at all), and a request is given its stratum's residuals
once that has `min_residuals` of them: the errors of different kinds of request differ in shape,
not only in size. A chat reply with a cap mostly runs to the
cap (residuals near 0), while a completion with stop strings ends after 2 tokens or after 60
(residuals of both signs, far from 0); pooled, the chat replies would look uncertain and the
completions bimodality would be averaged away, and a Gittins index ranks by exactly that shape
(the chance of finishing within a short quantum).
Until a stratum has `min_residuals` residuals its requests get a prior instead:
  * with stop strings: log-length uniform on [0, log max_new_tokens], Q(q) = max_new_tokens ** q
    (a stop string is set because the reply may end anywhere before the cap);
  * without: errors N(0, PRIOR_SPREAD^2) in log space around the model's mean (a factor e either
    way, as the calibration's prior);
and before the predictor has seen any example, every request gets the log-uniform one.

Training data: `observe` after every finished request (online), and `history`: timing logs of
earlier jobs whose records carry prompt_tokens, max_new_tokens, output_tokens, optionally
has_stop / is_chat, and "features": a feature_codec blob. Blobs from another model than
`features_model` (default: the model of the first blob read) are dropped with a warning; those
requests still train the cheap model.
"""
from __future__ import annotations

import bisect
import functools
import math
import warnings
from collections import deque
from statistics import NormalDist
from typing import Iterable, Sequence

from hf_laps.scheduling.predictors.feature_codec import decode_features
from hf_laps.scheduling.predictors.base import LengthPredictor, clip_length
from hf_laps.timing_log import PathLike, iter_log_objects
from hf_laps.scheduling.types import RequestSpec

CHEAP_DIM = 5
RESIDUAL_WINDOW = 1000   # most recent residuals a model keeps for its quantiles
PRIOR_SPREAD = 1.0       # std of log-length errors assumed before residuals are known
_NORMAL = NormalDist()


class RidgeRLS:
    """Exact ridge regression w = (Lambda + X^T X)^{-1} X^T y, one example at a time.

    Lambda = diag(eps, ridge, ..., ridge): index 0 is the bias and almost unregularised. With
    P = (Lambda + X^T X)^{-1}, one example (x, y) does u = P x, k = 1 / (1 + x . u),
    w += k u (y - w . x), P -= k u u^T: O(D^2), no matrix solve.
    """

    def __init__(self, dim: int, ridge: float) -> None:
        self.dim = dim
        self.w = [0.0] * dim
        self.p = [[0.0] * dim for _ in range(dim)]
        for i in range(dim):
            self.p[i][i] = 1e6 if i == 0 else 1.0 / ridge
        self.count = 0
        self.residuals = ResidualWindow()                       # pooled
        self.strata: dict[tuple[bool, bool], ResidualWindow] = {}

    def mean(self, x: Sequence[float]) -> float:
        return sum(wi * xi for wi, xi in zip(self.w, x))

    def update(self, x: Sequence[float], y: float, keep_residual: bool,
               stratum: tuple[bool, bool] = (False, False)) -> None:
        err = y - self.mean(x)
        if keep_residual:
            self.residuals.add(err)
            self.strata.setdefault(stratum, ResidualWindow()).add(err)
        p, w = self.p, self.w
        u = [sum(pij * xj for pij, xj in zip(row, x)) for row in p]     # u = P x (P symmetric)
        k = 1.0 / (1.0 + sum(ui * xi for ui, xi in zip(u, x)))
        for i, ui in enumerate(u):
            if ui:
                w[i] += k * ui * err
                row, scale = p[i], k * ui
                for j, uj in enumerate(u):
                    row[j] -= scale * uj
        self.count += 1


class HiddenStatePredictor(LengthPredictor):
    """See the module docstring.

    Args:
        history: timing-log JSONL path(s) of earlier jobs (optional).
        features_model: fingerprint of the model whose features are trusted (hf_laps.engine.features:
            `engine.features.fingerprint`); None = the first one seen in the history.
        ridge: lambda of both models (the hidden features are ~N(0, 1), so lambda is in units of
            examples: it shrinks each weight as much as `ridge` examples would pull it).
        min_full: examples with features the full model needs before it is trusted.
        min_residuals: residuals a model needs before its quantiles are trusted.
    """

    name = "hidden"

    def __init__(self, history: PathLike | Iterable[PathLike] | None = None, *,
                 features_model: str | None = None, ridge: float = 30.0, min_full: int = 20,
                 min_residuals: int = 10) -> None:
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge!r}")
        self.ridge = float(ridge)
        self.features_model = features_model
        self.min_full, self.min_residuals = min_full, min_residuals
        self.cheap = RidgeRLS(CHEAP_DIM, self.ridge)
        self.full: RidgeRLS | None = None          # built when the first features arrive
        self._warned_dim = False
        if history is not None:
            self.fit(self.load_history(history))

    # ---- the predictor interface ---------------------------------------------------------
    def predict(self, request: RequestSpec) -> float:
        model, x = self._model_for(request)
        if model is None:
            return float(request.max_new_tokens)
        return clip_length(math.exp(min(model.mean(x), 30.0)), request)

    def predict_quantiles(self, request: RequestSpec, qs: Sequence[float]) -> list[float]:
        """Output-length quantiles (tokens, in [1, max_new_tokens]) for each q in `qs` (0..1)."""
        qs = tuple(qs)
        if qs and not (0.0 <= min(qs) and max(qs) <= 1.0):      # also catches NaN
            raise ValueError(f"quantile levels must be in [0, 1], got {list(qs)}")
        cap = float(request.max_new_tokens)
        model, x = self._model_for(request)
        own = model.strata.get(stratum(request)) if model is not None else None
        if own is None or len(own) < self.min_residuals:
            if model is None or request.has_stop:
                return list(_log_uniform(cap, qs))
            factors = _prior_factors(qs)
        else:
            factors = own.factors(qs)
        return _scaled(math.exp(min(model.mean(x), 30.0)), factors, cap, _ascending(qs))

    def observe(self, request: RequestSpec, output_tokens: int) -> None:
        y = math.log(max(output_tokens, 1))
        c = cheap_features(request)
        kind = stratum(request)
        self.cheap.update(c, y, keep_residual=self.cheap.count >= self.min_residuals, stratum=kind)
        z = self._usable(request.features)
        if z is not None:
            if self.full is None:
                self.full = RidgeRLS(CHEAP_DIM + len(z), self.ridge)
            self.full.update(c + list(z), y, keep_residual=self.full.count >= self.min_full,
                             stratum=kind)

    def fit(self, examples: Iterable[tuple[RequestSpec, int]]) -> "HiddenStatePredictor":
        """Add (request, output_tokens) examples, in order; returns self."""
        for request, output_tokens in examples:
            self.observe(request, output_tokens)
        return self

    # ---- history -------------------------------------------------------------------------
    def load_history(self, paths: PathLike | Iterable[PathLike]) -> list[tuple[RequestSpec, int]]:
        """(request, output_tokens) from timing logs; features decoded and checked per record."""
        examples = {}
        for where, record in iter_log_objects(paths):
            features = None
            blob = record.get("features")
            if blob is not None:
                if self.features_model is None and isinstance(blob, dict) and isinstance(blob.get("model"), str):
                    self.features_model = blob["model"]
                features = decode_features(blob, expected_model=self.features_model)
            try:
                spec = RequestSpec(
                    request_id=str(record.get("custom_id", where)), arrival=0.0,
                    prompt_tokens=int(record["prompt_tokens"]),
                    max_new_tokens=int(record["max_new_tokens"]),
                    features=features, has_stop=bool(record.get("has_stop", False)),
                    is_chat=bool(record.get("is_chat", False)))
                output_tokens = int(record["output_tokens"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: not a length example ({exc})") from None
            examples.pop(spec.request_id, None)     # a re-run: the last record counts
            examples[spec.request_id] = (spec, output_tokens)
        return list(examples.values())

    # ---- internals -----------------------------------------------------------------------
    def _model_for(self, request: RequestSpec) -> tuple[RidgeRLS | None, list[float]]:
        c = cheap_features(request)
        z = self._usable(request.features)
        if z is not None and self.full is not None and self.full.count >= self.min_full:
            return self.full, c + list(z)
        if self.cheap.count == 0:
            return None, c
        return self.cheap, c

    def _usable(self, features: tuple[float, ...] | None) -> tuple[float, ...] | None:
        """The features if they fit the full model's size (another recipe: warn once, drop)."""
        if features is None:
            return None
        if self.full is not None and CHEAP_DIM + len(features) != self.full.dim:
            if not self._warned_dim:
                warnings.warn(f"length-prediction features ignored: {len(features)} values, the "
                              f"predictor was trained on {self.full.dim - CHEAP_DIM}", stacklevel=3)
                self._warned_dim = True
            return None
        return features


class ResidualWindow:
    """The last RESIDUAL_WINDOW residuals, in arrival order (to evict the oldest) and sorted (to
    read quantiles without sorting per prediction): O(window) per add, O(1) per quantile, and
    the last set of quantiles asked for is kept until the next add."""

    def __init__(self) -> None:
        self._fifo: deque[float] = deque()
        self.ordered: list[float] = []
        self._cached: tuple[tuple[float, ...], list[float]] | None = None

    def add(self, value: float) -> None:
        if len(self._fifo) == RESIDUAL_WINDOW:
            del self.ordered[bisect.bisect_left(self.ordered, self._fifo.popleft())]
        self._fifo.append(value)
        bisect.insort(self.ordered, value)
        self._cached = None

    def factors(self, qs: tuple[float, ...]) -> list[float]:
        """exp(residual quantile) at levels `qs`, kept until the next add: every request of a
        stratum shares them, so a policy predicting many requests computes them once."""
        if self._cached is None or self._cached[0] != qs:
            self._cached = (qs, [math.exp(_quantile(self.ordered, q)) for q in qs])
        return self._cached[1]

    def __len__(self) -> int:
        return len(self._fifo)

    def __iter__(self):
        return iter(self._fifo)


@functools.lru_cache(maxsize=256)
def _log_uniform(cap: float, qs: tuple[float, ...]) -> tuple[float, ...]:
    """cap ** q clipped to [1, cap]: log-length uniform on [0, log cap] (cached per cap)."""
    return tuple(min(max(cap ** q, 1.0), cap) for q in qs)


@functools.lru_cache(maxsize=16)
def _prior_factors(qs: tuple[float, ...]) -> list[float]:
    """exp(PRIOR_SPREAD * z_q) (cached: a policy asks for the same levels every time)."""
    return [math.exp(PRIOR_SPREAD * _NORMAL.inv_cdf(min(max(q, 1e-6), 1 - 1e-6))) for q in qs]


@functools.lru_cache(maxsize=16)
def _ascending(qs: tuple[float, ...]) -> bool:
    return all(a <= b for a, b in zip(qs, qs[1:]))


def _scaled(median: float, factors: list[float], cap: float, ascending: bool) -> list[float]:
    """clip(median * f, 1, cap) for each factor. Factors of ascending levels (the policy's case)
    ascend too (quantiles are monotone), so they are clipped at both ends by bisection: one
    multiplication per level."""
    n = len(factors)
    if ascending:
        low = bisect.bisect_left(factors, 1.0 / median)
        high = max(bisect.bisect_right(factors, cap / median), low)
        return [1.0] * low + [median * f for f in factors[low:high]] + [cap] * (n - high)
    return [min(max(median * f, 1.0), cap) for f in factors]


def stratum(request: RequestSpec) -> tuple[bool, bool]:
    """(has_stop, is_chat): the kind of request whose errors share a shape."""
    return (bool(request.has_stop), bool(request.is_chat))


def cheap_features(request: RequestSpec) -> list[float]:
    """[1, log1p(prompt_tokens), log(max_new_tokens), has_stop, is_chat]."""
    return [1.0, math.log1p(request.prompt_tokens), math.log(request.max_new_tokens),
            float(request.has_stop), float(request.is_chat)]


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated q-quantile (0..1) of a sorted, non-empty sequence."""
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
