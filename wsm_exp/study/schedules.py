"""Learning-rate schedules of the embedded study, as pure functions of the global step.

The LR of update ``u`` inside a decay window of length L uses ``t = (u + 1) / L``, so the last
update of a decay trains at the minimum LR.

Example:
    >>> decay_factor("1-sqrt", 0.25)
    0.5
    >>> warmup_constant(0, peak=1.0, warmup=4), warmup_constant(9, peak=1.0, warmup=4)
    (0.25, 1.0)
"""

from __future__ import annotations

from wsm_exp.merging.weights import DECAY_CURVES

SHAPES = ("1-sqrt", "linear", "cosine")


def decay_factor(shape: str, t: float) -> float:
    """f(t) for t in [0, 1]: 1 at the start of the decay, 0 at its end.

    The same f the merge weights sample (``wsm_exp.merging.weights.DECAY_CURVES``), so a trained
    decay and the merge that emulates it share one curve by construction.
    """
    if shape not in SHAPES:
        raise ValueError(f"Unknown decay shape {shape!r}; allowed: {', '.join(SHAPES)} (train.decay_shape).")
    return DECAY_CURVES[shape](min(max(t, 0.0), 1.0))


def warmup_constant(step: int, *, peak: float, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then constant (the WSM schedule)."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    return peak


def wsd(step: int, *, peak: float, warmup: int, decay_start: int, decay_steps: int, shape: str = "1-sqrt",
        min_ratio: float = 0.0) -> float:
    """Warmup-stable-decay: constant until ``decay_start``, then ``m + (1 − m) f(t)`` down to ``min_ratio``.

    >>> wsd(7, peak=2.0, warmup=0, decay_start=4, decay_steps=4, shape="linear")
    0.0
    >>> wsd(5, peak=2.0, warmup=0, decay_start=4, decay_steps=4, shape="linear", min_ratio=0.5)
    1.5
    """
    if step < decay_start:
        return warmup_constant(step, peak=peak, warmup=warmup)
    t = (step - decay_start + 1) / decay_steps
    return peak * (min_ratio + (1.0 - min_ratio) * decay_factor(shape, t))
