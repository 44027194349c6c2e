"""Features reported on the prefill round reach the policy's view of the request; lp-sjf
predicts again with them."""
import pytest

from hf_laps.scheduling import POLICY_NAMES, RequestSpec, RoundReport, make_policy, make_predictor
from helpers import synthetic_feature_examples as synthetic

pytestmark = pytest.mark.torchfree

LONG = (3.0, 0, 0, 0, 0, 0, 0, 0)   # the synthetic signal: log length grows with z[0]


def prefill(rid, features, finished=False):
    return RoundReport(request_id=rid, drafted=4, accepted=1, emitted=2, seconds=0.1, draft_seconds=0.0,
                       verify_seconds=0.1, finished=finished, prefill=True, features=features)


def test_lp_sjf_repredicts_when_features_arrive():
    predictor = make_predictor("hidden").fit(synthetic(200))
    policy = make_policy("lp-sjf", predictor=predictor)
    bare = RequestSpec("a", 0.0, prompt_tokens=40, max_new_tokens=4096)
    policy.admit(bare, 0.0)
    before = policy.explain("a")["l_hat"]
    policy.on_round(prefill("a", LONG), 0.1)
    after = policy.explain("a")["l_hat"]
    assert after == pytest.approx(predictor.predict(RequestSpec("a", 0.0, 40, 4096, features=LONG)))
    assert after > 5 * before
    events = [e for e in policy.drain_events() if e["event"] == "repredict"]
    assert events == [{"request_id": "a", "time": 0.1, "event": "repredict", "l_hat": after}]


def test_a_request_finishing_on_its_prefill_round_leaves_cleanly():
    policy = make_policy("lp-sjf", predictor=make_predictor("hidden").fit(synthetic(50)))
    policy.admit(RequestSpec("a", 0.0, 40, 4096), 0.0)
    policy.on_round(prefill("a", LONG, finished=True), 0.1)
    assert len(policy) == 0 and policy.pick(0.2) is None


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_keeps_the_features_on_the_spec(name):
    needs = name in ("lp-sjf", "laps-sd")
    policy = make_policy(name, predictor=make_predictor("hidden") if needs else None)
    policy.admit(RequestSpec("a", 0.0, 40, 64, true_output_tokens=10, true_service_seconds=1.0), 0.0)
    policy.on_round(prefill("a", LONG), 0.1)
    assert policy._states["a"].spec.features == LONG
    assert policy._states["a"].spec.true_output_tokens == 10
