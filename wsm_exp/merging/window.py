"""Window math, pure: which saved steps a merge of N checkpoints Δ steps apart (D = N·Δ) uses.

Errors speak of what the caller gave (N, Δ, D, the end step) and say what would work; a value
derived from the others (Δ = D/N) is named as derived.

Example:
    >>> window_steps([0, 10, 20, 30, 40], quantity=2, duration=40)
    ([20, 40], 2, 20)
    >>> window_steps([0, 10, 20, 30, 40], quantity=4, duration=60)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    wsm_exp.merging.window.WindowError: D=60 with N=4 gives Δ = D/N = 15 steps, not a multiple of the saved spacing...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce


class WindowError(ValueError):
    """A window that the saved steps cannot provide, with what would work instead."""


def spacing(steps: Sequence[int]) -> int:
    """Greatest common spacing of the saved steps (the finest usable interval).

    >>> spacing([0, 10, 30])
    10
    """
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    return reduce(math.gcd, gaps) if gaps else 1


def window_steps(steps: Sequence[int], *, end: int | None = None, quantity: int | None = None,
                 interval: int | None = None, duration: int | None = None) -> tuple[list[int], int, int]:
    """(the window's steps oldest first, N, Δ) for N and/or Δ, or D with one of them, ending at ``end``."""
    steps = sorted(steps)
    end = steps[-1] if end is None else int(end)
    if end not in steps:
        raise WindowError(f"No checkpoint at end step {end}. Available steps: {fmt_steps(steps)}.")
    n, delta = resolve(quantity, interval, duration, spacing(steps))
    have = set(steps)
    wanted = [end - (n - 1 - i) * delta for i in range(n)]
    missing = [s for s in wanted if s not in have]
    if missing:
        fits = 0
        while end - fits * delta in have:
            fits += 1
        raise WindowError(
            f"The window N={n}, Δ={delta} ending at step {end} needs steps {fmt_steps(wanted)}, but "
            f"{fmt_steps(missing)} are not in the series. Largest N at Δ={delta} ending at {end} is {fits}"
            f" (D={fits * delta}). Available steps: {fmt_steps(steps)}."
        )
    return wanted, n, delta


def resolve(quantity: int | None, interval: int | None, duration: int | None, saved: int) -> tuple[int, int]:
    """(N, Δ) from what was given; ``saved`` is the saved spacing (Δ's default and granularity)."""
    for name, value in (("quantity", quantity), ("interval", interval), ("duration", duration)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise WindowError(f"{name}={value!r} must be a positive integer (steps or checkpoints).")
    if interval is not None and quantity != 1 and interval % saved:
        raise WindowError(f"Interval Δ={interval} is not a multiple of the saved spacing {saved}; "
                          f"use one of {[saved * k for k in range(1, 5)]}…")
    if duration is None:
        if quantity is None:
            raise WindowError("Give the merge quantity N, or a duration D with an interval Δ.")
        return quantity, interval or saved
    if quantity is not None and interval is not None:
        if quantity * interval != duration:
            raise WindowError(f"D={duration} ≠ N·Δ = {quantity}·{interval}: give two of the three.")
        return quantity, interval
    if quantity is not None:
        unit = quantity * saved
        if duration % unit:
            derived = (f"is not a multiple of N={quantity}, so Δ = D/N is not a whole number of steps"
                       if duration % quantity else
                       f"with N={quantity} gives Δ = D/N = {duration // quantity} steps, not a multiple of the saved "
                       f"spacing {saved}")
            raise WindowError(f"D={duration} {derived}: with N={quantity}, D must be a multiple of N·{saved} = {unit} "
                              f"(e.g. D={unit * max(1, round(duration / unit))}), or change N.")
        return quantity, duration // quantity
    delta = interval or saved
    if duration % delta:
        what = f"Δ={delta}" if interval else f"the saved spacing {saved} (the default Δ)"
        raise WindowError(f"D={duration} is not a multiple of {what}: N = D/Δ must be whole "
                          f"(e.g. D={delta * max(1, duration // delta)}).")
    return duration // delta, delta


def fmt_steps(steps: Sequence[int]) -> str:
    """Steps for a message: all of them, or the first and last five."""
    steps = list(steps)
    if len(steps) <= 12:
        return str(steps)
    return f"[{', '.join(map(str, steps[:5]))}, …, {', '.join(map(str, steps[-5:]))}]"
