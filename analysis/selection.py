"""The verdicts' interval rule over arrays: K candidates' joint differences from one reference (per seed and
per document) → each candidate's 95% interval, corrected for picking the best of the K (pure math, vectorized).

Every claim of the report goes through ``intervals`` (analysis.stats.compare and analysis.evidence build its
arrays from result frames), and the null-rate simulations call it on thousands of synthetic studies at once:
leading axes are studies. Inputs per study: ``seed_diff`` (K, S), the per-seed differences candidate − reference
(NaN where a candidate lacks a seed); optionally ``influence`` (K, G), the per-cluster influence of each
candidate's seed-averaged per-document difference (its squared sum is the documents' variance), with the
document effect (K,) and degrees of freedom (K,). The interval:

- two or more seeds: mean ± q·√(s²/S + SE²_doc) with the seeds' S − 1 degrees of freedom. Each seed's
  difference already carries its own evaluation noise, so s² counts it and SE²_doc adds what the seeds
  share (the same documents); the documents earn no degrees of freedom: a plug-in Welch–Satterthwaite
  count gives the interval many when s² happens to be small, exactly when the mean looks large, and
  said "reproduced" under a null 3.9% of the time at 2 seeds (tests/helpers/null_claims.py, 20,000 draws);
- one seed with per-document values: the document effect ± q·SE_doc (evaluation noise only);
- otherwise none (NaN).

q is Student-t at the interval's degrees of freedom for K = 1; for K > 1 the max-t quantile of the K
estimates' joint correlation (documents' influence products plus the per-seed covariance / S), carried to
Student-t by its tail probability.

Example:
    >>> iv = intervals(np.array([[[0.10, 0.12, 0.08]]]))
    >>> round(float(iv.mean[0, 0]), 2), bool(iv.low[0, 0] > 0), int(iv.seeds[0, 0])
    (0.1, True, 3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, t

from wsm_exp.evaluation.clustered import detectable

LEVEL = 0.95  # two-sided confidence of every interval in the report
DRAWS = 20_000  # Monte-Carlo draws of the max-t quantile (its MC error is ~0.01 in the critical value)


def quantile(dof, candidates: int = 1):
    """Two-sided Student-t quantile at LEVEL, Bonferroni-adjusted for ``candidates`` (normal for dof = inf).

    >>> round(quantile(math.inf), 3), round(quantile(math.inf, 3), 3)
    (1.96, 2.394)
    """
    value = t.ppf(1 - (1 - LEVEL) / (2 * candidates), dof)
    return float(value) if np.ndim(value) == 0 else value


def max_t_quantile(correlation, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """The (1 − α/2) quantile of max_j Z_j over Z ~ N(0, R), for each R of a stack (..., K, K): seeded Monte
    Carlo with the same normal draws for every R (one study gives the same value alone or in a stack).

    >>> bool(abs(max_t_quantile(np.ones((3, 3))) - 1.96) < 0.03), bool(2.3 < max_t_quantile(np.eye(3)) < 2.42)
    (True, True)
    """
    corr = np.asarray(correlation, dtype=float)
    k = corr.shape[-1]
    flat = corr.reshape(-1, k, k)
    values, vectors = np.linalg.eigh((flat + np.swapaxes(flat, 1, 2)) / 2)
    root = vectors * np.sqrt(np.clip(values, 0, None))[:, None, :]  # R = root @ rootᵀ
    scale = np.sqrt(np.clip(np.diagonal(flat, axis1=1, axis2=2), 1e-300, None))  # (B, K)
    base = np.random.default_rng(seed).standard_normal((draws, k))
    out = np.empty(len(flat))
    step = max(1, 2_000_000 // (draws * k))
    for start in range(0, len(flat), step):
        part = root[start:start + step] / scale[start:start + step, :, None]  # rows j: Z_j / sd_j
        z = (base @ part.transpose(2, 1, 0).reshape(k, -1)).reshape(draws, k, -1)  # (draws, K, b): one product
        out[start:start + step] = np.quantile(z.max(axis=1), 1 - (1 - LEVEL) / 2, axis=0)
    return out.reshape(corr.shape[:-2])


def correlation(seed_diff, influence=None) -> np.ndarray:
    """Correlation (..., K, K) of the K candidates' estimates: the documents' joint influence (when every
    candidate has it) plus the per-seed differences' covariance / S over the seeds every candidate has;
    the identity where some variance is zero (unknown correlation: then max-t is about Bonferroni)."""
    d = np.asarray(seed_diff, dtype=float)
    common = ~np.isnan(d).any(axis=-2)  # (..., S)
    n = common.sum(-1)
    filled = np.where(common[..., None, :], d, 0.0)
    centred = np.where(common[..., None, :], filled - filled.sum(-1, keepdims=True) / np.maximum(n, 1)[..., None, None],
                       0.0)
    cov = centred @ np.swapaxes(centred, -1, -2) / np.maximum(n * (n - 1), 1)[..., None, None]
    cov = np.where((n >= 2)[..., None, None], cov, 0.0)
    if influence is not None:
        u = np.asarray(influence, dtype=float)
        known = ~np.isnan(u).any(axis=(-1, -2))
        cov = cov + np.where(known[..., None, None], np.nan_to_num(u) @ np.swapaxes(np.nan_to_num(u), -1, -2), 0.0)
    sd = np.sqrt(np.clip(np.diagonal(cov, axis1=-2, axis2=-1), 0, None))
    ok = (sd > 0).all(-1)
    corr = cov / np.where(ok[..., None], sd, 1.0)[..., :, None] / np.where(ok[..., None], sd, 1.0)[..., None, :]
    return np.where(ok[..., None, None], corr, np.eye(d.shape[-2]))


@dataclass(frozen=True)
class Intervals:
    """Per candidate (..., K): the verdict's interval and its parts; ``candidates`` = K (the pick's correction)."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    eval_low: np.ndarray  # evaluation noise only (documents)
    eval_high: np.ndarray
    seed_low: np.ndarray  # training seeds + evaluation
    seed_high: np.ndarray
    se: np.ndarray  # standard error behind the verdict's interval
    critical: np.ndarray  # its quantile (selection included)
    detectable: np.ndarray  # smallest true difference found with the stated power
    seed_sd: np.ndarray  # spread of the per-seed differences (two or more seeds)
    doc_se: np.ndarray  # standard error from the documents alone
    seeds: np.ndarray  # seeds each candidate has
    candidates: int


def tail_bounds(k: int, draws: int = DRAWS, seed: int = 0) -> tuple[float, float]:
    """Bounds on the one-sided level Φ(q) that ``max_t_quantile`` can give for K = ``k`` candidates, whatever the
    correlation: q ≥ 1.5 (far below the 97.5% quantile of one standard normal, 1.96, which the maximum
    exceeds) and q ≤ the same quantile of ‖z‖ over the same draws (each Z_j is a unit vector times z).
    An outcome that is the same at both bounds is the outcome at the exact q (every rule is monotone in q).

    >>> low, high = tail_bounds(3)
    >>> bool(norm.cdf(1.5) == low), bool(norm.ppf(high) > quantile(math.inf, 3))
    (True, True)
    """
    base = np.random.default_rng(seed).standard_normal((draws, k))
    return float(norm.cdf(1.5)), float(norm.cdf(np.quantile(np.sqrt((base**2).sum(1)), 1 - (1 - LEVEL) / 2)))


def intervals(seed_diff, influence=None, doc_effect=None, doc_dof=None, *, power: float = 0.8,
              tail=None) -> Intervals:
    """Every candidate's interval, corrected for the best of the K by max-t over their joint differences.

    ``seed_diff`` (..., K, S); ``influence`` (..., K, G), ``doc_effect`` (..., K) and ``doc_dof`` (..., K) from
    the per-document values (``doc_effect`` NaN: that candidate has none). ``tail``: the critical value's
    one-sided level instead of the max-t one (simulations bound it with ``tail_bounds``)."""
    d = np.asarray(seed_diff, dtype=float)
    k = d.shape[-2]
    seeds = (~np.isnan(d)).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        seed_mean = np.nansum(d, -1) / np.where(seeds > 0, seeds, 1)
        spread = np.sqrt(np.nansum((d - seed_mean[..., None]) ** 2, -1) / np.where(seeds > 1, seeds - 1, 1))
    seed_sd = np.where(seeds >= 2, spread, np.nan)
    if doc_effect is None:
        doc_effect, doc_se, doc_dof = (np.full(d.shape[:-1], np.nan),) * 3
        influence = None
    else:
        doc_effect = np.broadcast_to(np.asarray(doc_effect, dtype=float), d.shape[:-1])
        doc_se = np.sqrt((np.nan_to_num(np.asarray(influence, dtype=float)) ** 2).sum(-1))
        doc_dof = np.broadcast_to(np.asarray(doc_dof, dtype=float), d.shape[:-1])
    docs = ~np.isnan(doc_effect)
    if k == 1:
        tail = np.full(d.shape[:-1], 1 - (1 - LEVEL) / 2)
    elif tail is None:
        known = np.where(docs.all(-1)[..., None, None], influence, np.nan) if influence is not None else None
        tail = norm.cdf(max_t_quantile(correlation(d, known)))[..., None]
    else:
        tail = np.broadcast_to(np.asarray(tail, dtype=float)[..., None], d.shape[:-1])

    def critical(dof):
        return t.ppf(tail, np.where(np.isnan(dof), 1.0, dof))

    q_doc = critical(np.where(docs, doc_dof, 1.0))
    eval_low = np.where(docs, doc_effect - q_doc * doc_se, np.nan)
    eval_high = np.where(docs, doc_effect + q_doc * doc_se, np.nan)
    v_seed = np.where(seeds >= 2, seed_sd, 0.0) ** 2 / np.maximum(seeds, 1)
    v_doc = np.where(docs, doc_se, 0.0) ** 2
    se_seed = np.sqrt(v_seed + v_doc)
    q_seed = critical(np.maximum(seeds - 1, 1).astype(float))  # the seeds' degrees of freedom (see the docstring)
    mean = np.where(seeds > 0, seed_mean, doc_effect)
    multi = seeds >= 2
    seed_low = np.where(multi, mean - q_seed * se_seed, np.nan)
    seed_high = np.where(multi, mean + q_seed * se_seed, np.nan)
    low = np.where(multi, seed_low, eval_low)
    high = np.where(multi, seed_high, eval_high)
    se = np.where(multi, se_seed, np.where(docs, doc_se, np.nan))
    q = np.where(multi, q_seed, np.where(docs, q_doc, np.nan))
    return Intervals(mean, low, high, eval_low, eval_high, seed_low, seed_high, se, q,
                     detectable(se, q, power), seed_sd, np.where(docs, doc_se, np.nan), seeds, k)


def pick(values, higher_is_better: bool = True) -> np.ndarray:
    """Index of the best candidate along the last axis (the first on ties; NaN never best).

    >>> int(pick(np.array([0.1, float("nan"), 0.3]))), int(pick(np.array([0.1, 0.3]), higher_is_better=False))
    (2, 0)
    """
    v = np.asarray(values, dtype=float)
    signed = v if higher_is_better else -v
    return np.argmax(np.where(np.isnan(signed), -np.inf, signed), axis=-1)


def take(iv: Intervals, index) -> Intervals:
    """The chosen candidate's fields (index (...,) into the last axis), still corrected for all K."""
    index = np.asarray(index)[..., None]
    fields = {name: np.take_along_axis(getattr(iv, name), index, -1)[..., 0]
              for name in Intervals.__dataclass_fields__ if name != "candidates"}
    return Intervals(**fields, candidates=iv.candidates)
