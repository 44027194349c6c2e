"""Goodput-aware draft lengths for a batched round: draft only the tokens that pay for themselves.

At batch 1 a verify forward is bound by reading the target's weights, so ten more draft positions
cost almost nothing and drafting the full n is right. In a batch every row's drafts share one
forward whose cost grows with the positions it computes:

    verify seconds  ~  a + b * T,      T = sum over rows of (unseen committed tokens + drafts)

(a: reading the weights once plus fixed overheads; b: one more position). On a CPU b is large:
on the embedded SmolLM2 a position costs several % of a, so eight rows drafting ten prompt-lookup
tokens each make the forward several times dearer while most of those drafts are rejected.

Per row, acceptance is the usual chain of coin flips with rate alpha_i (Leviathan et al.): the
j-th draft token is emitted only if drafts 1..j are all accepted, so it adds alpha_i^j expected
tokens. The round's throughput is G / (a + b T), G = the expected tokens (one target token per
row plus the gains of the drafts taken). Taking one more draft of gain g raises it iff

    (G + g) / (a + b (T + 1)) > G / (a + b T)   <=>   g > b * G / (a + b T).

A row's gains fall along its drafts (alpha^j), so the best set of k drafts is the k largest gains
and the throughput over k rises while the test holds, then falls: `draft_lengths` takes gains in
decreasing order and stops at the first that fails. With b ~ 0 (a GPU at these sizes) every
draft passes and the round drafts as at batch 1. The lengths change only how many drafts are
verified, never which tokens are accepted: greedy output is as with full drafts. Sampled
requests keep their full drafts: how many drafts a request samples decides how it consumes its
own generator, so trimming them would make a seeded request's tokens depend on its batch mates
(the distribution would still be exact).

Both inputs are learnt online. `CostLine` fits (a, b) by least squares to the rounds' verify
seconds, forgetting old rounds (load on a shared machine drifts). `AcceptanceTally` estimates
alpha_i per request: each verified draft position is a Bernoulli trial until the first rejection,
so over rounds alpha = accepted / (accepted + rejections), here the mean of a Beta(1, 1) prior
updated with decayed counts. The decay pulls a row that stopped drafting back toward the prior,
so it tries a draft again now and then (prompt lookup gets good when a reply starts quoting its
prompt). The tally lives in the state's runtime dict: a request loaded from a file starts from
the prior, which changes its draft lengths but not its tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

PRIOR_ACCEPTED = 1.0   # Beta(1, 1): alpha = 0.5 before a request has drafted anything
PRIOR_REJECTED = 1.0
TALLY_DECAY = 0.9      # per round the request takes part in: an effective memory of ~10 rounds
TALLY_KEY = "acceptance_tally"


@dataclass
class AcceptanceTally:
    """Decayed counts of one request's accepted draft positions and its rejections."""

    accepted: float = 0.0
    rejected: float = 0.0

    @property
    def alpha(self) -> float:
        """Posterior mean acceptance rate of one draft position."""
        accepted = self.accepted + PRIOR_ACCEPTED
        return accepted / (accepted + self.rejected + PRIOR_REJECTED)

    def record(self, drafted: int, accepted: int) -> None:
        """One round: `accepted` of `drafted` drafts; a rejection when not all were accepted."""
        self.accepted = TALLY_DECAY * self.accepted + accepted
        self.rejected = TALLY_DECAY * self.rejected + (1.0 if accepted < drafted else 0.0)


def tally_of(runtime: dict) -> AcceptanceTally:
    """The request's tally from its runtime dict (created on first use)."""
    return runtime.setdefault(TALLY_KEY, AcceptanceTally())


# Before the first fit. On an accelerator: positions are free (b = 0), full drafts as at batch 1.
# On a CPU a position is not free: b / a = 0.02 is what the fit settles at on the embedded
# SmolLM2-135M at 1-2 threads (a round of 8 positions ~ 0.45 s, + 0.009 s per position, on a
# loaded 2-core machine); the first rounds then already skip drafts that rarely pay. A prior that
# trims everything would be wrong: a trimmed batch of steady membership feeds the same T every
# round and leaves no spread to ever fit a line from.
PRIOR_LINE = (1.0, 0.0)
CPU_PRIOR_LINE = (1.0, 0.02)


def prior_line(device_type: str) -> tuple[float, float]:
    return CPU_PRIOR_LINE if device_type == "cpu" else PRIOR_LINE


class CostLine:
    """Exponentially weighted least squares of verify seconds against fed positions T.

    With weights w_r = decay^(age of round r): b = cov_w(T, s) / var_w(T), a = mean_w(s) - b
    mean_w(T), clamped to b >= 0 and a >= 0. A new line needs `min_rounds` rounds and a spread of
    T (std >= `min_spread` positions; a line through one cluster of points has no slope to
    trust); until then `line` keeps the last one, or the prior (`prior_line`). Once trimming has made T steady,
    the last line stays: the rounds have nothing new to say about the slope.
    """

    def __init__(self, prior: tuple[float, float] = PRIOR_LINE, decay: float = 0.95, min_rounds: int = 3,
                 min_spread: float = 2.0) -> None:
        self.decay, self.min_rounds, self.min_spread = decay, min_rounds, min_spread
        self.rounds = 0
        self.w = self.wx = self.wy = self.wxx = self.wxy = 0.0
        self.line: tuple[float, float] = prior
        self.fitted = False

    def observe(self, tokens: int, seconds: float) -> None:
        d = self.decay
        self.rounds += 1
        self.w = d * self.w + 1.0
        self.wx = d * self.wx + tokens
        self.wy = d * self.wy + seconds
        self.wxx = d * self.wxx + tokens * tokens
        self.wxy = d * self.wxy + tokens * seconds
        self._refit()

    def _refit(self) -> None:
        if self.rounds < self.min_rounds:
            return
        mean_x, mean_y = self.wx / self.w, self.wy / self.w
        var_x = self.wxx / self.w - mean_x * mean_x
        if var_x < self.min_spread**2:
            return
        slope = max(0.0, (self.wxy / self.w - mean_x * mean_y) / var_x)
        intercept = max(0.0, mean_y - slope * mean_x)
        if slope == 0.0 and intercept == 0.0:
            return  # no information (all rounds took no time)
        self.line, self.fitted = (intercept, slope), True


def draft_lengths(alphas: list[float], limits: list[int], base_tokens: int, line: tuple[float, float],
                  base_expected: float | None = None) -> list[int]:
    """Per row, how many of its first `limits[i]` drafts the round should verify.

    `base_tokens` (>= 1): the positions the round feeds anyway (every row's unseen committed tokens, and
    drafts that are not up for trimming); `base_expected`: the tokens it emits anyway (default:
    one per row); `line`: (a, b) of `CostLine.line`. Greedy in decreasing gain alpha_i^j (see the
    module docstring); ties go to the lower row index.
    """
    a, b = line
    lengths = [0] * len(alphas)
    expected = float(len(alphas)) if base_expected is None else base_expected
    tokens = base_tokens
    while True:
        best, gain = None, 0.0
        for row, (alpha, limit) in enumerate(zip(alphas, limits)):
            if lengths[row] < limit:
                g = alpha ** (lengths[row] + 1)
                if g > gain:
                    best, gain = row, g
        if best is None or gain <= b * expected / (a + b * tokens):
            return lengths
        lengths[best] += 1
        expected += gain
        tokens += 1
