"""The fitted-weights claim (analysis/fitted_claim.py) on planted nulls and planted effects, through the function
the report calls: seeded frames with seed noise and per-document noise."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.fitted_claim import fitted_claim, section, seed_table

CLOSED = ("mean", "1-sqrt", "cosine", "wma")
STEPS = "[1700, 1708]"


def _frame(rng, offset: float, seeds: int = 3, seed_sd: float = 0.02, noise: float = 0.003) -> pd.DataFrame:
    """Held-out bpb rows: fitted = every closed form − ``offset`` (plus noise), a shared per-seed level."""
    rows = []
    for seed in range(seeds):
        level = 2.2 + rng.normal(0, seed_sd)
        for curve in ("fitted", *CLOSED):
            value = level + rng.normal(0, noise) - (offset if curve == "fitted" else 0.0)
            rows.append(dict(variant=f"wsm-{curve}-s{seed}", kind="wsm", curve=curve, seed=seed, steps=STEPS,
                             task="wsm_heldout_bpb", metric="bits_per_byte", value=value, status="ok",
                             model_hash=f"{curve}{seed}"))
        rows.append(dict(variant=f"wsd-s{seed}", kind="wsd", curve="1-sqrt", seed=seed, steps="[1756]",
                         task="wsm_heldout_bpb", metric="bits_per_byte", value=level + 0.03, status="ok",
                         model_hash=f"wsd{seed}"))
    return pd.DataFrame(rows)


def _rates(offset: float, draws: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    outcomes = [fitted_claim(_frame(rng, offset))["outcome"] for _ in range(draws)]
    return {o: outcomes.count(o) / draws for o in ("reproduced", "not reproduced", "inconclusive")}


@pytest.mark.slow
def test_planted_null_rarely_says_reproduced_or_not_reproduced():
    draws = 400
    rates = _rates(0.0, draws)
    tolerance = 0.025 + 3 * math.sqrt(0.025 * 0.975 / draws)  # the level plus Monte-Carlo error
    assert rates["reproduced"] <= tolerance, rates
    assert rates["not reproduced"] <= tolerance, rates  # picking the best rival of K is paid for


@pytest.mark.slow
def test_planted_effect_is_found_at_three_seeds():
    # fitted better by 0.05 bpb, noise SD 0.003 per model: ~2.3 times the interval's half-width at 3 seeds
    # (t with 2 df at the Bonferroni level for K = 4 is ~8.9, so 0.02 bpb would be found only about half the time)
    rates = _rates(0.05, 200, seed=1)
    assert rates["reproduced"] >= 0.9, rates


@pytest.mark.slow
def test_planted_loss_is_not_reproduced():
    rates = _rates(-0.05, 200, seed=2)  # fitted worse by 0.05 bpb
    assert rates["not reproduced"] >= 0.9, rates


def test_row_names_the_best_closed_form_and_k():
    frame = _frame(np.random.default_rng(3), 0.01)
    frame.loc[frame["curve"] == "cosine", "value"] -= 0.005  # cosine is the best rival in every seed
    row = fitted_claim(frame)
    assert (row["best_closed_form"], row["candidates"], row["seeds"]) == ("cosine", 4, 3)
    cosine = frame[frame["curve"] == "cosine"].set_index("seed")["value"]
    fitted = frame[frame["curve"] == "fitted"].set_index("seed")["value"]
    assert row["difference"] == pytest.approx(float((cosine - fitted).mean()))
    assert row["ci_low"] < row["difference"] < row["ci_high"]
    half = row["ci_high"] - row["difference"]  # critical · se, so SDD = half + z_0.8 · se
    critical = 8.86  # t with 2 df at 1 - 0.05 / (2 · 4)
    assert row["sdd"] == pytest.approx(half * (critical + 0.8416) / critical, rel=1e-3)


def _samples(rng, effect: float, docs: int = 60) -> dict[str, pd.DataFrame]:
    """Per-document bpb of the one-seed models: the rivals equal, fitted lower by ``effect`` per document."""
    base = rng.normal(2.2, 0.3, docs)
    out = {}
    for curve in ("fitted", *CLOSED):
        values = base + rng.normal(0, 0.01, docs) - (effect if curve == "fitted" else 0.0)
        out[f"{curve}0"] = pd.DataFrame({"doc_id": range(docs), "task": "wsm_heldout_bpb", "metric": "bits_per_byte",
                                         "value": values, "weight": rng.integers(400, 800, docs).astype(float)})
    return out


@pytest.mark.slow
def test_one_seed_uses_the_per_document_values():
    rng = np.random.default_rng(4)
    frame = _frame(rng, 0.0, seeds=1)
    assert fitted_claim(frame)["outcome"] == "untested"
    found = fitted_claim(frame, _samples(rng, 0.02))
    assert found["outcome"] == "reproduced" and "evaluation noise only (60 test-split pieces" in found["covers"]
    nulls = [fitted_claim(frame, _samples(np.random.default_rng(100 + i), 0.0))["outcome"] for i in range(100)]
    assert nulls.count("reproduced") <= 8  # 2.5% of 100 plus Monte-Carlo error


def test_equivalence_margin_turns_a_tiny_effect_into_not_reproduced():
    frame = _frame(np.random.default_rng(5), 0.0, noise=0.0005)
    assert fitted_claim(frame)["outcome"] == "inconclusive"
    assert fitted_claim(frame, margin=0.01)["outcome"] == "not reproduced"


def test_no_fitted_merge_is_untested_and_has_no_section(tmp_path):
    frame = _frame(np.random.default_rng(6), 0.0)
    frame = frame[frame["curve"] != "fitted"]
    assert fitted_claim(frame)["outcome"] == "untested"
    assert section(frame, tmp_path) == ("", {}, [])


def test_section_writes_the_table_the_figure_and_the_documents(tmp_path):
    frame = _frame(np.random.default_rng(7), 0.01).assign(sweep_dir=str(tmp_path))
    (tmp_path / "fits").mkdir()
    for seed in range(3):
        provenance = {"heldout": "h.jsonl", "heldout_digest": "ab", "split_seed": 0, "fit_fraction": 0.5,
                      "fit_documents": [0, 2], "test_documents": [1, 3]}
        (tmp_path / "fits" / f"wsm-fitted-s{seed}.json").write_text(json.dumps(
            {"variant": f"wsm-fitted-s{seed}", "seed": seed, "weights": [0.1, 0.2, 0.3, 0.4], "provenance": provenance}))
    markdown, tables, figures = section(frame, tmp_path)
    assert "test documents [1, 3]" in markdown and "fit used documents [0, 2]" in markdown
    assert figures[0].name == "implied_schedule.png" and figures[0].stat().st_size > 0
    assert sorted(tables["implied_schedule"]["name"].unique()) == ["fitted s0", "fitted s1", "fitted s2"]
    assert list(seed_table(frame).columns) == ["fitted", *CLOSED, "WSD 1-sqrt"]
