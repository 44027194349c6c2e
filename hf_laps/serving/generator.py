"""`LapsGenerator`: many prompts through speculative decoding, scheduled by LAPS-SD.

    from hf_laps import LapsGenerator
    gen = LapsGenerator.from_pretrained()                      # embedded SmolLM2 + prompt lookup
    gen = LapsGenerator.from_pretrained("meta-llama/Llama-2-7b-hf", assistant="JackFram/llama-68m",
                                        device="cuda", policy="laps-sd")
    results = gen.generate(["Hello!", [{"role": "user", "content": "Hi"}]], max_new_tokens=64)

Results come back one per prompt, in input order, with text, token ids, finish reason, latency,
time to first token and the speculative metrics.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from hf_laps.engine.batch_kv import supports_batching
from hf_laps.engine.config import EngineConfig
from hf_laps.engine.speculative import SpeculativeEngine
from hf_laps.models.loading import ModelLoadError  # noqa: F401 (what from_pretrained raises; for the job layer)
from hf_laps.scheduling import Policy, SchedulerConfig, make_policy
from hf_laps.scheduling.predictors.registry import build_predictor
from hf_laps.serving.batch_executor import BatchEngineExecutor
from hf_laps.serving.engine_executor import EngineExecutor
from hf_laps.serving.executor import Completion, Submission
from hf_laps.serving.inputs import (PROMPT_COLUMNS, generation_options, normalise_prompts,  # noqa: F401 (re-exported)
                                    prompts_from_keywords)
from hf_laps.serving.loop import ServingLoop
from hf_laps.serving.progress import batch_progress
from hf_laps.scheduling.batch_planner import resolve_max_batch_size
from hf_laps.timing_log import TimingRecord


@dataclass
class GenerationResult:
    """One request's outcome (error is set, and text is None, when it failed)."""

    request_id: str
    text: str | None
    token_ids: list[int]
    finish_reason: str | None
    latency: float | None
    ttft: float | None
    prompt_tokens: int
    output_tokens: int
    preemptions: int
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    timing: TimingRecord | None = None

    @classmethod
    def from_completion(cls, completion: Completion) -> "GenerationResult":
        state, record = completion.state, completion.record
        ok = completion.ok and state is not None
        return cls(
            request_id=completion.submission.request_id,
            text=state.text if ok else None,
            token_ids=state.output_ids if ok else [],
            finish_reason=state.finish_reason if ok else None,
            latency=record.latency if record else None,
            ttft=record.ttft if record else None,
            prompt_tokens=state.prompt_len if state is not None else 0,
            output_tokens=state.num_generated if ok else 0,
            preemptions=record.preemptions if record else 0,
            metrics=state.metrics.to_dict() if ok else {},
            error=completion.error,
            timing=record,
        )


class LapsGenerator:
    """The hf-laps engine as a Python API on top of transformers.

    Args:
        model: the target causal LM (a loaded `PreTrainedModel`).
        assistant_model: the draft model; None = prompt-lookup drafting.
        tokenizer: the target's tokenizer (text prompts, chat messages, stop strings, `text`).
        policy: fcfs | las | lp-sjf | srpt-oracle | laps-sd | gittins | robust-srpt (any registered
            policy: `hf_laps.scheduling.policy_names()`).
        engine_config: draft length and drafting knobs.
        scheduler_config: LAPS-SD / LAS queue knobs.
        predictor: a predictor name (oracle | noisy-oracle | learned | hidden) or instance, for lp-sjf, gittins and
            laps-sd; default `learned`, fitted on `history` timing logs if given.
        predictor_options: kwargs of `build_predictor` (hf_laps.scheduling.predictors.registry:
            history, sigma, seed, exclude, and the predictor's own options).
        kv_budget_bytes: device bytes for paused requests' KV caches (None: keep all on device).
        kv_capacity_bytes: device bytes all running requests' KV caches may reach at worst; a
            request waits for admission while its worst case (prompt + max_new_tokens tokens)
            does not fit, and one that cannot fit even alone fails (None: admit all).
        max_batch_size: the most requests per round (a cap): every round the batch planner
            (`hf_laps.scheduling.batch_planner`) chooses how many of the policy's ranked requests
            share one target verify forward (`hf_laps.engine.batched_round.BatchedRound`), by the
            round-cost model it learns from the job's rounds. "auto" (default): up to
            `AUTO_MAX_BATCH` (32), fewer when `kv_capacity_bytes` admits fewer; 1 for a model whose
            cache cannot be batched (sliding-window layers). 1 = one request per round.
        progress: show a tqdm bar.
    """

    def __init__(
        self,
        model,
        assistant_model=None,
        tokenizer=None,
        *,
        policy: str = "laps-sd",
        engine_config: EngineConfig | None = None,
        scheduler_config: SchedulerConfig | None = None,
        predictor=None,
        predictor_options: dict | None = None,
        kv_budget_bytes: int | None = None,
        kv_capacity_bytes: int | None = None,
        max_batch_size: int | str = "auto",
        progress: bool = True,
    ):
        resolve_max_batch_size(max_batch_size)  # refuse a bad value now, not at generate()
        self.engine = SpeculativeEngine(model, tokenizer, assistant_model=assistant_model, config=engine_config)
        self.tokenizer = tokenizer
        self.policy_name = policy
        self.scheduler_config = scheduler_config or SchedulerConfig()
        self.predictor = predictor
        self.predictor_options = dict(predictor_options or {})
        self.kv_budget_bytes = kv_budget_bytes
        self.kv_capacity_bytes = kv_capacity_bytes
        self.max_batch_size = max_batch_size
        self.progress = progress
        make_policy(policy, self.scheduler_config)  # validate the name now, not at generate()

    @classmethod
    def from_pretrained(
        cls,
        model: str | None = None,
        assistant: str | None = None,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        threads: int | None = None,
        **kwargs,
    ) -> "LapsGenerator":
        """Load target (hub id, local dir, .gguf, or None = embedded default) and draft.

        `threads`: torch CPU threads (default on CPU: `hf_laps.runtime.default_cpu_threads()`).
        """
        from hf_laps.models.loading import load_causal_lm, load_tokenizer, resolve_source

        source = resolve_source(model)
        target = load_causal_lm(source, device, dtype, trust_remote_code, threads)
        tokenizer = load_tokenizer(source, trust_remote_code)
        draft = None
        if assistant is not None:
            draft = load_causal_lm(resolve_source(assistant), device, dtype, trust_remote_code, threads)
        return cls(target, draft, tokenizer, **kwargs)

    # ---- generation ------------------------------------------------------------------------
    def generate(
        self,
        prompts=None,
        *,
        arrivals: Sequence[float] | None = None,
        column: str | None = None,
        progress: bool | None = None,
        **generation_kwargs,
    ) -> list[GenerationResult]:
        """Generate for every prompt under the scheduling policy; results in input order.

        Args:
            prompts: a list of texts, token-id lists or chat message lists, a
                `datasets.Dataset` (column `prompt`, `messages` or `text`, or `column=`), or a
                tokenizer's padded `BatchEncoding` (each row's unmasked ids are one prompt); or
                leave it out and pass `input_ids=` (and `attention_mask=`) as `model.generate` takes
                them.
            arrivals: seconds after start at which each prompt arrives (default all at 0).
            **generation_kwargs: transformers generation options for every prompt, optionally
                `generation_config=GenerationConfig(...)` (explicit kwargs override it).
                `num_assistant_tokens` / `prompt_lookup_num_tokens` set this call's draft length;
                `num_return_sequences=n` (with sampling) gives n results per prompt, prompt-major,
                ids "i-j", request j seeded `seed + j` when `seed` is given.
        Raises:
            ValueError: a kwarg no request would use (e.g. a typo), or one asking for what
                hf-laps cannot honour (`num_beams=3`, `output_scores=True`), before anything runs.
        """
        items = normalise_prompts(prompts_from_keywords(prompts, generation_kwargs), column)
        generation_kwargs = generation_options(generation_kwargs)
        if arrivals is not None and len(arrivals) != len(items):
            raise ValueError(f"{len(arrivals)} arrivals for {len(items)} prompts")
        submissions = [
            self.submission(request_id, item, kwargs, arrivals[index] if arrivals else 0.0)
            for index, item in enumerate(items)
            for request_id, kwargs in return_sequences(f"{index}", generation_kwargs)
        ]
        by_id = {}
        for completion in self.stream(submissions, progress=progress):
            by_id[completion.submission.request_id] = GenerationResult.from_completion(completion)
        return [by_id[s.request_id] for s in submissions]

    def submission(self, request_id: str, prompt, generation_kwargs: dict, arrival: float = 0.0) -> Submission:
        """A Submission for the loop; chat messages go through the tokenizer's chat template."""
        text = prompt if isinstance(prompt, str) else None
        is_chat = _is_messages(prompt)
        if is_chat:
            text = self.apply_chat_template(prompt)
            prompt = text
        return Submission(request_id, prompt, dict(generation_kwargs), arrival=arrival, prompt_text=text,
                          is_chat=is_chat)

    def check_fits(self, prompt, max_new_tokens: int) -> None:
        """Raise ContextWindowExceeded when the prompt + an explicit max_new_tokens exceeds the
        target's context window (a default cap is fitted instead; the engine does that)."""
        self.engine.check_fits(self.engine.prompt_length(prompt), max_new_tokens)

    def apply_chat_template(self, messages: Sequence[dict]) -> str:
        if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("chat messages need a tokenizer with a chat template")
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def stream(self, submissions: Sequence[Submission], progress: bool | None = None, loop_hook=None,
               policy: Policy | None = None) -> Iterator[Completion]:
        """Run the serving loop; yield each Completion as its request finishes.

        `policy`: a fresh Policy instance for this stream (default: `make_policy()`, from the
        generator's policy name, scheduler config and predictor). `loop_hook(loop)` is called
        with the ServingLoop before it starts (the job runner uses it to stop at a round
        boundary on Ctrl-C).
        """
        bar = batch_progress(len(submissions), self.progress if progress is None else progress)
        size = self.batch_cap()
        executor = BatchEngineExecutor(self.engine) if size > 1 else EngineExecutor(self.engine)
        loop = ServingLoop(executor, policy if policy is not None else self.make_policy(),
                           kv_budget_bytes=self.kv_budget_bytes, on_round=bar.on_round if bar is not None else None,
                           max_batch_size=size, kv_capacity_bytes=self.kv_capacity_bytes)
        if loop_hook is not None:
            loop_hook(loop)
        try:
            for completion in loop.run(submissions):
                if bar is not None:
                    bar.on_completion()
                yield completion
        finally:
            if bar is not None:
                bar.close()

    def batch_cap(self) -> int:
        """The most requests per round: `max_batch_size`, with "auto" resolved (1 for a model whose
        cache the batch layouts cannot hold)."""
        if self.max_batch_size == "auto" and not supports_batching(self.engine.model):
            return 1
        return resolve_max_batch_size(self.max_batch_size)

    def make_policy(self):
        predictor = self.predictor
        if predictor is None or isinstance(predictor, str):
            name, options = predictor or "learned", dict(self.predictor_options)
            if name == "hidden" and self.engine.features is not None:
                # history logs of another model are then refused (with a warning), not mixed in
                options.setdefault("features_model", self.engine.features.fingerprint)
            predictor = build_predictor(name, **options)
        return make_policy(self.policy_name, self.scheduler_config, predictor)


def return_sequences(request_id: str, kwargs: dict) -> list[tuple[str, dict]]:
    """(request id, kwargs) of each of the `num_return_sequences` requests of one prompt.

    Like transformers, n > 1 needs sampling (greedy would return n copies); with a `seed`, copy j
    gets `seed + j`, so the n samples differ and the call stays reproducible.
    """
    kwargs = dict(kwargs)
    count = kwargs.pop("num_return_sequences", None) or 1
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"num_return_sequences must be an integer >= 1, got {count!r}")
    if count == 1:
        return [(request_id, kwargs)]
    if not kwargs.get("do_sample"):
        raise ValueError(f"num_return_sequences={count} needs do_sample=True (greedy decoding returns "
                         "the same sequence every time), as in transformers")
    seed = kwargs.get("seed")
    return [(f"{request_id}-{j}", kwargs if seed is None else {**kwargs, "seed": int(seed) + j})
            for j in range(count)]


def _is_messages(prompt: Any) -> bool:
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(isinstance(m, dict) for m in prompt)
