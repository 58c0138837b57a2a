"""The claims' decision rules: an interval (or a bootstrap summary) → reproduced / not reproduced / inconclusive,
one function per kind of claim, vectorized over studies so the null-rate simulations call exactly these.

Outcomes: *reproduced* (the interval supports the claim), *not reproduced* (a significant finding against it),
*inconclusive* (anything else: a null is never "not reproduced"), *unconfirmed* (no interval), *not tested*
(no data), and ``AT_CHANCE`` for score claims whose tasks are not above chance. Scalars in, str out; arrays
in, arrays of str out.

Example:
    >>> sign(0.01, 0.03), sign(-0.03, -0.01), sign(-0.01, 0.01), sign(float("nan"), float("nan"))
    ('reproduced', 'not reproduced', 'inconclusive', 'unconfirmed')
    >>> at_least(-0.004, 0.002, margin=0.005), no_gain(-0.01, 0.004, margin=0.005)
    ('reproduced', 'reproduced')
"""

from __future__ import annotations

import numpy as np

AT_CHANCE = "at chance (no verdict)"
SURE = 0.975  # "surely" for a bootstrap share: the one-sided 97.5% matching the two-sided 95% intervals


def _out(value):
    return str(value) if np.ndim(value) == 0 else value


def _signed(low, high, higher_is_better: bool):
    """(worst, best) of the interval in the claimed direction (positive: the claim's side)."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    return (low, high) if higher_is_better else (-high, -low)


def sign(low, high, higher_is_better: bool = True):
    """A sign claim: reproduced when the interval lies on the claimed side of 0, not reproduced when it lies on
    the other side, inconclusive otherwise; unconfirmed without an interval."""
    worst, best = _signed(low, high, higher_is_better)
    return _out(np.select([np.isnan(worst), worst > 0, best < 0], ["unconfirmed", "reproduced", "not reproduced"],
                          "inconclusive"))


def at_least(low, high, higher_is_better: bool = True, margin: float = 0.0):
    """"A ≥ B": reproduced when the interval rules out A being worse than B by more than ``margin``, not
    reproduced when A is worse beyond the noise (the interval below 0), inconclusive otherwise."""
    worst, best = _signed(low, high, higher_is_better)
    return _out(np.select([np.isnan(worst), worst > -margin, best < 0], ["unconfirmed", "reproduced", "not reproduced"],
                          "inconclusive"))


def no_gain(low, high, higher_is_better: bool = True, margin: float = 0.0):
    """"A gains nothing over B": not reproduced when the gain is beyond the noise (the interval above 0),
    reproduced when the whole interval of the gain stays below ``margin``, inconclusive otherwise."""
    worst, best = _signed(low, high, higher_is_better)
    return _out(np.select([np.isnan(worst), worst > 0, best < margin], ["unconfirmed", "not reproduced", "reproduced"],
                          "inconclusive"))


def all_parts(outcomes):
    """A claim of several parts: reproduced only when every part is; one part significantly the other way
    refutes it; else inconclusive (or at chance / not tested / unconfirmed where a part is).

    >>> all_parts(["reproduced", "inconclusive"]), all_parts(["reproduced", "not reproduced"])
    ('inconclusive', 'not reproduced')
    """
    parts = np.stack(np.broadcast_arrays(*[np.asarray(o, dtype=object) for o in outcomes]))
    conditions = [(parts == AT_CHANCE).any(0), (parts == "not reproduced").any(0), (parts == "reproduced").all(0),
                  (parts == "not tested").any(0), (parts == "unconfirmed").any(0)]
    return _out(np.select(conditions, [AT_CHANCE, "not reproduced", "reproduced", "not tested", "unconfirmed"],
                          "inconclusive"))


def noise_scale(low, high, inside, varies, cut: float):
    """"One noise scale governs the merge gain and it peaks inside the grid", from the bootstrap interval
    [low, high] of the best scale's adjusted R², the share of resamples whose peak is inside the grid and
    whether the gains surely vary between grid points (``varies``: analysis.probe.varies_between_points):

    - reproduced: R² surely ≥ ``cut`` and the peak inside in ≥ 97.5% of resamples;
    - not reproduced (a finding against the claim): R² surely ≥ ``cut`` with the peak outside in ≥ 97.5%
      (one scale governs it, monotonically), or the gains surely vary yet R² is surely below ``cut`` (no
      single scale governs them);
    - inconclusive otherwise, a null included (gains that do not vary beyond the noise explain nothing).

    >>> noise_scale(0.85, 0.95, 1.0, True, 0.8), noise_scale(0.1, 0.4, 0.5, False, 0.8)
    ('reproduced', 'inconclusive')
    >>> noise_scale(0.1, 0.4, 0.5, True, 0.8), noise_scale(0.85, 0.95, 0.0, True, 0.8)
    ('not reproduced', 'not reproduced')
    """
    low, high, inside = (np.asarray(v, dtype=float) for v in (low, high, inside))
    collapses = low >= cut
    against = (collapses & (inside <= 1 - SURE)) | ((high < cut) & np.asarray(varies, dtype=bool))
    return _out(np.select([np.isnan(low), collapses & (inside >= SURE), against],
                          ["inconclusive", "reproduced", "not reproduced"], "inconclusive"))
