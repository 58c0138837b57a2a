"""What a sweep's results vary and hold, and which parts of the report fit that design.

The design is read from the evaluated models themselves (merges with N ≥ 2, plain order, no
extrapolation), so a sweep widened on the command line, or several folders combined, get the parts
that fit what actually ran. Every part the report leaves out gets a one-line reason.

Example:
    >>> import pandas as pd
    >>> s = pd.DataFrame({"kind": ["wsm"] * 3, "curve": ["mean"] * 3, "quantity": [4] * 3,
    ...                   "interval_steps": [8, 16, 32], "duration_steps": [32, 64, 128], "end_step": [256] * 3,
    ...                   "branch": ["wsm"] * 3, "branch_kind": ["wsm"] * 3, "heldout_bpb": [2.3, 2.2, 2.4],
    ...                   "overall": [float("nan")] * 3})
    >>> d = design_of(s)
    >>> d.describe()  # doctest: +NORMALIZE_WHITESPACE
    'Varies D ∈ {32, 64, 128}, Δ ∈ {8, 16, 32}; holds curve = mean, N = 4, end = 256, series = wsm.'
    >>> d.axis
    'duration_steps'
    >>> d.parts["table3"]
    'one merge curve here (mean): Table 3 compares curves at one window (+sweep=method).'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

AXES = {"curve": "curve", "D": "duration_steps", "Δ": "interval_steps", "N": "quantity", "end": "end_step",
        "series": "branch", "α": "extrapolate", "order": "merge_order"}
WINDOW = ["duration_steps", "interval_steps", "quantity", "end_step", "branch"]  # one merge window
# The merge curve that emulates each decay shape (REFERENCE: a linear decay's weights are uniform).
EMULATES = {"1-sqrt": ("1-sqrt",), "linear": ("linear", "mean"), "cosine": ("cosine",)}


def plain_merges(scores: pd.DataFrame) -> pd.DataFrame:
    """Merges of a constant-LR series with N ≥ 2, natural order and no extrapolation (what the paper merges).

    >>> plain_merges(pd.DataFrame({"kind": ["wsm", "wsm", "raw"], "quantity": [2, 1, 1]})).shape[0]
    1
    """
    if scores.empty or "kind" not in scores:
        return scores
    keep = (scores["kind"] == "wsm") & (scores["quantity"] >= 2)
    if "merge_order" in scores:
        keep &= scores["merge_order"].fillna("natural").eq("natural")
    if "extrapolate" in scores:
        keep &= scores["extrapolate"].fillna(0.0).eq(0.0)
    return scores[keep]


def decay_ends(scores: pd.DataFrame) -> pd.DataFrame:
    """The last checkpoint of each WSD baseline decay (``wsd_<shape>`` series), one row per shape and seed."""
    if scores.empty or "kind" not in scores:
        return scores
    wsd = scores[(scores["kind"] == "wsd") & scores["branch"].astype(str).str.startswith("wsd_")]
    return wsd[wsd["end_step"] == wsd.groupby("branch")["end_step"].transform("max")] if not wsd.empty else wsd


def base_curve(label: str) -> str:
    """The curve of a results label without its order and extrapolation suffixes (merging.extrapolate.curve_label).

    >>> base_curve("1-sqrt-scramble3-ex+0.5@96"), base_curve("mean-ex-0.25"), base_curve("1-sqrt-reverse")
    ('1-sqrt', 'mean', '1-sqrt')
    """
    return re.sub(r"(-reverse|-scramble\d+)?(-ex[+-][0-9.e+-]+(@\d+)?)?$", "", label)


def _values(rows: pd.DataFrame, column: str) -> list:
    values = rows[column].dropna().unique().tolist() if column in rows else []
    return sorted(values, key=lambda v: (isinstance(v, str), v))


def _listed(values: list, most: int = 6) -> str:
    """Values as "a, b, c", or "K values: a, b, …, z" when there are many."""
    if len(values) <= most:
        return ", ".join(_fmt(v) for v in values)
    return f"{len(values)} values: {', '.join(_fmt(v) for v in values[:2])}, …, {_fmt(values[-1])}"


def _fmt(value) -> str:
    return str(int(value)) if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer() \
        else str(value)


@dataclass(frozen=True)
class Design:
    """The axes the merges vary (with their values), the ones they hold, and each report part's fate:
    ``parts[name]`` is None when the part is shown, else the one-line reason it is not."""

    varied: dict[str, list]
    held: dict[str, object]
    decay_shapes: list[str]
    parts: dict[str, str | None]

    def describe(self) -> str:
        """One sentence: what varies (with its values) and what is held."""
        varied = ", ".join(f"{axis} ∈ {{{_listed(values)}}}" for axis, values in self.varied.items())
        held = ", ".join(f"{axis} = {_fmt(value)}" for axis, value in self.held.items())
        if not varied and not held:
            return "No plain merges (N ≥ 2) among these results."
        return (f"Varies {varied}" if varied else "Varies no merge axis") + (f"; holds {held}." if held else ".")

    def absent(self) -> list[str]:
        """One line per reason, naming the parts it leaves out."""
        by_reason: dict[str, list[str]] = {}
        for name, reason in self.parts.items():
            if reason:
                by_reason.setdefault(reason, []).append(TITLES[name])
        return [f"- {'; '.join(names)}: {reason}" for reason, names in by_reason.items()]


    @property
    def axis(self) -> str:
        """The column the sweep's own figures draw along: N when Δ is held (quantity sweep), Δ when D is held
        (interval sweep), else D (duration, grid)."""
        if "N" in self.varied and "Δ" in self.held:
            return "quantity"
        if "Δ" in self.varied and "D" in self.held:
            return "interval_steps"
        return "duration_steps"


TITLES = {"table1": "Table 1 (WSD vs WSM)", "pairs": "Decay shapes beside their merge curves",
          "table3": "Table 3 (merge curves)", "table4": "Table 4 (granularity at fixed D)",
          "table5": "Table 5 (loss vs score)", "factors": "Factor importance", "duration": "Score vs merge duration",
          "fidelity": "Merge vs a real decay over the same window", "losses": "Losses by category"}


def design_of(scores: pd.DataFrame) -> Design:
    """The design of one group's per-model scores (``analysis.load.model_scores``) and the parts it supports.
    The axes are read over every merge (extrapolated and reordered ones too); the parts use the plain ones."""
    merges = plain_merges(scores)
    every = scores[(scores["kind"] == "wsm") & (scores["quantity"] >= 2)] if "kind" in scores else scores
    varied, held = {}, {}
    for axis, column in AXES.items():
        values = _values(every, column)
        if axis == "curve":  # "1-sqrt-reverse", "mean-ex+0.5": the order and α are axes of their own
            values = sorted({base_curve(str(v)) for v in values})
        if axis in ("α", "order") and len(values) <= 1:
            continue  # the paper's merges: no extrapolation, natural order — not worth a word
        if len(values) > 1:
            varied[axis] = values
        elif values:
            held[axis] = values[0]
    decays = decay_ends(scores)
    shapes = _values(decays, "curve")
    return Design(varied, held, shapes, _parts(scores, merges, shapes, varied))


def _has(scores: pd.DataFrame, metric: str) -> bool:
    return metric in scores and scores[metric].notna().any()


def _parts(scores: pd.DataFrame, merges: pd.DataFrame, shapes: list[str], varied: dict[str, list]) -> dict:
    curves = _values(merges, "curve")
    series = varied.get("series")
    several_series = (f"the merges come from {len(series)} different series ({_listed(series, 3)}); the "
                      "beyond-the-paper section compares each with its own decay." if series else None)
    no_merges = "no merge with N ≥ 2 among these results." if merges.empty else None
    parts: dict[str, str | None] = {}
    parts["table1"] = no_merges or several_series or (
        None if shapes else "no WSD decay among these results: Table 1 compares the two (baselines.wsd_shapes).")
    emulated = [s for s in shapes if set(EMULATES.get(s, (s,))) & set(curves)]
    parts["pairs"] = no_merges or several_series or (
        None if emulated else
        (f"no merge uses the curve that emulates a decay shape here (decays: {', '.join(shapes) or 'none'}; merge "
         f"curves: {', '.join(curves)}); +sweep=wsd_vs_wsm pairs each shape with its curve."))
    shared = merges.groupby(WINDOW, dropna=False)["curve"].nunique().max() if not merges.empty else 0
    parts["table3"] = no_merges or several_series or (
        None if len(curves) > 1 and shared > 1 else
        f"one merge curve here ({curves[0]}): Table 3 compares curves at one window (+sweep=method)."
        if len(curves) <= 1 else
        "the merge curves never share a window (D, Δ, end) here, so they cannot be compared like with like.")
    granular = merges.groupby(["duration_steps", "end_step", "branch"])["interval_steps"].nunique().max() \
        if not merges.empty else 0
    parts["table4"] = no_merges or several_series or (
        None if granular > 1 else
        "no merge duration D holds two granularities (Δ, N) here: Table 4 needs them (+sweep=interval).")
    both = _has(scores, "heldout_bpb") and _has(scores, "overall")
    parts["table5"] = parts["table1"] or (
        None if both else "needs both a held-out loss and downstream scores; this suite has "
        f"{'only the held-out loss' if _has(scores, 'heldout_bpb') else 'no held-out text'}.")
    parts["factors"] = no_merges or several_series or _factor_reason(merges)
    parts["duration"] = no_merges or several_series or (
        None if len(_values(merges, "duration_steps")) > 1 else
        f"one merge duration here (D = {_fmt(_values(merges, 'duration_steps')[0])}).")
    fidelity = scores["branch"].astype(str).str.startswith("fidelity_").any() if "branch" in scores else False
    parts["fidelity"] = None if fidelity else "no real decay over a merge's window here (+sweep=fidelity)."
    parts["losses"] = None if _has(scores, "heldout_bpb") else "this suite has no bits-per-byte task."
    return parts


def _factor_reason(merges: pd.DataFrame) -> str | None:
    """None when D, Δ and N vary independently enough to compare their R² (log D = log Δ + log N: two free)."""
    if len(merges) < 3:
        return "fewer than three merges."
    logs = np.log2(merges[["duration_steps", "interval_steps", "quantity"]].to_numpy(dtype=float))
    if np.linalg.matrix_rank(logs - logs.mean(axis=0), tol=1e-9) >= 2:
        return None
    moving = [axis for axis, column in (("D", "duration_steps"), ("Δ", "interval_steps"), ("N", "quantity"))
              if merges[column].nunique() > 1]
    if not moving:
        return "D, Δ and N are all held here; the factor comparison needs two of them varied independently (+sweep=grid)."
    return (f"{' and '.join(moving)} move together here, so their R² cannot be told apart; "
            "the factor comparison needs two of D, Δ, N varied independently (+sweep=grid).")


def windows_line(table: pd.DataFrame) -> str:
    """Which merge windows a table's merge rows compare: one sentence.

    >>> windows_line(pd.DataFrame({"kind": ["wsm"], "curve": ["mean"], "duration_steps": [64], "interval_steps": [16],
    ...                            "quantity": [4], "end_step": [256]}))
    'Merges at one window: D = 64, Δ = 16, N = 4, end = 256.'
    """
    rows = table[table["kind"].isin(["wsm"])] if "kind" in table else table
    if rows.empty or "duration_steps" not in rows:
        return ""
    windows = rows.drop_duplicates(["duration_steps", "interval_steps", "quantity", "end_step"])
    text = [f"D = {_fmt(r['duration_steps'])}, Δ = {_fmt(r['interval_steps'])}, N = {_fmt(r['quantity'])}, "
            f"end = {_fmt(r['end_step'])}" for _, r in windows.iterrows()]
    if len(text) == 1:
        return f"Merges at one window: {text[0]}."
    named = [f"{r['curve']} at D = {_fmt(r['duration_steps'])}, N = {_fmt(r['quantity'])}, end = {_fmt(r['end_step'])}"
             for _, r in rows.drop_duplicates(["curve", *WINDOW[:4]]).iterrows()]
    return f"Rows compare different windows: {'; '.join(named)}."
