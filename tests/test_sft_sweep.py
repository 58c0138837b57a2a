"""The SFT sweep end to end (paper Table 2) on the micro study: real Hydra, training, lm-eval, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers.sweep import MICRO, ROOT, run_sweep, wandb_runs

pytestmark = pytest.mark.slow
SFT_EVAL = "eval.tasks=[wsm_sft_copy,wsm_sft_add,wsm_sft_max]"
SHRUNK = ["sft.recipe.epochs=2", "sft.recipe.items_per_skill=32", "sft.recipe.batch_size=16",
          "sft.recipe.warmup_steps=2", "sft.fallback.quantity=2", "sft.fallback.duration=8"]


def run_sft(root: Path, cache: Path, name: str, *overrides: str):
    """`python -m wsm_exp +sweep=sft` on the micro study, with the SFT suite (not MICRO's)."""
    micro = [o for o in MICRO if not o.startswith("eval.")]
    args = ["+sweep=sft", f"paths.sweeps={root}", f"paths.cache={cache}", f"sweep_name={name}", *micro, *SHRUNK,
            "eval.limit=24", SFT_EVAL, *overrides]
    proc = subprocess.run([sys.executable, "-m", "wsm_exp", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, root / name


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("sft")


@pytest.fixture(scope="module")
def main_job(root):
    run = run_sweep(root, "+sweep=duration", "merge.quantity=2", "merge.duration=8,16", "logger=none",
                    name="duration", cache=root / "_cache")
    assert run.returncode == 0, run.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def sft(root, main_job):
    proc, folder = run_sft(root, root / "_cache", "sft", f"sft.select_from={main_job.sweep_dir}")  # W&B on
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc, folder


def test_both_bases_get_the_same_sft_and_every_epoch_is_evaluated(sft, main_job):
    proc, folder = sft
    frame = pd.read_parquet(folder / "results.parquet")
    assert set(frame["status"]) == {"ok"} and set(frame["kind"]) == {"sft"}
    assert set(zip(frame["branch"], frame["epoch"])) == {(f"sft_{r}", e) for r in ("wsd", "wsm") for e in (0, 1, 2)}
    assert set(frame["task"]) == {"wsm_sft_copy", "wsm_sft_add", "wsm_sft_max"}
    assert set(frame["metric"]) == {"exact_match"} and frame["value"].between(0, 1).all()
    # the WSM base is the main job's merge with the lowest held-out bpb; the WSD base its decay end
    main = pd.read_parquet(main_job.sweep_dir / "results.parquet")
    bpb = main[(main["kind"] == "wsm") & (main["task"] == "wsm_heldout_bpb") & (main["metric"] == "bits_per_byte")]
    best = bpb.sort_values("value").iloc[0]
    wsm = frame[frame["branch"] == "sft_wsm"].iloc[0]
    assert (wsm["steps"], wsm["weights"], wsm["curve"]) == (best["steps"], best["weights"], best["curve"])
    wsd = frame[frame["branch"] == "sft_wsd"].iloc[0]
    assert json.loads(wsd["steps"]) == [main[main["kind"] == "wsd"]["end_step"].max()] and wsd["curve"] == "1-sqrt"
    # each epoch is another model; the bases before SFT are the main job's models
    assert frame.groupby("branch")["model_hash"].nunique().to_dict() == {"sft_wsd": 3, "sft_wsm": 3}
    # every evaluated epoch keeps its per-document values, so the one-seed Table 2 verdict has an interval
    for model_hash in frame["model_hash"].unique():
        docs = pd.read_parquet(folder / "samples" / f"{model_hash}.parquet")
        assert set(docs["task"]) == set(frame["task"]) and set(docs["metric"]) == {"exact_match"}
        per_task = docs.groupby("task")["doc_id"].agg(["nunique", "size"])
        assert (per_task["nunique"] == per_task["size"]).all() and (per_task["size"] > 1).all()
        means = docs.groupby("task")["value"].mean()
        scored = frame[frame["model_hash"] == model_hash].set_index("task")["value"]
        assert means.to_dict() == pytest.approx(scored.to_dict())  # the documents behind each score
    report = (folder / "report.md").read_text()
    assert "## Table 2: after SFT" in report and "WSM's advantage persists after SFT**:" in report
    verdict = report.split("WSM's advantage persists after SFT**:")[1].splitlines()[0]
    assert "95% CI [" in verdict or "95% interval [" in verdict, verdict  # one seed, per-document values: an interval
    assert "84.78" in report
    # W&B: one run per evaluated model with its scores, one training run per base, the summary
    runs = wandb_runs(folder)
    assert {"sft-train-wsd-s0", "sft-train-wsm-s0", "sft-summary"} <= set(runs)
    for variant, rows in frame.groupby("variant"):
        summary = runs[variant]["summary"]
        for _, row in rows.iterrows():
            assert summary[f"eval/{row['task']}/{row['metric']}"] == pytest.approx(row["value"])


def test_sft_runs_given_as_epoch_folders_are_evaluated_without_training(root, sft):
    _, first = sft
    frame = pd.read_parquet(first / "results.parquet")
    runs = {}
    for role in ("wsd", "wsm"):  # the epoch folders the first sweep trained (under paths.cache/sft)
        hashes = set(frame[(frame["branch"] == f"sft_{role}") & (frame["epoch"] >= 1)]["model_hash"])
        runs[role] = next(p.parent for p in (root / "_cache" / "sft").glob("*/epoch_1") if _hash(p) in hashes)
    before = sorted(p.name for p in (root / "_cache" / "sft").iterdir())
    proc, folder = run_sft(root, root / "_cache", "sft-given",
                           f"sft.runs={{wsd:{runs['wsd']},wsm:{runs['wsm']}}}", "logger=none")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.name for p in (root / "_cache" / "sft").iterdir()) == before  # nothing trained
    given = pd.read_parquet(folder / "results.parquet")
    assert set(given["epoch"]) == {1, 2}
    key = ["branch", "epoch", "task"]
    merged = given.merge(frame, on=key, suffixes=("", "_first"))
    assert len(merged) == len(given) and (merged["value"] == merged["value_first"]).all()
    assert "## Table 2: after SFT" in (folder / "report.md").read_text()


def test_bad_sft_input_is_refused_before_any_work(root):
    proc, folder = run_sft(root, root / "_cache", "sft-bad", "sft.runs={wsd:/nonexistent,wsm:/nonexistent}",
                           "logger=none")
    assert proc.returncode == 2
    assert "sft.runs.wsd='/nonexistent' is not a folder" in proc.stderr and "Traceback" not in proc.stderr
    assert not (folder / "results.parquet").exists()


def _hash(model_dir: Path) -> str:
    from wsm_exp.evaluation import model_identity

    return model_identity(model_dir)
