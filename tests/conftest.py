import atexit
import os
import shutil
import tempfile

import pytest
import torch

# deterministic, and no contention between the two CI cores and pytest workers
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
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
