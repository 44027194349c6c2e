"""The Gittins index of a request in service time, the rule `gittins` ranks by.

    per request i: P_i prompt tokens, cap_i = max_new_tokens, L_hat_i = predictor (refreshed),
                   g_i tokens emitted, S_i / G_i = seconds / tokens of its non-prefill rounds
    job-wide:      popS / popG over all non-prefill rounds (seconds per token of the job)
                   prefill per prompt token = (first-round seconds - popS/popG * first-round
                   tokens) / prompt tokens, summed over the requests that started
    spt_i     = (S_i + kappa popS/popG) / (G_i + kappa)       shrinkage: a request's first few
                rounds say little about its speed, ~kappa tokens of its own outweigh the job's
    prefill_i = prefill per prompt token * P_i if i has not started, else 0 (a known cost)
    support   = the predictor's own quantiles of L at levels (k + 0.5) / n when it gives them
                (hidden: out-of-sample residuals per kind of request, so a completion with stop
                strings keeps its bimodal shape), else the calibrated distribution of its point
                prediction (calibration.py): x_k = min(m_i e^{e_k}, cap_i)
    R_i       = sorted {x_k - g_i : x_k > g_i}  (d_1 <= ... <= d_n, equal weight 1/n): the
                remaining length GIVEN that L > g_i, so a request past its prediction is
                ranked by its conditional tail, not by "one more token"
    rank_i    = min_j (prefill_i + spt_i E_j) / (j / n),  E_j = (d_1 + .. + d_j + (n-j) d_j) / n
                (the Gittins index of serving i for a quantum of d_j tokens: expected time
                E[prefill + spt min(R, d_j)] over the chance j/n of finishing within it; the
                lowest cost per completion wins, Gittins 1989 / Aalto et al. 2009)
    R_i empty (i outran every support point):
                rank_i = spt_i * clamp(tail_fraction g_i + 1, 1, cap_i - g_i)
    pick      = b = argmin rank (ties: arrival, then admission); the running request r keeps
                the server unless rank_b < (1 - h) rank_r (hysteresis: an estimate that moves
                a little must not cause a switch and its KV traffic). With `starvation` = s > 0
                the oldest request goes first once it has waited s times the job's mean
                latency so far (a bound on the wait of long requests, paid in mean latency).

With oracle lengths every support point is the true length, so rank_i = prefill_i + spt_i
(L_i - g_i): shortest expected remaining time first. With a useless predictor the calibration
learns beta ~ 0 and a wide residual, and the index degrades gracefully toward least-attained-
service-like behaviour within the job's length distribution.
"""
from __future__ import annotations

import math


def gittins_index(prefill: float, seconds_per_token: float, remaining: list[float]) -> float:
    """min_j (prefill + spt E_j) / (j / n) over remaining lengths d_1 <= ... <= d_n (n >= 1),
    E_j = (d_1 + ... + d_j + (n - j) d_j) / n = E[min(R, d_j)] for R uniform on the d's."""
    n = len(remaining)
    base = prefill * n / seconds_per_token if seconds_per_token > 0 else 0.0
    best, cumulative, j = math.inf, 0.0, 0
    for d in remaining:
        j += 1
        cumulative += d
        value = (base + cumulative + (n - j) * d) / j
        if value < best:
            best = value
    if seconds_per_token > 0:
        return best * seconds_per_token
    return prefill                      # free decoding: the whole quantum, j = n
