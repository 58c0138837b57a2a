"""The learning-rate decay fitted merge weights imply: a table and ``figures/implied_schedule.png``.

Given one or more sets of merge weights (oldest first, e.g. the fitted weights of several seeds), the table
lists per checkpoint its weight, the LR multiplier of the segment it closes (``wsm_exp.merging.implied``),
the closest decay where the weights are not a decay, and the linear, cosine and 1-sqrt multipliers at the
same point; the figure draws each implied staircase over the smooth reference decays.

Example:
    >>> table = implied_table({"fitted": [0.1, 0.2, 0.3, 0.4]})
    >>> table[["checkpoint", "t", "multiplier", "linear"]].round(3).values.tolist()[:2]
    [[0.0, 0.0, 1.0, 1.0], [1.0, 0.25, 0.9, 0.75]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from wsm_exp.merging.implied import implied_schedule  # noqa: E402
from wsm_exp.merging.weights import DECAY_CURVES  # noqa: E402

REFERENCE = ("linear", "cosine", "1-sqrt")
FIGURE = "implied_schedule.png"


def implied_table(weights: Mapping[str, Sequence[float]], reference: Sequence[str] = REFERENCE) -> pd.DataFrame:
    """One row per (name, checkpoint j): weight c_j; multiplier w_j of the segment checkpoint j closes (1 at
    j = 0), which starts at t = j/N where the paper samples f; whether the weights are a decay; the closest
    decay's multiplier; and each reference curve's f(j/N)."""
    rows = []
    for name, values in weights.items():
        s = implied_schedule(values)
        n = len(s.weights)
        for j, c in enumerate(s.weights):
            row = {"name": name, "checkpoint": j, "t": j / n, "weight": c,
                   "multiplier": 1.0 if j == 0 else s.multipliers[j - 1],
                   "closest": 1.0 if j == 0 else s.closest[j - 1], "monotone": s.monotone}
            rows.append({**row, **{curve: DECAY_CURVES[curve](j / n) for curve in reference}})
    return pd.DataFrame(rows)


def implied_figure(weights: Mapping[str, Sequence[float]], out_dir: str | Path,
                   reference: Sequence[str] = REFERENCE) -> Path:
    """``<out_dir>/implied_schedule.png``: each named weight set's staircase (the closest decay dashed where
    the weights are not one) over the reference decays f(t)."""
    path = Path(out_dir) / FIGURE
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    t = np.linspace(0, 1, 200)
    for curve in reference:
        ax.plot(t, [DECAY_CURVES[curve](x) for x in t], color="gray", alpha=0.6,
                linestyle={"linear": ":", "cosine": "--"}.get(curve, "-."), label=f"{curve} decay")
    for index, (name, values) in enumerate(weights.items()):
        s = implied_schedule(values)
        n = len(s.weights)
        color = f"C{index}"
        ax.step(np.arange(n + 1) / n, [1.0, *s.multipliers, s.multipliers[-1] if s.multipliers else 1.0],
                where="post", color=color, label=f"{name} (implied)" + ("" if s.monotone else ", not a decay"))
        if not s.monotone:
            ax.step(np.arange(n + 1) / n, [1.0, *s.closest, s.closest[-1] if s.closest else 1.0], where="post",
                    color=color, linestyle="--", label=f"{name}: closest decay")
    ax.set_xlabel("position in the emulated decay t (oldest checkpoint at 1/N, newest at 1)")
    ax.set_ylabel("LR multiplier")
    ax.set_title("Learning-rate decay the merge weights emulate (Theorem 3.1 inverted)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
