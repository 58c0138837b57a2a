"""Report sections for the beyond-the-paper sweeps (docs/beyond.md): extrapolation, control merges,
the noise-scale probe and long decays. One entry point, ``section(frame, out)``, called by the report.

Each part finds its own rows (by the result columns ``extrapolate``, ``merge_order`` and the typed
probe branches), so it renders whatever the combined sweep folders hold and says what is missing.
The loss is held-out bits per byte (lower is better); "gain" is always "raw − model" in bpb.
All verdicts go through ``verdict`` so a stricter rule can replace it in one place.

Example:
    >>> import pandas as pd
    >>> part = section(pd.DataFrame(columns=["variant", "kind", "status"]), None)
    >>> part.markdown, part.absent
    ('', ['Beyond the paper: needs the extrapolate, controls, noise or long_decay sweep (docs/beyond.md).'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import beyond_figures
from analysis.load import model_scores, prepared
from analysis.probe import SCALES, best_scale_interval, probe_gains, probes_merges
from analysis.probe import scale_fits
from analysis.prose import interval
from analysis.rules import Thresholds
from analysis.prose import markdown as _md
from analysis.stats import Comparison, all_parts, compare
from wsm_exp.study.branch_spec import Probe, parse_branch

LOSS = "heldout_bpb"
SCORE = "overall"
CLAIMS = {
    "extrapolate": "extrapolating past the merge (α > 0) lowers the held-out loss",
    "controls": "the merge's gain is the schedule's shape, not only averaging",
    "noise": "the merge gain is governed by one noise scale and peaks inside the grid",
    "long_decay": "merging keeps its advantage over the decay as the decay lengthens",
}


@dataclass
class Section:
    """The markdown of the beyond section, its tables (by name), figures and findings rows."""

    markdown: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    findings: pd.DataFrame = field(default_factory=pd.DataFrame)
    absent: list[str] = field(default_factory=list)  # one line per part these results cannot show, with why


def verdict(better: list[float], worse: list[float], candidates: int = 1) -> Comparison:
    """The project's rule for "``better`` is higher than ``worse``", paired by seed (analysis.stats.compare);
    ``candidates`` > 1 when ``better`` was picked as the best of that many (Bonferroni over the seed interval)."""
    return compare(better, worse, candidates=candidates)


def section(frame: pd.DataFrame, out: Path | None, thresholds: Thresholds = Thresholds()) -> Section:
    """The parts these results support (the findings table keeps all four claims); figures go to ``out/figures``
    (none when ``out`` is None). With no part, the markdown is empty and ``absent`` says which sweeps add one."""
    models = _models(frame)
    parts = [_extrapolation(models, out), _controls(models, out), _noise(models, out, thresholds), _long_decay(models, out)]
    findings = pd.DataFrame([part.findings for part in parts])
    shown = [(part, row) for part, (_, row) in zip(parts, findings.iterrows()) if part.tables]
    if not shown:
        return Section("", {"beyond_findings": findings}, [], findings, [
            "Beyond the paper: needs the extrapolate, controls, noise or long_decay sweep (docs/beyond.md)."])
    lines = ["## Beyond the paper (docs/beyond.md)", "",
             "| claim | verdict | difference | ci95 | seeds | evidence |", "|---|---|---|---|---|---|",
             *(f"| {r['claim']} | {r['verdict']} | {r['difference']} | {r['ci95']} | {r['seeds']} | "
               f"{r['evidence']} |" for _, r in shown), ""]
    tables, figures = {}, []
    for part, _ in shown:
        lines += [part.markdown, ""]
        tables.update(part.tables)
        figures += part.figures
    absent = [f"{part.markdown.splitlines()[0].lstrip('# ')}: {part.findings['evidence']}." for part in parts
              if not part.tables]
    return Section("\n".join(lines), {**tables, "beyond_findings": findings}, figures, findings, absent)


# --- shared -------------------------------------------------------------------------------------------------

def _models(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-model scores plus the beyond columns and the probe's η, B, λ, S (NaN for other branches)."""
    if frame.empty or "status" not in frame or not (frame["status"] == "ok").any():
        return pd.DataFrame()
    if "group" not in frame:  # a frame built in memory rather than read by analysis.load
        frame = prepared(frame)
    scores = model_scores(frame)
    extra = frame.drop_duplicates("variant").set_index("variant")
    for column, default in (("extrapolate", 0.0), ("merge_order", "natural"), ("steps", "[]"), ("weights", "[]")):
        scores[column] = scores["variant"].map(extra[column]) if column in extra else default
    specs = [parse_branch(b) if kind == "probe" else None for b, kind in zip(scores["branch"].astype(str),
                                                                            scores["branch_kind"].astype(str))]
    for name in ("lr", "batch_size", "weight_decay", "steps"):
        scores[f"probe_{name}"] = [getattr(s, name) if isinstance(s, Probe) else math.nan for s in specs]
    scores["probe"] = [isinstance(s, Probe) for s in specs]
    return scores


def _metric(rows: pd.DataFrame) -> str:
    """The loss when measured (the tiny suite's primary), else the overall score."""
    return LOSS if LOSS in rows and rows[LOSS].notna().any() else SCORE


def _higher_better(values: list[float], metric: str) -> list[float]:
    return [-v for v in values] if metric == LOSS else list(values)


def _seeds(rows: pd.DataFrame, metric: str) -> dict[int, float]:
    return rows.groupby("seed")[metric].mean().dropna().to_dict()


def _paired(a: pd.DataFrame, b: pd.DataFrame, metric: str, candidates: int = 1) -> Comparison:
    """``a`` better than ``b`` on ``metric`` (loss: lower is better), over the seeds both have."""
    sa, sb = _seeds(a, metric), _seeds(b, metric)
    common = sorted(set(sa) & set(sb))
    return verdict(_higher_better([sa[s] for s in common], metric), _higher_better([sb[s] for s in common], metric),
                   candidates)


def _row(claim: str, comparison: Comparison | None = None, evidence: str = "", verdict_text: str | None = None,
         seeds: int = 0) -> dict:
    """A beyond findings row; ``verdict_text`` is an outcome word (worded with the comparison's coverage)."""
    if comparison is None:
        return {"claim": claim, "verdict": verdict_text or "not tested", "outcome": (verdict_text or "not tested")
                .split(" (")[0], "difference": math.nan, "ci95": "", "seeds": seeds, "evidence": evidence}
    outcome = verdict_text or comparison.outcome
    return {"claim": claim, "verdict": comparison.phrase(outcome), "outcome": outcome,
            "difference": round(comparison.mean, 4), "ci95": interval(comparison.ci_low, comparison.ci_high, 4),
            "seeds": comparison.seeds, "evidence": evidence}


def _fold(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Seeds folded: mean and std of the loss and the score per key."""
    grouped = rows.groupby(keys, dropna=False)
    table = grouped[[LOSS, SCORE]].mean().join(grouped[[LOSS, SCORE]].std().add_suffix("_std"))
    return table.join(grouped.size().rename("seeds")).reset_index()


def _raw_and_decay(models: pd.DataFrame, branch_is_probe: bool = False) -> pd.DataFrame:
    """The newest raw checkpoint and each WSD end of the study's own branches (reference lines)."""
    ref = models[models["kind"].isin(["raw", "wsd"]) & (models["probe"] == branch_is_probe)
                 & ~models["branch"].astype(str).str.startswith("fidelity_")]
    return ref.loc[ref.groupby(["kind", "curve"])["end_step"].idxmax()] if not ref.empty else ref


# --- 1. extrapolation ------------------------------------------------------------------------------------------

def _extrapolation(models: pd.DataFrame, out: Path | None) -> Section:
    claim = CLAIMS["extrapolate"]
    merges = models[(models["kind"] == "wsm") & ~models["probe"]] if not models.empty else models
    family = _largest_family(merges, "extrapolate")
    if family is None:
        return Section("### Extrapolation past the merge\n\n_needs the extrapolate sweep (several α on one "
                       "window)._", findings=pd.Series(_row(claim, evidence="needs the extrapolate sweep")))
    metric = _metric(family)
    table = _fold(family, ["extrapolate"]).sort_values("extrapolate")
    reference = _raw_and_decay(models)
    plain = family[family["extrapolate"] == 0]
    past = table[table["extrapolate"] > 0]
    if plain.empty or past.empty:
        row = _row(claim, evidence="needs α = 0 and some α > 0 on the same window")
    else:
        best_alpha = past.sort_values(metric, ascending=metric == LOSS).iloc[0]["extrapolate"]
        c = _paired(family[family["extrapolate"] == best_alpha], plain, metric, candidates=len(past))
        best_value = past.set_index("extrapolate").loc[best_alpha, metric]
        row = _row(claim, c, f"best α > 0 = {best_alpha:g} ({metric} {best_value:.4f}) "
                   f"vs α = 0 ({plain[metric].mean():.4f}); best of {len(past)} α, the interval corrected for "
                   f"the pick (Bonferroni, K = {len(past)})")
    intervals = {} if plain.empty else {  # every α > 0 as the verdict compares its best one (the figure's bars)
        alpha: _paired(family[family["extrapolate"] == alpha], plain, metric, candidates=len(past))
        for alpha in past["extrapolate"]}
    figures = beyond_figures.extrapolation(out, table, intervals, reference, metric)
    window = family.iloc[0]
    curve = window["curve"].split("-ex")[0]
    text = (f"### Extrapolation past the merge\n\nθ_merge + α·(θ_merge − θ_newest) on the {curve} "
            f"merge (N={window['quantity']}, D={window['duration_steps']}, end {window['end_step']}); "
            f"α = 0 is the merge, α = −1 the newest checkpoint.\n\n{_md(table)}\n\n"
            f"Going past the merge: **{row['verdict']}** (paired by seed on {metric}; {row['evidence']}).")
    return Section(text, {"beyond_extrapolate": table}, figures, pd.Series(row))


def _largest_family(merges: pd.DataFrame, column: str) -> pd.DataFrame | None:
    """The merges of one window (same steps and order) that vary ``column``; the largest such group."""
    if merges.empty or merges[column].nunique() < 2:
        return None
    best = None
    for _, group in merges[merges["merge_order"] == "natural"].groupby("steps"):
        if group[column].nunique() >= 2 and (best is None or group[column].nunique() > best[column].nunique()):
            best = group
    return best


# --- 2. control merges -----------------------------------------------------------------------------------------

def _controls(models: pd.DataFrame, out: Path | None) -> Section:
    claim = CLAIMS["controls"]
    merges = models[(models["kind"] == "wsm") & ~models["probe"] & (models["extrapolate"] == 0)] \
        if not models.empty else models
    controls = merges[merges["merge_order"] != "natural"] if not merges.empty else merges
    if controls.empty:
        return Section("### Control merges\n\n_needs the controls sweep (merge.order=reverse,scramble)._",
                       findings=pd.Series(_row(claim, evidence="needs the controls sweep")))
    window = controls.iloc[0]["steps"]
    same = merges[merges["steps"] == window]
    metric = _metric(same)
    table = _fold(same, ["curve", "merge_order"]).sort_values(metric, ascending=metric == LOSS)
    base = [c for c in same[same["merge_order"] == "natural"]["curve"].unique()
            if (same["curve"].str.startswith(f"{c}-") & (same["merge_order"] != "natural")).any()]
    rows_text, comparisons, intervals = [], [], {}
    for curve in base:
        natural = same[(same["curve"] == curve) & (same["merge_order"] == "natural")]
        for order in ("reverse", "scramble"):
            control = same[same["curve"].str.startswith(f"{curve}-") & (same["merge_order"] == order)]
            if not control.empty and not np.allclose(_weights(natural), _weights(control)):
                c = _paired(natural, control, metric)
                comparisons.append(c)
                intervals.update({(name, order): (curve, c) for name in control["curve"].unique()})
                rows_text.append(f"{curve} vs its {order}: {c.mean:+.4f} ({c.verdict})")
    if not comparisons:
        row = _row(claim, evidence="no curve whose controls differ from it (the mean's reverse is the mean)")
    else:
        weakest = min(comparisons, key=lambda c: c.mean)
        combined = all_parts([c.outcome for c in comparisons])  # every contrast needed
        mean = same[same["curve"].isin(["mean", "linear"]) & (same["merge_order"] == "natural")]
        evidence = "; ".join(rows_text) + (f"; mean {mean[metric].mean():.4f}" if not mean.empty else "")
        row = _row(claim, weakest, evidence + f" ({metric}; the weakest contrast is shown)", verdict_text=combined)
    figures = beyond_figures.controls(out, table, intervals, _raw_and_decay(models), metric)
    text = (f"### Control merges: shape or only averaging?\n\nThe same window ({window}); reverse lays the weights "
            f"newest↔oldest, scramble in a seeded permutation (same weights, other schedule).\n\n{_md(table)}\n\n"
            f"Shape, not only averaging: **{row['verdict']}** ({row['evidence']}).")
    return Section(text, {"beyond_controls": table}, figures, pd.Series(row))


def _weights(rows: pd.DataFrame) -> list[float]:
    import json

    return json.loads(rows["weights"].iloc[0]) if "weights" in rows else []


# --- 3. the noise-scale probe ------------------------------------------------------------------------------------

def _noise(models: pd.DataFrame, out: Path | None, thresholds: Thresholds = Thresholds()) -> Section:
    claim = CLAIMS["noise"]
    gains = probe_gains(models)
    if not gains.empty:  # a noise grid: several (η, B, λ) at one branch length
        points = gains.drop_duplicates(["steps", "lr", "batch_size", "weight_decay"]).groupby("steps").size()
        gains = gains[gains["steps"].isin(points[points >= 2].index)]
    if gains.empty:
        return Section("### Noise-scale probe\n\n_needs the noise sweep (probe branches varying η, B, λ)._",
                       findings=pd.Series(_row(claim, evidence="needs the noise sweep")))
    fits = pd.concat([scale_fits(gains, "merge_gain"), scale_fits(gains, "decay_gain")], ignore_index=True)
    merge_fits = fits[fits["gain"] == "merge_gain"].dropna(subset=["r2_adjusted"])
    best = merge_fits.sort_values("r2_adjusted", ascending=False).iloc[0] if not merge_fits.empty else None
    seeds = gains["seed"].nunique()
    verdict_interval = None
    if best is None:
        row = _row(claim, evidence="too few grid points for a fit")
    else:
        low, high, inside = best_scale_interval(gains)
        verdict_interval = (low, high, best["scale"])
        cut = thresholds.r2_collapse
        observed = (f"{best['scale']} adjusted R² {best['r2_adjusted']:.2f}, 95% bootstrap interval [{low:.2f}, "
                    f"{high:.2f}] with the best of {len(SCALES)} scales re-picked per resample; peak inside the grid "
                    f"in {inside:.0%} of resamples")
        # reproduced: R² surely above the cut-off and the peak surely inside; not reproduced: R² surely below
        # it, or surely above it with the peak surely outside; anything else (a null among them) inconclusive
        if math.isnan(low):
            text = "inconclusive"
        elif low >= cut and inside >= 0.975:
            text = "reproduced"
        elif high < cut or (low >= cut and inside <= 0.025):
            text = "not reproduced"
        else:
            text = "inconclusive"
        coverage = "grid points and seeds resampled" if seeds >= 2 else "grid points resampled (1 seed)"
        row = {**_row(claim, evidence=f"best scale for the merge gain: {observed} ({coverage}); "
                      + ", ".join(f"{r['scale']} {r['r2_adjusted']:.2f}" for _, r in merge_fits.iterrows()),
                      verdict_text=text, seeds=seeds),
               "verdict": f"{text} on the bootstrap of {coverage}", "difference": round(best["r2_adjusted"] - cut, 4),
               "ci95": interval(low - cut, high - cut, 4)}
    table = gains.groupby(["lr", "batch_size", "weight_decay", "steps"])[
        ["raw", "merge", "decay", "merge_gain", "decay_gain"]].mean().reset_index()
    figures = beyond_figures.noise(out, gains, verdict_interval)
    text = (f"### Noise-scale probe\n\nEach point: the WSM branch re-trained from T_switch with constant LR η, batch "
            f"size B and weight decay λ, and its matched 1-sqrt decay (same overrides, "
            f"{int(gains['steps'].iloc[0])} steps). Gains are raw − model in held-out bpb (positive: better than "
            f"the raw constant-LR checkpoint).\n\n{_md(table)}\n\nOne quadratic in log10(scale) per candidate "
            f"(λ = 0 sits half a decade below the smallest λ > 0; a scale with two levels gets a line; "
            f"the adjusted R² charges each scale for its fitted terms, so scales with more levels compete "
            f"fairly):\n\n{_md(fits)}\n\n"
            f"One scale collapses the merge gain (adjusted R² ≥ {thresholds.r2_collapse}, analysis.rules.Thresholds) "
            f"and it peaks inside the grid (difference and interval: R² − cut-off): "
            f"**{row['verdict']}** ({row['evidence']}).")
    return Section(text, {"beyond_noise": table, "beyond_noise_fits": fits}, figures, pd.Series(row))


# --- 4. long decays ----------------------------------------------------------------------------------------------

def _long_decay(models: pd.DataFrame, out: Path | None) -> Section:
    claim = CLAIMS["long_decay"]
    gains = probe_gains(models)
    if not gains.empty:
        knobs = ["lr", "batch_size", "weight_decay"]
        counts = gains.groupby(knobs)["steps"].nunique()
        gains = gains.merge(counts[counts >= 2].rename("lengths").reset_index(), on=knobs)
        if not gains.empty:  # one probe point (the one with the most lengths): other points are not extra seeds
            top = gains.sort_values(["lengths", *knobs], ascending=[False, True, True, True]).iloc[0]
            gains = gains[(gains[knobs] == top[knobs]).all(axis=1)]
    if gains.empty:
        return Section("### Long decays\n\n_needs the long_decay sweep (several merge.branch_steps)._",
                       findings=pd.Series(_row(claim, evidence="needs the long_decay sweep")))
    gains = gains.assign(advantage=gains["decay"] - gains["merge"],
                         fraction=gains["steps"] / (gains["switch"] + gains["steps"]))
    table = gains.groupby(["steps", "fraction"])[["raw", "merge", "decay", "merge_gain", "decay_gain",
                                                 "advantage"]].mean().reset_index()
    signs = np.sign(table["advantage"].to_numpy())
    crossing = next((i for i in range(1, len(signs)) if signs[i] != signs[i - 1]), None)
    longest = gains[gains["steps"] == gains["steps"].max()]
    intervals = {}  # every length as the verdict compares the longest (the figure's bars)
    for steps, point in gains.groupby("steps"):
        intervals[int(steps)] = verdict(point.sort_values("seed")["decay"].tolist(),
                                        point.sort_values("seed")["merge"].tolist(),
                                        candidates=max(int(probes_merges(models, point)), 1))
    c = intervals[int(longest["steps"].iloc[0])]
    where = ("the sign of the advantage does not change over the lengths tried" if crossing is None else
             f"the advantage changes sign between S = {table['steps'].iloc[crossing - 1]} and "
             f"S = {table['steps'].iloc[crossing]} ({table['fraction'].iloc[crossing - 1]:.0%} → "
             f"{table['fraction'].iloc[crossing]:.0%} of training)")
    row = _row(claim, c, f"at the longest decay (S = {int(longest['steps'].iloc[0])}, "
               f"{longest['fraction'].iloc[0]:.0%} of training) merge {longest['merge'].mean():.4f} vs decay "
               f"{longest['decay'].mean():.4f} bpb; {where}")
    figures = beyond_figures.long_decay(out, table, intervals)
    text = (f"### Long decays\n\nBranch (= decay) length S after stage 1; the merge of the equally long constant-LR "
            f"branch against the decay; advantage = decay − merge (bpb; positive: the merge is better).\n\n"
            f"{_md(table)}\n\n{where[0].upper() + where[1:]}. Merging keeps its advantage at the longest decay: "
            f"**{row['verdict']}**.")
    return Section(text, {"beyond_long_decay": table}, figures, pd.Series(row))
