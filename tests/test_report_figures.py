"""Figures and tables carry their noise and their design (#25 item 3), on real reports of synthetic sweeps:
the metric-vs-axis figures' data hold the verdicts' own intervals and the y-axis shows every bar; Table 4
holds the primary metric; every "Paper:" column has its legend."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from analysis.paper import legend, paper_view
from analysis.report import write_report
from tests.helpers.analysis import write_doc_sweep

PAPER_NAMES = ["table1", "table2", "table3", "table4", "table5"]
ACCURACY = {"t_gk": ("general_knowledge", 0.6)}


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    """One report of a one-seed sweep with per-document values (merges at D = 16, 32, 64 with N = 2, 4; the
    raw checkpoint and a 1-sqrt decay), shared by the fast tests: one report costs ~8 s."""
    folder = write_doc_sweep(tmp_path_factory.mktemp("one_seed"), accuracy=ACCURACY)
    return folder, write_report([folder])


def panels(path) -> list[dict]:
    """Axis labels, y limits and legend entries a figure wrote into its PNG (analysis.figures.save_figure)."""
    return json.loads(Image.open(path).text["Description"])


def verdict(report, claim: str) -> pd.Series:
    claims = report.tables["findings"]
    return claims[claims["claim"] == claim].iloc[0]


@pytest.mark.parametrize("seeds", [(0,), pytest.param((0, 1, 2), marks=pytest.mark.slow)])
def test_figure_data_carry_the_verdicts_interval_and_the_axis_shows_every_bar(one_seed, tmp_path, seeds):
    """One seed: evaluation noise; three seeds: seeds + evaluation. The best merge's bar is the interval of "WSM
    beats WSD" (loss, the primary) and of its score part, for the same pair of models."""
    if seeds == (0,):
        tmp_path, report = one_seed
    else:
        report = write_report([write_doc_sweep(tmp_path, seeds=seeds, seed_shift=0.01, accuracy=ACCURACY)])
    loss = pd.read_csv(tmp_path / "figures" / "duration_loss.csv")
    window = ["duration_steps", "interval_steps", "quantity"]
    picked = tuple(loss.loc[loss["value"].idxmin(), window])  # the best merge by the primary metric (the loss)
    for kind, claim in (("loss", "WSM beats WSD"),
                        ("score", "merged models can have higher loss yet better scores: score part")):
        points = pd.read_csv(tmp_path / "figures" / f"duration_{kind}.csv")
        row = verdict(report, claim)
        assert points[["ci_low", "ci_high", "bar_low", "bar_high"]].notna().all().all()
        assert (points["bar_low"] <= points["value"]).all() and (points["value"] <= points["bar_high"]).all()
        assert (points["seeds"] == len(seeds)).all() and (points["candidates"] == row["candidates"]).all()
        assert points["noise"].eq(row["noise"]).all()
        best = points.set_index(window).loc[picked]
        assert (best["ci_low"], best["ci_high"]) == (pytest.approx(row["ci_low"], rel=1e-9),
                                                     pytest.approx(row["ci_high"], rel=1e-9))
        (panel,) = panels(tmp_path / "figures" / f"duration_{kind}.png")
        low, high = panel["ylim"]
        assert low <= points["bar_low"].min() and high >= points["bar_high"].max()  # no zoom past a bar
        assert panel["xlabel"] == "merge duration D (steps)"


def test_table4_holds_the_primary_metric_beside_overall(one_seed):
    _, report = one_seed
    table4 = report.tables["table4"]
    assert {"overall", "heldout_bpb"} <= set(table4.columns) and table4["heldout_bpb"].notna().all()
    text = report.path.read_text()
    section = text[text.index("## Table 4"):text.index("Paper:", text.index("## Table 4"))]
    header = next(line for line in section.splitlines() if line.startswith("| curve"))
    assert "heldout_bpb" in header and "overall" in header and "the verdict rests on heldout_bpb" in section


def test_every_paper_column_shown_has_its_legend(one_seed):
    for name in PAPER_NAMES:  # the data: no column of any paper table the report can show lacks a meaning
        assert all(f"{column} = " in legend(name) for column in paper_view(name).columns)
    assert "mean_max_violation" not in paper_view("table5") and "violation" in legend("table5")
    lines = one_seed[1].path.read_text().splitlines()
    shown = [i for i, line in enumerate(lines) if line == "Paper:"]
    assert len(shown) == 3  # Tables 1, 4 and 5 of this design
    for start in shown:
        columns = [c.strip() for c in lines[start + 2].strip("|").split("|")]
        note = next(line for line in lines[start:] if line.startswith("Paper columns: "))
        assert all(f" {column} = " in f" {note[len('Paper columns:'):]}" for column in columns), (columns, note)
