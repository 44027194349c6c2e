"""Which drafted tokens the target accepts: greedy matching and speculative sampling.

Both consume only a per-request `torch.Generator`, never the global RNG, so a request's samples do
not depend on which other requests ran in between (transformers' `_speculative_sampling` uses the
global RNG; docs/design.md#per-request-rng).
"""
from __future__ import annotations

import torch


def leading_matches(candidates: torch.Tensor, selected: torch.Tensor) -> int:
    """Length of the longest prefix where the draft equals the target's choice.

    candidates: [m] drafted ids; selected: [m + 1] target ids (one more: the bonus position).
    """
    m = candidates.shape[0]
    if m == 0:
        return 0
    mismatch = candidates != selected[:m]
    # cumsum of mismatches stays 0 exactly over the matching prefix
    return int((mismatch.cumsum(0) == 0).sum().item())


def greedy_accept(candidates: torch.Tensor, target_scores: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(n, tokens): accept the matching prefix, then the target's argmax after it."""
    selected = target_scores.argmax(dim=-1)
    n = leading_matches(candidates, selected)
    return n, torch.cat([candidates[:n], selected[n : n + 1]])


def sample_and_match(
    candidates: torch.Tensor, target_scores: torch.Tensor, generator: torch.Generator
) -> tuple[int, torch.Tensor]:
    """Sampling with a deterministic draft (prompt lookup, q = one-hot).

    Sample x_i ~ p_i at every position and accept while x_i equals the draft. For a one-hot q this
    is exactly speculative sampling: accept with min(1, p(x)/1) = p(x), and on rejection sample
    from norm(max(p - q, 0)), i.e. p conditioned on "not the drafted token".
    """
    probs = torch.softmax(target_scores, dim=-1)
    selected = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    n = leading_matches(candidates, selected)
    return n, torch.cat([candidates[:n], selected[n : n + 1]])


def speculative_sample(
    candidates: torch.Tensor,
    draft_probs: torch.Tensor,
    target_scores: torch.Tensor,
    generator: torch.Generator,
) -> tuple[int, torch.Tensor]:
    """Leviathan et al. (2023), Algorithm 1, with a per-request generator.

    candidates: [m] drafted ids, sampled from q = draft_probs [m, V];
    target_scores: [m + 1, V] processed target logits, p = softmax.
    Accept x_i while r_i <= p_i(x_i) / q_i(x_i), r_i ~ U(0, 1). At the first rejection sample from
    norm(max(p_i - q_i, 0)); if everything was accepted, sample the bonus token from p_m. The output
    is distributed exactly as p, whatever q is.
    """
    m = candidates.shape[0]
    p = torch.softmax(target_scores, dim=-1)
    positions = torch.arange(m, device=candidates.device)
    p_at = p[positions, candidates]
    q_at = draft_probs[positions, candidates]
    r = torch.rand(m, generator=generator, device=candidates.device)
    accepted = r <= p_at / q_at
    n = int((accepted.cumsum(0) == torch.arange(1, m + 1, device=candidates.device)).sum().item())
    if n < m:
        residual = (p[n] - draft_probs[n]).clamp(min=0)
        total = residual.sum()
        # p == q up to rounding leaves nothing to renormalise: p itself is then the right law
        dist = residual / total if total > 1e-12 else p[n]
    else:
        dist = p[m]
    token = torch.multinomial(dist, 1, generator=generator)
    return n, torch.cat([candidates[:n], token])
