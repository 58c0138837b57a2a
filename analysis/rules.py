"""The analysis's rules in one place: which direction is better, how the best model is picked, and the
margins and cut-offs every verdict uses (each with its reason).

Example:
    >>> higher_is_better("heldout_bpb"), higher_is_better("overall"), higher_is_better("wsm_math_bpb")
    (False, True, False)
    >>> import pandas as pd
    >>> best(pd.DataFrame({"heldout_bpb": [2.3, 2.1, float("nan")]}), "heldout_bpb")["heldout_bpb"]
    np.float64(2.1)
    >>> Thresholds().margin("heldout_bpb"), Thresholds().margin("wsm_piqa")
    (0.005, 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


def higher_is_better(metric: str) -> bool:
    """Scores and R² are better high; bits per byte (any ``*_bpb`` metric) are better low."""
    return not (metric == "heldout_bpb" or metric.endswith("_bpb") or metric == "bits_per_byte")


def ranked(designs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows with a value of ``metric``, best first."""
    if metric not in designs:
        return designs
    designs = designs[designs[metric].notna()]
    return designs.sort_values(metric, ascending=not higher_is_better(metric), kind="stable")


def best(designs: pd.DataFrame, metric: str) -> pd.Series | None:
    """The best row by ``metric`` (None when no row has a value): the one best-model pick of the analysis."""
    designs = ranked(designs, metric)
    return None if designs.empty else designs.iloc[0]


@dataclass(frozen=True)
class Thresholds:
    """Margins and cut-offs of the verdicts (suggested config keys: ``analysis.<field>``)."""

    margin_overall: float = 0.5  # "≥"/"no gain" equivalence margin, Overall points: the paper's such gaps are ≤ ~0.3
    margin_bpb: float = 0.005  # the same on bits per byte: a tenth of the ~0.05 bpb merges gain on the tiny study
    r2_collapse: float = 0.8  # one noise scale "governs" the merge gain when its quadratic explains this share (adj. R²)
    power: float = 0.8  # the power at which the smallest detectable difference is stated (the usual 80%)
    draws: int = 20_000  # seeded Monte-Carlo draws of the max-t selection quantile (its error < 0.01 in t)

    def margin(self, metric: str) -> float:
        """The equivalence margin of ``metric`` (0 for a metric without one)."""
        return {"overall": self.margin_overall, "heldout_bpb": self.margin_bpb}.get(metric, 0.0)
