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

from wsm_exp.sweep.spec.schemas import AnalysisConfig


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
class Thresholds(AnalysisConfig):
    """Margins and cut-offs of the verdicts: the config's ``analysis.*`` keys (defaults and reasons in
    wsm_exp.sweep.spec.schemas.AnalysisConfig), with the rule that picks a metric's margin."""

    def margin(self, metric: str) -> float:
        """The equivalence margin of ``metric`` (0 for a metric without one)."""
        return {"overall": self.margin_overall, "heldout_bpb": self.margin_bpb}.get(metric, 0.0)
