"""Shared test setup. No torch import here: the tests marked `torchfree` must run in an environment
without torch (tox's `notorch`). `pytest -m torchfree` runs them with torch, transformers, numpy, ...
blocked (tests/notorch/), in this process and in the subprocesses it starts, so a torch import
creeping into a torch-free test fails here, not only in the torch-free environment.
"""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Deterministic, and no contention between the two CI cores and pytest workers. Set through the
# environment rather than torch.set_num_threads so this file never imports torch: torch reads
# OMP_NUM_THREADS when it is first imported (by a test module or a fixture), and subprocesses
# started by the CLI tests inherit it. An explicit OMP_NUM_THREADS from the caller wins.
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, min(2, os.cpu_count() or 1))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The suite runs against the installed package. Subprocesses (`python -m hf_laps.cli ...`) must
# not import a checkout's hf_laps/ from their working folder instead: PYTHONSAFEPATH keeps `-m`
# from putting the working folder on sys.path.
os.environ["PYTHONSAFEPATH"] = "1"
REPO = Path(__file__).resolve().parents[1]
# benchmarks/ (studies, not shipped) imports as `benchmarks.*`; appended last so that `hf_laps`
# still resolves to the installed package.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))


def _check_installed() -> None:
    """Fail early, with the fix, when hf_laps is not installed (the checkout alone lacks
    hf_laps.jobs / hf_laps.cli, which setup.py installs from the top-level jobs/ and cli/)."""
    import importlib.util

    if importlib.util.find_spec("hf_laps") is None or importlib.util.find_spec("hf_laps.jobs") is None:
        pytest.exit("hf_laps is not installed: run `pip install '.[test]'` (or `pip install -e '.[test]'`) "
                    "first, then `pytest -q tests` (not `python -m pytest`, which imports the checkout)", 2)


_check_installed()

# Hypothesis profiles. "ci" (the default) is derandomised: every run draws the same examples, so a
# red test is a change in the code, not a new draw. "nightly" draws fresh random examples, 10x as
# many: HF_LAPS_FUZZ_PROFILE=nightly pytest tests/test_jobs_fuzz.py
settings.register_profile(
    "ci", deadline=None, max_examples=60, database=None, print_blob=True, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example, HealthCheck.filter_too_much])
settings.register_profile("nightly", settings.get_profile("ci"), max_examples=600, derandomize=False)
settings.load_profile(os.environ.get("HF_LAPS_FUZZ_PROFILE", "ci"))
NOTORCH = Path(__file__).resolve().parent / "notorch"


def _torchfree_run(config) -> bool:
    return (config.getoption("markexpr", "") or "").strip() == "torchfree"


def pytest_configure(config):
    if _torchfree_run(config):
        # before collection: importing a marked module must not need torch either
        sys.path.insert(0, str(NOTORCH))
        import notorch_block

        notorch_block.install()
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(NOTORCH), os.environ.get("PYTHONPATH")) if p)


def pytest_ignore_collect(collection_path, config):
    """In a `-m torchfree` run, modules that mark nothing torch-free are not imported at all (they
    may import torch at the top)."""
    if _torchfree_run(config) and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return "mark.torchfree" not in collection_path.read_text(encoding="utf-8")
    return None

# the converted-GGUF cache of this test session (subprocesses inherit it), never the user's
_CACHE = tempfile.mkdtemp(prefix="hf-laps-test-cache-")
os.environ["HF_LAPS_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the real embedded default, loaded once per test session."""
    from hf_laps.models.loading import embedded_source, load_causal_lm, load_tokenizer

    source = embedded_source()
    return load_causal_lm(source, "cpu", "float32"), load_tokenizer(source)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A directory `hf-laps run --model DIR` can load: tiny random Llama + SmolLM2 tokenizer."""
    from model_dirs import save_tiny_model_dir

    return save_tiny_model_dir(tmp_path_factory.mktemp("tiny-model"))


# the tiny models most engine tests share (module scope: built once per test module; a module
# defines its own `target` / `draft` to use others)
@pytest.fixture(scope="module")
def target():
    from tiny_models import tiny_target

    return tiny_target()


@pytest.fixture(scope="module")
def draft(target):
    from tiny_models import noisy_draft

    return noisy_draft(target, noise=0.3)
