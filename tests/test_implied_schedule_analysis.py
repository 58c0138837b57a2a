"""The implied-schedule table and figure (analysis/implied_schedule.py) on real fitted weights and paper curves."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.fitting import heldout_file, lm_series
from PIL import Image

from analysis.implied_schedule import implied_figure, implied_table
from wsm_exp.merging.fit import FitConfig
from wsm_exp.merging.fit_lm import fit_window
from wsm_exp.merging.series import load_series
from wsm_exp.merging.weights import merge_weights


def test_table_puts_the_paper_curves_on_their_own_columns():
    weights = {curve: merge_weights(curve, 8) for curve in ("linear", "cosine", "1-sqrt")}
    table = implied_table(weights)
    assert len(table) == 24 and table["monotone"].all()
    for curve in weights:
        rows = table[table["name"] == curve]
        np.testing.assert_allclose(rows["multiplier"], rows[curve], atol=1e-12)  # each curve's staircase is itself
        np.testing.assert_allclose(rows["weight"].sum(), 1.0)


def test_table_and_figure_flag_weights_that_are_no_decay(tmp_path):
    table = implied_table({"extrapolated": [0.375, 0.375, 0.375, -0.125]})
    assert not table["monotone"].any()
    assert table["multiplier"].tolist() == pytest.approx([1.0, 0.625, 0.25, -0.125])
    assert table["closest"].tolist() == pytest.approx([1.0, 0.625, 0.25, 0.0])
    path = implied_figure({"extrapolated": [0.375, 0.375, 0.375, -0.125]}, tmp_path)
    assert path.name == "implied_schedule.png" and Image.open(path).size[0] > 300


@pytest.mark.slow
def test_figure_and_table_of_a_real_fit(tmp_path):
    lm_series(tmp_path / "run", [10, 20, 30, 40])
    fitted = fit_window(load_series(tmp_path / "run").checkpoints, heldout_file(tmp_path / "h.jsonl"),
                        FitConfig(steps=2))
    table = implied_table({"fitted": fitted.weights})
    assert table["weight"].tolist() == pytest.approx(fitted.weights)
    assert table["monotone"].all()  # simplex weights always imply a decay
    path = implied_figure({"fitted": fitted.weights}, tmp_path / "figures")
    image = np.asarray(Image.open(path).convert("L"))
    assert path == tmp_path / "figures" / "implied_schedule.png" and image.std() > 10  # something is drawn
