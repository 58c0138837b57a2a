"""Figures (PNG, matplotlib Agg): weights and staircase (Fig. 2), a metric vs the sweep's own axis D, N or Δ
with the verdicts' intervals (Figs. 3-4), merge vs real decay with its interval (Fig. 5a).

Example:
    >>> import tempfile, pathlib
    >>> weights_figure(pathlib.Path(tempfile.mkdtemp()) / "w.png", quantity=6).name
    'w.png'
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.figure_data import AXIS_NAMES, LINES  # noqa: E402
from wsm_exp.merging.weights import (  # noqa: E402
    DECAY_CURVES,
    merge_weights,
    multipliers_from_weights,
)


def save_figure(fig, path):
    """Lay out, write as PNG and close a figure; returns ``path`` (a file path or a binary buffer). The PNG's
    Description holds each panel's axis labels, y limits and legend entries as JSON (what a reader or a test can
    check without looking at pixels)."""
    fig.tight_layout()
    panels = [{"xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "ylim": [float(v) for v in ax.get_ylim()],
               "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []}
              for ax in fig.axes]
    fig.savefig(path, format="png", dpi=110, metadata={"Description": json.dumps(panels, ensure_ascii=False)})
    plt.close(fig)
    return path


def weights_figure(path: Path, quantity: int = 10, curves=("linear", "cosine", "1-sqrt", "ema")) -> Path:
    """For each curve: merge weights as bars (top) and the emulated LR staircase over f(t) (bottom). The figure
    depends on its arguments alone, so a process draws it once and writes the same bytes to every report."""
    path.write_bytes(_weights_png(quantity, tuple(curves)))
    return path


@functools.cache
def _weights_png(quantity: int, curves: tuple[str, ...]) -> bytes:
    fig, axes = plt.subplots(2, len(curves), figsize=(3.2 * len(curves), 5.2), sharey="row")
    t = np.linspace(0, 1, 200)
    for col, curve in enumerate(curves):
        weights = merge_weights(curve, quantity)
        axes[0, col].bar(range(quantity), weights, color="tab:blue")
        axes[0, col].set_title(f"{curve} (N={quantity})")
        axes[0, col].set_xlabel("checkpoint (oldest → newest)")
        stairs = [1.0, *multipliers_from_weights(weights)]
        axes[1, col].plot(t, [DECAY_CURVES[curve](x) for x in t], color="gray", label="f(t)")
        axes[1, col].step(np.arange(quantity) / quantity, stairs, where="post", color="tab:red", label="emulated LR")
        axes[1, col].set_xlabel("position in window t")
    axes[0, 0].set_ylabel("merge weight")
    axes[1, 0].set_ylabel("LR multiplier")
    axes[1, 0].legend(fontsize=8)
    return save_figure(fig, io.BytesIO()).getvalue()


SHAPE_STYLES = [{"linestyle": "--"}, {"linestyle": ":"}, {"linestyle": "-."}, {"linestyle": (0, (5, 1, 1, 1, 1, 1))}]


def pairs_figure(path: Path, pairs: pd.DataFrame, metric: str = "heldout_bpb") -> Path | None:
    """Each WSD decay shape beside the merge curve that emulates it (Figure 4 / Table 5 style): one pair of
    bars per shape, the decay hatched with its own pattern, the merge with the 95% interval of merge − decay
    (``bar_low``/``bar_high``: analysis.figure_data.pair_intervals) as an error bar; the data go to ``path``
    as .csv; None when nothing finite to draw."""
    decay, merge = f"decay_{metric}", f"merge_{metric}"
    pairs = pairs[np.isfinite(pairs[decay].astype(float)) & np.isfinite(pairs[merge].astype(float))] \
        if not pairs.empty else pairs
    if pairs.empty:
        return None
    pairs.to_csv(path.with_suffix(".csv"), index=False)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 + 1.6 * len(pairs)), 4.0))
    x = np.arange(len(pairs))
    for i, (_, row) in enumerate(pairs.iterrows()):
        ax.bar(x[i] - 0.2, row[decay], 0.4, color="white", edgecolor="black", hatch=["//", "..", "xx", "--"][i % 4],
               label=f"WSD {row['shape']} decay")
        bar = [[max(row[merge] - row["bar_low"], 0.0)], [max(row["bar_high"] - row[merge], 0.0)]] \
            if np.isfinite(row["bar_low"]) else None
        ax.bar(x[i] + 0.2, row[merge], 0.4, color=f"C{i}", yerr=bar, capsize=4,
               label=f"merge {row['merge_curve']} (D={row['duration_steps']})")
    values = np.concatenate([pairs[c].to_numpy(float) for c in (decay, merge, "bar_low", "bar_high")])
    values = values[np.isfinite(values)]
    span = values.max() - values.min()
    ax.set_ylim(values.min() - max(span, abs(values.min()) * 0.01), values.max() + max(span, abs(values.max()) * 0.01))
    ax.set_xticks(x, pairs["shape"])
    ax.set_xlabel("decay shape (and the merge curve\nthat emulates it)")
    ax.set_ylabel("held-out bits per byte" if metric == "heldout_bpb" else "overall score (%)")
    ax.set_title(f"bars: 95% interval of merge − decay\n({pairs['noise'].iloc[0]})", fontsize=7)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def axis_figure(path: Path, points: pd.DataFrame, baselines: pd.DataFrame, axis: str = "duration_steps") -> Path | None:
    """A metric vs the sweep's own axis (D, N or Δ: analysis.figure_data.AXIS_NAMES) per curve, each merge with
    the verdicts' 95% interval of its difference from the reference decay as a bar around it, and the WSD ends
    and the raw checkpoint as horizontal lines (Figures 3-4 analogue); None when nothing finite to draw. The
    legend names what the x-axis does not (D, or Δ). The data (with the intervals) go to ``path`` as .csv."""
    points = points[np.isfinite(points["value"].astype(float)) & (points[axis] > 0)] if not points.empty else points
    if points.empty:
        return None
    metric = str(points["metric"].iloc[0])
    points.to_csv(path.with_suffix(".csv"), index=False)
    baselines = baselines[np.isfinite(baselines[metric].astype(float))] if not baselines.empty else baselines
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for keys, rows in points.groupby(["curve", *LINES[axis]]):
        keys = keys if isinstance(keys, tuple) else (keys,)
        rows = rows.sort_values(axis)
        values = rows["value"].to_numpy(float)
        below = np.clip(values - rows["bar_low"].to_numpy(float), 0, None)
        above = np.clip(rows["bar_high"].to_numpy(float) - values, 0, None)
        ax.errorbar(rows[axis], values, yerr=[below, above], marker="o", capsize=3, label=_line_label(keys, rows, axis))
    styles = iter(SHAPE_STYLES)
    for _, row in baselines.iterrows():  # each decay shape its own line style; the raw checkpoint gray
        style = dict(next(styles, SHAPE_STYLES[-1]), color="black") if row["kind"] == "wsd" else \
            {"linestyle": (0, (1, 3)), "color": "gray"}
        name = f"WSD {row['curve']} decay" if row["kind"] == "wsd" else "raw constant-LR"
        ax.axhline(row[metric], **style, linewidth=1.2, label=f"{name} (end {row['end_step']})")
    arrays = [points[c].to_numpy(float) for c in ("value", "bar_low", "bar_high")]
    shown = np.concatenate(arrays + ([baselines[metric].to_numpy(float)] if not baselines.empty else []))
    shown = shown[np.isfinite(shown)]
    pad = max(float(shown.max() - shown.min()) * 0.08, 1e-9)
    ax.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)  # never zoom past a bar or a baseline
    ax.set_xscale("log", base=2)
    ticks = sorted(points[axis].astype(int).unique())
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(AXIS_NAMES[axis][1])
    ax.set_ylabel("overall score (%)" if metric == "overall" else "held-out bits per byte")
    noise = str(points["noise"].iloc[0])
    k = int(points["candidates"].max())
    ax.set_title(f"bars: 95% interval of the difference from {points['reference'].iloc[0] or 'no reference'}"
                 + (f", corrected for the best of {k} merges" if k > 1 else "") + f"\n({noise})", fontsize=7)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _line_label(keys: tuple, rows: pd.DataFrame, axis: str) -> str:
    """A line's legend: its curve, and the axes the x-axis does not show (D always)."""
    durations = ", ".join(str(int(d)) for d in rows["duration_steps"])
    if axis == "quantity":
        return f"merge {keys[0]}, Δ = {int(keys[1])} (D = {durations})"
    if axis == "interval_steps":
        return f"merge {keys[0]}, D = {int(keys[1])} (N = {', '.join(str(int(n)) for n in rows['quantity'])})"
    return f"merge {keys[0]}"


def fidelity_figure(path: Path, points: pd.DataFrame) -> Path | None:
    """Each merge vs the real decay over the same window, by the window's end step (Figure 5a analogue): the
    decay as a line, each merge curve with the 95% interval of merge − decay as a bar around it
    (``points``: analysis.figure_data.fidelity_points; the data go to ``path`` as .csv); None when empty."""
    points = points[np.isfinite(points["value"].astype(float))] if not points.empty else points
    if points.empty:
        return None
    metric = str(points["metric"].iloc[0])
    points.to_csv(path.with_suffix(".csv"), index=False)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, rows in points.groupby("model", sort=False):
        rows = rows.sort_values("end_step")
        values = rows["value"].to_numpy(float)
        below = np.nan_to_num(np.clip(values - rows["bar_low"].to_numpy(float), 0, None))
        above = np.nan_to_num(np.clip(rows["bar_high"].to_numpy(float) - values, 0, None))
        ax.errorbar(rows["end_step"], values, yerr=[below, above], marker="o", capsize=3, label=name,
                    color="black" if name.startswith("real decay") else None)
    shown = points[["value", "bar_low", "bar_high"]].to_numpy(float).ravel()
    shown = shown[np.isfinite(shown)]
    pad = max(float(shown.max() - shown.min()) * 0.08, 1e-9)
    ax.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)  # never zoom past a bar
    ax.set_xlabel("end step of the window")
    ax.set_ylabel("held-out bits per byte" if metric == "heldout_bpb" else "overall score (%)")
    tested = points[points["ci_low"].notna()]
    k = int(tested["candidates"].max()) if not tested.empty else 0
    ax.set_title("bars: 95% interval of merge − the real decay over its window"
                 + (f", corrected for the best of {k} merges" if k > 1 else "")
                 + f"\n({tested['noise'].iloc[0] if not tested.empty else 'no interval: no seed shared'})", fontsize=7)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def factors_figure(path: Path, importance: pd.DataFrame) -> Path | None:
    """R² of the score on log2 of each factor (duration D, interval Δ, quantity N)."""
    if importance["r2"].isna().all():
        return None
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(importance["factor"], importance["r2"].fillna(0), color=["tab:red", "tab:gray", "tab:gray"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("R² of overall score")
    ax.set_title("factor importance (merges)")
    return save_figure(fig, path)


def claims_figure(path: Path, claims: pd.DataFrame) -> Path | None:
    """Each tested claim's effect (A − B on its metric) with its 95% interval, one panel per claim."""
    tested = claims[np.isfinite(claims["difference"].astype(float))]
    if tested.empty:
        return None
    fig, axes = plt.subplots(len(tested), 1, figsize=(7, 1.25 * len(tested) + 0.6), squeeze=False)
    for ax, (_, row) in zip(axes[:, 0], tested.iterrows()):
        low, high, mean = float(row["ci_low"]), float(row["ci_high"]), float(row["difference"])
        if np.isfinite(low):
            ax.errorbar([mean], [0], xerr=[[max(mean - low, 0.0)], [max(high - mean, 0.0)]], fmt="o", color="tab:blue",
                        capsize=4)
        else:
            ax.plot([mean], [0], "o", color="tab:gray")
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks([])
        ax.set_title(f"{row['claim']}: {row['verdict']}", fontsize=8, loc="left")
        ax.set_xlabel(f"{row['metric']} difference ({row['noise'] or 'no interval'})", fontsize=7)
        ax.tick_params(labelsize=7)
    return save_figure(fig, path)
