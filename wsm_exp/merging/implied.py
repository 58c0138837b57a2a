"""The learning-rate decay a set of merge weights emulates: Theorem 3.1 run backwards, with a monotone fix.

Merge weights ``c_0 … c_k`` (oldest → newest, summing to 1) emulate training from the oldest
checkpoint with LR multiplier ``w_i = Σ_{j≥i} c_j`` on segment i (WSM, arXiv 2507.17634). Weights
that are all ≥ 0 give a non-increasing schedule in [0, 1], a decay; a negative weight (extrapolation,
unnormalised or unconstrained fits) gives a schedule that rises or leaves [0, 1], which no decay
reaches. ``implied_schedule`` flags that case and gives the closest decay: the least-squares
projection of the multipliers onto ``1 ≥ w_1 ≥ … ≥ w_k ≥ 0`` (isotonic regression, then clipping),
and the weights of that decay. Pure Python, no I/O.

Example:
    >>> s = implied_schedule([0.5, 0.25, 0.25])
    >>> s.multipliers, s.monotone
    ([0.5, 0.25], True)
    >>> bad = implied_schedule([0.5, -0.25, 0.75])
    >>> bad.monotone, bad.closest, bad.closest_weights
    (False, [0.625, 0.625], [0.375, 0.0, 0.625])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from wsm_exp.merging.weights import WeightsError, weights_from_multipliers

SUM_TOLERANCE = 1e-6  # weights read back from JSON or a fit sum to 1 up to rounding, not exactly


@dataclass(frozen=True)
class ImpliedSchedule:
    """Per-segment LR multipliers a merge emulates, whether they form a decay, and the closest decay."""

    weights: list[float]  # the merge weights, oldest first
    multipliers: list[float]  # w_i, i = 1..N-1: LR multiplier on segment i (between checkpoints i-1 and i)
    monotone: bool  # 1 ≥ w_1 ≥ … ≥ w_k ≥ 0, i.e. every weight ≥ 0
    closest: list[float]  # the nearest such decay (least squares); the multipliers themselves when monotone
    closest_weights: list[float]  # merge weights of ``closest`` (Theorem 3.1)

    def at(self, t: float) -> float:
        """The staircase LR multiplier at position t in [0, 1] of the emulated decay (D = N·Δ long).

        As in the paper's Figure 2, segment i (from checkpoint i-1 to i) runs over [i/N, (i+1)/N) with
        multiplier w_i = f(i/N): the oldest checkpoint sits at t = 1/N, the newest at t = 1, and
        [0, 1/N) is the constant-LR stretch before the oldest.

        >>> implied_schedule([0.25, 0.25, 0.25, 0.25]).at(0.6)
        0.5
        """
        n = len(self.weights)
        segment = min(max(math.floor(t * n), 0), n - 1)
        return 1.0 if segment == 0 else self.multipliers[segment - 1]


def implied_schedule(weights: Sequence[float]) -> ImpliedSchedule:
    """The LR schedule merge ``weights`` (oldest first, summing to 1) emulate, and its closest decay.

    >>> implied_schedule([0.1] * 10).multipliers[:3]
    [0.9, 0.8, 0.7000000000000001]
    """
    c = [float(x) for x in weights]
    if not c or any(not math.isfinite(x) for x in c):
        raise WeightsError(f"Merge weights {list(weights)} must be a non-empty list of finite numbers, oldest first.")
    total = math.fsum(c)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise WeightsError(
            f"Merge weights {c} sum to {total:.6g}, not 1: only weights summing to 1 emulate training from the "
            "oldest checkpoint (Theorem 3.1). Normalise them first (divide by their sum)."
        )
    multipliers = [math.fsum(c[i:]) for i in range(1, len(c))]
    monotone = all(x >= 0 for x in c)
    if monotone:
        closest = list(multipliers)
        closest_weights = list(c)
    else:
        closest = [min(max(x, 0.0), 1.0) for x in isotonic(multipliers, increasing=False)]
        closest_weights = [float(x) for x in weights_from_multipliers(closest)]
    return ImpliedSchedule(c, multipliers, monotone, closest, closest_weights)


def isotonic(values: Sequence[float], *, increasing: bool = True) -> list[float]:
    """Least-squares monotone fit (pool adjacent violators): the closest non-decreasing (or non-increasing) list.

    >>> isotonic([1.0, 3.0, 2.0])
    [1.0, 2.5, 2.5]
    >>> isotonic([1.0, 3.0, 2.0], increasing=False)
    [2.0, 2.0, 2.0]
    """
    sign = 1.0 if increasing else -1.0
    blocks: list[list[float]] = []  # [mean, count], means non-decreasing (in the signed values)
    for value in values:
        blocks.append([sign * float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, count = blocks.pop()
            prev = blocks[-1]
            prev[0] = (prev[0] * prev[1] + mean * count) / (prev[1] + count)
            prev[1] += count
    return [sign * mean for mean, count in blocks for _ in range(int(count))]
