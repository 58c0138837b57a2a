"""Merge weights <-> emulated learning-rate multipliers (WSM, arXiv 2507.17634, Theorem 3.1).

Checkpoints of a constant-LR run, oldest to newest, ``θ_0 … θ_k`` (N = k + 1). A merge
``Σ c_j θ_j`` equals training from ``θ_0`` with LR multiplier ``w_i = Σ_{j≥i} c_j`` on segment i
(the updates between checkpoints i-1 and i). So a decay curve f on [0, 1] maps onto merge
weights by sampling ``w_i = f(i/N)`` (the paper's convention, Figure 2) and inverting:
``c_k = w_k``, ``c_j = w_j − w_{j+1}``, ``c_0 = 1 − w_1``.

Everything here is pure and works on plain floats (or ``fractions.Fraction`` for exact checks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real

CONVENTION = "paper: w_i = f(i/N) for i = 1..N-1, weights by Theorem 3.1 (oldest -> newest)"

DECAY_CURVES: dict[str, Callable[[float], float]] = {
    "linear": lambda t: 1.0 - t,
    "cosine": lambda t: 0.5 * (1.0 + math.cos(math.pi * t)),
    "1-sqrt": lambda t: 1.0 - math.sqrt(t),
    "ema": lambda t: 1.0 - 0.1 ** (1.0 - t),
}
"""Decay curves f(t), t in [0, 1]; each maps to merge weights through the theorem."""

ALIASES = {"mean": "linear", "sma": "linear", "uniform": "linear"}
"""A uniform mean (PMA's SMA) is exactly the linear decay."""

PMA_CURVES = ("wma", "ema_alpha")
"""PMA-style averages defined by their weights (Li et al. 2025), not by a decay curve."""

CURVES: tuple[str, ...] = (*DECAY_CURVES, *ALIASES, *PMA_CURVES)


class WeightsError(ValueError):
    """A merge-weight or schedule request that cannot be honoured."""


def canonical_curve(curve: str) -> str:
    """Resolve aliases and reject unknown curve names.

    >>> canonical_curve("mean")
    'linear'
    """
    name = ALIASES.get(curve, curve)
    if name not in DECAY_CURVES and name not in PMA_CURVES:
        raise WeightsError(
            f"Unknown merge curve {curve!r}. Allowed: {', '.join(CURVES)}. "
            "Pick one of these (e.g. merge.curve=1-sqrt), or give explicit merge.weights."
        )
    return name


def merge_weights(
    curve: str, quantity: int, *, min_lr: float = 0.0, alpha: float | None = None
) -> list[float]:
    """Merge weights for ``quantity`` checkpoints, oldest to newest, summing to 1.

    ``min_lr`` (m in [0, 1)) emulates a decay that ends at ``m`` instead of 0:
    ``w(t) = m + (1 − m) f(t)``, which moves weight m onto the newest checkpoint.
    ``alpha`` is the EMA factor of ``ema_alpha`` (PMA's recursion ``M = α θ + (1 − α) M``).

    >>> [round(c, 3) for c in merge_weights("1-sqrt", 4)]
    [0.5, 0.207, 0.159, 0.134]
    >>> merge_weights("mean", 4)
    [0.25, 0.25, 0.25, 0.25]
    """
    _check_quantity(quantity)
    if not 0.0 <= min_lr < 1.0:
        raise WeightsError(
            f"min_lr={min_lr!r} is outside [0, 1): it is the final LR as a fraction of the "
            "constant LR (e.g. merge.min_lr=0.1 for a decay to 10%)."
        )
    name = canonical_curve(curve)
    if name == "wma":
        weights = [(j + 1) / (quantity * (quantity + 1) / 2) for j in range(quantity)]
    elif name == "ema_alpha":
        weights = _ema_alpha_weights(quantity, alpha)
    else:
        f = DECAY_CURVES[name]
        weights = weights_from_multipliers([f(i / quantity) for i in range(1, quantity)])
    if min_lr:
        weights = [(1.0 - min_lr) * c for c in weights]
        weights[-1] += min_lr
    return weights


def explicit_weights(values: Sequence[float], quantity: int) -> list[float]:
    """Validate user-given weights (oldest to newest) and normalise them to sum 1.

    >>> explicit_weights([1, 1, 2], 3)
    [0.25, 0.25, 0.5]
    """
    _check_quantity(quantity)
    if len(values) != quantity:
        raise WeightsError(
            f"Got {len(values)} explicit weights for {quantity} checkpoints: give exactly one "
            "weight per checkpoint, oldest first (e.g. merge.weights=[0.2,0.3,0.5] for N=3)."
        )
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise WeightsError(
            f"Explicit weights must be finite and non-negative, got {list(values)}: negative "
            "weights would emulate a rising (non-monotone) LR, which the merge cannot represent."
        )
    total = sum(values)
    if total <= 0:
        raise WeightsError("Explicit weights sum to 0: at least one weight must be positive.")
    return [v / total for v in values]


def multipliers_from_weights(weights: Sequence[Real]) -> list[Real]:
    """Emulated LR multiplier per segment: ``w_i = Σ_{j≥i} c_j`` for i = 1..N−1.

    Segment i spans the updates between checkpoint i−1 and checkpoint i.

    >>> multipliers_from_weights([0.25, 0.25, 0.25, 0.25])
    [0.75, 0.5, 0.25]
    """
    _check_quantity(len(weights))
    multipliers, tail = [], 0
    for c in reversed(weights[1:]):
        tail = tail + c
        multipliers.append(tail)
    return multipliers[::-1]


def weights_from_multipliers(multipliers: Sequence[Real]) -> list[Real]:
    """Theorem 3.1: merge weights that emulate per-segment multipliers ``1 ≥ w_1 ≥ … ≥ w_k ≥ 0``.

    Returns N = k + 1 weights, oldest to newest. Raises for a non-monotone or out-of-range
    schedule, which would need negative weights.

    >>> weights_from_multipliers([0.75, 0.5, 0.25])
    [0.25, 0.25, 0.25, 0.25]
    """
    w = list(multipliers)
    if any(not 0 <= x <= 1 for x in w):
        raise WeightsError(
            f"LR multipliers {w} leave [0, 1]: a merge can only emulate a schedule between the "
            "constant LR (1) and zero. Rescale the schedule by its peak."
        )
    rises = [i + 1 for i in range(len(w) - 1) if w[i + 1] > w[i]]
    if rises:
        raise WeightsError(
            f"LR multipliers {w} rise at segment {rises[0] + 1}: only non-increasing schedules "
            "map to non-negative merge weights (restarts are not representable). Use a "
            "monotone decay."
        )
    if not w:
        return [1]
    return [1 - w[0], *(w[j] - w[j + 1] for j in range(len(w) - 1)), w[-1]]


def _ema_alpha_weights(quantity: int, alpha: float | None) -> list[float]:
    if alpha is None or not 0.0 < alpha <= 1.0:
        raise WeightsError(
            f"Curve 'ema_alpha' needs an EMA factor alpha in (0, 1], got {alpha!r}: "
            "set it, e.g. merge.alpha=0.2."
        )
    keep = 1.0 - alpha
    return [keep ** (quantity - 1)] + [alpha * keep ** (quantity - 1 - j) for j in range(1, quantity)]


def _check_quantity(quantity: int) -> None:
    if not isinstance(quantity, int) or quantity < 1:
        raise WeightsError(
            f"Merge quantity N={quantity!r} must be an integer ≥ 1 (N = 1 means the raw "
            "newest checkpoint)."
        )
