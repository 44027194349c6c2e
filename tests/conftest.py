"""Shared test setup. No torch import here: the pure-Python tests (tests/test_scheduling_*.py,
tests/test_jobs_*.py) must run in an environment without torch.
"""
import atexit
import os
import shutil
import tempfile

import pytest

# Deterministic, and no contention between the two CI cores and pytest workers. Set through the
# environment rather than torch.set_num_threads so this file never imports torch: torch reads
# OMP_NUM_THREADS when it is first imported (by a test module or a fixture), and subprocesses
# started by the CLI tests inherit it. An explicit OMP_NUM_THREADS from the caller wins.
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, min(2, os.cpu_count() or 1))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the converted-GGUF cache of this test session (subprocesses inherit it), never the user's
_CACHE = tempfile.mkdtemp(prefix="hf-laps-test-cache-")
os.environ["HF_LAPS_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the real embedded default, loaded once per test session."""
    from hf_laps.models import embedded_source, load_causal_lm, load_tokenizer

    source = embedded_source()
    return load_causal_lm(source, "cpu", "float32"), load_tokenizer(source)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A directory `hf-laps run --model DIR` can load: tiny random Llama + SmolLM2 tokenizer."""
    from tests.model_dirs import save_tiny_model_dir

    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


# the tiny models most engine tests share (module scope: built once per test module; a module
# defines its own `target` / `draft` to use others)
@pytest.fixture(scope="module")
def target():
    from tests.tiny_models import tiny_target

    return tiny_target()


@pytest.fixture(scope="module")
def draft(target):
    from tests.tiny_models import noisy_draft

    return noisy_draft(target, noise=0.3)
