"""Factor importance: how much of the score variation do duration D, interval Δ and quantity N explain?

Method: over the merge variants with N ≥ 2 (each seed a row; N = 1 is the raw checkpoint, whose
nominal D = Δ means nothing), regress the score on log2 of one factor at a
time (ordinary least squares with an intercept) and report R². Because log D = log N + log Δ the
three are collinear, so they are compared one at a time rather than in one regression; the paper's
claim "duration matters most" reads as R²(D) > R²(Δ) and R²(D) > R²(N).

Example:
    >>> import pandas as pd
    >>> s = pd.DataFrame({"kind": ["wsm"] * 4, "quantity": [2, 4, 2, 4], "interval_steps": [4, 4, 8, 8],
    ...                   "duration_steps": [8, 16, 16, 32], "overall": [1.0, 2.0, 2.0, 3.0]})
    >>> float(factor_importance(s).set_index("factor").loc["duration D", "r2"])
    1.0
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

FACTORS = {"duration D": "duration_steps", "interval Δ": "interval_steps", "quantity N": "quantity"}


def r_squared(x: np.ndarray, y: np.ndarray):
    """R² of y ~ a + b·x over the last axis (leading axes of ``y`` are studies), rounded to 4 decimals as the
    report shows it; NaN when x or y is constant or there are fewer than 3 points.

    >>> float(r_squared(np.array([0.0, 1, 2, 3]), np.array([0.0, 2, 4, 6])))
    1.0
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return np.full(y.shape[:-1], math.nan) if y.ndim > 1 else math.nan
    xc, yc = x - x.mean(), y - y.mean(-1, keepdims=True)
    syy = (yc**2).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(np.ptp(y, axis=-1) > 0, (yc @ xc) ** 2 / ((xc @ xc) * syy), math.nan)
    r2 = np.round(r2, 4)
    return float(r2) if r2.ndim == 0 else r2


def duration_contrast(pooled, per_seed) -> tuple[np.ndarray, np.ndarray]:
    """(R²(D) − R²(rival) per seed, rival index) for "duration matters most": the rival is whichever of Δ and N
    has the larger pooled R² (the strongest rival, which works against the claim). Columns follow ``FACTORS``.

    >>> diff, rival = duration_contrast(np.array([0.9, 0.2, 0.5]), np.array([[0.8, 0.1, 0.6], [0.9, 0.3, 0.4]]))
    >>> [round(float(d), 2) for d in diff], int(rival)
    ([0.2, 0.5], 2)
    """
    pooled, per_seed = np.asarray(pooled, dtype=float), np.asarray(per_seed, dtype=float)
    rivals = pooled[..., 1:]
    rival = 1 + np.argmax(np.where(np.isnan(rivals), -np.inf, rivals), axis=-1)
    chosen = np.take_along_axis(per_seed, np.broadcast_to(rival[..., None, None], per_seed.shape[:-1] + (1,)), -1)
    return per_seed[..., 0] - chosen[..., 0], rival


def factor_importance(scores: pd.DataFrame, metric: str = "overall") -> pd.DataFrame:
    """R² of ``metric`` on log2 of each factor, over merge variants with N ≥ 2."""
    merges = scores[(scores["kind"] == "wsm") & (scores["quantity"] >= 2) & scores[metric].notna()]
    y = merges[metric].to_numpy(dtype=float)
    rows = []
    for name, column in FACTORS.items():
        x = np.log2(merges[column].to_numpy(dtype=float))
        rows.append({"factor": name, "r2": r_squared(x, y), "variants": len(merges)})
    return pd.DataFrame(rows)
