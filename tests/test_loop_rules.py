"""The serving loop's rules on CPU without models: a scripted executor on the virtual clock.

The executor below is deliberately tiny and deterministic (each request: a fixed number of
1-second rounds, KV bytes growing by 100 per round, parking / unparking at 0.5 s each), so every
timestamp the loop writes can be checked exactly: arrivals, preemptions, KV-budget parking, a
request whose round raises, and stopping at a round boundary.
"""
from __future__ import annotations

import pytest

from hf_laps.serving.clock import VirtualClock
from hf_laps.serving.executor import Finished, RequestRejected, Started, Submission
from hf_laps.serving.loop import ServingLoop
from hf_laps.scheduling import RequestSpec, RoundReport, make_policy

pytestmark = pytest.mark.torchfree

ROUND_S, MOVE_S, BYTES_PER_ROUND = 1.0, 0.5, 100


class ScriptedExecutor:
    def __init__(self, rounds: dict[str, int], fail_at: dict[str, int] | None = None) -> None:
        self.rounds, self.fail_at = rounds, fail_at or {}
        self.done: dict[str, int] = {}
        self.moves: list[tuple[str, str]] = []

    def start(self, submission: Submission) -> Started:
        total = self.rounds.get(submission.request_id)
        if total is None:
            raise RequestRejected(f"unknown request {submission.request_id}")
        self.done[submission.request_id] = 0
        spec = RequestSpec(submission.request_id, submission.arrival, prompt_tokens=4, max_new_tokens=max(total, 1),
                           true_output_tokens=total, true_service_seconds=total * ROUND_S)
        return Started(spec=spec, seconds=0.0, done=total == 0)

    def run_round(self, request_id: str) -> RoundReport:
        self.done[request_id] += 1
        if self.fail_at.get(request_id) == self.done[request_id]:
            raise MemoryError("out of memory")
        finished = self.done[request_id] == self.rounds[request_id]
        return RoundReport(request_id=request_id, drafted=0, accepted=0, emitted=1, seconds=ROUND_S,
                           draft_seconds=0.0, verify_seconds=ROUND_S, finished=finished,
                           prefill=self.done[request_id] == 1)

    def has_cache(self, request_id: str) -> bool:
        return self.done[request_id] > 0

    def kv_bytes(self, request_id: str) -> int:
        return BYTES_PER_ROUND * self.done[request_id]

    def park(self, request_id: str) -> float:
        self.moves.append(("park", request_id))
        return MOVE_S

    def unpark(self, request_id: str) -> float:
        self.moves.append(("unpark", request_id))
        return MOVE_S

    def release(self, request_id: str) -> Finished:
        done = self.done.pop(request_id)
        return Finished(prompt_tokens=4, output_tokens=done, max_new_tokens=self.rounds[request_id],
                        finish_reason="length")


def run(executor, policy, submissions, **loop_options):
    loop = ServingLoop(executor, make_policy(policy), clock=VirtualClock(), **loop_options)
    return {c.submission.request_id: c for c in loop.run(submissions)}, loop


def test_arrivals_wait_for_the_clock_and_latency_counts_from_arrival():
    done, _ = run(ScriptedExecutor({"a": 2, "b": 1}), "fcfs", [Submission("a", "x"), Submission("b", "y", arrival=5.0)])
    a, b = done["a"].record, done["b"].record
    assert (a.start, a.first_token, a.finish) == (0.0, 1.0, 2.0)
    assert (b.start, b.finish, b.latency, b.queue_wait) == (5.0, 6.0, 1.0, 0.0)  # idle from 2 to 5


def test_a_shorter_arrival_preempts_under_srpt_and_the_preemption_is_counted():
    done, _ = run(ScriptedExecutor({"long": 4, "short": 1}), "srpt-oracle",
                  [Submission("long", "x"), Submission("short", "y", arrival=1.0)])
    assert done["long"].record.preemptions == 1
    assert done["short"].record.finish == 2.0        # ran at once on arrival
    assert done["long"].record.finish == 5.0
    assert [r.seconds for r in done["long"].record.rounds] == [ROUND_S] * 4


def test_kv_budget_parks_the_least_recently_run_and_charges_both_moves():
    executor = ScriptedExecutor({"long": 4, "short": 2})
    done, _ = run(executor, "srpt-oracle", [Submission("long", "x"), Submission("short", "y", arrival=1.0)],
                  kv_budget_bytes=50)
    # long runs [0,1]; short arrives, runs [1,2]; long (100 bytes > 50) is parked (+0.5);
    # short's second round [2.5,3.5] finishes; long is unparked (+0.5) and runs [4,7]
    assert executor.moves == [("park", "long"), ("unpark", "long")]
    long = done["long"].record
    assert long.switch_seconds == 2 * MOVE_S
    assert done["short"].record.finish == 3.5
    assert long.finish == 7.0


def test_a_failing_request_leaves_with_its_error_and_the_others_finish():
    done, loop = run(ScriptedExecutor({"a": 3, "b": 2, "c": 1}, fail_at={"b": 2}), "fcfs",
                     [Submission(i, "x") for i in "abc"])
    assert "MemoryError: out of memory" in done["b"].error
    assert done["b"].record is None and not done["b"].rejected
    assert done["a"].ok and done["c"].ok and done["c"].record.finish == 5.0
    assert not loop.live and len(loop.policy) == 0


def test_a_rejected_request_is_flagged_and_does_not_run():
    done, _ = run(ScriptedExecutor({"a": 1}), "fcfs", [Submission("a", "x"), Submission("nope", "y")])
    assert done["nope"].rejected and "unknown request" in done["nope"].error
    assert done["a"].ok


def test_a_zero_budget_request_finishes_at_admission():
    done, _ = run(ScriptedExecutor({"a": 0, "b": 1}), "fcfs", [Submission("a", "x"), Submission("b", "y")])
    assert done["a"].ok and done["a"].record.output_tokens == 0 and done["a"].record.rounds == ()


def test_stop_returns_at_a_round_boundary():
    executor = ScriptedExecutor({"a": 1, "b": 3})
    loop = ServingLoop(executor, make_policy("fcfs"), clock=VirtualClock())
    seen = []
    for completion in loop.run([Submission("a", "x"), Submission("b", "y")]):
        seen.append(completion.submission.request_id)
        loop.stop()
    assert seen == ["a"] and executor.done == {"b": 0}   # b never ran a round


def test_the_loop_refuses_a_policy_that_already_holds_requests():
    policy = make_policy("fcfs")
    policy.admit(RequestSpec("x", 0.0, 1, 1), 0.0)
    with pytest.raises(ValueError, match="fresh policy"):
        ServingLoop(ScriptedExecutor({}), policy)
