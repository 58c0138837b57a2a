"""Clustered standard errors of a weighted mean over documents, and the smallest difference a test detects
from one (pure numpy and scipy.special): the one estimator and power rule behind the report's intervals
(analysis.stats, analysis.selection) and the staged screen's thresholds (wsm_exp.sweep.stage.screen).

Pieces cut from one source text move together, so their residuals are summed per text before squaring
(a ratio estimator with the G/(G−1) small-sample factor); every document is its own cluster where none is
declared. It lives below the runner and the report so both can use it.

Example (leading axes are separate studies):
    >>> cluster_influence([[1.0, 0.0], [2.0, 2.0]])[0].tolist()
    [0.5, 2.0]
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtri  # the standard normal's quantile function (scipy.stats.norm.ppf's own)


def cluster_influence(diff, weights=None, clusters=None):
    """(effect, per-cluster influence) of the weighted mean difference Σ d·w / Σ w over the last axis
    (documents; leading axes are studies): the effect's squared standard error is the sum of squared
    influences (ratio estimator, clustered, with G/(G−1)); each document is its own cluster when ``clusters``
    is None.

    >>> effect, u = cluster_influence([1.0, 1.0, 0.0, 1.0])
    >>> float(effect), round(float(np.sqrt((u ** 2).sum())), 4)
    (0.75, 0.25)
    >>> round(float(np.sqrt((cluster_influence([1.0, 1.0, 0.0, 1.0], clusters=[0, 0, 1, 1])[1] ** 2).sum())), 4)
    0.25
    """
    d = np.asarray(diff, dtype=float)
    w = np.ones(d.shape[-1]) if weights is None else np.asarray(weights, dtype=float)
    total = w.sum(-1, keepdims=True)
    effect = (d * w).sum(-1) / total[..., 0]
    residual = (d - effect[..., None]) * w / total
    if clusters is None:
        sums = residual
    else:
        _, index = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
        sums = residual @ (index[:, None] == np.arange(index.max() + 1)).astype(float)
    groups = sums.shape[-1]
    influence = sums * math.sqrt(groups / (groups - 1)) if groups > 1 else np.full(sums.shape, math.nan)
    return (float(effect) if effect.ndim == 0 else effect), influence


def detectable(se, critical, power: float = 0.8):
    """Smallest true difference this test finds with probability ``power``: (critical + z_power)·se.

    >>> round(detectable(0.01, 1.96), 4)
    0.028
    """
    value = (np.asarray(critical, dtype=float) + float(ndtri(power))) * np.asarray(se, dtype=float)
    return float(value) if value.ndim == 0 else value
