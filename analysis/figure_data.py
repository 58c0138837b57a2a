"""The data a design-axis figure draws: the merges along the sweep's own axis (D, N or Δ), each with the
95% interval of its difference from the reference decay, the same interval the verdicts use.

The reference is the best WSD decay (by the primary metric, as in "WSM beats WSD"), else the raw
checkpoint at the latest end. Every merge's interval is ``Evidence.compare_all``'s: corrected for the
best of all K plain merges (max-t), over evaluation noise at one seed and seeds + evaluation at two or
more, so the best merge's bar is exactly the verdict's interval. ``bar_low``/``bar_high`` draw that
interval around the merge's own value (value − difference + interval). The decay-pairs figure gets the
same for each merge against the decay shape it emulates (``pair_intervals``), the fidelity figure for each
merge against the real decay over its own window (``fidelity_points``). ``interval_row`` turns one
comparison into those columns for every figure (analysis.beyond_figures too).

Example:
    >>> AXIS_NAMES["quantity"]
    ('quantity', 'merge quantity N (checkpoints)')
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.design import decay_ends
from analysis.evidence import Evidence
from analysis.rules import best, higher_is_better
from analysis.stats import Comparison
from analysis.tables import label, merges

AXIS_NAMES = {"duration_steps": ("duration", "merge duration D (steps)"),
              "quantity": ("quantity", "merge quantity N (checkpoints)"),
              "interval_steps": ("interval", "checkpoint interval Δ (steps)")}
LINES = {"duration_steps": [], "quantity": ["interval_steps"], "interval_steps": ["duration_steps"]}  # one line per
COLUMNS = ["curve", "duration_steps", "interval_steps", "quantity", "end_step", "metric", "value", "reference",
           "reference_value", "difference", "ci_low", "ci_high", "bar_low", "bar_high", "noise", "seeds", "candidates"]


INTERVAL = ["reference", "reference_value", "difference", "ci_low", "ci_high", "bar_low", "bar_high", "noise", "seeds",
            "candidates"]


def interval_row(*, value: float, reference: str, reference_value: float, metric: str,
                 comparison: Comparison | None) -> dict:
    """A point's value and interval columns (``INTERVAL``) from a comparison of it with ``reference``.

    The difference is always point − reference in the metric's own units: a comparison of a loss made in the
    claim's direction (values negated, ``higher_is_better`` True; analysis.beyond) is turned back.

    >>> from analysis.stats import compare
    >>> point = interval_row(value=2.9, reference="α = 0", reference_value=3.0, metric="heldout_bpb",
    ...                      comparison=compare([-2.9, -2.91, -2.89], [-3.0, -3.0, -3.0]))
    >>> round(point["difference"], 3), point["bar_low"] < point["value"] < point["bar_high"]
    (-0.1, True)
    """
    if comparison is None or math.isnan(comparison.mean):
        return {"value": value, "reference": reference, "reference_value": reference_value, "difference": math.nan,
                "ci_low": math.nan, "ci_high": math.nan, "bar_low": math.nan, "bar_high": math.nan,
                "noise": "none (the reference itself)" if comparison is None else "none (no shared seed)",
                "seeds": 0, "candidates": 0}
    c = comparison
    negated = not higher_is_better(metric) and c.higher_is_better
    difference, low, high = (-c.mean, -c.ci_high, -c.ci_low) if negated else (c.mean, c.ci_low, c.ci_high)
    return {"value": value, "reference": reference, "reference_value": reference_value, "difference": difference,
            "ci_low": low, "ci_high": high, "bar_low": value - difference + low, "bar_high": value - difference + high,
            "noise": c.noise, "seeds": c.seeds, "candidates": c.candidates}


def reference_of(designs: pd.DataFrame, primary: str) -> pd.Series | None:
    """The best WSD decay by ``primary`` (the "WSM beats WSD" reference), else the raw checkpoint at the latest end."""
    wsd = designs[(designs["kind"] == "wsd") & designs["branch"].astype(str).str.startswith("wsd_")]
    found = best(wsd, primary)
    if found is None:
        raw = designs[designs["kind"] == "raw"]
        found = raw.sort_values("end_step").iloc[-1] if not raw.empty else None
    return found


def axis_points(designs: pd.DataFrame, ev: Evidence, primary: str, metric: str, axis: str) -> pd.DataFrame:
    """Per curve (and per held Δ for N, per D for Δ) and per axis value, the best merge by ``primary`` with its
    value on ``metric`` and the interval of its difference from the reference (``COLUMNS``); ``designs`` are
    the seed-folded models (analysis.tables.by_design)."""
    pool = merges(designs) if not designs.empty else designs
    pool = pool[pool[primary].notna() & pool[metric].notna()] if not pool.empty else pool
    reference = reference_of(designs, primary) if not designs.empty else None
    if pool.empty:
        return pd.DataFrame(columns=COLUMNS)
    keys = ["curve", *LINES[axis], axis]
    grouped = pool.groupby(keys)[primary]
    picked = pool.loc[grouped.idxmax() if higher_is_better(primary) else grouped.idxmin()]
    intervals = {}
    if reference is not None:
        intervals = {row.name: c for row, c in ev.compare_all(pool, reference, metric)}
    rows = []
    for _, row in picked.sort_values(keys).iterrows():
        point = interval_row(value=float(row[metric]), metric=metric, comparison=intervals.get(row.name),
                             reference=label(reference) if reference is not None else "",
                             reference_value=float(reference[metric]) if reference is not None else math.nan)
        if reference is None or row.name not in intervals:
            point["noise"] = "none (no reference model)" if reference is None else "none (no seed shared with it)"
        rows.append({**{k: row[k] for k in COLUMNS[:5]}, "metric": metric, **point})
    return pd.DataFrame(rows, columns=COLUMNS)


def pair_intervals(designs: pd.DataFrame, ev: Evidence, pairs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The decay-pairs table (analysis.tables.decay_pairs) with, per shape, the 95% interval of merge − decay on
    ``metric`` (``Evidence.compare``: one pair, no pick to correct) and the bar it draws around the merge."""
    decays = decay_ends(designs)
    window = ["duration_steps", "interval_steps", "quantity", "end_step"]
    pool = merges(designs)
    rows = []
    for _, pair in pairs.iterrows():
        decay = decays[decays["curve"] == pair["shape"]]
        merge = pool[(pool["curve"] == pair["merge_curve"]) & (pool[window] == pair[window]).all(axis=1)]
        c = ev.compare(merge.iloc[0], decay.iloc[0], metric) if not decay.empty and not merge.empty else None
        low, high = (c.ci_low, c.ci_high) if c is not None else (math.nan, math.nan)
        shift = float(pair[f"merge_{metric}"]) - (c.mean if c is not None else math.nan)
        rows.append({"ci_low": low, "ci_high": high, "bar_low": shift + low, "bar_high": shift + high,
                     "noise": c.noise if c is not None else "none (no matching models)"})
    return pd.concat([pairs.reset_index(drop=True), pd.DataFrame(rows, columns=["ci_low", "ci_high", "bar_low",
                                                                                "bar_high", "noise"])], axis=1)


def fidelity_points(designs: pd.DataFrame, ev: Evidence, metric: str) -> pd.DataFrame:
    """Per real decay over a window (the fidelity branches), every merge of the same window (same end step and
    duration D) against it, with the interval of merge − decay (``Evidence.compare_all``: corrected for the
    best of the window's merges); the decay itself as a row without an interval (paper Figure 5a)."""
    decays = designs[(designs["kind"] == "wsd") & designs["branch"].astype(str).str.startswith("fidelity_")
                     & designs[metric].notna()] if not designs.empty else designs
    pool = merges(designs) if not decays.empty else designs
    rows = []
    for _, decay in decays.sort_values("end_step").iterrows():
        window = {"end_step": decay["end_step"], "duration_steps": decay["duration_steps"], "metric": metric}
        rows.append({"model": f"real decay ({decay['curve']})", **window, **interval_row(
            value=float(decay[metric]), reference="", reference_value=math.nan, metric=metric, comparison=None)})
        same = pool[(pool["end_step"] == decay["end_step"]) & (pool["duration_steps"] == decay["duration_steps"])
                    & pool[metric].notna()]
        for merge, c in ev.compare_all(same, decay, metric) if not same.empty else []:
            rows.append({"model": f"merge {merge['curve']}", **window, **interval_row(
                value=float(merge[metric]), reference=label(decay), reference_value=float(decay[metric]),
                metric=metric, comparison=c)})
    return pd.DataFrame(rows, columns=["model", "end_step", "duration_steps", "metric", "value", *INTERVAL])
