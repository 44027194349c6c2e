"""Prefill features: taken on the first round only, reproducible, free of side effects."""
import pytest
import torch

from hf_laps import EngineConfig, SpeculativeEngine
from hf_laps.engine.features import FeatureConfig, PrefillFeatures
from tiny_models import noisy_draft, prompts, tiny_target


def run(engine, prompt, new_tokens=30):
    state = engine.start(prompt, max_new_tokens=new_tokens)
    results = []
    while not state.finished:
        results.append(engine.step(state))
    return state, results


@pytest.mark.parametrize("draft", [False, True])
def test_features_on_the_prefill_round_only_and_identical_across_runs(target, draft):
    assistant = noisy_draft(target, noise=0.3) if draft else None
    engine = SpeculativeEngine(target, assistant_model=assistant, config=EngineConfig(draft_length=4))
    prompt = prompts(1)[0]
    state, results = run(engine, prompt)
    again, _ = run(engine, prompt)
    assert len(results) > 1
    first = results[0]
    assert first.prefill and first.features is not None and len(first.features) == engine.features.size
    assert all(r.features is None for r in results[1:])
    assert list(first.features) == state.features == again.features
    assert state.features_model == engine.features.fingerprint
    assert all(abs(v) < 20 for v in first.features)     # each about N(0, 1) after the rms scaling


def test_features_do_not_change_the_tokens(target):
    prompt = prompts(2)[1]
    with_features, _ = run(SpeculativeEngine(target), prompt)
    without, results = run(SpeculativeEngine(target, features=False), prompt)
    assert with_features.output_ids == without.output_ids
    assert without.features is None and results[0].features is None
    # hooks are removed after the prefill: nothing stays registered on the model
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in target.modules())


def test_features_are_the_projected_states_of_the_chosen_layers(target):
    """Cross-check the hooks against output_hidden_states=True of one plain forward."""
    prompt = prompts(1)[0]
    engine = SpeculativeEngine(target, features=FeatureConfig(layer=0, dim=6, seed=3))
    state, _ = run(engine, prompt, new_tokens=3)
    with torch.no_grad():
        out = target(input_ids=torch.tensor([prompt]), output_hidden_states=True)
    expected = []
    for hidden in (out.hidden_states[1], out.hidden_states[-1]):   # layer 0's output; final
        row = hidden[0, -1]
        row = row / row.pow(2).mean().sqrt()
        expected.extend((row @ engine.features.projection).tolist())
    assert state.features == pytest.approx(expected, abs=1e-4)


def test_fingerprint_names_the_recipe_and_the_weights(target):
    base = PrefillFeatures(target).fingerprint
    assert base == PrefillFeatures(target).fingerprint
    assert "LlamaForCausalLM" in base and "h64" in base
    assert PrefillFeatures(target, FeatureConfig(seed=1)).fingerprint != base
    assert PrefillFeatures(target, FeatureConfig(layer=0)).fingerprint != base
    assert PrefillFeatures(tiny_target(seed=5)).fingerprint != base
    with pytest.raises(ValueError, match="outside"):
        PrefillFeatures(target, FeatureConfig(layer=7))


def test_features_survive_a_state_file(target, tmp_path):
    engine = SpeculativeEngine(target)
    state = engine.start(prompts(1)[0], max_new_tokens=20)
    engine.step(state)
    state.save(tmp_path / "s.safetensors")
    loaded = engine.load_state(tmp_path / "s.safetensors")
    assert loaded.features == state.features and loaded.features_model == state.features_model


def test_a_model_without_recognisable_layers_still_gets_an_engine(target):
    """The default features are optional: an unknown architecture warns and runs without them."""
    import copy

    odd = copy.deepcopy(target)
    odd.config.num_hidden_layers = 99          # no ModuleList of that length
    with pytest.warns(UserWarning, match="no length-prediction features"):
        engine = SpeculativeEngine(odd)
    assert engine.features is None
    with pytest.raises(ValueError, match="decoder layers"):
        SpeculativeEngine(odd, features=FeatureConfig())
