"""``merge.curve=fitted`` in a real sweep on the micro study: the fit in the job, a normal merge afterwards,
every variant scored on the held-out test split, the fit reused on a rerun, the report's fitted section."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from helpers.sweep import run_sweep, wandb_runs
from wsm_exp.merging.heldout_split import split_heldout

pytestmark = pytest.mark.slow

# the micro study, scored on the one task the fitted claim uses (the held-out test split): two jobs, four models
FITTED = ["+sweep=fitted", "merge.duration=16", "merge.quantity=4", "merge.curve=fitted,mean",
          "merge.fit.steps=2", "merge.fit.seq_len=64", "eval.tasks=[wsm_heldout_bpb]"]
# the rerun asks for the fitted merge alone, without baselines: only its fit's reuse is in question
AGAIN = [*FITTED[:3], "merge.curve=fitted", *FITTED[4:], "baselines.raw_last=false", "baselines.wsd_shapes=[]"]


@pytest.fixture(scope="module")
def fitted(root, cache):
    return run_sweep(root, *FITTED, name="fitted", cache=cache)


def _ok(run) -> pd.DataFrame:
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    frame = run.results()
    assert set(frame["status"]) == {"ok"}, frame[frame["status"] != "ok"]["error"].tolist()
    return frame


def _fits(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "fits").glob("*.json"))


def test_fitted_variant_is_a_normal_merge_with_its_fit(fitted, cache):
    frame = _ok(fitted)
    merges = frame[frame["kind"] == "wsm"].drop_duplicates("variant").set_index("curve")
    assert sorted(merges.index) == ["fitted", "mean"]
    row = merges.loc["fitted"]
    assert row["variant"].startswith("wsm-fitted-fit")  # non-default settings: their hash in the name
    weights = json.loads(row["weights"])
    assert abs(sum(weights) - 1) < 1e-9 and min(weights) >= 0
    record = json.loads((cache / "merges" / row["model_hash"] / "merge.json").read_text())
    assert record["curve"] == "fitted" and record["weights"] == pytest.approx(weights, abs=1e-9)
    fit = record["fit"]
    assert fit["key"] and fit["settings"]["steps"] == 2 and fit["evaluations"] == len(fit["losses"]) <= 3
    assert fit["fit_loss_end"] <= fit["fit_loss_start"]
    assert set(fit["fit_documents"]).isdisjoint(fit["test_documents"])
    assert record["note"]["variant"] == row["variant"]  # the variant's provenance beside the fit's
    assert row["model_hash"] != merges.loc["mean"]["model_hash"]
    stored = json.loads((fitted.sweep_dir / "fits" / f"{row['variant']}.json").read_text())
    assert stored["weights"] == pytest.approx(weights, abs=1e-9) and stored["provenance"]["key"] == fit["key"]
    summary = wandb_runs(fitted.sweep_dir, only=row["variant"])[row["variant"]]["summary"]
    assert summary["fit/evaluation"] == fit["evaluations"] - 1
    assert summary["fit/test_loss_end"] == pytest.approx(fit["test_loss_end"])


def test_every_variant_is_scored_on_the_test_split(fitted, cache):
    frame = _ok(fitted)
    fit = json.loads(_fits(cache)[0].read_text())["provenance"]
    split = split_heldout(fit["heldout"], fit_fraction=fit["fit_fraction"], seed=fit["split_seed"])
    assert split.test == fit["test_documents"]
    scored = list((cache / "fits").glob("heldout-test-*.jsonl"))
    assert len(scored) == 1
    assert [json.loads(line)["text"] for line in scored[0].read_text().splitlines()] == split.test_texts()
    record = json.loads((fitted.sweep_dir / "sweep.json").read_text())  # a suite of its own: never mixed with
    assert "heldout_split" in json.dumps(record)                        # full-file held-out scores in a report
    test_bytes = sum(len(t.encode()) for t in split.test_texts())
    heldout = frame[frame["task"] == "wsm_heldout_bpb"]
    assert set(heldout["kind"]) == {"wsm", "wsd", "raw"}
    for model_hash in heldout["model_hash"].unique():  # each model's per-document values cover the test bytes
        samples = pd.read_parquet(fitted.sweep_dir / "samples" / f"{model_hash}.parquet")
        pieces = samples[samples["task"] == "wsm_heldout_bpb"]
        assert 0.9 * test_bytes <= pieces["weight"].sum() <= test_bytes, (pieces["weight"].sum(), test_bytes)


def test_report_has_the_fitted_section(fitted):
    _ok(fitted)
    report = (fitted.sweep_dir / "report.md").read_text()
    assert "## Fitted merge weights" in report and "test documents" in report
    assert (fitted.sweep_dir / "figures" / "implied_schedule.png").stat().st_size > 0
    claim = pd.read_csv(fitted.sweep_dir / "tables" / "fitted_claim.csv")
    assert claim["best_closed_form"].iloc[0] == "mean" and claim["candidates"].iloc[0] == 1


def test_rerun_with_new_rows_reuses_the_fit(fitted, root, cache):
    _ok(fitted)
    fits = {p: p.stat().st_mtime_ns for p in _fits(cache)}
    again = run_sweep(root, *AGAIN, name="fitted-again", cache=cache)  # a new folder: every row computed again
    frame = _ok(again)
    assert {p: p.stat().st_mtime_ns for p in _fits(cache)} == fits  # no fit was written, none rewritten
    row = frame[frame["curve"] == "fitted"].iloc[0]
    stored = json.loads(next(iter(fits)).read_text())
    assert json.loads(row["weights"]) == pytest.approx(stored["weights"], abs=1e-9)
    summary = wandb_runs(again.sweep_dir, only=row["variant"])[row["variant"]]["summary"]
    assert summary["fit/test_loss_end"] == pytest.approx(stored["provenance"]["test_loss_end"])  # the reused fit's curve
