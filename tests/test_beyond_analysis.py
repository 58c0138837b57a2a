"""The beyond report rules on planted data: each rule finds a planted effect and refuses a planted null."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from analysis.beyond import section
from analysis.probe import probe_gains, quadratic_r2, scale_fits
from analysis.beyond import _models  # noqa: PLC2701 — the frame the parts read
from wsm_exp.study.branch_spec import Probe
from wsm_exp.sweep.record.results import make_row

SEEDS = (0, 1, 2)


def rows(variant: str, kind: str, bpb: float, seed: int, *, branch: str = "wsm", score: float = 50.0, **fields):
    common = dict(variant=f"{variant}-s{seed}", kind=kind, branch=branch, seed=seed, **fields)
    return [make_row(**common, task="wsm_heldout_bpb", metric="bits_per_byte", category="heldout", value=bpb),
            make_row(**common, task="wsm_piqa", metric="acc", category="language", value=score / 100)]


def merge_rows(label: str, bpb: float, seed: int, *, alpha: float = 0.0, order: str = "natural", weights=(0.5, 0.5)):
    return rows(f"wsm-{label}", "wsm", bpb, seed, curve=label, extrapolate=alpha, merge_order=order, quantity=2,
                steps=json.dumps([8, 16]), weights=json.dumps(list(weights)), end_step=16)


def frame(result_rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(result_rows)


def finding(data: pd.DataFrame, index: int) -> dict:
    return section(data, None).findings.iloc[index].to_dict()


@pytest.mark.parametrize("effect, expected", [(0.02, "reproduced"), (-0.02, "not reproduced"), (0.0, None)])
def test_extrapolation_rule(effect, expected):
    rng = random.Random(1)
    data = []
    for seed in SEEDS:
        base = 3.0 + 0.05 * seed
        data += merge_rows("mean", base, seed)
        data += merge_rows("mean-ex+0.5", base - effect + rng.gauss(0, 0.002), seed, alpha=0.5)
        data += merge_rows("mean-ex-0.5", base + 0.01, seed, alpha=-0.5)
    result = finding(frame(data), 0)
    assert result["outcome"] == (expected or "inconclusive") and "α = 0" in result["evidence"]
    assert result["candidates"] == 1 and result["contrast"] == "best α > 0 − α = 0"  # one α > 0: nothing picked


@pytest.mark.parametrize("shape_effect, expected", [(0.03, "reproduced"), (-0.03, "not reproduced")])
def test_controls_rule_needs_both_contrasts(shape_effect, expected):
    data = []
    natural = (0.5, 0.3, 0.2)
    for seed in SEEDS:
        base = 3.0 + 0.02 * seed
        data += merge_rows("1-sqrt", base, seed, weights=natural)
        data += merge_rows("1-sqrt-reverse", base + shape_effect, seed, order="reverse", weights=natural[::-1])
        data += merge_rows("1-sqrt-scramble0", base + shape_effect / 2, seed, order="scramble", weights=(0.3, 0.5, 0.2))
        data += merge_rows("mean", base + 0.001, seed, weights=(1 / 3,) * 3)
        data += merge_rows("mean-reverse", base + 0.001, seed, order="reverse", weights=(1 / 3,) * 3)
    result = finding(frame(data), 1)
    assert result["outcome"] == expected
    assert "1-sqrt vs its reverse" in result["evidence"] and "mean vs its" not in result["evidence"]


def probe_rows(lr, batch, wd, steps, seed, *, merge_gain, decay_gain, raw=3.5):
    wsm, wsd = Probe(lr, batch, wd, steps), Probe(lr, batch, wd, steps, "1-sqrt")
    end = 100 + steps
    return (rows(f"raw-{wsm.name}", "raw", raw, seed, branch=wsm.name, end_step=end)
            + rows(f"wsm-{wsm.name}", "wsm", raw - merge_gain, seed, branch=wsm.name, end_step=end, quantity=4)
            + rows(f"wsd-{wsd.name}", "wsd", raw - decay_gain, seed, branch=wsd.name, end_step=end))


def noise_frame(gain_of, seeds=SEEDS, noise=0.0005):
    rng = random.Random(3)
    data = []
    for seed in seeds:
        for lr in (0.005, 0.01, 0.02):
            for batch in (4, 8, 16):
                for wd in (0.0, 0.1):
                    g = gain_of(lr, batch, wd) + rng.gauss(0, noise)
                    data += probe_rows(lr, batch, wd, 64, seed, merge_gain=g, decay_gain=0.01)
    return frame(data)


def test_noise_rule_finds_a_planted_peak_in_eta_over_b():
    peak = math.log10(0.01 / 8)
    data = noise_frame(lambda lr, b, wd: 0.05 - 0.04 * (math.log10(lr / b) - peak) ** 2)
    part = section(data, None)
    fits = part.tables["beyond_noise_fits"]
    merge = fits[fits["gain"] == "merge_gain"].set_index("scale")
    assert merge["r2_adjusted"].idxmax() == "η/B" and merge.loc["η/B", "r2_adjusted"] > 0.95
    assert merge.loc["η/B", "peak_inside"] and merge.loc["η/B", "peak_at"] == pytest.approx(0.01 / 8, rel=0.05)
    assert part.findings.iloc[2]["outcome"] == "reproduced"
    first_table = part.markdown.split("### Noise-scale probe")[1].split("\n\n")[2]
    rows = first_table.splitlines()
    assert {line.split("|")[1].strip() for line in rows[2:]} == {"0.005", "0.01", "0.02"}  # η not rounded away


def test_noise_rule_calls_a_null_inconclusive_and_refutes_only_on_a_finding():
    """Three outcomes: a null (flat gains) is inconclusive even with its R² interval wholly below the cut-off;
    gains that surely vary between points yet follow no scale, or collapse on one scale without a peak, are
    findings against the claim (not reproduced)."""
    null = noise_frame(lambda lr, b, wd: 0.02, noise=0.003)
    row = section(null, None).findings.iloc[2]
    assert row["outcome"] == "inconclusive" and float(row["ci95"].split(",")[1].rstrip("]")) < 0
    assert "not shown to vary" in row["evidence"] and row["candidates"] == 5
    scattered = noise_frame(lambda lr, b, wd: 0.03 * math.sin(977 * lr * b + 31 * wd), noise=0.001)
    row = section(scattered, None).findings.iloc[2]
    assert row["outcome"] == "not reproduced" and "surely vary" in row["evidence"]
    monotone = noise_frame(lambda lr, b, wd: 0.1 * math.log10(lr))  # collapses on η but never peaks
    result = section(monotone, None).findings.iloc[2]
    assert result["outcome"] == "not reproduced" and "η adjusted R²" in result["evidence"]
    one_seed = noise_frame(lambda lr, b, wd: 0.03 * math.sin(977 * lr * b + 31 * wd), seeds=(0,), noise=0.001)
    found = section(one_seed, None).findings.iloc[2]  # one seed: no test of variation, so no refutation by it
    assert found["verdict"] == "inconclusive on the bootstrap of grid points resampled (1 seed)"


def test_long_decay_rule_reports_where_the_advantage_crosses():
    data = []
    for seed in SEEDS:
        for steps, advantage in ((64, 0.03), (128, 0.01), (256, -0.02), (512, -0.04)):
            data += probe_rows(0.01, 8, 0.1, steps, seed, merge_gain=0.05, decay_gain=0.05 + advantage)
    part = section(frame(data), None)
    table = part.tables["beyond_long_decay"]
    assert table["advantage"].round(6).tolist() == [-0.03, -0.01, 0.02, 0.04]
    result = part.findings.iloc[3]
    assert result["outcome"] == "reproduced" and "changes sign between S = 128 and S = 256" in result["evidence"]
    assert part.findings.iloc[2]["verdict"] == "not tested"  # lengths alone are not a noise grid


def test_probe_gains_and_fit_arithmetic():
    gains = probe_gains(_models(frame(probe_rows(0.02, 4, 0.0, 32, 0, merge_gain=0.03, decay_gain=0.01))))
    assert gains[["merge_gain", "decay_gain"]].round(9).values.tolist() == [[0.03, 0.01]]
    assert int(gains["switch"].iloc[0]) == 100
    r2, _ = quadratic_r2(np.array([1.0, 1.0, 2.0, 2.0]), np.array([0.0, 0.2, 1.0, 1.2]))
    assert r2 == pytest.approx(1 - 0.01 / 0.26)  # two levels: a line through the group means
    fits = scale_fits(gains.assign(merge_gain=0.0), "merge_gain")
    assert fits["r2"].isna().all()  # one point: nothing to fit


def test_section_without_beyond_rows_says_what_is_missing():
    part = section(frame(merge_rows("mean", 3.0, 0)), None)
    assert set(part.findings["verdict"]) == {"not tested"}
    assert part.markdown == ""  # nothing to show: the report lists it under "Not shown" instead
    assert part.absent == ["Beyond the paper: needs the extrapolate, controls, noise or long_decay sweep (docs/beyond.md)."]
