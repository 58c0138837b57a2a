"""Paired statistics and verdicts that respect the noise.

Two models are compared on the same documents: the per-document difference (a weighted mean, bytes as
weights for bits per byte, so the statistic is the aggregate's own quantity) has a standard error from
the documents, its interval is labelled *evaluation noise only*. With two or more training seeds the
per-seed differences give a t-interval that covers the training seeds too; the verdict then uses it.
Picking the best of K candidates before testing is paid for with a Bonferroni (Holm's first step)
interval at level 1 − 0.05/K. A difference counts as reproduced only when its interval excludes zero in
the claimed direction; the opposite direction is "not reproduced"; anything else is "inconclusive".
With one seed and no per-document values no interval exists: "unconfirmed".

Example:
    >>> compare([1.0, 1.2, 0.9], [0.0, 0.1, -0.1]).verdict
    'reproduced'
    >>> compare([0.05], [0.0]).verdict
    'unconfirmed (1 seed; observed: better)'
    >>> compare([2.30], [2.35], higher_is_better=False, eval_noise=DocNoise(-0.05, 0.01, 200)).verdict
    'reproduced'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # two-sided confidence of every interval in the report


def quantile(dof: float, candidates: int = 1) -> float:
    """Two-sided Student-t quantile at LEVEL, Bonferroni-adjusted for ``candidates`` (normal for dof = inf).

    >>> round(quantile(math.inf), 3), round(quantile(math.inf, 3), 3)
    (1.96, 2.394)
    """
    from scipy.stats import t

    return float(t.ppf(1 - (1 - LEVEL) / (2 * candidates), dof))


def paired_difference(a, b, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """(effect, standard error) of the weighted mean of a − b over the last axis (documents).

    The effect is Σ(a−b)·w / Σw — for bits per byte with byte weights exactly the difference of the two
    aggregates — and its standard error is the ratio estimator's (delta method). Vectorized over leading
    axes (repetitions, candidates).

    >>> effect, se = paired_difference(np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, 0.0]))
    >>> float(effect), round(float(se), 4)
    (0.5, 0.2887)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    w = np.ones_like(a) if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), a.shape)
    n = a.shape[-1]
    z = (a - b) * w
    effect = z.sum(-1) / w.sum(-1)
    residual = z - effect[..., None] * w
    se = np.sqrt((residual**2).sum(-1) / (n * (n - 1))) / w.mean(-1) if n > 1 else np.full(effect.shape, np.nan)
    return effect, se


def best_candidate(effects, ses, dof: float, higher_is_better: bool = True):
    """Pick the best of K candidates (last axis) by its effect; return (index, effect, low, high) with a
    Bonferroni interval over the K candidates. Vectorized over leading axes."""
    effects, ses = np.asarray(effects, dtype=float), np.asarray(ses, dtype=float)
    k = effects.shape[-1]
    index = np.argmax(effects if higher_is_better else -effects, axis=-1)
    effect = np.take_along_axis(effects, index[..., None], -1)[..., 0]
    se = np.take_along_axis(ses, index[..., None], -1)[..., 0]
    half = quantile(dof, k) * se
    return index, effect, effect - half, effect + half


def reproduced(low, high, higher_is_better: bool = True):
    """True where the interval excludes zero in the claimed direction (vectorized)."""
    return np.asarray(low) > 0 if higher_is_better else np.asarray(high) < 0


@dataclass(frozen=True)
class DocNoise:
    """A paired per-document difference (A − B), pooled over the seeds that have samples."""

    effect: float
    se: float
    docs: int  # documents per seed (the smallest task)
    seeds: int = 1


@dataclass(frozen=True)
class Comparison:
    """A − B on one metric, with the interval the verdict uses and both noise levels."""

    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    verdict: str
    noise: str = ""  # what the interval covers
    eval_low: float = math.nan  # evaluation noise only (documents)
    eval_high: float = math.nan
    seed_low: float = math.nan  # training seeds + evaluation (per-seed differences)
    seed_high: float = math.nan
    candidates: int = 1  # K: the interval is Bonferroni-adjusted for picking the best of K
    higher_is_better: bool = True

    @property
    def advantage(self) -> float:
        """The difference in the claimed direction (positive: A better)."""
        return self.mean if self.higher_is_better else -self.mean


def summary(values: list[float], candidates: int = 1) -> tuple[float, float, float, float]:
    """(mean, std, ci_low, ci_high) of a sample; std and interval are NaN for one value."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return (math.nan,) * 4
    m = float(np.mean(values))
    if len(values) < 2:
        return m, math.nan, math.nan, math.nan
    s = float(np.std(values, ddof=1))
    half = quantile(len(values) - 1, candidates) * s / math.sqrt(len(values))
    return m, s, m - half, m + half


def judge(mean: float, low: float, high: float, higher_is_better: bool = True) -> str:
    """reproduced / not reproduced / inconclusive from an interval of A − B."""
    if math.isnan(low):
        direction = (mean > 0) == higher_is_better
        observed = "equal" if mean == 0 else "better" if direction else "worse"
        return f"unconfirmed (1 seed; observed: {observed})"
    if bool(reproduced(low, high, higher_is_better)):
        return "reproduced"
    if bool(reproduced(-high, -low, higher_is_better)):
        return "not reproduced"
    return "inconclusive"


def compare(a: list[float], b: list[float], *, higher_is_better: bool = True, candidates: int = 1,
            eval_noise: DocNoise | None = None) -> Comparison:
    """A vs B from per-seed values joined by seed (same order), plus the per-document noise if known.

    Two or more seeds: the verdict uses the t-interval of the per-seed differences (training seeds and
    evaluation). One seed with per-document values: the paired interval (evaluation noise only).
    """
    diffs = [x - y for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    mean, _, seed_low, seed_high = summary(diffs, candidates)
    eval_low = eval_high = math.nan
    if eval_noise is not None and not math.isnan(eval_noise.se):
        half = quantile(max(eval_noise.docs - 1, 1), candidates) * eval_noise.se
        eval_low, eval_high = eval_noise.effect - half, eval_noise.effect + half
        if math.isnan(mean):
            mean = eval_noise.effect
    seeds = len(diffs)
    if math.isnan(mean):
        return Comparison(math.nan, math.nan, math.nan, 0, "not tested", "", higher_is_better=higher_is_better)
    if seeds >= 2:
        low, high, noise = seed_low, seed_high, f"training seeds + evaluation ({seeds} seeds)"
    elif not math.isnan(eval_low):
        low, high, noise = eval_low, eval_high, f"evaluation noise only ({eval_noise.docs} documents, 1 seed)"
    else:
        low, high, noise = math.nan, math.nan, "none (1 seed, no per-document values)"
    return Comparison(mean, low, high, seeds, judge(mean, low, high, higher_is_better), noise, eval_low, eval_high,
                      seed_low, seed_high, candidates, higher_is_better)
