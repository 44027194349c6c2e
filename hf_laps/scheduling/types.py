"""The two records the scheduling core exchanges with whoever drives it.

`RequestSpec` is what the policy is told when a request is admitted; `RoundReport` is what it is
told after every speculative round. The serving loop and the trace simulator build exactly these,
so a policy cannot tell whether it runs against a model or a replayed log.
"""
from __future__ import annotations

from dataclasses import dataclass

from hf_laps.timing_log import RoundRecord


@dataclass(frozen=True)
class RequestSpec:
    """One request as the scheduler sees it.

    Attributes:
        request_id: unique id (the job's `custom_id`).
        arrival: seconds on the loop's clock (virtual in the simulator).
        prompt_tokens: prompt length in tokens (a feature; also the KV size at the first switch).
        max_new_tokens: cap on generated tokens; predictions are clipped to [1, max_new_tokens].
        prompt: prompt text, for the learned length predictor's features.
        true_output_tokens: ground truth, read only by the `oracle` / `noisy-oracle` predictors.
        true_service_seconds: ground truth total execution seconds (prefill and every round),
            read only by `srpt-oracle`.
        features: the target's projected hidden state at the end of prefill (hf_laps.engine.features);
            None until the prefill round reports it (or when replaying a log without them).
        has_stop: the request has stop strings (it may end long before max_new_tokens).
        is_chat: the prompt went through a chat template (a chat reply, not a completion).
    """

    request_id: str
    arrival: float
    prompt_tokens: int
    max_new_tokens: int
    prompt: str | None = None
    true_output_tokens: int | None = None
    true_service_seconds: float | None = None
    features: tuple[float, ...] | None = None
    has_stop: bool = False
    is_chat: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"request {self.request_id!r}: max_new_tokens must be >= 1, "
                             f"got {self.max_new_tokens}")
        if self.prompt_tokens < 0:
            raise ValueError(f"request {self.request_id!r}: prompt_tokens must be >= 0, "
                             f"got {self.prompt_tokens}")


@dataclass(frozen=True, kw_only=True)
class RoundReport:
    """What one speculative round of one request did.

    A round drafts n tokens, the target verifies them in one forward, a prefix of `accepted`
    tokens is kept plus one token from the target: `emitted` = accepted + 1 (fewer only when the
    request hits max_new_tokens or EOS mid-round).

    Attributes:
        request_id: the request that ran.
        drafted: draft tokens proposed (n; may shrink near max_new_tokens).
        accepted: accepted draft tokens, 0..drafted.
        emitted: tokens appended to the output this round.
        seconds: wall time of the whole round (includes prefill when `prefill`).
        draft_seconds: the drafting part, n * T_draft (~0 for prompt-lookup drafting).
        verify_seconds: the target forward + accept part, T_target.
        finished: the request is complete; it leaves the policy.
        prefill: this round also prefilled the prompt (a request's first round).
        features: length-prediction features computed by that prefill (prefill round only).
        batch_size: requests that shared this round's target forward (1: it ran alone).
        batch_tokens: query tokens of that shared forward, summed over its rows (each row feeds
            its unseen committed tokens plus its drafts); 0 when it ran alone (not measured).
    """

    request_id: str
    drafted: int
    accepted: int
    emitted: int
    seconds: float
    draft_seconds: float
    verify_seconds: float
    finished: bool
    prefill: bool = False
    features: tuple[float, ...] | None = None
    batch_size: int = 1
    batch_tokens: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.accepted <= max(self.drafted, 0):
            raise ValueError(f"round of {self.request_id!r}: accepted={self.accepted} must be in "
                             f"[0, drafted={self.drafted}]")
        if self.seconds < 0:
            raise ValueError(f"round of {self.request_id!r}: seconds must be >= 0, "
                             f"got {self.seconds}")

    def to_record(self, round_id: int | None = None) -> RoundRecord:
        """The round as the timing log keeps it (`round_id`: the loop's number of the round)."""
        return RoundRecord(drafted=self.drafted, accepted=self.accepted, seconds=self.seconds,
                           draft_seconds=self.draft_seconds, batch_size=self.batch_size,
                           batch_tokens=self.batch_tokens, round_id=round_id)
