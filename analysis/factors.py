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


def r_squared(x: np.ndarray, y: np.ndarray) -> float:
    """R² of y ~ a + b·x (NaN when x or y is constant)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    design = np.column_stack([np.ones_like(x), x])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    return float(1.0 - residual.var() / y.var())


def factor_importance(scores: pd.DataFrame, metric: str = "overall") -> pd.DataFrame:
    """R² of ``metric`` on log2 of each factor, over merge variants with N ≥ 2."""
    merges = scores[(scores["kind"] == "wsm") & (scores["quantity"] >= 2) & scores[metric].notna()]
    y = merges[metric].to_numpy(dtype=float)
    rows = []
    for name, column in FACTORS.items():
        x = np.log2(merges[column].to_numpy(dtype=float))
        rows.append({"factor": name, "r2": round(r_squared(x, y), 4), "variants": len(merges)})
    return pd.DataFrame(rows)
