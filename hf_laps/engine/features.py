"""Length-prediction features from the target's own prefill: two hidden states, projected.

The target runs the whole prompt through itself on a request's first round anyway. The hidden
state of the LAST prompt token summarises what the model is about to do, and it carries much more
signal about the length of the reply than the prompt's words: in a study on ShareGPT first turns
(SmolLM2-135M, ridge on log length, 500 held-out prompts) a middle layer's state reached 0.52
Spearman against 0.31 for hashed words and 0.10 for the prompt length; the middle layer beat the
final one (0.45), and the two together matched the middle one. Our own layer sweep (300 ShareGPT
prompts, reference reply lengths, 5-fold CV; docs/studies/benchmarks.md "Length prediction") put the
best layers at 0.5-0.8 of the depth and the final one below them. So we keep both:

    h_mid   = output of decoder layer `layer` at the last prompt position
    h_final = input of the LM head (the final, normalised hidden state) at that position
    z       = [ P^T (h_mid / rms(h_mid)),  P^T (h_final / rms(h_final)) ]     (2 * dim floats)

P is a FIXED Gaussian random projection, hidden x dim, entries N(0, 1/hidden), drawn from
torch.Generator().manual_seed(seed) on the CPU, so every process and every device builds the same
matrix. Dividing by rms(h) = ||h|| / sqrt(hidden) first makes each z_j ~ N(0, 1) whatever the
layer's scale: z_j = sum_i P_ij h_i / rms(h) has variance sum_i h_i^2 / (hidden * rms^2) = 1.
A random projection keeps inner products up to a factor 1 +- O(1/sqrt(dim))
(Johnson-Lindenstrauss), so a linear model on z sees most of what it would see on h, at a size
that fits a log line (2 * 32 fp16 values = 128 bytes before base64).

In a batched round (`hf_laps.engine.batched_round`, packed layout) new requests' prompts share one forward;
`capture_rows` then copies each request's row at its own last prompt token, the same hidden
states as at batch 1 up to the rounding of another matmul shape.

Cost: two forward hooks that copy one row each and one (hidden x dim) matrix product per layer,
only on the prefill round; the hooks are removed right after, so later rounds pay nothing.
`output_hidden_states=True` would instead keep every layer's full [T, hidden] tensor.

`fingerprint` names the model and the recipe (class, hidden size, layer, dim, seed and a hash of
a few weights), so features logged by another model, layer or projection are recognised and not
mixed into a predictor trained on these.
"""
from __future__ import annotations

import hashlib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

DEFAULT_DIM = 32    # projected floats per layer (two layers: 64 features)
DEFAULT_SEED = 0
# Which decoder layer is "the middle": a fraction of the depth. On SmolLM2-135M (30 layers) the
# outputs of decoder layers 14-23 all scored 0.39-0.47 held-out Spearman alone on ShareGPT
# reference lengths (the best: 22-23; the final normalised state 0.28; layers below 14 <= 0.26),
# see docs/studies/benchmarks.md, "Length prediction". 0.75 -> layer 22 of 30.
DEFAULT_LAYER_FRACTION = 0.75


@dataclass(frozen=True)
class FeatureConfig:
    """Which layer, how many projected dimensions per layer, which projection seed.

    layer: decoder layer index (negative counts from the end); None = the layer at
        DEFAULT_LAYER_FRACTION of the depth.
    """

    layer: int | None = None
    dim: int = DEFAULT_DIM
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"feature dim must be >= 1, got {self.dim}")


class _Capture:
    """The two rows the hooks copied during one forward."""

    def __init__(self, position: int, feed_len: int) -> None:
        self.position, self.feed_len = position, feed_len
        self.rows: dict[str, torch.Tensor] = {}

    def take(self, key: str, hidden: torch.Tensor) -> None:
        # hidden: [1, T', H] with T' <= feed_len (the LM head sees only the kept positions)
        index = self.position - (self.feed_len - hidden.shape[1])
        if 0 <= index < hidden.shape[1]:
            self.rows[key] = hidden[0, index].detach()


class _RowsCapture:
    """The rows the hooks copied during one batched forward: given positions of each tensor."""

    def __init__(self, mid_index: list[int], final_index: list[int]) -> None:
        self.index = {"mid": mid_index, "final": final_index}
        self.rows: dict[str, torch.Tensor] = {}

    def take(self, key: str, hidden: torch.Tensor) -> None:
        # hidden: [1, T, H]; one gather copies every request's row
        self.rows[key] = hidden[0, self.index[key]].detach()


class PrefillFeatures:
    """Hooks on one decoder layer and on the LM head that turn a prefill into `2 * dim` floats."""

    def __init__(self, model: torch.nn.Module, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        layers = decoder_layers(model)
        depth = len(layers)
        layer = self.config.layer
        if layer is None:
            layer = min(depth - 1, int(DEFAULT_LAYER_FRACTION * depth))
        if not -depth <= layer < depth:
            raise ValueError(f"feature layer {layer} outside the model's {depth} decoder layers")
        self.layer = layer % depth
        self.middle = layers[self.layer]
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise ValueError(f"{type(model).__name__} has no output embeddings (LM head)")
        hidden = model.config.get_text_config().hidden_size
        self.projection = projection_matrix(hidden, self.config.dim, self.config.seed)
        self.fingerprint = (
            f"{type(model).__name__}:h{hidden}:layer{self.layer}/{depth}:d{self.config.dim}"
            f":seed{self.config.seed}:w{weights_hash(self.middle, self.head)}"
        )

    @property
    def size(self) -> int:
        return 2 * self.config.dim

    @contextmanager
    def capture(self, position: int, feed_len: int) -> Iterator[_Capture]:
        """Hook one forward whose input has `feed_len` tokens; read `position` of it."""
        with self._hooked(_Capture(position, feed_len)) as captured:
            yield captured

    @contextmanager
    def capture_rows(self, mid_index: list[int], final_index: list[int]) -> Iterator[_RowsCapture]:
        """Hook one batched forward (batch dimension 1, several requests packed in its sequence):
        request r's last prompt token is position `mid_index[r]` of the decoder layer's output
        and position `final_index[r]` of the LM head's input (which sees only the kept logits)."""
        with self._hooked(_RowsCapture(mid_index, final_index)) as captured:
            yield captured

    @contextmanager
    def _hooked(self, captured):
        """`captured` takes the middle layer's output and the LM head's input while the hooks live."""
        handles = [
            self.middle.register_forward_hook(lambda m, a, out: captured.take("mid", _tensor(out))),
            self.head.register_forward_pre_hook(lambda m, args: captured.take("final", args[0])),
        ]
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    def vector(self, captured: _Capture) -> list[float] | None:
        """z (see the module docstring), or None when a hook did not see the position."""
        if set(captured.rows) != {"mid", "final"}:
            return None
        return self._project(captured.rows["mid"], captured.rows["final"])

    def vectors(self, captured: _RowsCapture) -> list[list[float] | None]:
        """z of every request of a `capture_rows` forward (None for all when a hook missed)."""
        if set(captured.rows) != {"mid", "final"}:
            return [None] * len(captured.index["mid"])
        return [self._project(mid, final) for mid, final in zip(captured.rows["mid"], captured.rows["final"])]

    def _project(self, mid: torch.Tensor, final: torch.Tensor) -> list[float]:
        rows = torch.stack([mid, final]).float()
        rows = rows / rows.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
        projection = self.projection.to(rows.device)
        return (rows @ projection).reshape(-1).tolist()


def make_prefill_features(model: torch.nn.Module, option: FeatureConfig | bool) -> PrefillFeatures | None:
    """The engine's features: None when off; with the default (True) a model whose layers are
    not recognised gets a warning and no features rather than no engine."""
    if option is False:
        return None
    if isinstance(option, FeatureConfig):
        return PrefillFeatures(model, option)
    try:
        return PrefillFeatures(model)
    except ValueError as exc:
        warnings.warn(f"no length-prediction features for this model: {exc}", stacklevel=3)
        return None


def projection_matrix(hidden: int, dim: int, seed: int) -> torch.Tensor:
    """P, hidden x dim, entries N(0, 1/hidden), identical on every machine for a seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(hidden, dim, generator=generator, dtype=torch.float32) / hidden**0.5


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The model's stack of decoder layers: the ModuleList as long as num_hidden_layers."""
    depth = model.config.get_text_config().num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            return module
    raise ValueError(f"{type(model).__name__}: no list of {depth} decoder layers found")


def weights_hash(*modules: torch.nn.Module) -> str:
    """8 hex digits from the first 64 values of each module's first weight, rounded to bf16
    (so the fp32 and the bf16 copy of one checkpoint agree)."""
    digest = hashlib.sha1()
    for module in modules:
        weight = next(module.parameters()).detach().reshape(-1)[:64]
        digest.update(weight.to(torch.bfloat16).float().cpu().numpy().tobytes())
    return digest.hexdigest()[:8]


def _tensor(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output
