"""Output-length predictors shared by LP-SJF and LAPS-SD (docs/design.md#length-predictor).

    predictor = make_predictor("learned", history=["earlier_job.timing.jsonl"])
    l_hat = predictor.predict(spec)          # tokens, in [1, spec.max_new_tokens]
    predictor.observe(spec, output_tokens)   # a request finished: refit online

`oracle` and `noisy-oracle` read RequestSpec.true_output_tokens and exist for studies;
`learned` (learned.py) is the one a user runs: ridge regression on prompt features, fitted on
the timing logs of earlier jobs and refit as the current job's requests finish. `hidden`
(hidden_predictor.py) adds the target's own prefill hidden state and cheap request features, and
gives quantiles as well as a point estimate.
"""
from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from typing import Iterable, Sequence

from hf_laps.scheduling.types import RequestSpec
from hf_laps.timing_log import PathLike, read_timing_log

class LengthPredictor(ABC):
    """Predicts a request's output length in tokens."""

    name: str = "predictor"

    @abstractmethod
    def predict(self, request: RequestSpec) -> float:
        """Predicted output tokens, clipped to [1, request.max_new_tokens]."""

    def observe(self, request: RequestSpec, output_tokens: int) -> None:
        """A request finished with `output_tokens` tokens (default: nothing to learn)."""

    def predict_quantiles(self, request: RequestSpec, qs: Sequence[float]) -> list[float] | None:
        """Output-length quantiles for each level in `qs`, ascending, in [1, max_new_tokens];
        None when the predictor has no distribution of its own (the default: a policy that
        needs one calibrates the point prediction instead)."""
        return None


def clip_length(value: float, request: RequestSpec) -> float:
    """Clip a predicted length to [1, max_new_tokens]."""
    return min(max(value, 1.0), float(request.max_new_tokens))


def _truth(request: RequestSpec, who: str) -> int:
    if request.true_output_tokens is None:
        raise ValueError(f"the {who} predictor needs RequestSpec.true_output_tokens; request "
                         f"{request.request_id!r} has none (use the 'learned' predictor)")
    return request.true_output_tokens


class OraclePredictor(LengthPredictor):
    """The true output length (an upper bound on what prediction can give)."""

    name = "oracle"

    def predict(self, request: RequestSpec) -> float:
        return clip_length(float(_truth(request, self.name)), request)


class NoisyOraclePredictor(LengthPredictor):
    """true length * exp(N(0, sigma^2)): a log-normal error of known size.

    The noise of a request depends only on (seed, request_id), so it is the same in every
    policy, every call and every process: comparisons across policies see identical predictions.
    E|log error| = sigma * sqrt(2/pi); sigma = 0.5 gives a typical factor of exp(0.4) ~ 1.5.
    """

    name = "noisy-oracle"

    def __init__(self, sigma: float, seed: int = 0) -> None:
        if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma >= 0:
            raise ValueError(f"noisy-oracle sigma must be a number >= 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.seed = seed
        self._factor: dict[str, float] = {}

    def factor(self, request_id: str) -> float:
        """exp(sigma * z), z ~ N(0, 1) drawn from a generator seeded by (seed, request_id)."""
        factor = self._factor.get(request_id)
        if factor is None:
            # str seeds hash with SHA-512 in `random`: stable across runs and PYTHONHASHSEED.
            z = random.Random(f"{self.seed}:{request_id}").gauss(0.0, 1.0)
            factor = self._factor[request_id] = math.exp(self.sigma * z)
        return factor

    def predict(self, request: RequestSpec) -> float:
        true = _truth(request, self.name)
        return clip_length(true * self.factor(request.request_id), request)

    def observe(self, request: RequestSpec, output_tokens: int) -> None:
        self._factor.pop(request.request_id, None)


def mape(predictions: Sequence[float], truths: Sequence[float]) -> float:
    """Mean absolute percentage error, in percent: 100 * mean(|p - t| / t)."""
    if len(predictions) != len(truths):
        raise ValueError(f"mape: {len(predictions)} predictions for {len(truths)} truths")
    if not truths:
        return math.nan
    if any(t <= 0 for t in truths):
        raise ValueError("mape: every true value must be > 0")
    return 100.0 * sum(abs(p - t) / t for p, t in zip(predictions, truths)) / len(truths)


def load_length_examples(path_or_paths: PathLike | Iterable[PathLike]
                         ) -> list[tuple[RequestSpec, int]]:
    """(request, output_tokens) pairs from timing logs, for fitting a length predictor."""
    return [(RequestSpec(request_id=r.custom_id, arrival=0.0, prompt_tokens=r.prompt_tokens,
                         max_new_tokens=r.max_new_tokens, prompt=r.prompt, has_stop=r.has_stop,
                         is_chat=r.is_chat), r.output_tokens)
            for r in read_timing_log(path_or_paths) if r.max_new_tokens >= 1]
