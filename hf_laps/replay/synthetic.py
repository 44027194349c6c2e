"""Seeded synthetic traces for tests and the simulation study (no model involved).

    traces = synthetic_traces(30, tail="heavy", arrivals="burst", seed=0)
    traces = synthetic_traces(300, tail="light", arrivals="poisson", utilisation=0.7, seed=1)

A request:
* output length L: "light" tail ~ Gamma(shape 4, mean 200); "heavy" tail ~ Pareto(alpha 1.2,
  x_min 40) (infinite variance before the cap); both times `length_scale`, clipped to
  [2, max_new_tokens].
* prompt text that carries a real but imperfect signal about L: with probability `signal` its
  instruction phrase is the one of L's log-length bucket (INSTRUCTIONS, short to long), otherwise
  a random one; plus topic filler words. This is what the `learned` predictor can pick up.
* acceptance: a per-request base rate a_i ~ U(0.35, 0.9); per-round rate
  p_k = clip(a_i + N(0, s_k^2), 0, 1), accepted = stochastic rounding of n * p_k (unbiased), with
      "stabilising" (default): s_k = 0.05 + 0.30 * exp(-k / 3)   (noisy early, stable later)
      "noisy":       s_k = 0.35 throughout (rarely passes the stability test)
      "oscillating": accepted alternates 0, n, 0, n ... (per-round std 0.5: never stable)
      "constant":    accepted = round(n * a_i) every round (exactly stable)
  Each round drafts n = min(draft_tokens, tokens left - 1) and emits accepted + 1 tokens.
* round seconds = drafted * t_draft + t_target * (1 + context / 8192 * context_slowdown)
  (+ prompt_tokens * prefill_seconds_per_token in the first round); draft_seconds is recorded.
* arrivals: "burst" (all at 0) or "poisson" at a target utilisation rho: rate
  lambda = rho / mean(service seconds), so the offered load is rho.
"""
from __future__ import annotations

import math
import random

from hf_laps.timing_log import RoundRecord
from hf_laps.replay.traces import Trace

TAILS = ("light", "heavy")
ARRIVALS = ("burst", "poisson")
ACCEPTANCE = ("stabilising", "noisy", "oscillating", "constant")

# Instruction phrases, shortest expected answer first (one per log-length bucket).
INSTRUCTIONS = (
    "answer yes or no", "reply with one word", "give a one sentence answer",
    "summarize briefly", "explain the idea", "explain step by step in detail",
    "write a detailed report on", "write a long story about",
)
_TOPICS = ("river", "market", "engine", "garden", "planet", "violin", "harbor", "winter",
           "algebra", "castle", "battery", "desert", "forest", "protein", "railway", "tiger",
           "volcano", "bakery", "satellite", "glacier", "museum", "orchid", "compiler", "ocean")


def sample_output_length(rng: random.Random, tail: str, max_new_tokens: int,
                         scale: float = 1.0) -> int:
    """One output length: light ~ Gamma(4, mean 200 * scale), heavy ~ Pareto(1.2, x_min
    40 * scale), clipped to [2, max_new_tokens]."""
    if tail == "light":
        value = rng.gammavariate(4.0, 50.0 * scale)
    elif tail == "heavy":
        value = 40.0 * scale * rng.paretovariate(1.2)
    else:
        raise ValueError(f"tail must be one of {TAILS}, got {tail!r}")
    return int(min(max(round(value), 2), max_new_tokens))


def make_prompt(rng: random.Random, length: int, max_new_tokens: int, signal: float) -> str:
    """Instruction phrase tied to log(length) with probability `signal`, plus filler words."""
    buckets = len(INSTRUCTIONS)
    true_bucket = min(int(math.log(length) / math.log(max_new_tokens + 1) * buckets), buckets - 1)
    bucket = true_bucket if rng.random() < signal else rng.randrange(buckets)
    filler = " ".join(rng.choice(_TOPICS) for _ in range(rng.randint(3, 12)))
    return f"{INSTRUCTIONS[bucket]} {filler}"


def acceptance_rounds(rng: random.Random, length: int, draft_tokens: int, acceptance: str
                      ) -> list[tuple[int, int]]:
    """(drafted, accepted) per round until `length` tokens are emitted."""
    if acceptance not in ACCEPTANCE:
        raise ValueError(f"acceptance must be one of {ACCEPTANCE}, got {acceptance!r}")
    base = rng.uniform(0.35, 0.9)
    phase = rng.randrange(2)
    rounds, generated, k = [], 0, 0
    while generated < length:
        drafted = min(draft_tokens, length - generated - 1)
        if acceptance == "constant":
            accepted = round(drafted * base)
        elif acceptance == "oscillating":
            accepted = drafted if (k + phase) % 2 else 0
        else:
            spread = 0.35 if acceptance == "noisy" else 0.05 + 0.30 * math.exp(-k / 3.0)
            rate = min(max(base + rng.gauss(0.0, spread), 0.0), 1.0)
            accepted = int(drafted * rate + rng.random())   # stochastic rounding: unbiased
        accepted = min(accepted, drafted)
        rounds.append((drafted, accepted))
        generated += accepted + 1
        k += 1
    return rounds


def synthetic_traces(num_requests: int, *, tail: str = "light", arrivals: str = "burst",
                     utilisation: float | None = None, acceptance: str = "stabilising",
                     seed: int = 0, draft_tokens: int = 4, t_draft: float = 0.004,
                     t_target: float = 0.025, prefill_seconds_per_token: float = 5e-5,
                     context_slowdown: float = 0.1, max_new_tokens: int = 2048,
                     length_scale: float = 1.0, signal: float = 0.8,
                     id_prefix: str = "req") -> list[Trace]:
    """A seeded synthetic workload (see the module docstring); traces in arrival order.

    Args:
        num_requests: how many requests.
        tail: "light" or "heavy" output lengths.
        arrivals: "burst" (all at t=0) or "poisson" (needs `utilisation` in (0, 1]).
        acceptance: one of ACCEPTANCE.
        seed: everything is drawn from random.Random(seed).
        length_scale: multiplies the output-length distribution (before the cap).
        signal: probability that a prompt's instruction matches its length bucket.
    """
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {ARRIVALS}, got {arrivals!r}")
    if arrivals == "poisson" and not (utilisation is not None and 0 < utilisation <= 1):
        raise ValueError(f"poisson arrivals need utilisation in (0, 1], got {utilisation!r}")
    rng = random.Random(seed)
    bodies = []
    for i in range(num_requests):
        length = sample_output_length(rng, tail, max_new_tokens, length_scale)
        prompt_tokens = int(min(max(rng.lognormvariate(math.log(150), 0.7), 8), 4000))
        prompt = make_prompt(rng, length, max_new_tokens, signal)
        rounds, generated = [], 0
        for k, (drafted, accepted) in enumerate(acceptance_rounds(rng, length, draft_tokens,
                                                                  acceptance)):
            context = prompt_tokens + generated
            draft_s = drafted * t_draft
            seconds = draft_s + t_target * (1.0 + context_slowdown * context / 8192)
            if k == 0:
                seconds += prompt_tokens * prefill_seconds_per_token
            rounds.append(RoundRecord(drafted=drafted, accepted=accepted, seconds=seconds, draft_seconds=draft_s))
            generated += accepted + 1
        bodies.append((f"{id_prefix}-{i:05d}", prompt_tokens, length, tuple(rounds), prompt))
    times = [0.0] * num_requests
    if arrivals == "poisson":
        mean_service = sum(sum(r.seconds for r in b[3]) for b in bodies) / max(num_requests, 1)
        times = poisson_arrivals(rng, num_requests, utilisation / mean_service)
    return [Trace(custom_id=cid, arrival=t, prompt_tokens=pt, max_new_tokens=max_new_tokens,
                  output_tokens=length, rounds=rounds, prompt=prompt)
            for t, (cid, pt, length, rounds, prompt) in zip(times, bodies)]


def poisson_arrivals(rng: random.Random, count: int, rate: float) -> list[float]:
    """`count` arrival times of a Poisson process of `rate` per second, the first at 0."""
    times, clock = [], 0.0
    for i in range(count):
        if i:
            clock += rng.expovariate(rate)
        times.append(clock)
    return times
