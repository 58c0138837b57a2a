"""Report sections for the beyond-the-paper sweeps (docs/beyond.md): extrapolation, control merges,
the noise-scale probe and long decays. One entry point, ``section(frame, out)``, called by the report.

Each part finds its own rows (by the result columns ``extrapolate``, ``merge_order`` and the typed
probe branches), so it renders whatever the combined sweep folders hold and says what is missing.
The loss is held-out bits per byte (lower is better); "gain" is always "raw − model" in bpb. The verdicts
are analysis.beyond_claims' (the report's one rule: paired by seed and document, picks corrected by max-t).

Example:
    >>> import pandas as pd
    >>> part = section(pd.DataFrame(columns=["variant", "kind", "status"]), None)
    >>> part.markdown, part.absent
    ('', ['Beyond the paper: needs the extrapolate, controls, noise or long_decay sweep (docs/beyond.md).'])
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import beyond_claims as claims
from analysis import beyond_figures
from analysis.beyond_claims import row
from analysis.evidence import Evidence
from analysis.load import model_scores, prepared
from analysis.probe import probe_gains, scale_fits
from analysis.prose import markdown as _md
from analysis.rules import Thresholds
from wsm_exp.study.branch_spec import Probe, parse_branch

LOSS = "heldout_bpb"
SCORE = "overall"


@dataclass
class Section:
    """The markdown of the beyond section, its tables (by name), figures and findings rows."""

    markdown: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    findings: pd.DataFrame = field(default_factory=pd.DataFrame)
    absent: list[str] = field(default_factory=list)  # one line per part these results cannot show, with why


def section(frame: pd.DataFrame, out: Path | None, thresholds: Thresholds = Thresholds(),
            samples: dict | None = None) -> Section:
    """The parts these results support (the findings table keeps all four claims); figures go to ``out/figures``
    (none when ``out`` is None). With no part, the markdown is empty and ``absent`` says which sweeps add one.
    ``samples`` (model hash → per-document values) replaces the sweep folders' files (simulations)."""
    if not frame.empty and "status" in frame and "group" not in frame:  # a frame built in memory
        frame = prepared(frame)
    models = _models(frame)
    ev = Evidence(frame, models, samples) if not models.empty else None
    parts = [_extrapolation(models, ev, out, thresholds), _controls(models, ev, out, thresholds),
             _noise(models, out, thresholds), _long_decay(models, ev, out, thresholds)]
    findings = pd.DataFrame([part.findings for part in parts])
    shown = [(part, row) for part, (_, row) in zip(parts, findings.iterrows()) if part.tables]
    if not shown:
        return Section("", {"beyond_findings": findings}, [], findings, [
            "Beyond the paper: needs the extrapolate, controls, noise or long_decay sweep (docs/beyond.md)."])
    lines = ["## Beyond the paper (docs/beyond.md)", "",
             "| claim | verdict | contrast | difference | ci95 | K | seeds | evidence |",
             "|---|---|---|---|---|---|---|---|",
             *(f"| {r['claim']} | {r['verdict']} | {r['contrast']} ({r['metric']}) | {r['difference']} | {r['ci95']} | "
               f"{r['candidates']} | {r['seeds']} | {r['evidence']} |" for _, r in shown), ""]
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

def _extrapolation(models: pd.DataFrame, ev: Evidence | None, out: Path | None, thresholds: Thresholds) -> Section:
    merges = models[(models["kind"] == "wsm") & ~models["probe"]] if not models.empty else models
    family = _largest_family(merges, "extrapolate")
    if family is None:
        return Section("### Extrapolation past the merge\n\n_needs the extrapolate sweep (several α on one "
                       "window)._", findings=pd.Series(row("extrapolate", evidence="needs the extrapolate sweep")))
    metric = _metric(family)
    table = _fold(family, ["extrapolate"]).sort_values("extrapolate")
    reference = _raw_and_decay(models)
    found, intervals = claims.extrapolation(ev, family, metric, thresholds.power)  # intervals: every α's bar
    figures = beyond_figures.extrapolation(out, table, intervals, reference, metric)
    window = family.iloc[0]
    curve = window["curve"].split("-ex")[0]
    text = (f"### Extrapolation past the merge\n\nθ_merge + α·(θ_merge − θ_newest) on the {curve} "
            f"merge (N={window['quantity']}, D={window['duration_steps']}, end {window['end_step']}); "
            f"α = 0 is the merge, α = −1 the newest checkpoint.\n\n{_md(table)}\n\n"
            f"Going past the merge: **{found['verdict']}** ({found['noise']}; {found['evidence']}).")
    return Section(text, {"beyond_extrapolate": table}, figures, pd.Series(found))


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

def _controls(models: pd.DataFrame, ev: Evidence | None, out: Path | None, thresholds: Thresholds) -> Section:
    merges = models[(models["kind"] == "wsm") & ~models["probe"] & (models["extrapolate"] == 0)] \
        if not models.empty else models
    controls = merges[merges["merge_order"] != "natural"] if not merges.empty else merges
    if controls.empty:
        return Section("### Control merges\n\n_needs the controls sweep (merge.order=reverse,scramble)._",
                       findings=pd.Series(row("controls", evidence="needs the controls sweep")))
    window = controls.iloc[0]["steps"]
    same = merges[merges["steps"] == window]
    metric = _metric(same)
    table = _fold(same, ["curve", "merge_order"]).sort_values(metric, ascending=metric == LOSS)
    base = [c for c in same[same["merge_order"] == "natural"]["curve"].unique()
            if (same["curve"].str.startswith(f"{c}-") & (same["merge_order"] != "natural")).any()]
    pairs = []
    for curve in base:
        natural = claims.designs(same[(same["curve"] == curve) & (same["merge_order"] == "natural")]).iloc[0]
        for order in ("reverse", "scramble"):
            control = same[same["curve"].str.startswith(f"{curve}-") & (same["merge_order"] == order)]
            for _, design in claims.designs(control).iterrows():
                if not np.allclose(_weights(natural), _weights(design)):
                    pairs.append((f"{curve} vs its {order}", natural, design))
    found = claims.controls(ev, pairs, metric, thresholds.power)
    intervals = {(design["curve"], design["merge_order"]):  # each control − its natural-order merge (the bars)
                 (natural["curve"], ev.compare(design, natural, metric, power=thresholds.power))
                 for _, natural, design in pairs}
    figures = beyond_figures.controls(out, table, intervals, _raw_and_decay(models), metric)
    text = (f"### Control merges: shape or only averaging?\n\nThe same window ({window}); reverse lays the weights "
            f"newest↔oldest, scramble in a seeded permutation (same weights, other schedule).\n\n{_md(table)}\n\n"
            f"Shape, not only averaging: **{found['verdict']}** ({found['evidence']}).")
    return Section(text, {"beyond_controls": table}, figures, pd.Series(found))


def _weights(design: pd.Series) -> list[float]:
    return json.loads(design["weights"]) if "weights" in design else []


# --- 3. the noise-scale probe ------------------------------------------------------------------------------------

def _noise(models: pd.DataFrame, out: Path | None, thresholds: Thresholds = Thresholds()) -> Section:
    gains = probe_gains(models)
    if not gains.empty:  # a noise grid: several (η, B, λ) at one branch length
        points = gains.drop_duplicates(["steps", "lr", "batch_size", "weight_decay"]).groupby("steps").size()
        gains = gains[gains["steps"].isin(points[points >= 2].index)]
    if gains.empty:
        return Section("### Noise-scale probe\n\n_needs the noise sweep (probe branches varying η, B, λ)._",
                       findings=pd.Series(row("noise", evidence="needs the noise sweep")))
    fits = pd.concat([scale_fits(gains, "merge_gain"), scale_fits(gains, "decay_gain")], ignore_index=True)
    found = claims.noise(gains, fits, thresholds)
    merge_fits = fits[fits["gain"] == "merge_gain"].dropna(subset=["r2_adjusted"])
    verdict_interval = None if merge_fits.empty else (  # the best scale's bootstrap interval (a panel title)
        found["ci_low"] + thresholds.r2_collapse, found["ci_high"] + thresholds.r2_collapse,
        merge_fits.sort_values("r2_adjusted", ascending=False).iloc[0]["scale"])
    table = gains.groupby(["lr", "batch_size", "weight_decay", "steps"])[
        ["raw", "merge", "decay", "merge_gain", "decay_gain"]].mean().reset_index()
    figures = beyond_figures.noise(out, gains, verdict_interval)
    text = (f"### Noise-scale probe\n\nEach point: the WSM branch re-trained from T_switch with constant LR η, batch "
            f"size B and weight decay λ, and its matched 1-sqrt decay (same overrides, "
            f"{int(gains['steps'].iloc[0])} steps). Gains are raw − model in held-out bpb (positive: better than "
            f"the raw constant-LR checkpoint).\n\n{_md(table, places=4)}\n\n"
            "One quadratic in log10(scale) per candidate "
            f"(λ = 0 sits half a decade below the smallest λ > 0; a scale with two levels gets a line; "
            f"the adjusted R² charges each scale for its fitted terms, so scales with more levels compete "
            f"fairly):\n\n{_md(fits)}\n\n"
            f"One scale governs the merge gain and it peaks inside the grid (difference and interval: R² − the "
            f"cut-off analysis.r2_collapse): **{found['verdict']}** ({found['evidence']}). Rule: {found['rule']}.")
    return Section(text, {"beyond_noise": table, "beyond_noise_fits": fits}, figures, pd.Series(found))


# --- 4. long decays ----------------------------------------------------------------------------------------------

def _long_decay(models: pd.DataFrame, ev: Evidence | None, out: Path | None, thresholds: Thresholds) -> Section:
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
                       findings=pd.Series(row("long_decay", evidence="needs the long_decay sweep")))
    gains = gains.assign(advantage=gains["decay"] - gains["merge"],
                         fraction=gains["steps"] / (gains["switch"] + gains["steps"]))
    table = gains.groupby(["steps", "fraction"])[["raw", "merge", "decay", "merge_gain", "decay_gain",
                                                 "advantage"]].mean().reset_index()
    signs = np.sign(table["advantage"].to_numpy())
    crossing = next((i for i in range(1, len(signs)) if signs[i] != signs[i - 1]), None)
    longest = gains[gains["steps"] == gains["steps"].max()]
    points = {int(steps): _probe_point(models, length) for steps, length in gains.groupby("steps")}
    where = ("the sign of the advantage does not change over the lengths tried" if crossing is None else
             f"the advantage changes sign between S = {table['steps'].iloc[crossing - 1]} and "
             f"S = {table['steps'].iloc[crossing]} ({table['fraction'].iloc[crossing - 1]:.0%} → "
             f"{table['fraction'].iloc[crossing]:.0%} of training)")
    compared = {steps: claims.merge_against_decay(ev, point[point["kind"] == "wsm"], point[point["kind"] == "wsd"],
                                                  LOSS, thresholds.power) for steps, point in points.items()}
    found = claims.long_decay(compared[int(longest["steps"].iloc[0])], LOSS,
                              f"at the longest decay (S = {int(longest['steps'].iloc[0])}, "
                              f"{longest['fraction'].iloc[0]:.0%} of training); {where}")
    intervals = {steps: c for steps, (_, chosen, c) in compared.items() if chosen is not None}  # the bars
    figures = beyond_figures.long_decay(out, table, intervals)
    text = (f"### Long decays\n\nBranch (= decay) length S after stage 1; the merge of the equally long constant-LR "
            f"branch against the decay; advantage = decay − merge (bpb; positive: the merge is better).\n\n"
            f"{_md(table, places=4)}\n\n{where[0].upper() + where[1:]}. "
            "Merging keeps its advantage at the longest decay: "
            f"**{found['verdict']}** ({found['evidence']}).")
    return Section(text, {"beyond_long_decay": table}, figures, pd.Series(found))


def _probe_point(models: pd.DataFrame, gains: pd.DataFrame) -> pd.DataFrame:
    """The models of the probe point (η, B, λ, S) that ``gains`` (one point's rows) come from."""
    first = gains.iloc[0]
    return models[models["probe"] & (models["probe_steps"] == first["steps"]) & (models["probe_lr"] == first["lr"])
                  & (models["probe_batch_size"] == first["batch_size"])
                  & (models["probe_weight_decay"] == first["weight_decay"])]
