"""``python -m analysis.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR] [--allow-mixed]``: tables, figures, findings.

Writes ``report.md``, ``tables/*.csv`` and ``figures/*.png`` into the (first) sweep folder or
``--out``. The runner calls ``write_report`` at the end of every sweep. The report opens with one
sentence per claim (metric, effect, interval, the noise it covers, verdict) and a figure of the
effects. When it cannot be written, ``write_report`` raises ReportError (or the underlying error)
and ``main`` returns non-zero with the reason.

Example:
    >>> from analysis.report import write_report            # doctest: +SKIP
    >>> write_report(["sweeps/duration"]).path.name          # doctest: +SKIP
    'report.md'
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import beyond, figures, fitted_claim
from analysis.design import Design, design_of, windows_line
from analysis.evidence import Evidence
from analysis.factors import factor_importance
from analysis.figure_data import AXIS_NAMES, axis_points, fidelity_points, pair_intervals
from analysis.findings import findings
from analysis.load import DESIGN, ReportError, eval_stages, failed, full_suite_rows, load_results, model_scores
from analysis.paper import paper_section
from analysis.prose import headline
from analysis.prose import markdown as _md
from analysis.rules import Thresholds
from analysis.sft import table2_section
from analysis.tables import (
    WORSE_SHOWN,
    by_design,
    decay_pairs,
    duration_curves,
    loss_table,
    table1,
    table3,
    table4,
    table5,
    worse_than_raw,
)
from wsm_exp.atomic import temp_path


@dataclass
class Report:
    """What a report wrote: its markdown path, tables by name and figure paths."""

    path: Path
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)


def build_tables(frame: pd.DataFrame, thresholds: Thresholds = Thresholds()) -> dict[str, pd.DataFrame]:
    """Every table of the report, from a tidy results frame of one group (study and suite)."""
    scores = model_scores(frame)
    primary = _primary(frame, scores)
    return {
        "models": scores, "findings": findings(scores, frame, thresholds), "tasks": Evidence(frame, scores).chance,
        "losses": loss_table(frame, scores), "table1": table1(scores, primary), "table3": table3(scores, primary),
        "table4": table4(scores), "table5": table5(scores, primary), "duration": duration_curves(scores, primary),
        "factors": factor_importance(scores, primary), "failed": failed(frame), "pairs": decay_pairs(scores, primary),
        "worse_than_raw": worse_than_raw(scores, primary),
    }


def _primary(frame: pd.DataFrame, scores: pd.DataFrame) -> str:
    """The suite's primary metric (eval.primary), Overall when no model has held-out bits per byte."""
    primary = str(frame["primary"].iloc[0]) if "primary" in frame and len(frame) else "overall"
    return "overall" if primary == "heldout_bpb" and scores["heldout_bpb"].isna().all() else primary


def write_report(sweep_dirs: list[str | Path], out_dir: str | Path | None = None, *,
                 allow_mixed: bool = False, thresholds: Thresholds = Thresholds()) -> Report:
    """Build the report of one or more sweep folders (several seeds or sweeps combine; different studies
    or suites only with ``allow_mixed``, then side by side), with the verdicts' margins and cut-offs of
    ``thresholds`` (the config's ``analysis.*``). Raises ReportError with the reason."""
    if not sweep_dirs:
        raise ReportError("No sweep folder given: pass at least one folder holding results.parquet.")
    out = Path(out_dir or sweep_dirs[0])
    frame = load_results(*sweep_dirs, allow_mixed=allow_mixed)
    stages = eval_stages(frame)
    frame = full_suite_rows(frame)  # eval.staged: screened-out models' small-limit rows stay out of every number
    if not ((frame["status"] == "ok") & frame["task"].ne("")).any():
        raise ReportError(f"{', '.join(map(str, sweep_dirs))}: every variant failed, so there is nothing to "
                          "report; the errors are in results.csv (column error). Fix them and rerun the sweep.")
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    groups = sorted(frame["group"].unique())
    all_tables: dict[str, pd.DataFrame] = {}
    made: list[Path] = [figures.weights_figure(out / "figures" / "figure2_weights.png")]  # the same for every group
    sections = []
    for group in groups:
        part = frame[frame["group"] == group]
        suffix = "" if len(groups) == 1 else "__" + re.sub(r"[^A-Za-z0-9]+", "_", group).strip("_")
        tables = build_tables(part, thresholds)
        design = design_of(tables["models"])
        group_figures = _figures(out, tables, design, suffix, part)
        for name, table in tables.items():
            table.to_csv(out / "tables" / f"{name}{suffix}.csv", index=False)
            all_tables[f"{name}{suffix}"] = table
        extra = beyond.section(part, out, thresholds)  # extrapolation, controls, noise probe, long decays (docs/beyond.md)
        for name, table in extra.tables.items():
            table.to_csv(out / "tables" / f"{name}{suffix}.csv", index=False)
            all_tables[f"{name}{suffix}"] = table
        fitted_md, fitted_tables, fitted_figures = fitted_claim.section(part, out, thresholds)  # curve=fitted (docs/beyond.md §5)
        for name, table in fitted_tables.items():
            table.to_csv(out / "tables" / f"{name}{suffix}.csv", index=False)
            all_tables[f"{name}{suffix}"] = table
        if fitted_md:
            extra = dataclasses.replace(extra, markdown=f"{fitted_md}\n\n{extra.markdown}")
        made += group_figures + extra.figures + fitted_figures
        sections.append(render(part, tables, [*group_figures, made[0]], out, design, extra,
                               heading=group if len(groups) > 1 else None) + "\n")
    if not stages.empty:
        stages.to_csv(out / "tables" / "eval_stages.csv", index=False)
        all_tables["eval_stages"] = stages
        sections.append(_stages_section(stages))
    report = Report(out / "report.md", all_tables, made)
    preface = [] if len(groups) == 1 else [f"# WSM report: {len(groups)} studies/suites side by side "
                                           "(--allow-mixed; numbers are not comparable across them)", ""]
    tmp = temp_path(report.path)  # readers never see half a report
    try:
        tmp.write_text("\n".join([*preface, *sections]))
        os.replace(tmp, report.path)
    finally:
        tmp.unlink(missing_ok=True)  # gone once published; a failed write or rename leaves no temporary
    return report


def _figures(out: Path, tables: dict[str, pd.DataFrame], design: Design, suffix: str, frame: pd.DataFrame) \
        -> list[Path]:
    """The figures this design supports (analysis.design): claims always, the others when their part is shown;
    the metric-vs-axis figures are drawn along the design's own axis (D, N; Δ for Table 4) with the verdicts'
    intervals, their data beside them as CSV (analysis.figure_data)."""
    scores = tables["models"]
    designs = by_design(scores) if not scores.empty else scores
    baselines = designs[designs["kind"].isin(["wsd", "raw"]) & designs["branch"].astype(str).str.match(r"^(wsd_|wsm$)")] \
        if not designs.empty else designs
    if not baselines.empty:
        baselines = baselines.loc[baselines.groupby(["kind", "curve"])["end_step"].idxmax()]
    folder = out / "figures"
    shown = {name for name, reason in design.parts.items() if reason is None}
    made = [figures.claims_figure(folder / f"claims{suffix}.png", tables["findings"])]
    ev, primary = Evidence(frame, scores), _primary(frame, scores)
    axes = ([design.axis] if "duration" in shown else []) + (["interval_steps"] if "table4" in shown else [])
    for axis in axes:
        for metric, kind in (("overall", "score"), ("heldout_bpb", "loss")):
            points = axis_points(designs, ev, primary, metric, axis)
            made.append(figures.axis_figure(folder / f"{AXIS_NAMES[axis][0]}_{kind}{suffix}.png", points, baselines,
                                            axis))
    if "pairs" in shown:
        for metric, kind in (("heldout_bpb", "loss"), ("overall", "score")):
            made.append(figures.pairs_figure(folder / f"decay_pairs_{kind}{suffix}.png",
                                             pair_intervals(designs, ev, tables["pairs"], metric), metric))
    if "fidelity" in shown:
        made.append(figures.fidelity_figure(folder / f"fidelity{suffix}.png", fidelity_points(designs, ev, primary)))
    if "factors" in shown:
        made.append(figures.factors_figure(folder / f"factors{suffix}.png", tables["factors"]))
    return [p for p in made if p is not None]


def render(frame: pd.DataFrame, tables: dict[str, pd.DataFrame], figure_paths: list[Path], out: Path,
           design: Design | None = None, extra: beyond.Section | None = None, heading: str | None = None) -> str:
    """The markdown of one group: design, claims, then only the parts the design supports (analysis.design),
    the beyond-the-paper parts (``extra``), what was left out and why, every model."""
    design = design or design_of(tables["models"])
    seeds = sorted(int(s) for s in frame["seed"].dropna().unique())
    sweeps = sorted(frame["sweep"].unique().tolist())
    claims = tables["findings"]
    samples = "per-document values found" if claims["eval_ci95"].astype(str).str.len().gt(0).any() else \
        "no per-document values (samples/<model_hash>.parquet) were found, so intervals come from seeds only"
    at_chance = tables["tasks"].loc[tables["tasks"]["at_chance"], "task"].tolist()
    primary = str(frame["primary"].iloc[0]) if "primary" in frame and len(frame) else "overall"
    claim_figure = [p for p in figure_paths if p.stem.startswith("claims")]
    worse = tables["worse_than_raw"]
    lines = [
        f"# WSM report: {', '.join(sweeps)}" + (f" — {heading}" if heading else ""), "",
        f"Primary metric: **{primary}** (eval.primary); seeds {seeds}; {samples}.", "",
        f"**Design.** {design.describe()} Decay baselines: {', '.join(design.decay_shapes) or 'none'}.", "",
        *headline(claims), "",
        *([f"**⚠ {len(worse)} merge(s) worse than the raw checkpoint they end at** (on {primary}, seed means: a flag, "
           "not a verdict; the merge lost what it should add — check the window and the curve):", "",
             _md(worse[[c for c in WORSE_SHOWN if c in worse]], 4)] if not worse.empty else []),
        *[f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in claim_figure], "",
        f"{frame['variant'].nunique()} evaluated models, tasks {sorted(t for t in frame['task'].unique() if t)}. "
        "Scores are percentages of each task's metric (acc_norm, else acc); Overall is the mean over tasks "
        "(each benchmark once, the paper's weighting); bits-per-byte tasks are in the loss table. "
        "The paper's numbers are shown beside ours: a different scale, so compare directions and rankings. "
        "Merges are N ≥ 2 throughout (N = 1 is the raw checkpoint).",
        "" if len(seeds) > 1 else "One seed: intervals cover evaluation noise only (documents, clustered by source "
        "text where held-out pieces share one), not training seeds; a verdict may not survive a rerun with other "
        "seeds. Rerun with seed=0,1,2 to cover them (the smallest detectable difference is in each sentence).",
        "",
        "## Findings", "", _md(claims.drop(columns=["ci_low", "ci_high"]), 4),
        "## Tasks and chance levels", "",
        (f"At chance for every model (95% interval includes chance; no verdict rests on them): {', '.join(at_chance)}."
         if at_chance else "No task sits at chance for every model."), "",
        _md(tables["tasks"], 3),
    ]
    parts = {name: reason is None for name, reason in design.parts.items()}
    if parts["losses"]:
        lines += ["## Losses by category (bits per byte; lower is better)", "", _md(tables["losses"], 4)]
    if parts["table1"]:
        lines += ["## Table 1: WSD vs WSM (best vs best, and at the WSD token budget)", "",
                  windows_line(tables["table1"].assign(kind=tables["table1"]["row"].map({"WSM": "wsm"}))), "",
                  _md(tables["table1"]), *paper_section("table1", _md)]
    lines += table2_section(frame, _md, paper_section("table2", _md))  # SFT sweeps only (analysis/sft.py)
    if parts["pairs"]:
        lines += ["## Decay shapes beside their merge curves (paper Table 5 / Figure 4)", "",
                  "Each WSD decay shape against the merge curve that emulates it (linear ≡ mean); merge_minus_decay "
                  f"is on {primary} (negative is better for a loss).", "", _md(tables["pairs"], 4)]
    if parts["table3"]:
        lines += ["## Table 3: merge curves vs the 1-sqrt decay", "",
                  windows_line(tables["table3"].assign(kind=["wsm" if str(r).startswith("merge_") else "wsd"
                                                             for r in tables["table3"]["row"]])), "",
                  _md(tables["table3"]), *paper_section("table3", _md)]
    if parts["table4"]:
        lines += ["## Table 4: granularity (Δ, N) at fixed duration D", "",
                  f"Overall and held-out bits per byte side by side; the verdict rests on {primary}.", "",
                  _md(tables["table4"]), *paper_section("table4", _md)]
    if parts["table5"]:
        lines += ["## Table 5: held-out loss vs downstream score", "", _md(tables["table5"], 4),
                  *paper_section("table5", _md, 3)]
    if parts["factors"]:
        lines += [f"## Factor importance (R² of {primary} on log2 of each factor; merges N ≥ 2)", "",
                  _md(tables["factors"], 3)]
    if parts["duration"]:
        lines += [f"## Score vs {AXIS_NAMES[design.axis][1]}", "",
                  "Figures: each merge's bar is the 95% interval of its difference from the reference decay, the "
                  "verdicts' interval (corrected for the best of the merges; the noise it covers is in the figure "
                  "and its CSV).", "", _md(tables["duration"])]
    if extra is not None and extra.markdown:
        lines += [extra.markdown, ""]
    lines += ["## Figures", "",
              *[f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figure_paths if p not in claim_figure], "",
              "## Not shown for this design", "", *design.absent(),
              *[f"- {line}" for line in (extra.absent if extra is not None else [])], "",
              "## All models", "", _md(_with_raw_flag(tables["models"], worse))]
    if not tables["failed"].empty:
        lines += ["## Failed variants (excluded from every number above)", "", _md(tables["failed"])]
    return "\n".join(lines)


def _stages_section(stages: pd.DataFrame) -> str:
    """How the models of a staged sweep (eval.staged) were selected for the full suite."""
    full = int(stages["eval_stage"].eq("full").sum())
    return "\n".join([
        "## Evaluation stages (eval.staged)", "",
        f"{full} of {len(stages)} models got the full suite: every merge variant was screened first (held-out bits "
        "per byte, or each task at eval.screen_limit documents), and only those within the smallest detectable "
        "difference of the best screened one, plus the baselines every claim is judged against (raw checkpoint, WSD "
        "ends), were evaluated fully. Verdicts on full-suite metrics use the fully evaluated models only; a "
        "screened-out model keeps its held-out bits per byte. Rerun with eval.staged=false to evaluate the rest "
        "(cached scores are reused).", "", _md(stages), ""])


def _with_raw_flag(models: pd.DataFrame, worse: pd.DataFrame) -> pd.DataFrame:
    """The models table with a ``worse_than_raw`` column (merges flagged by analysis.tables.worse_than_raw,
    matched on every design column, so one probe's or one α's flag never marks its neighbours)."""
    shown = models.drop(columns=["min_lr", "samples_dir"], errors="ignore")
    if worse.empty or shown.empty:
        return shown
    keys = [c for c in DESIGN if c in worse and c in models]
    flagged = set(map(_cells, worse[keys].to_numpy()))
    return shown.assign(worse_than_raw=[_cells(row) in flagged for row in models[keys].to_numpy()])


def _cells(row) -> tuple:
    """A row's cells as a hashable key in which every missing value is the same None."""
    return tuple(None if pd.isna(v) else v for v in row)


def log_report_to_wandb(report: Report, run) -> None:
    """Log the report's tables (wandb.Table) and figures (wandb.Image) to a W&B run."""
    import wandb

    payload = {}
    for name, table in report.tables.items():
        if not table.empty:
            clean = table.astype(object).where(table.notna(), None)
            payload[f"report/{name}"] = wandb.Table(dataframe=clean)
    for path in report.figures:
        payload[f"report/figures/{path.stem}"] = wandb.Image(str(path))
    run.log(payload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", help="sweep folders holding results.parquet")
    parser.add_argument("--out", help="output folder (default: the first sweep folder)")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="combine folders of different studies or eval suites (reported side by side)")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweep_dirs, args.out, allow_mixed=args.allow_mixed)
    except (ReportError, OSError) as err:
        print(f"analysis.report: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 — a bug, but the user gets the reason and a non-zero exit
        print(f"analysis.report: internal error, no report written ({type(err).__name__}: {err}). "
              "Please report it with the sweep folder's results.parquet.", file=sys.stderr)
        return 1
    print(report.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
