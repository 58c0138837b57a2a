"""``plan=true`` against a real micro sweep: the planned variants are exactly the evaluated ones."""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from helpers.sweep import MICRO, ROOT, micro_branch, run_sweep
from wsm_exp.sweep.check.preview import estimated_eval_seconds


@pytest.mark.slow  # trains the micro study and evaluates it
def test_plan_names_the_variants_the_sweep_evaluates(tmp_path):
    args = ["+sweep=quantity", "merge.interval=4", "merge.quantity=1,2,4", "logger=none"]
    common = [f"paths.sweeps={tmp_path}", f"paths.cache={tmp_path}/_cache", "sweep_name=q", *MICRO]
    plan = subprocess.run([sys.executable, "-m", "wsm_exp", *common, *args, "plan=true", "plan_probe=false"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)  # the probe: the next test's
    assert plan.returncode == 0, plan.stderr
    assert not any(tmp_path.iterdir()), "a plan writes nothing"
    planned = set(re.findall(r"^\s+(?:run|cached)\s+(\S+)", plan.stdout, flags=re.MULTILINE))
    assert "to train: wsd_1-sqrt, wsm" in plan.stdout
    run = run_sweep(tmp_path, *args, name="q", cache=tmp_path / "_cache")
    assert run.returncode == 0, run.stderr[-3000:]
    assert planned == set(run.results()["variant"])
    again = subprocess.run([sys.executable, "-m", "wsm_exp", *common, *args, "plan=true"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert set(re.findall(r"^\s+done\s+(\S+)", again.stdout, flags=re.MULTILINE)) == planned
    assert "cached wsd_1-sqrt, wsm; to train: -" in again.stdout


def _plan(tmp_path, name: str, *args: str) -> str:
    common = [f"paths.sweeps={tmp_path}", f"paths.cache={tmp_path}/_cache", f"sweep_name={name}", *MICRO]
    plan = subprocess.run([sys.executable, "-m", "wsm_exp", *common, *args, "plan=true"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr
    return plan.stdout


def _evaluated_seconds(output: str) -> float:
    """What the run measured: the seconds of every variant it evaluated (load, merge, every task)."""
    return sum(float(s) for s in re.findall(r"computed \S+: .* \(([\d.]+) s[;)]", output))


@pytest.mark.slow  # trains the micro study and evaluates three sweeps of it
def test_plan_estimates_the_run_and_the_console_is_the_report(tmp_path):
    """A first sweep on a fresh cache is planned from a probe of the machine (no timings yet) and records
    its timings; the plan of a second one names what the score cache holds; both plans estimate their
    evaluation within 2x of what the run then measured; the console equals the report."""
    first_args = ["+sweep=quantity", "merge.interval=4", "merge.quantity=1,2", "logger=none"]
    cold = _plan(tmp_path, "first", *first_args)
    assert "0 of 3 task(s) from 0 past evaluation(s)" in cold and "training: prior" in cold, cold
    assert re.search(r"measured now: Python work [\d.]+× .*this model's forward pass .*a training step", cold), cold
    per_model = int(re.search(r"(\d+) documents per model", cold).group(1))
    assert f"full {per_model} for" in cold  # the staged line counts documents as the time does (one function)
    first = run_sweep(tmp_path, *first_args, name="first", cache=tmp_path / "_cache")
    assert first.returncode == 0, first.stderr[-3000:]
    estimated, measured = estimated_eval_seconds(cold), _evaluated_seconds(first.stdout + first.stderr)
    assert 0.5 <= estimated / measured <= 2, (estimated, measured, cold)
    args = ["+sweep=quantity", "merge.interval=4", "merge.quantity=2,3,4,6", "logger=none"]
    plan = _plan(tmp_path, "second", *args)
    assert re.search(r"^\s+cached\s+raw-E56-s0\s.*every score in the score cache", plan, re.MULTILINE), plan
    assert re.search(r"^\s+cached\s+wsm-mean-N2-I4-E56-s0\s", plan, re.MULTILINE), plan
    assert set(re.findall(r"^\s+run\s+(\S+)", plan, re.MULTILINE)) == {f"wsm-mean-N{n}-I4-E56-s0" for n in (3, 4, 6)}
    assert "3 of 3 task(s) from" in plan  # calibrated by the first sweep's records
    assert "this model's forward pass" not in plan  # records of this size: nothing to probe
    second = run_sweep(tmp_path, *args, name="second", cache=tmp_path / "_cache")
    assert second.returncode == 0, second.stderr[-3000:]
    output = second.stdout + second.stderr
    estimated, measured = estimated_eval_seconds(plan), _evaluated_seconds(output)
    assert 0.5 <= estimated / measured <= 2, (estimated, measured, plan)
    # served from the score cache: reused, not computed
    assert "reused raw-E56-s0 from the score cache" in output
    assert "6 variant(s): 3 computed, 3 reused, 0 failed." in second.stdout
    # the console's numbers are the report's, and Overall is the mean over tasks of one metric each
    models = pd.read_csv(second.sweep_dir / "tables" / "models.csv").set_index("variant")
    frame = second.results()
    for variant, bpb, overall, state in re.findall(
            r"^  (\S+)\s+held-out bpb ([\d.]+)\s+Overall ([\d.]+)\s+(computed|reused)$", second.stdout, re.MULTILINE):
        assert float(bpb) == round(models.loc[variant, "heldout_bpb"], 4)
        assert float(overall) == round(models.loc[variant, "overall"], 2)
        rows = frame[(frame["variant"] == variant) & (frame["metric"] == "acc_norm")]
        assert float(overall) == round(100 * rows["value"].mean(), 2) and len(rows) == 2  # piqa, arc_easy
        assert state == ("computed" if "N3" in variant or "N4" in variant or "N6" in variant else "reused")
    assert len(re.findall(r"^  \S+\s+held-out bpb", second.stdout, re.MULTILINE)) == 6
    # findings: each verdict and what its interval covers, whole (wrapped at word boundaries, never cut)
    console = " ".join(second.stdout.split("Findings:\n", 1)[1].split())
    claims = pd.read_csv(second.sweep_dir / "tables" / "findings.csv")
    for text in [*claims["verdict"].dropna(), *claims["noise"].dropna()]:
        assert " ".join(str(text).split()) in console, text
    assert any("training seeds not covered" in str(v) for v in claims["verdict"])  # one seed says so
    again = run_sweep(tmp_path, *args, name="second", cache=tmp_path / "_cache")
    assert "6 variant(s): 0 computed, 6 reused, 0 failed." in again.stdout
    # a user series (the study's WSM branch by path) with its held-out text: planned, then run
    series, heldout = micro_branch(tmp_path / "_cache", "wsm"), next((tmp_path / "_cache").rglob("heldout.jsonl"))
    own = [f"series.path={series}", f"series.heldout={heldout}", "baselines.wsd_shapes=[]", "logger=none",
           "+sweep=quantity", "merge.interval=8", "merge.quantity=2,3"]
    plan = _plan(tmp_path, "own", *own)
    assert "your own run" in plan and "3 of 3 task(s) from" in plan and "26,720 parameters" in plan
    run = run_sweep(tmp_path, *own, name="own", cache=tmp_path / "_cache")
    assert run.returncode == 0, run.stderr[-3000:]
    estimated, measured = estimated_eval_seconds(plan), _evaluated_seconds(run.stdout + run.stderr)
    assert 0.5 <= estimated / measured <= 2, (estimated, measured, plan)
