"""`wsm-merge` on safetensors never imports torch (its start-up would cost more than the merge); DCP does."""

from __future__ import annotations

import subprocess
import sys

import torch
from helpers.dcp import save_single
from helpers.merging import file_series

from wsm_exp.merging.merger import merge_plans
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window


def imported_modules(*args) -> set[str]:
    """Top-level packages a real ``wsm-merge`` process imports (``python -X importtime``), after it succeeded."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "wsm_exp.cli.merge", *map(str, args)], check=False,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "merged 2 checkpoints" in run.stdout
    lines = [line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")]
    return {name.split(".")[0] for name in lines[1:]}  # the first line is the table's header


def test_safetensors_merge_imports_no_torch(tmp_path):
    file_series(tmp_path / "run", [1, 2])
    modules = imported_modules(tmp_path / "run", "--quantity", "2", "--dtype", "bfloat16", "--out", tmp_path / "out",
                               "--quiet")
    assert "numpy" in modules and "wsm_exp" in modules  # the probe sees the merger's own imports
    assert not modules & {"torch", "safetensors", "transformers", "pandas", "hydra"}
    # the sweep's stage and the jobs merge in-process, torch imported: the same bytes
    plan = build_plan(select_window(load_series(tmp_path / "run"), quantity=2), dtype="bfloat16", identify=False)
    result = merge_plans([plan], [tmp_path / "in-process"], progress=False)[0]
    assert (tmp_path / "in-process" / "model.safetensors").read_bytes() == (tmp_path / "out" / "model.safetensors").read_bytes()
    assert result.key in (tmp_path / "out" / "merge.json").read_text()


def test_dcp_merge_imports_torch_lazily(tmp_path):
    for step in (1, 2):
        save_single(tmp_path / "run" / f"step_{step}", {"w": torch.full((4,), float(step))})
    assert "torch" in imported_modules(tmp_path / "run", "--quantity", "2", "--out", tmp_path / "out", "--quiet")
