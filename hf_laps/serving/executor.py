"""The contract between the serving loop and whatever runs the requests.

The loop hands an executor `Submission`s and gets back `Started` (admitted), `RoundReport`s
(one per round, or a `BatchRan` for a batched round) and `Finished` (the facts of a request that
left); it yields one `Completion` per request. Two executors implement it: the engine
(hf_laps/serving/engine_executor.py, hf_laps/serving/batch_executor.py) and the trace replayer (hf_laps/replay/replayer.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hf_laps.scheduling import RequestSpec, RoundReport
from hf_laps.timing_log import TimingRecord

if TYPE_CHECKING:  # the engine's record, for the annotation only: this contract stays torch-free
    from hf_laps.engine.state import RoundResult


@dataclass
class Submission:
    """One request handed to the loop.

    prompt: text or token ids; generation_kwargs: as `SpeculativeEngine.start`;
    arrival: seconds after the loop starts (0 for an offline batch);
    prompt_text: the text the length predictor sees (defaults to the prompt if it is text);
    true_output_tokens / true_service_seconds: ground truth from an earlier run of the same
        request, read only by the oracle predictors and srpt-oracle.
    """

    request_id: str
    prompt: Any
    generation_kwargs: dict = field(default_factory=dict)
    arrival: float = 0.0
    prompt_text: str | None = None
    true_output_tokens: int | None = None
    true_service_seconds: float | None = None
    is_chat: bool = False      # the prompt came from chat messages (a length-predictor feature)

    @property
    def text(self) -> str | None:
        if self.prompt_text is not None:
            return self.prompt_text
        return self.prompt if isinstance(self.prompt, str) else None


class RequestRejected(ValueError):
    """The executor refused a request at admission (invalid prompt or options: the client's fault)."""


@dataclass(frozen=True, kw_only=True)
class Started:
    """An admitted request: what the policy is told, and what admitting it cost."""

    spec: RequestSpec
    seconds: float = 0.0
    done: bool = False        # nothing to generate (a budget of 0 tokens): finished at admission


@dataclass(frozen=True, kw_only=True)
class Finished:
    """What the executor hands back when a request leaves: the facts of its output."""

    prompt_tokens: int
    output_tokens: int
    max_new_tokens: int
    finish_reason: str | None
    metrics: dict = field(default_factory=dict)
    features: dict | None = None
    payload: Any = None       # the engine's GenerationState (None in a replay)


@dataclass(frozen=True, kw_only=True)
class BatchRan:
    """One batched round: the report of every request that ran (in the order asked), the round's
    seconds, and the requests whose own part raised (id -> message; they did not run)."""

    reports: list[RoundReport]
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)


class Executor(Protocol):
    """Runs requests for the loop; every method that takes time reports its seconds."""

    def start(self, submission: Submission) -> Started:
        """Admit a request; raises RequestRejected when it is invalid."""

    def run_round(self, request_id: str) -> RoundReport:
        """One speculative round of a started request (its first one also prefills)."""

    def has_cache(self, request_id: str) -> bool:
        """Whether the request holds KV caches (it ran a round): only those can be parked."""

    def kv_bytes(self, request_id: str) -> int:
        """Bytes of the request's KV caches (what parking it moves)."""

    def kv_bytes_per_token(self) -> int:
        """Device bytes one token adds to a request's KV caches (all of them: target and draft).
        The loop reserves (prompt + max_new_tokens) x this per admitted request against
        `kv_capacity_bytes`; only a loop with a capacity calls it."""

    def park(self, request_id: str) -> float:
        """Move its caches to CPU memory; returns the seconds it took."""

    def unpark(self, request_id: str) -> float:
        """Move its caches back to the device; returns the seconds it took."""

    def release(self, request_id: str) -> Finished:
        """The request left the loop (finished or failed): drop it, return its facts."""


class BatchExecutor(Executor, Protocol):
    """An executor that can also run one round for several started requests at once."""

    def run_batch(self, request_ids: list[str]) -> BatchRan:
        """One round of each request, sharing the work (its first round also prefills)."""


@dataclass
class Completion:
    """A request that left the loop: finished (`record`) or failed (`error`).

    `rejected` marks a request refused at admission (the prompt or its options are invalid: the
    client's fault) as opposed to one whose round failed while it ran (the server's).
    `state` is the executor's payload (the engine's GenerationState; None in a replay).
    """

    submission: Submission
    state: Any = None
    record: TimingRecord | None = None
    error: str | None = None
    rejected: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def round_report(result: "RoundResult") -> RoundReport:
    """An engine round as the scheduler sees it: the one conversion engine -> scheduling, made
    where the loop meets the policy (the engine itself knows nothing of scheduling)."""
    return RoundReport(request_id=result.request_id, drafted=result.drafted, accepted=result.accepted,
                       emitted=result.emitted, seconds=result.seconds, draft_seconds=result.draft_seconds,
                       verify_seconds=result.verify_seconds, finished=result.finished, prefill=result.prefill,
                       features=result.features)
