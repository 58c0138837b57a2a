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


def probes_merges(models: pd.DataFrame, points: pd.DataFrame) -> int:
    """How many merges each probe point's "best merge" was picked from (the K of the long-decay claim)."""
    probes = models[models["probe"] & (models["kind"] == "wsm")] if not models.empty else models
    if probes.empty or points.empty:
        return 1
    same = probes[probes["probe_steps"].isin(points["steps"]) & probes["seed"].isin(points["seed"])]
    return int(same.groupby(["probe_steps", "seed"]).size().max()) if not same.empty else 1




def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
    """(adjusted R², peak inside the grid) of one quadratic in x."""
    r2, (c2, c1, _) = quadratic_r2(x, y)
    levels = len(np.unique(x))
    parameters = min(2, levels - 1)
    if math.isnan(r2) or len(y) <= parameters + 1:
        return math.nan, False
    vertex = -c1 / (2 * c2) if c2 else math.nan
    inside = bool(c2 < 0 and x.min() < vertex < x.max()) if not math.isnan(vertex) else False
    return 1 - (1 - r2) * (len(y) - 1) / (len(y) - parameters - 1), inside


def best_scale_interval(gains: pd.DataFrame, target: str = "merge_gain", draws: int = 400, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(low, high, share with the peak inside) of the best scale's adjusted R² over a seeded bootstrap of the
    gain rows (points × seeds), the best scale re-picked in every resample."""
    xs = {name: log_scale(np.array([scale(p) for _, p in gains.iterrows()], dtype=float))
          for name, scale in SCALES.items()}
    y = gains[target].to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    values, inside = [], []
    for _ in range(draws):
        pick = rng.integers(0, len(y), len(y))
        fits = [_fit(x[pick], y[pick]) for x in xs.values()]
        fits = [f for f in fits if not math.isnan(f[0])]
        if fits:
            top = max(fits, key=lambda f: f[0])
            values.append(top[0])
            inside.append(top[1])
    if not values:
        return math.nan, math.nan, math.nan
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)), float(np.mean(inside))
