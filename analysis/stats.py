"""Seed statistics and verdicts that respect the noise.

A difference counts as reproduced only when its 95% t-interval over seeds excludes zero in the
claimed direction; the opposite sign is "not reproduced"; anything else is "inconclusive". With
a single seed no interval exists, so the verdict is "unconfirmed" (with the observed direction).

Example:
    >>> compare([1.0, 1.2, 0.9], [0.0, 0.1, -0.1]).verdict
    'reproduced'
    >>> compare([0.05], [0.0]).verdict
    'unconfirmed (1 seed; observed: better)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev


def t_quantile(dof: int) -> float:
    """Two-sided 95% Student-t quantile."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def summary(values: list[float]) -> tuple[float, float, float, float]:
    """(mean, std, ci_low, ci_high) of a sample; std and interval are NaN for one value."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return (math.nan,) * 4
    m = mean(values)
    if len(values) < 2:
        return m, math.nan, math.nan, math.nan
    s = stdev(values)
    half = t_quantile(len(values) - 1) * s / math.sqrt(len(values))
    return m, s, m - half, m + half


@dataclass(frozen=True)
class Comparison:
    """A's advantage over B across seeds (higher is better for A)."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    seeds: int
    verdict: str


def compare(a: list[float], b: list[float]) -> Comparison:
    """Paired by seed when the lengths match, else the difference of means with a Welch-like interval."""
    if len(a) == len(b):
        diffs = [x - y for x, y in zip(a, b)]
        m, s, lo, hi = summary(diffs)
        n = len(diffs)
    else:
        ma, sa, _, _ = summary(a)
        mb, sb, _, _ = summary(b)
        m, n = ma - mb, min(len(a), len(b))
        if n < 2:
            s = lo = hi = math.nan
        else:
            s = math.sqrt(sa**2 / len(a) + sb**2 / len(b))
            lo, hi = m - t_quantile(n - 1) * s, m + t_quantile(n - 1) * s
    if math.isnan(m):
        verdict = "not tested"
    elif n < 2 or math.isnan(lo):
        verdict = f"unconfirmed (1 seed; observed: {'better' if m > 0 else 'worse' if m < 0 else 'equal'})"
    elif lo > 0:
        verdict = "reproduced"
    elif hi < 0:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return Comparison(m, s, lo, hi, n, verdict)
