"""Beyond the convex merge: extrapolation past the merge, control orders, unnormalised weights.

Pure math on plain numbers (``fractions.Fraction`` in, exact ``Fraction`` out), applied to a
window's weights (oldest to newest) after ``wsm_exp.merging.weights`` derived them:

* ``extrapolate(w, α)``: ``θ_merge + α·(θ_merge − θ_anchor)`` as ONE set of coefficients,
  ``(1 + α)·w − α·e_anchor`` (ExPO, Zheng et al. 2024, arXiv 2404.16792, applied to a
  pre-training merge; the step Extrapolation Merging, arXiv 2503.04834, builds on). They still
  sum to 1, so the merger stays one weighted pass; α > 0 goes past the merge away from the
  anchor (by default the window's newest checkpoint), α < 0 back toward it.
* ``reorder(w, "reverse" | "scramble")``: the ablation controls Megatron-LM's weighted-merge tool
  offers. ``reverse`` gives the newest checkpoint the oldest's weight and so on; ``scramble`` a
  seeded permutation. Same multiset of weights, so same "amount of averaging", other schedule.
* ``unnormalized_weights``: user weights taken as given (negative, any sum), only on request.

Example:
    >>> from fractions import Fraction as F
    >>> extrapolate([F(1, 4)] * 4, F(1, 2))
    [Fraction(3, 8), Fraction(3, 8), Fraction(3, 8), Fraction(-1, 8)]
    >>> reorder([1, 2, 3], "reverse")
    [3, 2, 1]
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from numbers import Real

from wsm_exp.merging.weights import WeightsError

ORDERS = ("natural", "reverse", "scramble")
"""How a curve's weights are laid on the window: as derived, newest↔oldest, or a seeded permutation."""


def extrapolate(weights: Sequence[Real], alpha: Real, anchor: int = -1) -> list[Real]:
    """Coefficients of ``θ_merge + α·(θ_merge − θ_anchor)``: ``(1 + α)·w − α·e_anchor``.

    ``anchor`` indexes the window (oldest = 0, default −1 = newest). Exact on Fractions; α = 0
    returns the weights unchanged.

    >>> extrapolate([0.5, 0.5], -1.0)       # α = −1 is the anchor itself
    [0.0, 1.0]
    """
    if not isinstance(alpha, Real) or not math.isfinite(alpha):
        raise WeightsError(f"Extrapolation factor α={alpha!r} must be a finite number (e.g. merge.extrapolate=0.5).")
    quantity = len(weights)
    if not -quantity <= anchor < quantity:
        raise WeightsError(f"Anchor index {anchor} is outside the window of {quantity} checkpoints; name a "
                           "checkpoint inside the window (merge.anchor=<step>, CLI --anchor <step>).")
    if alpha == 0:
        return list(weights)
    index = anchor % quantity
    return [(1 + alpha) * w - (alpha if j == index else 0) for j, w in enumerate(weights)]


def reorder(weights: Sequence[Real], order: str, seed: int = 0) -> list[Real]:
    """The weights laid on the window in ``order`` (see ORDERS); ``scramble`` is seeded.

    >>> reorder([1, 2, 3, 4], "scramble", seed=0) == reorder([1, 2, 3, 4], "scramble", seed=0)
    True
    """
    if order == "natural":
        return list(weights)
    if order == "reverse":
        return list(weights)[::-1]
    if order == "scramble":
        positions = list(range(len(weights)))
        random.Random(seed).shuffle(positions)
        return [weights[p] for p in positions]
    raise WeightsError(f"Unknown merge order {order!r}; allowed: {', '.join(ORDERS)} (merge.order=reverse, "
                       "CLI --order reverse).")


def unnormalized_weights(values: Sequence[float], quantity: int) -> list[float]:
    """User weights as given, oldest first: any sign, any sum (finite, one per checkpoint).

    >>> unnormalized_weights([-0.5, 1.0, 1.0], 3)
    [-0.5, 1.0, 1.0]
    """
    if len(values) != quantity:
        raise WeightsError(f"Got {len(values)} explicit weights for {quantity} checkpoints: give exactly one weight "
                           "per checkpoint, oldest first.")
    if not all(math.isfinite(v) for v in values):
        raise WeightsError(f"Explicit weights must be finite, got {list(values)}.")
    return [float(v) for v in values]


def is_convex(weights: Sequence[Real], tolerance: float = 1e-9) -> bool:
    """True when the weights are non-negative and sum to 1 (a plain average of the window).

    >>> is_convex([0.25, 0.75]), is_convex([-0.125, 1.125]), is_convex([0.5, 0.6])
    (True, False, False)
    """
    return all(w >= -tolerance for w in weights) and abs(sum(weights) - 1) <= tolerance


def transform(weights: Sequence[Real], *, order: str = "natural", seed: int = 0, alpha: Real = 0,
              anchor: int = -1) -> list[Real]:
    """Reorder, then extrapolate: the one place the runner and the CLI apply both.

    >>> transform([0.75, 0.25], order="reverse", alpha=1)
    [0.5, 0.5]
    """
    return extrapolate(reorder(weights, order, seed), alpha, anchor)


def curve_label(curve: str, *, order: str = "natural", seed: int = 0, alpha: float = 0.0,
                anchor_step: int | None = None) -> str:
    """The curve as results and variant names show it, with its order and extrapolation.

    >>> curve_label("1-sqrt", order="reverse"), curve_label("mean", alpha=-0.25)
    ('1-sqrt-reverse', 'mean-ex-0.25')
    >>> curve_label("1-sqrt", order="scramble", seed=3, alpha=0.5, anchor_step=96)
    '1-sqrt-scramble3-ex+0.5@96'
    """
    label = curve
    if order == "scramble":
        label += f"-scramble{seed}"
    elif order != "natural":
        label += f"-{order}"
    if alpha:
        label += f"-ex{alpha:+g}"
        if anchor_step is not None:
            label += f"@{anchor_step}"
    return label
