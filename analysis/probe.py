"""The noise-scale probe's pure math: per-point gains, quadratic fits on each candidate scale, and a seeded
bootstrap interval for the best scale's adjusted R² (the scale re-picked in every resample, so the pick of
the best of the candidate scales is paid for).

Example:
    >>> r2, coef = quadratic_r2(np.array([0., 1, 2, 3]), np.array([0., 1, 4, 9]))
    >>> round(r2, 6)
    1.0
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

LOSS = "heldout_bpb"

SCALES = {"η": lambda p: p["lr"], "B": lambda p: p["batch_size"], "λ": lambda p: p["weight_decay"],
          "η/B": lambda p: p["lr"] / p["batch_size"], "η·λ": lambda p: p["lr"] * p["weight_decay"]}
"""Candidate noise scales: the three knobs and two combinations (SGD noise η/B; AdamW's timescale 1/(ηλ))."""


def probe_gains(models: pd.DataFrame) -> pd.DataFrame:
    """Per probe point and seed: raw, best merge and WSD end (held-out bpb), merge gain and decay gain."""
    probes = models[models["probe"]] if not models.empty else models
    if probes.empty:
        return pd.DataFrame()
    keys = ["probe_lr", "probe_batch_size", "probe_weight_decay", "probe_steps", "seed"]
    rows = []
    for key, group in probes.groupby(keys):
        last = group["end_step"].max()
        raw = group[(group["kind"] == "raw") & (group["end_step"] == last)]
        merges = group[group["kind"] == "wsm"]
        decay = group[group["kind"] == "wsd"]
        if raw.empty or merges.empty or decay.empty:
            continue
        best_merge = merges[LOSS].min()
        rows.append({**dict(zip(["lr", "batch_size", "weight_decay", "steps", "seed"], key)),
                     "raw": raw[LOSS].iloc[0], "merge": best_merge, "decay": decay[LOSS].min(),
                     "merge_gain": raw[LOSS].iloc[0] - best_merge, "decay_gain": raw[LOSS].iloc[0] - decay[LOSS].min(),
                     "switch": int(last - key[3])})
    return pd.DataFrame(rows)


def quadratic_r2(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """R² of y ~ a + b·x + c·x² and its coefficients (highest power first); NaN with under 4 points or < 2 levels.

    >>> r2, coef = quadratic_r2(np.array([0., 1, 2, 3]), np.array([0., 1, 4, 9]))
    >>> round(r2, 6), [round(float(c), 6) + 0.0 for c in coef]
    (1.0, [1.0, 0.0, 0.0])
    """
    levels = len(np.unique(x))
    if len(x) < 4 or levels < 2 or np.ptp(y) == 0:
        return math.nan, np.array([math.nan] * 3)
    degree = min(2, levels - 1)
    coef = np.polyfit(x, y, degree)
    residual = y - np.polyval(coef, x)
    coef = np.concatenate([np.zeros(2 - degree), coef])
    return float(1 - residual.var() / y.var()), coef


def log_scale(values: np.ndarray) -> np.ndarray:
    """log10, with zeros (λ = 0) placed half a decade below the smallest positive value."""
    positive = values[values > 0]
    floor = positive.min() / math.sqrt(10) if len(positive) else 1.0
    return np.log10(np.where(values > 0, values, floor))


def scale_fits(gains: pd.DataFrame, target: str) -> pd.DataFrame:
    """For each candidate scale: R² of one quadratic in log10(scale), and where that fit peaks."""
    rows = []
    for name, scale in SCALES.items():
        raw_x = np.array([scale(p) for _, p in gains.iterrows()], dtype=float)
        x, y = log_scale(raw_x), gains[target].to_numpy(dtype=float)
        r2, (c2, c1, _) = quadratic_r2(x, y)
        vertex = -c1 / (2 * c2) if c2 and not math.isnan(c2) else math.nan
        inside = bool(c2 < 0 and x.min() < vertex < x.max()) if not math.isnan(vertex) else False
        levels, parameters = len(np.unique(x)), min(2, len(np.unique(x)) - 1)
        adjusted = 1 - (1 - r2) * (len(y) - 1) / (len(y) - parameters - 1) if len(y) > parameters + 1 else math.nan
        rows.append({"gain": target, "scale": name, "r2": r2, "r2_adjusted": adjusted, "levels": levels,
                     "peak_inside": inside, "peak_at": 10 ** vertex if inside else math.nan})
    return pd.DataFrame(rows)


def _levels(x: np.ndarray) -> np.ndarray:
    """(n, L) indicator of each point's level of ``x``."""
    _, index = np.unique(x, return_inverse=True)
    return (index[:, None] == np.arange(index.max() + 1)).astype(float)


def _solve(inverse: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """inverse (draws, p, p) times rhs (B, draws, p) → (B, draws, p), as p broadcast multiply-adds."""
    return sum(inverse[None, :, :, j] * rhs[..., j:j + 1] for j in range(rhs.shape[-1]))


def bootstrap_best_scale(xs: np.ndarray, y: np.ndarray, draws: int = 400, seed: int = 0,
                         level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, share with the peak inside) of the best scale's adjusted R² over a seeded bootstrap of the
    n points, the best of the F scales re-picked in every resample; vectorized over studies (``y`` (..., n),
    ``xs`` (F, n): each scale's log10 values; the same resamples for every study).

    Each resample is a weighted fit (weights = how often a point was drawn) of one quadratic per scale (a line
    where the resample holds two levels, nothing with fewer, as ``quadratic_r2``); the peak is inside when the
    top scale's quadratic opens downward with its vertex strictly inside the resample's range.

    >>> x = np.linspace(-1, 1, 12)
    >>> low, high, inside = bootstrap_best_scale(np.stack([x, x ** 3]), 1 - x ** 2, draws=50)
    >>> bool(low > 0.99), float(inside)
    (True, 1.0)
    """
    y = np.asarray(y, dtype=float)
    batch, n = y.shape[:-1], y.shape[-1]
    flat = y.reshape(-1, n)
    picks = np.random.default_rng(seed).integers(0, n, (draws, n))
    c = np.stack([np.bincount(row, minlength=n) for row in picks]).astype(float)  # (draws, n)
    total, sy, syy = c.sum(1), flat @ c.T, (flat**2) @ c.T  # (draws,), (B, draws), (B, draws)
    sst = syy - sy**2 / total
    adjusted, inside = [], []
    for x in np.asarray(xs, dtype=float):
        x = x - x.mean()
        s = [c @ x**k for k in range(5)]  # (draws,)
        rhs = np.stack([sy, flat @ (c * x).T, flat @ (c * x**2).T], axis=-1)  # (B, draws, 3)
        present = (c @ _levels(x)) > 0
        levels = present.sum(1)
        values = np.unique(x)
        low_x = np.where(present, values, np.inf).min(1)
        high_x = np.where(present, values, -np.inf).max(1)
        quad = np.stack([np.stack(s[i:i + 3], -1) for i in range(3)], -2)  # (draws, 3, 3)
        lin = quad[:, :2, :2]
        with np.errstate(invalid="ignore", divide="ignore"):
            beta2, beta1 = _solve(np.linalg.pinv(quad), rhs), _solve(np.linalg.pinv(lin), rhs[..., :2])
            ssr2, ssr1 = syy - (beta2 * rhs).sum(-1), syy - (beta1 * rhs[..., :2]).sum(-1)
            degree = np.minimum(2, levels - 1)
            r2 = np.where(degree == 2, 1 - ssr2 / sst, np.where(degree == 1, 1 - ssr1 / sst, np.nan))
            r2 = np.where((sst > 1e-15 * np.maximum(syy, 1e-300)) & (n >= 4), r2, np.nan)
            adjusted.append(np.where(n > degree + 1, 1 - (1 - r2) * (n - 1) / (n - degree - 1), np.nan))
            vertex = -beta2[..., 1] / (2 * beta2[..., 2])
        inside.append((degree == 2) & (beta2[..., 2] < 0) & (low_x < vertex) & (vertex < high_x))
    adjusted, inside = np.stack(adjusted), np.stack(inside)  # (F, B, draws)
    top = np.argmax(np.where(np.isnan(adjusted), -np.inf, adjusted), axis=0)
    best = np.take_along_axis(adjusted, top[None], 0)[0]
    peak = np.take_along_axis(inside, top[None], 0)[0].astype(float)
    peak[np.isnan(best)] = np.nan
    tail = (1 - level) / 2 * 100
    percentile = np.percentile if not np.isnan(best).any() else np.nanpercentile
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = percentile(best, tail, axis=-1), percentile(best, 100 - tail, axis=-1)
        share = np.nanmean(peak, axis=-1)
    return low.reshape(batch), high.reshape(batch), share.reshape(batch)


def best_scale_interval(gains: pd.DataFrame, target: str = "merge_gain", draws: int = 400, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, share with the peak inside) of the best scale's adjusted R² over a seeded bootstrap of the
    gain rows (points × seeds): ``bootstrap_best_scale`` on this table."""
    xs = np.stack([log_scale(np.array([scale(p) for _, p in gains.iterrows()], dtype=float))
                   for scale in SCALES.values()])
    low, high, inside = bootstrap_best_scale(xs, gains[target].to_numpy(dtype=float), draws, seed, level)
    return float(low), float(high), float(inside)


def varies_between_points(gains, level: float = 0.025):
    """Whether the gains surely differ between grid points: one-way analysis of variance of ``gains``
    (..., P points, S seeds) with the seeds as replicates, F-test at ``level`` (False with fewer than two seeds).

    >>> rng = np.random.default_rng(0)
    >>> bool(varies_between_points(np.arange(6.0)[:, None] + rng.normal(0, 0.1, (6, 3))))
    True
    >>> bool(varies_between_points(rng.normal(0, 0.1, (6, 1))))
    False
    """
    from scipy.stats import f

    g = np.asarray(gains, dtype=float)
    points, seeds = g.shape[-2], g.shape[-1]
    if seeds < 2 or points < 2:
        return np.zeros(g.shape[:-2], dtype=bool) if g.ndim > 2 else False
    means = g.mean(-1)
    between = seeds * ((means - means.mean(-1, keepdims=True)) ** 2).sum(-1) / (points - 1)
    within = ((g - means[..., None]) ** 2).sum((-1, -2)) / (points * (seeds - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = f.sf(between / within, points - 1, points * (seeds - 1))
    out = np.asarray(p < level)
    return bool(out) if out.ndim == 0 else out
