"""First run and start-up: the GGUF conversion cache, CPU threads, quiet loading with --no-progress."""
from __future__ import annotations

import json
import os
import time
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_laps import LapsGenerator
from helpers import EXAMPLES, hf_laps
from hf_laps.models import gguf_cache
from hf_laps.runtime import default_cpu_threads, set_cpu_threads
from tiny_models import tiny_target


def weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def tiny_entry(tmp_path):
    """`cached` on a tiny model standing for a converted GGUF (its builds are counted)."""
    builds = []

    def build():
        builds.append(1)
        return tiny_target()

    def get():
        return gguf_cache.cached(tmp_path / "gguf" / "abc" / "model-float32", build,
                                 save=lambda model, d: model.save_pretrained(d),
                                 load=AutoModelForCausalLM.from_pretrained)
    return get, builds


def test_cache_builds_once_then_loads_the_same_weights(tmp_path):
    get, builds = tiny_entry(tmp_path)
    first, second = get(), get()
    assert len(builds) == 1
    assert all(torch.equal(a, b) for a, b in zip(weights(first), weights(second)))
    entry = tmp_path / "gguf" / "abc"
    assert sorted(p.name for p in entry.iterdir()) == ["model-float32"]  # no temp dirs left over
    assert (entry / "model-float32" / gguf_cache.MANIFEST).is_file()


def test_a_corrupt_entry_is_rebuilt_with_a_warning(tmp_path):
    get, builds = tiny_entry(tmp_path)
    reference = weights(get())
    blob = tmp_path / "gguf" / "abc" / "model-float32" / "model.safetensors"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a tensor: same size, still parses
    blob.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="corrupt"):
        rebuilt = get()
    assert len(builds) == 2
    assert all(torch.equal(a, b) for a, b in zip(reference, weights(rebuilt)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get()  # intact again: loads silently
    assert len(builds) == 2


def test_an_unwritable_cache_costs_a_warning_not_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.warns(UserWarning, match="not written"):
        model = gguf_cache.cached(blocker / "entry", tiny_target, lambda m, d: m.save_pretrained(d),
                                  AutoModelForCausalLM.from_pretrained)
    assert model is not None


def test_the_gguf_digest_is_computed_once_and_notices_edits(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"a" * 3_000_000)
    first = gguf_cache.file_sha256(gguf, tmp_path / "cache")
    assert first in (tmp_path / "cache" / "sha256-index.json").read_text()
    assert gguf_cache.file_sha256(gguf, tmp_path / "cache") == first
    stat = gguf.stat()
    gguf.write_bytes(b"b" + b"a" * 2_999_999)  # same size, same mtime, new first byte
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert gguf_cache.file_sha256(gguf, tmp_path / "cache") != first


def test_default_threads_leave_busy_cores_alone():
    assert default_cpu_threads(cores=2, load=8.0) == 1  # a loaded 2-core machine
    assert default_cpu_threads(cores=2, load=0.2) == 1
    assert default_cpu_threads(cores=2, load=0.0) == 2
    assert default_cpu_threads(cores=32, load=1.0) == 4
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError):
            set_cpu_threads(0)
    finally:
        torch.set_num_threads(before)


def test_threads_reach_torch_from_the_python_api_and_the_job_config(tiny_model_dir):
    from hf_laps.jobs.runner import JobConfig, build_generator

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        LapsGenerator.from_pretrained(str(tiny_model_dir), threads=1, progress=False)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        build_generator(JobConfig(input="x.jsonl", results="r.jsonl", model=str(tiny_model_dir), threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_option_of_the_cli(tmp_path, tiny_model_dir):
    assert "--threads" in hf_laps("run", "--help").stdout
    bad = hf_laps("run", EXAMPLES, "-o", tmp_path / "r.jsonl", "--threads", "0")
    assert bad.returncode == 2 and "--threads" in bad.stderr
    small = tmp_path / "one.jsonl"
    small.write_text(EXAMPLES.read_text().splitlines()[1] + "\n")
    ok = hf_laps("run", small, "-o", tmp_path / "r.jsonl", "--model", tiny_model_dir, "--threads", "1", "--no-progress")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.slow
def test_embedded_model_starts_from_the_cache_and_no_progress_is_silent(tmp_path):
    """Cold start converts the GGUF and fills the cache; the warm start skips the conversion
    (measured side by side: the warm run takes well under half the cold one) and gives the
    same tokens. --no-progress prints no bar, loading ones included."""
    small = tmp_path / "one.jsonl"
    small.write_text(EXAMPLES.read_text().splitlines()[1] + "\n")
    env = {"HF_LAPS_CACHE": str(tmp_path / "cache")}
    seconds, texts = [], []
    for run in ("cold", "warm"):
        started = time.perf_counter()
        proc = hf_laps("run", small, "-o", tmp_path / f"{run}.jsonl", "--no-progress", "--max-new-tokens", "8", env=env)
        seconds.append(time.perf_counter() - started)
        assert proc.returncode == 0, proc.stderr
        assert "%|" not in proc.stderr and "it/s" not in proc.stderr, proc.stderr
        texts.append(json.loads((tmp_path / f"{run}.jsonl").read_text())["response"]["body"]["choices"][0]["message"]["content"])
    entries = list((tmp_path / "cache" / "gguf").glob("*/*"))
    assert sorted(p.name for p in entries) == ["model-float32", "tokenizer"]
    assert texts[0] == texts[1]
    assert seconds[1] < 0.5 * seconds[0], seconds
