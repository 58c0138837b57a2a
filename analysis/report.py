"""``python -m analysis.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR]``: tables, figures, findings.

Writes ``report.md``, ``tables/*.csv`` and ``figures/*.png`` into the (first) sweep folder or
``--out``. The runner calls ``write_report`` at the end of every sweep.

Example:
    >>> from analysis.report import write_report            # doctest: +SKIP
    >>> write_report(["sweeps/duration"]).path.name          # doctest: +SKIP
    'report.md'
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import beyond, figures
from analysis.factors import factor_importance
from analysis.findings import findings
from analysis.load import failed, load_results, model_scores
from analysis.tables import by_design, duration_curves, paper_table, table1, table3, table4, table5


@dataclass
class Report:
    """What a report wrote: its markdown path, tables by name and figure paths."""

    path: Path
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)


def build_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every table of the report, from a tidy results frame."""
    scores = model_scores(frame)
    return {
        "models": scores, "table1": table1(scores), "table3": table3(scores), "table4": table4(scores),
        "table5": table5(scores), "duration": duration_curves(scores), "factors": factor_importance(scores),
        "findings": findings(scores), "failed": failed(frame),
    }


def write_report(sweep_dirs: list[str | Path], out_dir: str | Path | None = None) -> Report:
    """Build the report of one or more sweep folders (several seeds or sweeps combine)."""
    out = Path(out_dir or sweep_dirs[0])
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    frame = load_results(*sweep_dirs)
    tables = build_tables(frame)
    for name, table in tables.items():
        table.to_csv(out / "tables" / f"{name}.csv", index=False)
    scores = tables["models"]
    designs = by_design(scores) if not scores.empty else scores
    baselines = designs[designs["kind"].isin(["wsd", "raw"]) & ~designs["branch"].astype(str).str.startswith("fidelity_")] \
        if not designs.empty else designs
    if not baselines.empty:
        baselines = baselines.loc[baselines.groupby(["kind", "curve"])["end_step"].idxmax()]
    made = [figures.weights_figure(out / "figures" / "figure2_weights.png"),
            figures.duration_figure(out / "figures" / "duration_score.png", tables["duration"], baselines),
            figures.duration_figure(out / "figures" / "duration_loss.png", tables["duration"], baselines,
                                    metric="heldout_bpb"),
            figures.fidelity_figure(out / "figures" / "fidelity.png", designs) if not designs.empty else None,
            figures.factors_figure(out / "figures" / "factors.png", tables["factors"])]
    extra = beyond.section(frame, out)  # extrapolation, controls, noise probe, long decays (docs/beyond.md)
    for name, table in extra.tables.items():
        table.to_csv(out / "tables" / f"{name}.csv", index=False)
    report = Report(out / "report.md", {**tables, **extra.tables}, [p for p in made if p is not None] + extra.figures)
    report.path.write_text(render(frame, tables, report.figures, out) + "\n" + extra.markdown + "\n")
    return report


def _md(table: pd.DataFrame, digits: int = 2) -> str:
    """Markdown; a column ``c`` with a ``c_std`` twin shows as "mean ± std" (CSVs keep both)."""
    if table.empty:
        return "_(no rows)_\n"
    places = {c: max(digits, 4) if "bpb" in c else digits for c in table.columns}  # losses need 4 decimals
    table = table.round(places)
    for std in [c for c in table.columns if c.endswith("_std") and c[:-4] in table.columns]:
        mean, n = std[:-4], places[std]
        if table[std].notna().any():
            table[mean] = [m if pd.isna(s) or pd.isna(m) else f"{m:.{n}f} ± {s:.{n}f}"
                           for m, s in zip(table[mean], table[std])]
        table = table.drop(columns=std)
    return table.to_markdown(index=False) + "\n"


def render(frame: pd.DataFrame, tables: dict[str, pd.DataFrame], figure_paths: list[Path], out: Path) -> str:
    seeds = sorted(frame["seed"].unique().tolist())
    sweeps = sorted(frame["sweep"].unique().tolist())
    lines = [
        f"# WSM report: {', '.join(sweeps)}", "",
        f"{frame['variant'].nunique()} evaluated models, seeds {seeds}, tasks {sorted(frame['task'].unique().tolist())}.",
        "Scores are percentages of the primary metric (acc_norm, else acc); Overall is the mean over tasks "
        "(each benchmark once, the paper's weighting); bits-per-byte tasks are in the loss columns. "
        "The paper's numbers are shown beside ours: a different scale, so compare directions and rankings.",
        "" if len(seeds) > 1 else "**One seed: every verdict below is unconfirmed (no noise estimate).**", "",
        "## Findings", "", _md(tables["findings"]),
        "## Table 1: WSD vs WSM (best vs best, and at the WSD token budget)", "", _md(tables["table1"]),
        "Paper:", "", _md(paper_table("table1")),
        "## Table 3: merge curves vs the 1-sqrt decay", "", _md(tables["table3"]),
        "Paper:", "", _md(paper_table("table3")),
        "## Table 4: granularity (Δ, N) at fixed duration D", "", _md(tables["table4"]),
        "Paper (Language column inconsistent as printed):", "", _md(paper_table("table4")),
        "## Table 5: held-out loss vs downstream score", "", _md(tables["table5"], 4),
        "Paper:", "", _md(paper_table("table5"), 3),
        "## Factor importance (R² of the score on log2 of each factor; merges only)", "", _md(tables["factors"], 3),
        "## Score vs merge duration", "", _md(tables["duration"]),
        "## Figures", "",
        *[f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figure_paths], "",
        "## All models", "", _md(tables["models"].drop(columns=["min_lr"], errors="ignore")),
    ]
    if not tables["failed"].empty:
        lines += ["## Failed variants (excluded from every number above)", "", _md(tables["failed"])]
    return "\n".join(lines)


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
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweep_dirs, args.out)
    except FileNotFoundError as err:
        print(f"analysis.report: error: {err}", file=sys.stderr)
        return 2
    print(report.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
