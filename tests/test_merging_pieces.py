"""The merger works piece by piece: the piece size changes no byte, identity or error, and DCP inputs
(read a whole tensor at a time, through torch) merge to the same bits as the same tensors in safetensors."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.dcp import save_single
from helpers.merging import updates_series
from safetensors.torch import load_file, save_file

from wsm_exp.merging import reader
from wsm_exp.merging.merger import MergeError, merge_plans
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window

ODD_PIECE = 777  # elements: not a divisor of any tensor size, so pieces end mid-row and tensors span many


def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def one_pass(root, out, workers=1):
    """bf16 inputs into four outputs in one pass: input dtype, fp16, fp32, and fp32 summed in fp64."""
    series = load_series(root)
    plans = [build_plan(select_window(series, quantity=q), curve="1-sqrt", dtype=d, accumulate=a, identify=False)
             for q, d, a in ((3, None, "float32"), (4, "float16", "float32"), (2, "float32", "float32"),
                             (4, "float32", "float64"))]
    return merge_plans(plans, [out / f"m{i}" for i in range(len(plans))], shard_size_bytes=40_000, progress=False,
                       workers=workers)


@pytest.mark.parametrize("workers", [1, 2])
def test_piece_size_changes_no_byte_and_no_identity(tmp_path, monkeypatch, workers):
    updates_series(tmp_path / "run", [10, 20, 30, 40], dtype=torch.bfloat16)
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids-whole"))
    whole = one_pass(tmp_path / "run", tmp_path / "whole")
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids-pieces"))  # inputs hashed piece by piece
    monkeypatch.setattr(reader, "PIECE_ELEMENTS", ODD_PIECE)
    pieces = one_pass(tmp_path / "run", tmp_path / "pieces", workers)
    for a, b in zip(whole, pieces):
        assert (a.key, a.identity, a.bytes_read) == (b.key, b.identity, b.bytes_read)
        assert files(a.out_dir) == files(b.out_dir)  # every shard, the index and merge.json
    # the keys come from identities hashed while streaming; hashing the files afresh gives the same
    monkeypatch.setenv("WSM_IDENTITY_CACHE", str(tmp_path / "ids-fresh"))
    record = json.loads((whole[0].out_dir / "merge.json").read_text())
    window = select_window(load_series(tmp_path / "run"), quantity=3)
    assert build_plan(window, curve="1-sqrt").key == record["key"] == whole[0].key


def test_a_difference_or_a_nan_in_a_late_piece_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "PIECE_ELEMENTS", ODD_PIECE)
    for step in (1, 2):
        state = {"ids": torch.arange(5000), "w": torch.ones(5000)}
        if step == 2:
            state["ids"][4990] = -1
        save_file(state, tmp_path / f"step_{step}.safetensors")
    plan = build_plan(select_window(load_series(tmp_path), quantity=2), identify=False)
    with pytest.raises(MergeError, match="Non-float tensor 'ids' differs"):
        merge_plans([plan], [tmp_path / "out"], progress=False)
    state = {"ids": torch.arange(5000), "w": torch.ones(5000)}
    state["w"][4999] = float("nan")
    save_file(state, tmp_path / "step_2.safetensors")
    plan = build_plan(select_window(load_series(tmp_path), quantity=2), identify=False)
    with pytest.raises(MergeError, match=r"Tensor 'w' of checkpoint .*step_2.safetensors \(step 2\) contains NaN"):
        merge_plans([plan], [tmp_path / "out"], progress=False)
    assert not (tmp_path / "out").exists()


def test_dcp_and_safetensors_inputs_give_the_same_bits(tmp_path):
    gen = torch.Generator().manual_seed(5)
    states = [{"a": torch.randn(300, 7, generator=gen), "b": torch.randn(50, generator=gen).to(torch.bfloat16),
               "n": torch.tensor([3, 4])} for _ in range(3)]
    for step, state in zip((1, 2, 3), states):
        save_single(tmp_path / "dcp" / f"step_{step}", state)
        (tmp_path / "st" / f"step_{step}").mkdir(parents=True)
        save_file(state, tmp_path / "st" / f"step_{step}" / "model.safetensors", metadata={"format": "pt"})
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    outs = {}
    for kind in ("dcp", "st"):
        plan = build_plan(select_window(load_series(tmp_path / kind), quantity=3), curve="1-sqrt", identify=False)
        merge_plans([plan], [tmp_path / f"out-{kind}"], progress=False, hf_config=hf if kind == "dcp" else None)
        outs[kind] = load_file(tmp_path / f"out-{kind}" / "model.safetensors")
    assert outs["dcp"].keys() == outs["st"].keys() == states[0].keys()
    for name in states[0]:
        a, b = outs["dcp"][name], outs["st"][name]
        assert a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8)), name
