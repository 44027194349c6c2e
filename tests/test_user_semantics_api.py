"""What a transformers user gets from the Python API: finish reasons, stop strings, the context
window. On tiny model dirs (random Llama, SmolLM2 tokenizer, 512-token window): the default one
repeats the prompt's last token; the unscaled one answers "Hello" with "FoundFoundFound...", so
the stop string "dF" lies wholly inside the generated text and is completed by its 2nd token."""
from __future__ import annotations

import pytest

from hf_laps.engine.config import ContextWindowExceeded
from hf_laps.serving.generator import LapsGenerator


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return LapsGenerator.from_pretrained(str(tiny_model_dir), progress=False)


@pytest.fixture(scope="module")
def found_generator(tmp_path_factory):
    from model_dirs import save_tiny_model_dir

    path = save_tiny_model_dir(tmp_path_factory.mktemp("found-model"), embedding_scale=1.0)
    generator = LapsGenerator.from_pretrained(str(path), progress=False)
    assert generator.generate(["Hello"], max_new_tokens=3)[0].text == "FoundFoundFound"
    return generator


def test_running_out_of_tokens_is_length_even_with_a_stop_list(generator):
    result = generator.generate(["1, 2, 3,"], max_new_tokens=5, stop_strings=["zzz"])[0]
    assert result.output_tokens == 5 and "zzz" not in result.text
    assert result.finish_reason == "length"


def test_a_stop_string_completed_by_the_last_allowed_token_is_stop(found_generator):
    result = found_generator.generate(["Hello"], max_new_tokens=2, stop_strings=["dF"])[0]
    assert result.output_tokens == 2 and result.finish_reason == "stop"


def test_the_api_keeps_the_stop_string_in_the_text_as_transformers_does(found_generator):
    result = found_generator.generate(["Hello"], max_new_tokens=20, stop_strings=["dF"])[0]
    assert result.finish_reason == "stop"
    assert result.text == "FoundFound"  # the token that completed the stop string is kept whole


def test_an_explicit_cap_past_the_context_window_is_an_error_not_a_clamp(generator):
    prompt = "word " * 505  # 506 tokens of the 512-token window
    over, fits = generator.generate([prompt, prompt], max_new_tokens=100)[0], generator.generate([prompt], max_new_tokens=6)[0]
    assert over.text is None and "context window of 512" in over.error and "max_new_tokens <= 6" in over.error
    assert fits.error is None and fits.output_tokens == 6


def test_the_default_cap_is_fitted_to_the_context_window(generator):
    prompt = "word " * 505
    result = generator.generate([prompt])[0]  # no cap given: the engine's default 128, fitted
    assert result.error is None and result.finish_reason == "length"
    assert result.prompt_tokens + result.output_tokens == 512


def test_context_window_exceeded_says_how_much_fits():
    error = ContextWindowExceeded(prompt_tokens=500, max_new_tokens=100, window=512)
    assert isinstance(error, ValueError) and error.room == 12
    assert str(error).endswith("use max_new_tokens <= 12")
