"""The beyond-the-paper figures carry the intervals their verdicts use (#25 item 3): planted effects over 3 seeds,
the section written to a folder, each figure's CSV read back against the findings row of its claim."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from analysis.beyond import section
from tests.test_beyond_analysis import SEEDS, frame, merge_rows, probe_rows


def interval_of(row: pd.Series) -> tuple[float, float]:
    """The findings row's interval, read from its ``ci95`` text "[low, high]"."""
    low, high = row["ci95"].strip("[]").split(",")
    return float(low), float(high)


def same_up_to_direction(point: pd.Series, row: pd.Series) -> bool:
    """The point's interval (point − reference) is the verdict's, whichever direction the verdict states it in."""
    low, high = interval_of(row)
    ours = (round(point["ci_low"], 4), round(point["ci_high"], 4))
    return ours in {(low, high), (-high, -low)} and abs(round(point["difference"], 4)) == abs(row["difference"])


@pytest.mark.slow  # draws two figures (~2 s)
def test_extrapolation_and_long_decay_figures_carry_the_verdicts_intervals(tmp_path):
    data = []
    for seed in SEEDS:
        base = 3.0 + 0.05 * seed
        data += merge_rows("mean", base, seed)
        for alpha, effect in ((0.5, 0.02), (1.0, 0.01)):
            data += merge_rows(f"mean-ex+{alpha}", base - effect - 0.001 * seed, seed, alpha=alpha)
        for steps, advantage in ((64, 0.03), (256, -0.02)):
            data += probe_rows(0.01, 8, 0.1, steps, seed, merge_gain=0.05 + 0.002 * seed, decay_gain=0.05 + advantage)
    part = section(frame(data), tmp_path)
    names = {p.name for p in part.figures}
    assert {"beyond_extrapolate.png", "beyond_long_decay.png"} <= names
    findings = part.findings
    points = pd.read_csv(tmp_path / "figures" / "beyond_extrapolate.csv").set_index("extrapolate")
    assert points.loc[0.0, ["ci_low", "ci_high"]].isna().all()  # α = 0 is the reference
    assert points.loc[[0.5, 1.0], ["ci_low", "ci_high", "bar_low", "bar_high"]].notna().all().all()
    assert (points.loc[[0.5, 1.0], "candidates"] == 2).all() and (points.loc[[0.5, 1.0], "seeds"] == 3).all()
    assert same_up_to_direction(points.loc[0.5], findings.iloc[0])  # the best α is the verdict's pair
    decay = pd.read_csv(tmp_path / "figures" / "beyond_long_decay.csv").set_index("steps")
    assert same_up_to_direction(decay.loc[256], findings.iloc[3])  # the longest decay is the verdict's
    assert decay["difference"].round(6).tolist() == [0.028, -0.022]  # merge − decay: planted, less the seeds' 0.002
    for name, table in (("beyond_extrapolate", points), ("beyond_long_decay", decay)):
        tested = table[table["ci_low"].notna()]
        assert ((tested["bar_low"] <= tested["value"]) & (tested["value"] <= tested["bar_high"])).all()
        (panel,) = json.loads(Image.open(tmp_path / "figures" / f"{name}.png").text["Description"])
        assert panel["ylim"][0] <= tested["bar_low"].min() and panel["ylim"][1] >= tested["bar_high"].max(), name


@pytest.mark.slow  # draws a 10-panel figure (~1.5 s)
@pytest.mark.parametrize("seeds", [SEEDS, (0,)])
def test_the_noise_figure_shows_each_points_seed_interval(tmp_path, seeds):
    data = []
    for seed in seeds:
        for lr in (0.005, 0.01, 0.02):
            for batch in (4, 8):
                data += probe_rows(lr, batch, 0.1, 64, seed, merge_gain=0.02 + 0.01 * lr * batch + 0.001 * seed,
                                   decay_gain=0.01)
    section(frame(data), tmp_path)
    points = pd.read_csv(tmp_path / "figures" / "beyond_noise.csv")
    assert len(points) == 2 * 6 and set(points["gain"]) == {"merge_gain", "decay_gain"}
    if len(seeds) == 1:
        assert points["ci_low"].isna().all() and (points["noise"] == "none (1 seed)").all()
    else:
        merge = points[points["gain"] == "merge_gain"]
        assert (merge["bar_high"] - merge["bar_low"]).gt(0).all() and (merge["seeds"] == 3).all()
        assert ((merge["bar_low"] <= merge["value"]) & (merge["value"] <= merge["bar_high"])).all()
