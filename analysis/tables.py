"""The paper's tables as DataFrames, from per-model scores (analysis.load.model_scores).

Every table aggregates seeds: ``<col>`` is the mean, ``<col>_std`` the standard deviation when
there are several seeds. Column names follow the paper (general_knowledge … overall). Merges are
N ≥ 2 everywhere (N = 1 is the raw checkpoint); "best" is by the suite's primary metric.

Example:
    >>> from analysis.tables import COLUMNS
    >>> COLUMNS[-1]
    'overall'
"""

from __future__ import annotations

import pandas as pd

from analysis.design import EMULATES, WINDOW, decay_ends, plain_merges
from analysis.load import CATEGORIES, DESIGN, task_rows
from analysis.rules import best as best_row
from analysis.rules import higher_is_better
from analysis.stats import summary

COLUMNS = [*CATEGORIES, "overall"]
AXIS_COLUMNS = ["curve", "duration_steps", "interval_steps", "quantity", "end_step"]  # the design's axes, every table
WORSE_SHOWN = ["model", "branch", *AXIS_COLUMNS, "extrapolate", "merge_order", "merge", "raw", "worse_by"]
STD_COLUMNS = [f"{c}_std" for c in CATEGORIES]  # seed std of each category (overall_std sits beside overall)
def by_design(scores: pd.DataFrame) -> pd.DataFrame:
    """Seeds folded: one row per design (everything but the seed), means and stds."""
    value_cols = [*COLUMNS, "heldout_bpb"]
    keys = [c for c in DESIGN if c in scores]
    by_keys = scores.groupby(keys, dropna=False)
    grouped = by_keys[value_cols]
    means = grouped.mean()
    stds = grouped.std().add_suffix("_std")
    seeds = grouped.size().rename("seeds")
    ci = by_keys["overall"].agg(lambda v: _half_width(v.dropna().tolist())).rename("overall_ci95")
    return means.join(stds).join(seeds).join(ci).reset_index()


def _half_width(values: list[float]) -> float:
    """Half width of the 95% t-interval of the mean (NaN for fewer than two seeds)."""
    mean, _, low, _ = summary(values)
    return mean - low


def label(row: pd.Series) -> str:
    """A short human label of a design row."""
    if row["kind"] == "wsm":
        return f"merge {row['curve']} (N={row['quantity']}, Δ={row['interval_steps']}, D={row['duration_steps']}, end={row['end_step']})"
    if row["kind"] == "decay_merge":
        return (f"merge {row['curve']} inside {row['branch']} (N={row['quantity']}, D={row['duration_steps']}, "
                f"end={row['end_step']})")
    if row["kind"] == "merge_then_decay":
        quantity = row.get("parent_quantity")
        quantity = "?" if pd.isna(quantity) else int(quantity)
        return (f"merge {row['curve']} (N={quantity}, Δ={row['interval_steps']}, "
                f"end={row['end_step'] - row['duration_steps']}) then decay (end={row['end_step']})")
    if row["kind"] == "wsd":
        return f"decay {row['curve']} [{row['branch']}] (end={row['end_step']})"
    return f"raw constant-LR (end={row['end_step']})"


def merges(designs: pd.DataFrame, kind: str = "wsm") -> pd.DataFrame:
    """The merges of a kind with N ≥ 2 (an N = 1 "merge" is the raw checkpoint, the baseline); for ``wsm``
    only the paper's merges (natural order, no extrapolation: analysis.design.plain_merges)."""
    if kind == "wsm":
        return plain_merges(designs)
    return designs[(designs["kind"] == kind) & (designs["quantity"] >= 2)]


def axes(row: pd.Series) -> dict:
    """The design axes of a row; a decay or raw checkpoint has no interval or quantity (D is its decay length)."""
    values = {c: row[c] for c in AXIS_COLUMNS}
    if row["kind"] in ("wsd", "raw"):
        values.update(interval_steps=float("nan"), quantity=float("nan"))
    return values


def table1(scores: pd.DataFrame, primary: str = "overall") -> pd.DataFrame:
    """WSD vs WSM by category: best-vs-best and at the WSD token budget (matched tokens)."""
    designs = by_design(scores)
    wsd = designs[(designs["kind"] == "wsd") & designs["branch"].str.startswith("wsd_")]
    wsm = merges(designs)
    budget_end = wsd["end_step"].max() if not wsd.empty else None
    rows = []
    for comparison, wsd_pool, wsm_pool in (
        ("best vs best", wsd, wsm),
        ("matched tokens", wsd[wsd["end_step"] == budget_end], wsm[wsm["end_step"] == budget_end]),
    ):
        for name, pool in (("WSD", wsd_pool), ("WSM", wsm_pool)):
            best = best_row(pool, primary)
            if best is not None:
                rows.append({"comparison": comparison, "row": name, "model": label(best),
                             **axes(best), **{c: best[c] for c in COLUMNS}, "overall_std": best["overall_std"],
                             "overall_ci95": best["overall_ci95"], "heldout_bpb": best["heldout_bpb"],
                             "heldout_bpb_std": best["heldout_bpb_std"], **{c: best[c] for c in STD_COLUMNS},
                             "seeds": best["seeds"]})
    return pd.DataFrame(rows, columns=["comparison", "row", "model", *AXIS_COLUMNS, *COLUMNS, "overall_std",
                                       "overall_ci95",
                                       "heldout_bpb", "heldout_bpb_std", *STD_COLUMNS, "seeds"])


def table3(scores: pd.DataFrame, primary: str = "overall") -> pd.DataFrame:
    """Merge curves vs the 1-sqrt decay, like with like: every curve at the window (D, Δ, end) that most curves
    share (the best such window by ``primary``); when no two curves share one, the best window of each curve."""
    designs = by_design(scores)
    columns = ["row", *AXIS_COLUMNS, *COLUMNS, "heldout_bpb", "overall_std", "overall_ci95", *STD_COLUMNS]
    rows = []
    decay = best_row(designs[(designs["kind"] == "wsd") & (designs["branch"] == "wsd_1-sqrt")], primary)
    if decay is not None:
        rows.append({"row": "decay_1-sqrt (WSD)", **decay.to_dict(), **axes(decay)})
    pool = merges(designs)
    if not pool.empty:
        shared = pool.groupby(WINDOW, dropna=False)["curve"].transform("nunique")
        if shared.max() > 1:
            pool = pool[shared == shared.max()]
            best = best_row(pool, primary)
            if best is not None:  # no model has the primary metric (e.g. overall without a scored task)
                pool = pool[(pool[WINDOW] == best[WINDOW]).all(axis=1)]
        for _, group in pool.groupby("curve"):
            best = best_row(group, primary)
            if best is not None:
                rows.append({**best.to_dict(), "row": f"merge_{best['curve']}"})
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def decay_pairs(scores: pd.DataFrame, primary: str = "overall") -> pd.DataFrame:
    """Each WSD decay shape beside the merge curve that emulates it (Table 5 / Figure 4 layout): the decay's
    end and that curve's merge over the same span if present (else its best window); ``merge_minus_decay`` is
    on ``primary`` (negative is better for a loss)."""
    designs = by_design(scores)
    decays, pool = decay_ends(designs), merges(designs)
    rows = []
    for _, decay in decays.sort_values("curve").iterrows():
        same = pool[pool["curve"].isin(EMULATES.get(decay["curve"], (decay["curve"],)))]
        span = same[same["duration_steps"] == decay["duration_steps"]]
        merge = best_row(span if not span.empty else same, primary)
        if merge is None:
            continue
        rows.append({"shape": decay["curve"], "decay_steps": decay["duration_steps"], "merge_curve": merge["curve"],
                     **{c: merge[c] for c in AXIS_COLUMNS[1:]},
                     "decay_heldout_bpb": decay["heldout_bpb"], "merge_heldout_bpb": merge["heldout_bpb"],
                     "decay_overall": decay["overall"], "merge_overall": merge["overall"],
                     "merge_minus_decay": merge[primary] - decay[primary], "seeds": min(decay["seeds"], merge["seeds"])})
    return pd.DataFrame(rows, columns=["shape", "decay_steps", "merge_curve", *AXIS_COLUMNS[1:], "decay_heldout_bpb",
                                       "merge_heldout_bpb", "decay_overall", "merge_overall", "merge_minus_decay",
                                       "seeds"])


def worse_than_raw(scores: pd.DataFrame, primary: str = "overall") -> pd.DataFrame:
    """Merges (N ≥ 2, any order or extrapolation) worse on ``primary`` than the raw checkpoint they end at
    (same series and end step), seeds averaged: the merge lost what it should add. One row per flagged
    design, with every design column (``WORSE_SHOWN`` are the ones a report prints)."""
    designs = by_design(scores)
    keys = [c for c in DESIGN if c in designs]
    columns = ["model", *keys, "merge", "raw", "worse_by"]
    raw = designs[designs["kind"] == "raw"].drop_duplicates(["branch", "end_step"]).set_index(["branch", "end_step"])[
        primary] if not designs.empty else None
    pool = designs[(designs["kind"] == "wsm") & (designs["quantity"] >= 2)] if not designs.empty else designs
    rows = []
    for _, merge in pool.iterrows():
        reference = raw.get((merge["branch"], merge["end_step"])) if raw is not None else None
        if reference is None or pd.isna(reference) or pd.isna(merge[primary]):
            continue
        worse = reference - merge[primary] if higher_is_better(primary) else merge[primary] - reference
        if worse > 0:
            rows.append({"model": label(merge), **{c: merge[c] for c in keys}, "merge": merge[primary],
                         "raw": reference, "worse_by": worse})
    return pd.DataFrame(rows, columns=columns)


def table4(scores: pd.DataFrame) -> pd.DataFrame:
    """Granularity: (Δ, N) at each fixed duration D, finest first (merges of the same curve), with Overall and
    held-out bits per byte side by side (the verdict rests on the suite's primary metric, either one)."""
    rows = merges(by_design(scores)).sort_values(["duration_steps", "interval_steps"])
    return rows[["curve", "interval_tokens", "quantity", "duration_tokens", *COLUMNS, "heldout_bpb", "interval_steps",
                 "duration_steps", "end_step", "overall_std", "overall_ci95", "heldout_bpb_std", *STD_COLUMNS,
                 "seeds"]].reset_index(drop=True)


def table5(scores: pd.DataFrame, primary: str = "overall") -> pd.DataFrame:
    """Held-out loss vs downstream score for the best WSD and the best WSM model (Table 5 analogue)."""
    best = table1(scores, primary)
    best = best[best["comparison"] == "best vs best"]
    return best[["row", "model", *AXIS_COLUMNS, "heldout_bpb", "overall", "heldout_bpb_std", "overall_std",
                 "overall_ci95", "seeds"]].reset_index(drop=True)


def duration_curves(scores: pd.DataFrame, primary: str = "overall") -> pd.DataFrame:
    """Score vs merge duration per curve (Figures 3-4 analogue): best over Δ at each (curve, D), N ≥ 2."""
    columns = ["curve", "duration_steps", "interval_steps", "quantity", "overall", "heldout_bpb"]
    pool = merges(by_design(scores))
    pool = pool[pool[primary].notna()]
    if pool.empty:
        return pd.DataFrame(columns=columns)
    grouped = pool.groupby(["curve", "duration_steps"])[primary]
    idx = grouped.idxmax() if higher_is_better(primary) else grouped.idxmin()
    return pool.loc[idx, columns]


LOSS_CATEGORIES = ["heldout", "math", "code"]


def loss_table(frame: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Every bits-per-byte task by category (held-out, math, code), one row per design, seeds averaged:
    ``<category>`` is the mean over its tasks, ``bpb:<task>`` each task."""
    rows = task_rows(frame)
    rows = rows[rows["metric"] == "bits_per_byte"] if not rows.empty else rows
    if rows.empty or scores.empty:
        return pd.DataFrame(columns=["model", *LOSS_CATEGORIES])
    per_task = rows.pivot_table(index=["group", "variant"], columns="task", values="value").add_prefix("bpb:")
    categories = rows.drop_duplicates("task").set_index("task")["category"]
    for category in LOSS_CATEGORIES:
        tasks = [f"bpb:{t}" for t, c in categories.items() if c == category]
        per_task[category] = per_task[tasks].mean(axis=1) if tasks else float("nan")
    values = [*LOSS_CATEGORIES, *sorted(c for c in per_task.columns if c.startswith("bpb:"))]
    design = [c for c in DESIGN if c in scores and c != "group"]
    joined = scores.set_index(["group", "variant"])[design].join(per_task[values])
    keys = [c for c in DESIGN if c in joined]
    designs = joined.reset_index().groupby(keys, dropna=False)[values].mean().reset_index()
    designs.insert(0, "model", [label(r) for _, r in designs.iterrows()])
    return designs[["model", *values]].dropna(axis=1, how="all").sort_values("model", ignore_index=True)
