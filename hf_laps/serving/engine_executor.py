"""The loop's executor for real models: one `SpeculativeEngine`, one GenerationState per request.

Every cost the loop charges is measured here: admission (tokenising, capturing the generation
config), each round (the engine's own draft / verify timers) and moving KV caches between the
device and (pinned) CPU memory when the loop parks a paused request.
"""
from __future__ import annotations

import time

from hf_laps.engine.speculative import SpeculativeEngine
from hf_laps.serving.executor import Finished, RequestRejected, Started, Submission, round_report
from hf_laps.scheduling import RequestSpec, RoundReport
from hf_laps.scheduling.predictors.feature_codec import encode_features
from hf_laps.engine.state import GenerationState


class EngineExecutor:
    """Runs submissions on `engine`; see `hf_laps.serving.executor.Executor` for the contract."""

    def __init__(self, engine: SpeculativeEngine) -> None:
        self.engine = engine
        self.states: dict[str, GenerationState] = {}

    def start(self, submission: Submission) -> Started:
        began = time.perf_counter()
        try:
            state = self.engine.start(submission.prompt, request_id=submission.request_id,
                                      **submission.generation_kwargs)
        except (ValueError, TypeError) as exc:
            raise RequestRejected(str(exc)) from exc
        self.states[submission.request_id] = state
        return Started(spec=_spec(submission, state), seconds=time.perf_counter() - began,
                       done=state.finished)

    @property
    def device_kind(self) -> str:
        """"cpu", "cuda", ...: which prior the loop's round-cost model starts from."""
        return self.engine.device.type

    def run_round(self, request_id: str) -> RoundReport:
        return round_report(self.engine.step(self.states[request_id]))

    def has_cache(self, request_id: str) -> bool:
        return self.states[request_id].started

    def kv_bytes(self, request_id: str) -> int:
        return self.states[request_id].kv_bytes

    def kv_bytes_per_token(self) -> int:
        models = [self.engine.model] + self.engine.draft.models
        return sum(model_kv_bytes_per_token(model) for model in models)

    def park(self, request_id: str) -> float:
        return self._move(request_id, "cpu")

    def unpark(self, request_id: str) -> float:
        return self._move(request_id, self.engine.device)

    def release(self, request_id: str) -> Finished:
        state = self.states.pop(request_id)
        features = None
        if state.features is not None:  # logged so replays and --history train without the model
            features = encode_features(state.features, state.features_model)
        return Finished(prompt_tokens=state.prompt_len, output_tokens=state.num_generated,
                        max_new_tokens=state.max_length - state.prompt_len,
                        finish_reason=state.finish_reason, metrics=state.metrics.to_dict(),
                        features=features, payload=state)

    def _move(self, request_id: str, device) -> float:
        started = time.perf_counter()
        # on a CPU-only engine "parking" still copies, so the path is exercised and measured
        self.states[request_id].to(device, copy=self.engine.device.type == "cpu")
        return time.perf_counter() - started


def model_kv_bytes_per_token(model) -> int:
    """Bytes one token adds to `model`'s KV cache, from its config:
    2 (K and V) x layers x KV heads x head dim x bytes per element.

    An upper bound for caches that hold fewer tokens in some layers (sliding windows); models
    whose config names no KV heads use the attention heads (no grouped-query attention)."""
    config = model.config.get_text_config()
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return 2 * config.num_hidden_layers * heads * head_dim * model.dtype.itemsize


def _spec(submission: Submission, state: GenerationState) -> RequestSpec:
    return RequestSpec(
        request_id=submission.request_id,
        arrival=submission.arrival,
        prompt_tokens=state.prompt_len,
        max_new_tokens=max(1, state.max_length - state.prompt_len),
        prompt=submission.text,
        has_stop=bool(state.runtime.get("custom_stop")),
        is_chat=submission.is_chat,
        true_output_tokens=submission.true_output_tokens,
        true_service_seconds=submission.true_service_seconds,
    )
