"""Several merges in one streaming pass: each input read once, every output bit-identical to its own merge."""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from helpers.merging import WSM_MERGE, file_series, updates_series
from safetensors.torch import load_file, save_file

from wsm_exp.merging.merger import MergeError, merge_plan, merge_plans
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window


def load_folder(folder: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def test_one_pass_equals_separate_merges_bit_for_bit(tmp_path):
    updates_series(tmp_path / "s", [0, 4, 8, 12, 16], dtype=torch.bfloat16)
    series = load_series(tmp_path / "s")
    plans = [build_plan(select_window(series, quantity=2), curve="1-sqrt", identify=False),
             build_plan(select_window(series, quantity=4), curve="cosine", dtype="float32", identify=False),
             build_plan(select_window(series, quantity=3, interval=8), curve="ema", identify=False),
             build_plan(select_window(series, quantity=2, end=8), weights=[1, 3], accumulate="float64",
                        identify=False)]
    together = merge_plans(plans, [tmp_path / f"together{i}" for i in range(4)], shard_size_bytes=30_000,
                           progress=False)
    per_input = sum(t.numel() * t.element_size() for t in load_folder(tmp_path / "s" / "step_0").values())
    assert together[0].bytes_read == 5 * per_input  # the union, once, although the plans use 11 checkpoints
    for i, plan in enumerate(plans):
        alone = merge_plan(plan, tmp_path / f"alone{i}", shard_size_bytes=30_000, progress=False)
        a, b = load_folder(tmp_path / f"together{i}"), load_folder(tmp_path / f"alone{i}")
        assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
        assert together[i].key == alone.key and together[i].identity == alone.identity
        assert json.loads((tmp_path / f"together{i}" / "merge.json").read_text())["steps"] == [
            c.step for c in plan.checkpoints]


def test_an_error_in_one_merge_publishes_none(tmp_path):
    file_series(tmp_path / "s", [1, 2, 3])
    series = load_series(tmp_path / "s")
    state = load_file(series.checkpoints[0].files[0])
    plans = [build_plan(select_window(series, quantity=2), identify=False),
             build_plan(select_window(series, quantity=3), identify=False)]
    state["w"][0, 0] = float("nan")
    save_file(state, series.checkpoints[0].files[0])
    with pytest.raises(MergeError, match=r"checkpoint-1.safetensors \(step 1\) contains NaN"):
        merge_plans(plans, [tmp_path / "a", tmp_path / "b"], progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    with pytest.raises(MergeError, match="its own folder"):
        merge_plans(plans, [tmp_path / "a", tmp_path / "a"], progress=False)


def test_wsm_merge_comma_lists_write_one_model_per_combination(tmp_path):
    updates_series(tmp_path / "s", [0, 10, 20, 30, 40])
    out = subprocess.run([WSM_MERGE, tmp_path / "s", "--curve", "mean,1-sqrt,sma", "--quantity", "2,4",
                          "--out", tmp_path / "grid", "--quiet"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    names = sorted(p.name for p in (tmp_path / "grid").iterdir())
    assert names == ["1-sqrt-N2-I10-E40", "1-sqrt-N4-I10-E40", "mean-N2-I10-E40", "mean-N4-I10-E40",
                     "sma-N2-I10-E40", "sma-N4-I10-E40"]  # each alias under the name asked for
    assert "6 merge(s) in one pass" in out.stdout
    alone = build_plan(select_window(load_series(tmp_path / "s"), quantity=4), curve="1-sqrt", identify=False)
    merge_plan(alone, tmp_path / "single", progress=False)
    a, b = load_folder(tmp_path / "grid" / "1-sqrt-N4-I10-E40"), load_folder(tmp_path / "single")
    assert all(torch.equal(a[k], b[k]) for k in b)
    dry = subprocess.run([WSM_MERGE, tmp_path / "s", "--quantity", "2,3", "--duration", "50", "--dry-run"],
                         capture_output=True, text=True)
    assert dry.returncode == 2, dry.stderr
    assert "--quantity 2 --duration 50: D=50 with N=2 gives Δ = D/N = 25" in dry.stderr
