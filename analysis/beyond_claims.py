"""The beyond-the-paper claims' verdicts (docs/beyond.md): one findings row per claim, in the findings table's
columns, each comparison through the report's one rule (analysis.evidence: paired by seed and by document,
seeds + documents combined, a pick corrected by max-t over the candidates picked in the claim's favour) and
the noise-scale claim's three outcomes (analysis.verdicts.noise_scale).

Example:
    >>> row("extrapolate")["verdict"], row("extrapolate")["contrast"]
    ('not tested', 'best α > 0 − α = 0')
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.evidence import Evidence
from analysis.load import DESIGN
from analysis.probe import SCALES, best_scale_interval, varies_between_points
from analysis.prose import ALL_PARTS_RULE, SIGN_RULE, claim_row, interval, say
from analysis.rules import Thresholds, best
from analysis.stats import Comparison
from analysis.verdicts import SURE, all_parts, noise_scale

CLAIMS = {
    "extrapolate": "extrapolating past the merge (α > 0) lowers the held-out loss",
    "controls": "the merge's gain is the schedule's shape, not only averaging",
    "noise": "the merge gain is governed by one noise scale and peaks inside the grid",
    "long_decay": "merging keeps its advantage over the decay as the decay lengthens",
}
CONTRAST = {
    "extrapolate": "best α > 0 − α = 0",
    "controls": "natural order − its control (the weakest contrast shown)",
    "noise": "best scale's adjusted R² − the cut-off",
    "long_decay": "best merge − the decay, at the longest decay",
}
NOISE_RULE = ("reproduced when the best scale's adjusted R² is surely ≥ the cut-off {cut} (its bootstrap interval "
              "above it) and its peak is inside the grid in ≥ {sure:.1%} of resamples; not reproduced when R² is "
              "surely ≥ the cut-off with the peak outside in ≥ {sure:.1%}, or the gains surely vary between grid "
              "points (F-test at {level:.1%}) yet R² is surely below the cut-off; else inconclusive (a null included)")


def row(key: str, comparison: Comparison | None = None, evidence: str = "", outcome: str | None = None,
        metric: str = "", rule: str = SIGN_RULE) -> dict:
    """A beyond findings row (analysis.prose.claim_row) of claim ``key``."""
    return claim_row(CLAIMS[key], CONTRAST[key], comparison, evidence, outcome, metric, rule)


def designs(models: pd.DataFrame) -> pd.DataFrame:
    """One row per design (its models differ by seed only)."""
    return models.drop_duplicates([c for c in DESIGN if c in models])


def extrapolation(ev: Evidence, family: pd.DataFrame, metric: str, power: float) -> tuple[dict, dict]:
    """The best α > 0 of one window against α = 0, the pick corrected by max-t over every α > 0; and every
    α > 0's comparison under that same correction (α -> Comparison: the figure's bars)."""
    plain, past = designs(family[family["extrapolate"] == 0]), designs(family[family["extrapolate"] > 0])
    if plain.empty or past.empty:
        return row("extrapolate", evidence="needs α = 0 and some α > 0 on the same window"), {}
    compared = ev.compare_all(past, plain.iloc[0], metric, power=power)
    if not compared:
        return row("extrapolate", evidence="no α > 0 shares a seed with α = 0"), {}
    chosen, c = max(compared, key=lambda pair: pair[1].advantage)  # the best in the claimed direction
    found = row("extrapolate", c, f"best α > 0 = {chosen['extrapolate']:g} of {len(past)} α > 0 ({metric} "
                f"{chosen[metric]:.4f} vs α = 0 {plain.iloc[0][metric]:.4f}; the pick corrected by max-t, "
                f"K = {c.candidates})", metric=metric)
    return found, {candidate["extrapolate"]: comparison for candidate, comparison in compared}


def controls(ev: Evidence, pairs: list[tuple[str, pd.Series, pd.Series]], metric: str, power: float) -> dict:
    """Every natural-order merge against each of its controls (all needed: a claim of several parts); the
    weakest contrast gives the row's numbers. ``pairs``: (label, natural design, control design)."""
    if not pairs:
        return row("controls", evidence="no curve whose controls differ from it (the mean's reverse is the mean)")
    compared = [(text, ev.compare(natural, control, metric, power=power)) for text, natural, control in pairs]
    weakest = min(compared, key=lambda p: p[1].advantage if not math.isnan(p[1].mean) else math.inf)[1]
    evidence = "; ".join(f"{text}: {say(c, metric)}" for text, c in compared)
    return row("controls", weakest, f"{evidence} (every contrast needed)", all_parts([c.outcome for _, c in compared]),
               metric, ALL_PARTS_RULE)


def merge_against_decay(ev: Evidence, merges: pd.DataFrame, decays: pd.DataFrame, metric: str, power: float) \
        -> tuple[pd.Series | None, pd.Series | None, Comparison | None]:
    """(the best decay, the best merge, merge − decay) at one branch length: the best decay needs no
    correction (it works against the claim), the merge pick is corrected by max-t over the merges.
    (None, None, None) without a merge or a decay; a merge of None when none shares a seed with the decay."""
    decay = best(designs(decays), metric)
    if decay is None or merges.empty:
        return None, None, None
    chosen, c = ev.compare_best(designs(merges), decay, metric, power=power)
    return decay, chosen, c


def long_decay(found: tuple, metric: str, where: str) -> dict:
    """The claim at the longest probe branch from its ``merge_against_decay``."""
    decay, chosen, c = found
    if decay is None:
        return row("long_decay", evidence="needs a merge and a decay at the longest branch length")
    if chosen is None:
        return row("long_decay", evidence="no merge shares a seed with the decay")
    return row("long_decay", c, f"best of {c.candidates} merges (corrected by max-t) {chosen[metric]:.4f} vs the "
               f"decay {decay[metric]:.4f} {metric}; {where}", metric=metric)


def noise(gains: pd.DataFrame, fits: pd.DataFrame, thresholds: Thresholds) -> dict:
    """The noise-scale claim from the bootstrap of the best scale's adjusted R² (re-picked per resample) and the
    F-test of the gains between grid points (seeds as replicates): three outcomes (analysis.verdicts)."""
    merge_fits = fits[fits["gain"] == "merge_gain"].dropna(subset=["r2_adjusted"])
    seeds = int(gains["seed"].nunique())
    cut = thresholds.r2_collapse
    if merge_fits.empty:
        return row("noise", evidence="too few grid points for a fit", metric="adjusted R²")
    top = merge_fits.sort_values("r2_adjusted", ascending=False).iloc[0]
    low, high, inside = best_scale_interval(gains)
    varies = bool(varies_between_points(per_point(gains), level=1 - SURE))
    outcome = noise_scale(low, high, inside, varies, cut)
    coverage = "grid points and seeds resampled" if seeds >= 2 else "grid points resampled (1 seed)"
    observed = (f"{top['scale']} adjusted R² {top['r2_adjusted']:.2f}, 95% bootstrap interval [{low:.2f}, "
                f"{high:.2f}] with the best of {len(SCALES)} scales re-picked per resample; peak inside the grid "
                f"in {inside:.0%} of resamples; gains "
                + ("surely vary between points" if varies else "not shown to vary between points")
                + (" (F-test over seeds)" if seeds >= 2 else " (one seed: no test)"))
    result = row("noise", evidence=f"{observed} ({coverage}); " + ", ".join(
        f"{r['scale']} {r['r2_adjusted']:.2f}" for _, r in merge_fits.iterrows()), outcome=outcome,
        metric="adjusted R²", rule=NOISE_RULE.format(cut=cut, sure=SURE, level=1 - SURE))
    return {**result, "verdict": f"{outcome} on the bootstrap of {coverage}",
            "difference": round(top["r2_adjusted"] - cut, 4),
            "ci95": interval(low - cut, high - cut, 4), "ci_low": low - cut, "ci_high": high - cut,
            "noise": f"bootstrap of {coverage}", "candidates": len(SCALES), "seeds": seeds}


def per_point(gains: pd.DataFrame, target: str = "merge_gain") -> np.ndarray:
    """The gains as (points, seeds), over the seeds every point has."""
    wide = gains.pivot_table(index=["lr", "batch_size", "weight_decay", "steps"], columns="seed", values=target)
    return wide.dropna(axis=1).to_numpy(dtype=float)

