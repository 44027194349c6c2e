"""Length predictors: oracle, noisy-oracle determinism, the learned one, mape."""
import math
import random

import pytest

from hf_laps.scheduling import LearnedPredictor, RequestSpec, make_predictor, mape

from hf_laps.replay.traces import dump_traces

from hf_laps.replay.synthetic import synthetic_traces
from hf_laps.stats import mean, percentile

pytestmark = pytest.mark.torchfree


def spec(rid, out=100, max_new=1000, prompt=None, prompt_tokens=20):
    return RequestSpec(rid, 0.0, prompt_tokens, max_new, prompt=prompt, true_output_tokens=out)


def test_oracle_and_clipping():
    oracle = make_predictor("oracle")
    assert oracle.predict(spec("a", out=37)) == 37
    assert oracle.predict(spec("a", out=0)) == 1                 # clipped to [1, max_new]
    assert oracle.predict(spec("a", out=5000, max_new=64)) == 64
    with pytest.raises(ValueError, match="needs RequestSpec.true_output_tokens"):
        oracle.predict(RequestSpec("x", 0.0, 1, 10))


def test_noisy_oracle_is_deterministic_per_request_and_seed():
    a = make_predictor("noisy-oracle", sigma=0.5, seed=3)
    b = make_predictor("noisy-oracle", sigma=0.5, seed=3)
    c = make_predictor("noisy-oracle", sigma=0.5, seed=4)
    requests = [spec(f"r{i}", out=100) for i in range(2000)]
    first = [a.predict(r) for r in requests]
    assert first == [b.predict(r) for r in reversed(requests)][::-1]   # order-independent
    assert first == [a.predict(r) for r in requests]                    # repeatable
    assert first != [c.predict(r) for r in requests]
    logs = [math.log(p / 100) for p in first]
    assert abs(mean(logs)) < 0.05                                        # log-normal(0, sigma^2)
    assert math.sqrt(mean(x * x for x in logs)) == pytest.approx(0.5, rel=0.08)
    exact = make_predictor("noisy-oracle", sigma=0.0)
    assert exact.predict(spec("q", out=42)) == 42


def test_make_predictor_errors():
    with pytest.raises(ValueError, match="needs sigma"):
        make_predictor("noisy-oracle")
    with pytest.raises(ValueError, match="sigma must be a number >= 0"):
        make_predictor("noisy-oracle", sigma=-1)
    with pytest.raises(ValueError, match="unknown predictor 'magic'"):
        make_predictor("magic")
    with pytest.raises(ValueError, match="takes no options"):
        make_predictor("oracle", sigma=1)


def test_mape():
    assert mape([110, 90], [100, 100]) == pytest.approx(10.0)
    assert math.isnan(mape([], []))
    with pytest.raises(ValueError):
        mape([1], [1, 2])


def _dataset(seed, n=600):
    # Instruction phrases tied to the length bucket for every request (signal = 1).
    traces = synthetic_traces(n, tail="light", seed=seed, signal=1.0, id_prefix=f"s{seed}")
    return [(t.to_request(), t.output_tokens) for t in traces]


def test_learned_beats_the_best_constant_on_data_with_a_signal():
    train, test = _dataset(1), _dataset(2)
    learned = make_predictor("learned").fit(train)
    truths = [out for _, out in test]
    constant = percentile([out for _, out in train], 50)
    learned_error = mape([learned.predict(r) for r, _ in test], truths)
    constant_error = mape([constant] * len(test), truths)
    assert learned_error < 0.75 * constant_error, (learned_error, constant_error)


def test_learned_fits_from_timing_logs_and_refits_online(tmp_path):
    path = tmp_path / "earlier.jsonl"
    dump_traces(synthetic_traces(300, tail="light", seed=3, signal=1.0), path)
    from_logs = make_predictor("learned", history=[str(path)])
    assert from_logs.observations == 300
    cold = LearnedPredictor()
    request = spec("new", max_new=777, prompt="answer yes or no river")
    assert cold.predict(request) == 777                    # knows nothing: the cap
    test = _dataset(4, n=300)
    truths = [out for _, out in test]
    for r, out in _dataset(5, n=300):                       # online: requests finishing
        cold.observe(r, out)
    assert cold.observations == 300
    online_error = mape([cold.predict(r) for r, _ in test], truths)
    logs_error = mape([from_logs.predict(r) for r, _ in test], truths)
    assert online_error == pytest.approx(logs_error, rel=0.25)
    short = from_logs.predict(spec("s", prompt="answer yes or no river"))
    long = from_logs.predict(spec("l", prompt="write a long story about river"))
    assert short < long


def test_learned_equals_batch_ridge():
    """The recursive least-squares updates give the closed-form ridge solution."""
    rng = random.Random(0)
    data = [(spec(f"r{i}", prompt=" ".join(rng.choice("abcdefgh") for _ in range(5)),
                  prompt_tokens=rng.randint(1, 500)), rng.randint(1, 900)) for i in range(40)]
    model = LearnedPredictor(hash_dim=4, ridge=2.0).fit(data)
    dim = 3 + 4
    a = [[0.0] * dim for _ in range(dim)]
    b = [0.0] * dim
    for i in range(dim):
        a[i][i] = 1e-6 if i == 0 else 2.0
    for request, out in data:
        x = [0.0] * dim
        for j, v in model.features(request):
            x[j] = v
        for i in range(dim):
            b[i] += x[i] * math.log(out)
            for j in range(dim):
                a[i][j] += x[i] * x[j]
    w = _solve(a, b)
    assert model._w == pytest.approx(w, rel=1e-6, abs=1e-6)


def _solve(a, b):
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c])]
    return [m[i][n] / m[i][i] for i in range(n)]
