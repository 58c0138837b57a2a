"""Table 2 from SFT rows: best epoch per base and seed, the verdict with planted effects and nulls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.report import write_report
from analysis.sft import best_epochs, sft_scores, sft_verdict, table2
from wsm_exp.sweep.record.results import make_row, to_frame

TASKS = {"wsm_sft_copy": "language", "wsm_sft_add": "math", "wsm_sft_max": "reason"}


def sft_frame(score, seeds=(0, 1, 2), epochs=(0, 1, 2, 3)) -> pd.DataFrame:
    """Rows of a fake SFT sweep; ``score(role, seed, epoch, task)`` gives each exact match."""
    rows = []
    for role in ("wsd", "wsm"):
        for seed in seeds:
            for epoch in epochs:
                for task, category in TASKS.items():
                    rows.append(make_row(
                        sweep="sft", variant=f"sft-{role}-e{epoch}-s{seed}", kind="sft", branch=f"sft_{role}",
                        curve="mean" if role == "wsm" else "1-sqrt", quantity=4 if role == "wsm" else 1,
                        duration_steps=64, end_step=1756, seed=seed, epoch=epoch, task=task, category=category,
                        metric="exact_match", value=score(role, seed, epoch, task)))
    return to_frame(rows)


def rising(lead: float, noise: float = 0.0, peak: int = 2):
    """Scores that rise to epoch ``peak`` then fall; WSM ``lead`` above WSD, plus seeded noise."""
    rng = np.random.default_rng(0)
    table = {}

    def score(role, seed, epoch, task):
        key = (role, seed, epoch, task)
        if key not in table:
            base = 0.1 + 0.2 * min(epoch, peak) - 0.05 * max(epoch - peak, 0)
            table[key] = base + (lead if role == "wsm" else 0.0) + rng.normal(0, noise)
        return table[key]
    return score


def test_best_epoch_is_picked_per_base_and_seed():
    frame = sft_frame(lambda role, seed, epoch, task: {"wsd": [0.0, 0.3, 0.5, 0.4], "wsm": [0.0, 0.2, 0.4, 0.6]}
                      [role][epoch])
    best = best_epochs(sft_scores(frame))
    assert best.set_index(["row", "seed"])["epoch"].to_dict() == {**{("WSD", s): 2 for s in range(3)},
                                                                  **{("WSM", s): 3 for s in range(3)}}
    table = table2(frame).set_index("row")
    assert table.loc["WSD", "overall"] == pytest.approx(50.0) and table.loc["WSM", "overall"] == pytest.approx(60.0)
    assert table.loc["WSM", "math"] == pytest.approx(60.0) and table.loc["WSM", "best_epochs"] == "3,3,3"
    assert table[["knowledge", "code", "agent"]].isna().all().all()  # no task here: not a zero


def test_epoch_zero_is_never_the_reported_epoch():
    frame = sft_frame(lambda role, seed, epoch, task: 0.9 if epoch == 0 else 0.1)
    assert set(best_epochs(sft_scores(frame))["epoch"]) == {1}


@pytest.mark.parametrize("lead, noise, verdict", [
    (0.10, 0.01, "reproduced"),        # planted effect: WSM ahead in every seed
    (-0.10, 0.01, "not reproduced"),   # planted reversal
    (0.0, 0.05, "inconclusive"),       # null: same SFT scores plus noise
])
def test_verdict_follows_the_planted_effect(lead, noise, verdict):
    assert sft_verdict(sft_frame(rising(lead, noise))).outcome == verdict


def test_one_seed_is_unconfirmed():
    assert sft_verdict(sft_frame(rising(0.1), seeds=(0,))).verdict.startswith("unconfirmed")


def test_report_shows_table2_beside_the_paper(tmp_path):
    frame = sft_frame(rising(0.1, 0.01))
    frame.to_parquet(tmp_path / "results.parquet")
    report = write_report([tmp_path])
    text = report.path.read_text()
    assert "## Table 2: after SFT" in text
    assert "WSM's advantage persists after SFT**: reproduced" in text
    assert "84.78" in text and "62.9" in text  # the paper's row beside ours
    section = text.split("## Table 2")[1].split("##")[0]
    assert "knowledge" not in section.split("Paper:")[0]  # columns without a task are left out of ours
    claims = report.tables["findings"].set_index("claim")  # the claim heads the report like the paper's others
    assert claims.loc["WSM's advantage persists after SFT", "outcome"] == "reproduced"
    assert "- **WSM's advantage persists after SFT**: on overall" in text.split("## Findings")[0]


def test_reports_without_sft_rows_have_no_table2(tmp_path):
    frame = to_frame([make_row(sweep="d", variant="raw-E8-s0", kind="raw", task="wsm_heldout_bpb",
                               metric="bits_per_byte", value=2.0, category="heldout")])
    frame.to_parquet(tmp_path / "results.parquet")
    assert "Table 2" not in write_report([tmp_path]).path.read_text()


def per_document(frame: pd.DataFrame, lead: float, docs: int = 120, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Give every SFT model a hash and 0/1 per-document exact matches whose mean is its score (WSM ``lead``
    above WSD on every task); returns the frame and the per-document values by model hash."""
    rng = np.random.default_rng(seed)
    frame = frame.assign(model_hash=frame["variant"])
    samples = {}
    for variant, rows in frame.groupby("variant"):
        wsm = rows["branch"].iloc[0] == "sft_wsm"
        parts = [pd.DataFrame({"task": task, "doc_id": [str(i) for i in range(docs)], "metric": "exact_match",
                               "value": (rng.random(docs) < 0.4 + (lead if wsm else 0.0)).astype(float),
                               "weight": 1.0}) for task in TASKS]
        samples[variant] = pd.concat(parts, ignore_index=True)
        means = samples[variant].groupby("task")["value"].mean()
        frame.loc[frame["variant"] == variant, "value"] = frame.loc[frame["variant"] == variant, "task"].map(means)
    return frame, samples


@pytest.mark.parametrize("lead, expected", [(0.25, "reproduced"), (0.0, None)])
def test_one_seed_sft_verdict_has_an_interval_on_evaluation_noise(lead, expected):
    """One seed with per-document values: an interval (evaluation noise), planted effect found, null not."""
    frame, samples = per_document(sft_frame(lambda *_: 0.0, seeds=(0,)), lead)
    verdict = sft_verdict(frame, samples)
    assert verdict.seeds == 1 and np.isfinite(verdict.ci_low) and np.isfinite(verdict.ci_high)
    assert "evaluation noise only" in verdict.noise and verdict.ci_low < verdict.mean < verdict.ci_high
    if expected:
        assert verdict.outcome == expected and verdict.ci_low > 0
    else:
        assert verdict.outcome != "reproduced"
