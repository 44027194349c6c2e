"""`Policy.pick_batch`: the B requests that share a batched round, by the policy's own order."""
import pytest

from hf_laps.scheduling import POLICY_NAMES, RequestSpec, RoundReport, make_policy, make_predictor

pytestmark = pytest.mark.torchfree


def spec(rid, arrival=0.0, out=10, service=1.0):
    return RequestSpec(rid, arrival, prompt_tokens=20, max_new_tokens=100, prompt=f"say {rid}",
                       true_output_tokens=out, true_service_seconds=service)


def rep(rid, finished=False, prefill=False):
    return RoundReport(request_id=rid, drafted=4, accepted=2, emitted=3, seconds=0.1, draft_seconds=0.02,
                       verify_seconds=0.08, finished=finished, prefill=prefill)


def fresh(name):
    needs = name in ("lp-sjf", "laps-sd", "gittins")
    return make_policy(name, predictor=make_predictor("oracle") if needs else None)


def admit_five(policy):
    # arrival order a..e; true lengths / service make "e" the shortest and "a" the longest
    for i, rid in enumerate("abcde"):
        policy.admit(spec(rid, arrival=0.01 * i, out=50 - 10 * i, service=5.0 - i), 0.05)


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_pick_batch_contract(name):
    policy = fresh(name)
    assert policy.pick_batch(0.0, 4) == []
    admit_five(policy)
    assert policy.pick_batch(0.1, 1) == [policy.pick(0.1)]
    batch = policy.pick_batch(0.1, 3)
    assert len(batch) == 3 == len(set(batch)) and batch[0] == policy.pick(0.1)
    assert sorted(policy.pick_batch(0.1, 10)) == list("abcde")
    with pytest.raises(ValueError):
        policy.pick_batch(0.1, 0)
    # every request of the batch runs a round; finished ones leave the next batch
    for rid in batch:
        policy.on_round(rep(rid, prefill=True, finished=rid == batch[0]), 0.2)
    after = policy.pick_batch(0.2, 10)
    assert batch[0] not in after and sorted(after) == sorted(set("abcde") - {batch[0]})


def test_fcfs_batches_in_arrival_order():
    policy = fresh("fcfs")
    admit_five(policy)
    assert policy.pick_batch(0.1, 3) == ["a", "b", "c"]


@pytest.mark.parametrize("name", ["lp-sjf", "srpt-oracle"])
def test_shortest_first_policies_batch_the_shortest(name):
    policy = fresh(name)
    admit_five(policy)
    assert policy.pick_batch(0.1, 3) == ["e", "d", "c"]


def test_las_batches_least_attained_first():
    policy = fresh("las")
    admit_five(policy)
    # a and b attain service (enough rounds to freeze the thresholds and demote them): they
    # fall to lower queues behind c, d, e
    for _ in range(60):
        for rid in "ab":
            policy.on_round(rep(rid), 0.2)
    assert set(policy.pick_batch(0.3, 3)) == {"c", "d", "e"}
