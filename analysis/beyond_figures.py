"""The beyond-the-paper figures (docs/beyond.md), each point with the interval its claim's verdict uses.

analysis.beyond computes the comparisons (its verdict rule) and hands them here by point; each figure is
a PNG with its data beside it as CSV, one row per point: its value and analysis.figure_data.interval_row's
columns (the reference it is compared with, point − reference in the metric's own units, the interval
of that difference, the bar drawn around the point, what the interval covers, the seeds and the K it is
corrected for). A point without a comparison (the reference itself) has NaN.
The noise probe's verdict is a bootstrap interval of an R², not a per-point comparison: its points carry
the spread of their seeds (a t interval; none at one seed) and each panel's title the verdict's interval.

Example:
    >>> import tempfile
    >>> table = pd.DataFrame({"extrapolate": [0.0, 0.5], "heldout_bpb": [3.0, 2.9]})
    >>> [p.name for p in extrapolation(Path(tempfile.mkdtemp()), table, {}, pd.DataFrame(), "heldout_bpb")]
    ['beyond_extrapolate.png']
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.figure_data import interval_row  # noqa: E402
from analysis.figures import save_figure  # noqa: E402
from analysis.probe import SCALES, log_scale, quadratic_r2  # noqa: E402
from analysis.stats import quantile  # noqa: E402

LOSS = "heldout_bpb"


def _bars(ax, x, rows: pd.DataFrame, **style) -> None:
    """``rows``' values at ``x`` with their bars (a point without an interval: no bar)."""
    values = rows["value"].to_numpy(float)
    below = np.clip(values - rows["bar_low"].to_numpy(float), 0, None)  # NaN: no bar (matplotlib draws none)
    above = np.clip(rows["bar_high"].to_numpy(float) - values, 0, None)
    ax.errorbar(x, values, yerr=[below, above], capsize=3, **style)


def _limits(ax, *columns) -> None:
    """Never zoom past a bar, a point or a reference line."""
    shown = np.concatenate([np.asarray(c, dtype=float) for c in columns])
    shown = shown[np.isfinite(shown)]
    if len(shown):
        pad = max(float(shown.max() - shown.min()) * 0.08, 1e-9)
        ax.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)


def _title(points: pd.DataFrame) -> str:
    with_interval = points[points["noise"].astype(str).ne("") & points["ci_low"].notna()]
    if with_interval.empty:
        return "no interval (no shared seed)"
    k = int(with_interval["candidates"].max())
    return (f"bars: 95% interval of the difference from {with_interval['reference'].iloc[0]}"
            + (f", corrected for the best of {k}" if k > 1 else "") + f"\n({with_interval['noise'].iloc[0]})")


def _ylabel(metric: str) -> str:
    return "held-out bits per byte" if metric == LOSS else "overall score (%)"


def extrapolation(out: Path | None, table: pd.DataFrame, intervals: dict, references: pd.DataFrame,
                  metric: str) -> list[Path]:
    """The metric vs α (``table``: seed-folded, one row per α), each α > 0 with the interval of α − (α = 0)
    the verdict uses (``intervals``: α -> comparison), the raw checkpoint and WSD ends as lines."""
    plain = float(table.loc[table["extrapolate"] == 0, metric].mean())
    rows = []
    for alpha, row in table.set_index("extrapolate").iterrows():
        point = interval_row(value=float(row[metric]), reference="" if alpha == 0 else "α = 0", metric=metric,
                             reference_value=plain, comparison=intervals.get(alpha))
        if alpha < 0:
            point["noise"] = "none (α < 0 is not part of the claim)"
        rows.append({"extrapolate": alpha, "metric": metric, **point})
    points = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    _bars(ax, points["extrapolate"], points, marker="o", label="merge + α(merge − newest)")
    for _, ref in references.iterrows():
        ax.axhline(ref[metric], linestyle="--", color="black" if ref["kind"] == "wsd" else "gray",
                   label=f"{ref['kind']} {ref['curve']} (end {ref['end_step']})")
    ax.axvline(0, color="lightgray", linewidth=0.8)
    _limits(ax, points["value"], points["bar_low"], points["bar_high"], references.get(metric, []))
    ax.set_xlabel("extrapolation α")
    ax.set_ylabel(_ylabel(metric))
    ax.set_title(_title(points), fontsize=7)
    ax.legend(fontsize=7)
    return _written(fig, points, out, "beyond_extrapolate")


def controls(out: Path | None, table: pd.DataFrame, intervals: dict, references: pd.DataFrame,
             metric: str) -> list[Path]:
    """The merges of one window by curve and order (``table``), each control with the interval of control −
    its natural-order merge the verdict uses (``intervals``: (curve, order) -> (natural curve, comparison))."""
    rows = []
    for _, row in table.iterrows():
        natural, c = intervals.get((row["curve"], row["merge_order"]), (None, None))
        base = table[(table["curve"] == natural) & (table["merge_order"] == "natural")][metric]
        rows.append({"curve": row["curve"], "merge_order": row["merge_order"], "metric": metric, **interval_row(
            value=float(row[metric]), reference=natural or "", metric=metric, comparison=c,
            reference_value=float(base.iloc[0]) if not base.empty else math.nan)})
    points = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    x = np.arange(len(points))
    ax.bar(x, points["value"], color=["tab:blue" if o == "natural" else "tab:orange" for o in points["merge_order"]])
    _bars(ax, x, points, fmt="none", ecolor="black")
    for _, ref in references.iterrows():
        ax.axhline(ref[metric], linestyle="--", color="black" if ref["kind"] == "wsd" else "gray",
                   label=f"{ref['kind']} {ref['curve']}")
    _limits(ax, points["value"], points["bar_low"], points["bar_high"], references.get(metric, []))
    ax.set_xticks(x, points["curve"], rotation=30, fontsize=8)
    ax.set_ylabel(_ylabel(metric))
    ax.set_title(_title(points).replace("from ", "from its natural-order merge; e.g. "), fontsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return _written(fig, points, out, "beyond_controls")


def long_decay(out: Path | None, table: pd.DataFrame, intervals: dict) -> list[Path]:
    """Raw, best merge and decay vs the decay's share of training (``table``: one row per length S), the
    merge at each S with the interval of merge − decay the verdict uses (``intervals``: S -> comparison)."""
    rows = [{"steps": int(row["steps"]), "fraction": float(row["fraction"]), "metric": LOSS, **interval_row(
        value=float(row["merge"]), reference="WSD 1-sqrt end", reference_value=float(row["decay"]), metric=LOSS,
        comparison=intervals.get(int(row["steps"])))} for _, row in table.iterrows()]
    points = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    x = table["fraction"].to_numpy(float) * 100
    ax.plot(x, table["raw"], marker="o", label="raw constant-LR end")
    _bars(ax, x, points, marker="o", label="best merge")
    ax.plot(x, table["decay"], marker="o", label="WSD 1-sqrt end")
    _limits(ax, table["raw"], table["decay"], points["value"], points["bar_low"], points["bar_high"])
    ax.set_xlabel("decay length (% of training)")
    ax.set_ylabel(_ylabel(LOSS))
    ax.set_title(_title(points), fontsize=7)
    ax.legend(fontsize=8)
    return _written(fig, points, out, "beyond_long_decay")


def noise(out: Path | None, gains: pd.DataFrame, verdict_interval: tuple[float, float, str] | None) -> list[Path]:
    """Merge and decay gains vs each candidate scale with its quadratic fit; each point the seed-mean gain with
    the t interval of its seeds (none at one seed: the grid points are the verdict's replicates); each merge
    panel's title the best scale's R² and the verdict's bootstrap interval (``verdict_interval``: low, high,
    scale)."""
    points = _seed_points(gains)
    fig, axes = plt.subplots(2, len(SCALES), figsize=(3.0 * len(SCALES), 5.6), sharey="row")
    for r, target in enumerate(("merge_gain", "decay_gain")):
        rows = points[points["gain"] == target]
        for col, (name, scale) in enumerate(SCALES.items()):
            ax = axes[r, col]
            x = log_scale(np.array([scale(p) for _, p in rows.iterrows()], dtype=float))
            _bars(ax, x, rows, fmt="o", markersize=4)
            every = gains.assign(x=log_scale(np.array([scale(p) for _, p in gains.iterrows()], dtype=float)))
            r2, coef = quadratic_r2(every["x"].to_numpy(float), every[target].to_numpy(float))
            if not math.isnan(r2):
                grid = np.linspace(x.min(), x.max(), 50)
                ax.plot(grid, np.polyval(coef, grid), color="tab:red", linewidth=1)
            title = f"{name}: R² {r2:.2f}" if not math.isnan(r2) else name
            if target == "merge_gain" and verdict_interval is not None and verdict_interval[2] == name:
                title += f"\nbest: 95% bootstrap [{verdict_interval[0]:.2f}, {verdict_interval[1]:.2f}]"
            ax.set_title(title, fontsize=8)
            ax.set_xlabel(f"log10 {name}")
            ax.axhline(0, color="lightgray", linewidth=0.8)
        axes[r, 0].set_ylabel(f"{target.replace('_', ' ')} (bpb)")
    return _written(fig, points, out, "beyond_noise")


def _seed_points(gains: pd.DataFrame) -> pd.DataFrame:
    """Per grid point and gain: the mean over seeds and its t interval (NaN with one seed) as ``bar_low``/``bar_high``."""
    rows = []
    for key, group in gains.groupby(["lr", "batch_size", "weight_decay", "steps"]):
        for target in ("merge_gain", "decay_gain"):
            values = group[target].dropna().to_numpy(float)
            n = len(values)
            half = quantile(n - 1) * values.std(ddof=1) / math.sqrt(n) if n >= 2 else math.nan
            mean = float(values.mean()) if n else math.nan
            rows.append({**dict(zip(["lr", "batch_size", "weight_decay", "steps"], key)), "gain": target, "value": mean,
                         "ci_low": mean - half, "ci_high": mean + half, "bar_low": mean - half, "bar_high": mean + half,
                         "noise": f"t interval over {n} seeds" if n >= 2 else "none (1 seed)", "seeds": n})
    return pd.DataFrame(rows)


def _written(fig, points: pd.DataFrame, out: Path | None, name: str) -> list[Path]:
    """The figure and its data (``name``.png and .csv under ``out/figures``); nothing without ``out``."""
    if out is None:
        plt.close(fig)
        return []
    path = Path(out) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    points.to_csv(path.with_suffix(".csv"), index=False)
    return [save_figure(fig, path)]
