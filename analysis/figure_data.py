"""The data a design-axis figure draws: the merges along the sweep's own axis (D, N or Δ), each with the
95% interval of its difference from the reference decay, the same interval the verdicts use.

The reference is the best WSD decay (by the primary metric, as in "WSM beats WSD"), else the raw
checkpoint at the latest end. Every merge's interval is ``Evidence.compare_all``'s: corrected for the
best of all K plain merges (max-t), over evaluation noise at one seed and seeds + evaluation at two or
more, so the best merge's bar is exactly the verdict's interval. ``bar_low``/``bar_high`` draw that
interval around the merge's own value (value − difference + interval). The decay-pairs figure gets the
same for each merge against the decay shape it emulates (``pair_intervals``).

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
from analysis.tables import label, merges

AXIS_NAMES = {"duration_steps": ("duration", "merge duration D (steps)"),
              "quantity": ("quantity", "merge quantity N (checkpoints)"),
              "interval_steps": ("interval", "checkpoint interval Δ (steps)")}
LINES = {"duration_steps": [], "quantity": ["interval_steps"], "interval_steps": ["duration_steps"]}  # one line per
COLUMNS = ["curve", "duration_steps", "interval_steps", "quantity", "end_step", "metric", "value", "reference",
           "reference_value", "difference", "ci_low", "ci_high", "bar_low", "bar_high", "noise", "seeds", "candidates"]


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
        c = intervals.get(row.name)
        difference = c.mean if c is not None else math.nan
        low, high = (c.ci_low, c.ci_high) if c is not None else (math.nan, math.nan)
        shift = float(row[metric]) - difference
        rows.append({**{k: row[k] for k in COLUMNS[:5]}, "metric": metric, "value": float(row[metric]),
                     "reference": label(reference) if reference is not None else "",
                     "reference_value": float(reference[metric]) if reference is not None else math.nan,
                     "difference": difference, "ci_low": low, "ci_high": high, "bar_low": shift + low,
                     "bar_high": shift + high, "noise": c.noise if c is not None else "none (no reference model)",
                     "seeds": c.seeds if c is not None else 0, "candidates": c.candidates if c is not None else 0})
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
