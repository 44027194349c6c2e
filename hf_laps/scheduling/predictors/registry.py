"""The one place that builds length predictors: name -> factory, defaults and history rules.

`hf-laps run`, `hf-laps bench`, the headline and cross-workload studies and the Python API
(`LapsGenerator`) all build their predictor here, so an option means the same everywhere:

* `history`: timing logs of earlier jobs. Every predictor that learns (`learned`, `hidden`)
  is fitted on them before the job starts. `hidden` uses the records' hidden-state features
  when their fingerprint matches `features_model` (the engine's, or the replayed recording's;
  None = the first fingerprint in the history); records of another model still train its cheap
  model. Before this module, `bench` gave history only to `learned`, so adding recordings as
  history left every `hidden` replay unchanged.
* `exclude`: request ids the history must not contain (a replay of recording R must not learn
  R's own lengths). A resampled copy "id~k" counts as "id".
* `sigma`: the noisy-oracle's log-normal error; NOISY_SIGMA when not given. Other predictors
  refuse it (a silently ignored option hides a typo in a study).

    factory = predictor_factory("hidden", history=["a.features.jsonl"], exclude={"req-1"})
    predictor = factory(seed=0)        # a fresh instance per replayed policy: no leaked refits

Loading a history is the slow part (JSON + feature decoding), so a factory reads it once and
every call replays the examples into a fresh predictor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from hf_laps.scheduling.predictors.feature_codec import decode_features
from hf_laps.scheduling.predictors.hidden import HiddenStatePredictor
from hf_laps.scheduling.predictors.learned import LearnedPredictor
from hf_laps.scheduling.predictors.base import (LengthPredictor, NoisyOraclePredictor, OraclePredictor,
                                                load_length_examples)
from hf_laps.scheduling.types import RequestSpec

if TYPE_CHECKING:  # annotation only: scheduling does not import the replay layer
    from hf_laps.replay.traces import Trace

NOISY_SIGMA = 0.5     # noisy-oracle default: true length x exp(N(0, 0.5^2)), a typical real error
Example = tuple[RequestSpec, int]


@dataclass(frozen=True)
class PredictorEntry:
    """A predictor by name: how to build one, and whether it learns from history."""

    name: str
    build: Callable[..., LengthPredictor]
    learns: bool = False          # fitted on history examples and online on finished requests
    summary: str = ""


def _hidden_examples(history: list[str], features_model: str | None) -> tuple[list[Example], str | None]:
    loader = HiddenStatePredictor(features_model=features_model)
    examples = loader.load_history(history)
    return examples, loader.features_model      # the fingerprint the loader settled on


PREDICTORS: dict[str, PredictorEntry] = {
    entry.name: entry for entry in (
        PredictorEntry("oracle", lambda **options: OraclePredictor(**options),
                       summary="the true length (studies; a run needs --truth)"),
        PredictorEntry("noisy-oracle", lambda **options: NoisyOraclePredictor(**options),
                       summary=f"true length x exp(N(0, sigma^2)), sigma {NOISY_SIGMA} by default"),
        PredictorEntry("learned", lambda **options: LearnedPredictor(**options), learns=True,
                       summary="online ridge on hashed prompt words and the cap"),
        PredictorEntry("hidden", lambda **options: HiddenStatePredictor(**options), learns=True,
                       summary="online ridge on the target's hidden state at the end of prefill"),
    )
}


@dataclass
class PredictorFactory:
    """Fresh predictors of one recipe; the history is read once, at construction."""

    name: str
    examples: list[Example] = field(default_factory=list)
    options: dict = field(default_factory=dict)

    def __call__(self, seed: int = 0) -> LengthPredictor:
        options = dict(self.options)
        if self.name == "noisy-oracle":
            options.setdefault("seed", seed)
        predictor = PREDICTORS[self.name].build(**options)
        if self.examples:
            predictor.fit(self.examples)
        return predictor


def predictor_factory(name: str, *, history: Iterable[str] = (), exclude: Iterable[str] = (),
                      features_model: str | None = None, sigma: float | None = None,
                      **options) -> PredictorFactory:
    """A factory for `name` (see the module docstring for history, exclude, sigma).

    Raises:
        ValueError: unknown name, or an option the predictor does not take.
    """
    entry = PREDICTORS.get(name)
    if entry is None:
        raise ValueError(f"unknown predictor {name!r}; choose one of {tuple(PREDICTORS)}")
    if sigma is not None and name != "noisy-oracle":
        raise ValueError(f"sigma applies only to the noisy-oracle predictor, not {name!r}")
    if name == "noisy-oracle":
        options["sigma"] = NOISY_SIGMA if sigma is None else float(sigma)
    history = [str(path) for path in history]
    examples: list[Example] = []
    if history and entry.learns:
        if name == "hidden":
            examples, features_model = _hidden_examples(history, features_model)
        else:
            examples = load_length_examples(history)
        skip = set(exclude)
        examples = [(spec, n) for spec, n in examples if spec.request_id.split("~")[0] not in skip]
    if name == "hidden" and features_model is not None:
        options.setdefault("features_model", features_model)
    return PredictorFactory(name, examples, options)


def build_predictor(name: str, *, seed: int = 0, **kwargs) -> LengthPredictor:
    """One fresh predictor: `predictor_factory(name, **kwargs)(seed)`."""
    return predictor_factory(name, **kwargs)(seed)


def features_model_of(blobs: Iterable[dict | None]) -> str | None:
    """The fingerprint of the first feature blob (a recording's traces' `features`), if any."""
    for blob in blobs:
        if isinstance(blob, dict) and isinstance(blob.get("model"), str):
            return blob["model"]
    return None


def examples_of(traces: "Iterable[Trace]", features_model: str | None = None) -> list[Example]:
    """(request, output tokens) of replayed traces, as a history: the cap the traces show (a
    hidden cap stays hidden), features kept when their fingerprint is `features_model`'s (None:
    any), no ground truth in the spec."""
    return [(RequestSpec(t.custom_id, 0.0, t.prompt_tokens, t.max_new_tokens, prompt=t.prompt,
                         features=decode_features(t.features, expected_model=features_model),
                         has_stop=t.has_stop, is_chat=t.is_chat), t.output_tokens)
            for t in traces]


def factory_from_examples(name: str, examples: list[Example], *, features_model: str | None = None,
                          sigma: float | None = None, **options) -> PredictorFactory:
    """Like predictor_factory, with the history given as examples (studies that re-time or
    re-cap recordings); predictors that do not learn ignore them."""
    factory = predictor_factory(name, features_model=features_model, sigma=sigma, **options)
    if PREDICTORS[name].learns:
        factory.examples = list(examples)
    return factory
