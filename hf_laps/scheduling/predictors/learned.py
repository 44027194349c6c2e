"""The `learned` length predictor: ridge regression of log(output tokens) on prompt features.

Features of a request (sparse, ~tens of non-zeros):
    x = [1, log1p(prompt_tokens), log(max_new_tokens), h_1 .. h_D]
where h_b = 1/sqrt(m) if a lower-cased word or word bigram of the prompt hashes (CRC-32) into
bucket b, m = number of buckets hit (so ||h|| = 1). The model is
    log L ~ w . x,    L_hat = clip(exp(w . x), 1, max_new_tokens),
i.e. a geometric-mean (median-like) estimate, robust to the heavy tail of output lengths.

w is the ridge solution w = (Lambda + X^T X)^{-1} X^T y with Lambda = diag(eps, ridge, ..., ridge)
(the bias is left almost free). It is kept up to date by recursive least squares: with
P = (Lambda + X^T X)^{-1}, adding one example (x, y) does
    u = P x,   k = u / (1 + x . u),   w += k (y - w . x),   P -= k u^T
which is exactly the batch ridge solution over all examples so far, at O(D^2) per example and
no matrix solve. So fitting on earlier jobs' logs and refitting after every finished request are
the same operation. Before any example it predicts max_new_tokens (it knows nothing).
"""
from __future__ import annotations

import math
import re
import zlib
from typing import Iterable

from hf_laps.scheduling.predictors.base import LengthPredictor, clip_length
from hf_laps.scheduling.predictors.base import load_length_examples
from hf_laps.timing_log import PathLike
from hf_laps.scheduling.types import RequestSpec

_WORD = re.compile(r"[a-z0-9']+")
_DENSE = 3           # bias, log1p(prompt_tokens), log(max_new_tokens)
_MAX_WORDS = 512     # words of a prompt used for features (long prompts: the head)


class LearnedPredictor(LengthPredictor):
    """Online ridge regression on hashed prompt words; see the module docstring for the math.

    Args:
        history: timing-log JSONL path(s) of earlier jobs to fit on (optional).
        hash_dim: D, the number of hashed word buckets.
        ridge: lambda on every weight but the bias.
    """

    name = "learned"

    def __init__(self, history: PathLike | Iterable[PathLike] | None = None, *,
                 hash_dim: int = 64, ridge: float = 1.0) -> None:
        if not isinstance(hash_dim, int) or hash_dim < 1:
            raise ValueError(f"hash_dim must be an integer >= 1, got {hash_dim!r}")
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0, got {ridge!r}")
        self.hash_dim = hash_dim
        dim = _DENSE + hash_dim
        self._w = [0.0] * dim
        # P = Lambda^{-1} before any data; the bias gets eps = 1e-6 (almost unregularised).
        self._p = [[0.0] * dim for _ in range(dim)]
        for i in range(dim):
            self._p[i][i] = 1e6 if i == 0 else 1.0 / ridge
        self.observations = 0
        self._features: dict[str, list[tuple[int, float]]] = {}
        if history is not None:
            self.fit(load_length_examples(history))

    def fit(self, examples: Iterable[tuple[RequestSpec, int]]) -> "LearnedPredictor":
        """Add (request, output_tokens) examples; returns self."""
        for request, output_tokens in examples:
            self._update(self.features(request), math.log(max(output_tokens, 1)))
        return self

    def predict(self, request: RequestSpec) -> float:
        if self.observations == 0:
            return float(request.max_new_tokens)
        x = self._features.get(request.request_id)
        if x is None:
            x = self._features[request.request_id] = self.features(request)
        w = self._w
        return clip_length(math.exp(min(sum(w[i] * v for i, v in x), 30.0)), request)

    def observe(self, request: RequestSpec, output_tokens: int) -> None:
        x = self._features.pop(request.request_id, None) or self.features(request)
        self._update(x, math.log(max(output_tokens, 1)))

    def features(self, request: RequestSpec) -> list[tuple[int, float]]:
        """Sparse feature vector [(index, value), ...] of a request."""
        x = [(0, 1.0), (1, math.log1p(request.prompt_tokens)),
             (2, math.log(request.max_new_tokens))]
        words = _WORD.findall(request.prompt.lower())[:_MAX_WORDS] if request.prompt else []
        grams = words + [a + " " + b for a, b in zip(words, words[1:])]
        buckets = sorted({zlib.crc32(g.encode()) % self.hash_dim for g in grams})
        if buckets:
            value = 1.0 / math.sqrt(len(buckets))
            x.extend((_DENSE + b, value) for b in buckets)
        return x

    def _update(self, x: list[tuple[int, float]], y: float) -> None:
        """One recursive-least-squares step (exact ridge update), O(D^2)."""
        p, w = self._p, self._w
        u = [sum(row[i] * v for i, v in x) for row in p]           # u = P x (P symmetric)
        k = 1.0 / (1.0 + sum(u[i] * v for i, v in x))               # 1 / (1 + x.u)
        err = y - sum(w[i] * v for i, v in x)
        for i, ui in enumerate(u):
            if ui:
                w[i] += k * ui * err
                row, scale = p[i], k * ui
                for j, uj in enumerate(u):
                    row[j] -= scale * uj                             # P -= u u^T / (1 + x.u)
        self.observations += 1
