"""``plan=true`` against a real micro sweep: the planned variants are exactly the evaluated ones."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers.sweep import MICRO, ROOT, run_sweep


@pytest.mark.slow  # trains the micro study and evaluates it
def test_plan_names_the_variants_the_sweep_evaluates(tmp_path):
    args = ["+sweep=quantity", "merge.interval=4", "merge.quantity=1,2,4", "logger=none"]
    common = [f"paths.sweeps={tmp_path}", f"paths.cache={tmp_path}/_cache", "sweep_name=q", *MICRO]
    plan = subprocess.run([sys.executable, "-m", "wsm_exp", *common, *args, "plan=true"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr
    assert not any(tmp_path.iterdir()), "a plan writes nothing"
    planned = set(re.findall(r"^\s+run\s+(\S+)", plan.stdout, flags=re.MULTILINE))
    assert "to train: wsd_1-sqrt, wsm" in plan.stdout
    run = run_sweep(tmp_path, *args, name="q", cache=tmp_path / "_cache")
    assert run.returncode == 0, run.stderr[-3000:]
    assert planned == set(run.results()["variant"])
    again = subprocess.run([sys.executable, "-m", "wsm_exp", *common, *args, "plan=true"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert set(re.findall(r"^\s+done\s+(\S+)", again.stdout, flags=re.MULTILINE)) == planned
    assert "cached wsd_1-sqrt, wsm; to train: -" in again.stdout
