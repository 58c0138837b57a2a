"""The streaming merger on real tiny checkpoints: values, dtypes, shards, provenance, atomicity, refusals."""

import json

import numpy as np
import pytest
import torch
from helpers.merging import file_series, updates_series
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import wsm_exp.merging.output as output_module
from wsm_exp.merging.identity import folder_identity
from wsm_exp.merging.merger import MergeError, merge_checkpoints, merge_plan
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window
from wsm_exp.merging.weights import merge_weights


def plain_average(paths, weights, dtype=np.float32):
    """Reference: load everything, then the merger's defined arithmetic written plainly on whole tensors:
    ``acc = w_1 θ_1``, then ``acc = acc + w_i θ_i``, each product and sum rounded to ``dtype``."""
    states = [load_file(p) for p in paths]
    merged = {}
    for k in states[0]:
        xs = [s[k].double().numpy().astype(dtype) for s in states]
        acc = dtype(weights[0]) * xs[0]
        for x, w in zip(xs[1:], weights[1:]):
            acc = acc + dtype(w) * x
        merged[k] = acc
    return merged


def test_fp32_merge_is_bit_identical_to_plain_average(tmp_path):
    updates_series(tmp_path / "s", [0, 4, 8, 12])
    window = select_window(load_series(tmp_path / "s"), quantity=4)
    weights = merge_weights("1-sqrt", 4)
    result = merge_checkpoints(window.checkpoints, weights, tmp_path / "out", progress=False)
    merged = load_file(tmp_path / "out" / "model.safetensors")
    reference = plain_average([c.files[0] for c in window.checkpoints], weights)
    exact = plain_average([c.files[0] for c in window.checkpoints], weights, np.float64)
    assert merged.keys() == reference.keys()
    for k in merged:
        assert np.array_equal(merged[k].numpy(), reference[k]), k
        # and within fp32 rounding of the float64 sum: a few ulps of Σ|w_i θ_i|
        scale = sum(abs(w) * np.abs(load_file(c.files[0])[k].double().numpy()) for c, w in zip(window.checkpoints, weights))
        assert np.all(np.abs(merged[k].double().numpy() - exact[k]) <= 4 * 2.0**-24 * scale + 1e-45), k
    assert result.shards == 1 and result.bytes_read > 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 64)


def test_sharded_bf16_inputs_give_sharded_bf16_output(tmp_path):
    updates_series(tmp_path / "s", [0, 2, 4], dtype=torch.bfloat16, shard="20KB")
    window = select_window(load_series(tmp_path / "s"), quantity=3)
    result = merge_checkpoints(window.checkpoints, [0.2, 0.3, 0.5], tmp_path / "out", shard_size_bytes=30_000,
                               progress=False)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert result.shards > 1 and len(set(index["weight_map"].values())) == result.shards
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert next(model.parameters()).dtype == torch.bfloat16
    as_fp32 = merge_checkpoints(window.checkpoints, [0.2, 0.3, 0.5], tmp_path / "out32", dtype="float32",
                                progress=False)
    assert as_fp32.shards == 1
    merged32 = load_file(tmp_path / "out32" / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in merged32.values())
    for name, tensor in load_file(tmp_path / "out" / index["weight_map"]["lm_head.weight"]).items():
        assert torch.equal(tensor, merged32[name].to(torch.bfloat16))


def test_provenance_in_merge_json_and_header(tmp_path):
    updates_series(tmp_path / "s", [0, 4])
    window = select_window(load_series(tmp_path / "s"), quantity=2)
    plan = build_plan(window, curve="mean", identify=False)
    assert plan.key is None  # fresh checkpoints: identities come from the merge's own read
    result = merge_plan(plan, tmp_path / "out", provenance={"purpose": "test"}, progress=False)
    record = json.loads((tmp_path / "out" / "merge.json").read_text())
    assert record["steps"] == [0, 4] and record["weights"] == [0.5, 0.5]
    assert (record["curve"], record["alias_of"]) == ("mean", "linear")  # the name asked for, and what it is
    assert record["key"] == result.key == build_plan(window, curve="mean").key  # streamed == hashed from disk
    assert [c["identity"] for c in record["checkpoints"]] == [folder_identity(c.path) for c in window.checkpoints]
    assert record["output"]["identity"] == result.identity == folder_identity(tmp_path / "out")
    assert record["package_version"] and record["note"] == {"purpose": "test"}
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as handle:
        meta = handle.metadata()
    assert meta["format"] == "pt" and json.loads(meta["wsm_merge"]) == plan.recipe()
    assert {"config.json", "generation_config.json"} <= {p.name for p in (tmp_path / "out").iterdir()}


def test_sharded_output_identity_matches_a_fresh_hash(tmp_path):
    updates_series(tmp_path / "s", [0, 2], shard="20KB")
    window = select_window(load_series(tmp_path / "s"), quantity=2)
    result = merge_plan(build_plan(window, identify=False), tmp_path / "out", shard_size_bytes=30_000, progress=False)
    assert result.shards > 1 and result.identity == folder_identity(tmp_path / "out")
    assert result.key == build_plan(window).key


def test_plan_key_tracks_weights_dtype_curve_and_content(tmp_path):
    updates_series(tmp_path / "s", [0, 4])
    window = select_window(load_series(tmp_path / "s"), quantity=2)
    keys = {build_plan(window, curve="mean").key, build_plan(window, weights=[0.4, 0.6]).key,
            build_plan(window, dtype="bfloat16").key, build_plan(window, accumulate="float64").key,
            build_plan(window, curve="cosine", min_lr=0.1).key}
    assert len(keys) == 5
    assert build_plan(window, curve="sma").key == build_plan(window, curve="linear").key == build_plan(window).key
    before = build_plan(window).key
    state = load_file(window.checkpoints[0].files[0])
    state["lm_head.weight"][0, 0] += 1
    save_file(state, window.checkpoints[0].files[0], metadata={"format": "pt"})
    assert build_plan(window).key != before


def test_non_float_tensors_copied_or_refused(tmp_path):
    file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    merge_checkpoints(cks, [0.5, 0.5], tmp_path / "ok", progress=False)
    assert torch.equal(load_file(tmp_path / "ok" / "model.safetensors")["position_ids"], torch.arange(6))
    state = load_file(cks[1].files[0])
    state["position_ids"] = torch.arange(1, 7)
    save_file(state, cks[1].files[0])
    with pytest.raises(MergeError, match="Non-float tensor 'position_ids' differs"):
        merge_checkpoints(cks, [0.5, 0.5], tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad*"))


def _recast(checkpoints, name, dtype):
    for checkpoint in checkpoints:
        state = load_file(checkpoint.files[0])
        state[name] = state[name].to(dtype)
        save_file(state, checkpoint.files[0])


def test_float8_tensors_refused_with_the_fix(tmp_path):
    file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    _recast(cks, "b", torch.float8_e4m3fn)
    with pytest.raises(MergeError, match=r"Tensor 'b' .* is F8_E4M3; only F64, F32, BF16 and F16 .* Dequantise"):
        merge_checkpoints(cks, [0.5, 0.5], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_float64_tensors_accumulate_in_float64(tmp_path):
    states = file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    _recast(cks, "w", torch.float64)
    merged = merge_checkpoints(cks, [0.3, 0.7], tmp_path / "out", progress=False)
    expected = states[1]["w"].double() * 0.3 + states[2]["w"].double() * 0.7
    error = (load_file(merged.out_dir / "model.safetensors")["w"] - expected).abs().max().item()
    assert error < 1e-14  # fp32 accumulation would be off by ~1e-8
    record = json.loads((merged.out_dir / "merge.json").read_text())
    assert record["accumulated"] == "float64" and record["input_dtypes"] == ["F32", "F64", "I64"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_input_refused_and_nothing_written(tmp_path, bad):
    file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    state = load_file(cks[1].files[0])
    state["w"][0, 0] = bad
    save_file(state, cks[1].files[0])
    with pytest.raises(MergeError, match=r"Tensor 'w' of checkpoint .*checkpoint-2.safetensors \(step 2\) contains NaN or Inf"):
        merge_checkpoints(cks, [0.5, 0.5], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    merge_checkpoints(cks, [0.5, 0.5], tmp_path / "out", allow_nonfinite=True, progress=False)
    assert not torch.isfinite(load_file(tmp_path / "out" / "model.safetensors")["w"]).all()


def test_nonfinite_input_with_zero_weight_still_refused(tmp_path):
    file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    state = load_file(cks[0].files[0])
    state["w"][1, 1] = float("inf")
    save_file(state, cks[0].files[0])
    with pytest.raises(MergeError, match=r"checkpoint-1.safetensors \(step 1\) contains NaN or Inf"):
        merge_checkpoints(cks, [0.0, 1.0], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_overflowing_sum_of_finite_inputs_refused(tmp_path):
    file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    for checkpoint in cks:
        state = load_file(checkpoint.files[0])
        state["w"][0, 0] = 3e38
        save_file(state, checkpoint.files[0])
    with pytest.raises(MergeError, match=r"weighted sum of tensor 'w' overflows .*\(float32\).* Check the weights"):
        merge_checkpoints(cks, [1.0, 1.0], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    merged = merge_checkpoints(cks, [0.5, 0.5], tmp_path / "out", progress=False)
    assert load_file(merged.out_dir / "model.safetensors")["w"][0, 0].item() == pytest.approx(3e38)


def test_existing_output_refused_unless_overwrite(tmp_path):
    file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(MergeError, match="already exists.*--overwrite"):
        merge_checkpoints(cks, [0.5, 0.5], tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    merge_checkpoints(cks, [0.5, 0.5], tmp_path / "merged", progress=False)
    first = (tmp_path / "merged" / "merge.json").read_text()
    merge_checkpoints(cks, [0.25, 0.75], tmp_path / "merged", overwrite=True, progress=False)
    assert (tmp_path / "merged" / "merge.json").read_text() != first  # a previous merge output is replaced


def test_crash_while_writing_leaves_nothing(tmp_path, monkeypatch):
    """A writer that dies after the first shard (e.g. a full disk): no partial model, no temp folder."""
    updates_series(tmp_path / "s", [0, 4])
    cks = load_series(tmp_path / "s").checkpoints
    calls = []

    class FailingWriter(output_module.SafetensorsWriter):
        def __init__(self, path, entries, metadata):
            calls.append(path)
            super().__init__(path, entries, metadata)
            if len(calls) == 2:
                raise OSError(28, "No space left on device")

    monkeypatch.setattr(output_module, "SafetensorsWriter", FailingWriter)
    with pytest.raises(OSError, match="No space left"):
        merge_checkpoints(cks, [0.5, 0.5], tmp_path / "out", shard_size_bytes=20_000, progress=False)
    assert len(calls) == 2
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_bad_requests(tmp_path):
    file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    with pytest.raises(ValueError, match="one weight per checkpoint"):
        merge_checkpoints(cks, [1.0], tmp_path / "o", progress=False)
    with pytest.raises(ValueError, match="dtype 'int8'"):
        merge_checkpoints(cks, [0.5, 0.5], tmp_path / "o", dtype="int8", progress=False)
    assert not (tmp_path / "o").exists()


def test_rerun_after_a_killed_merge_removes_its_temporary(tmp_path, dead_pid):
    """A merge killed mid-write leaves .out.tmp-<host>-<pid>-*; the next merge of the same target deletes it."""
    import socket

    file_series(tmp_path / "s", [1, 2])
    cks = load_series(tmp_path / "s").checkpoints
    stale = tmp_path / f".out.tmp-{socket.gethostname()}-{dead_pid}-0badf00d"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half a shard")
    merge_checkpoints(cks, [0.5, 0.5], tmp_path / "out", progress=False)
    assert not stale.exists() and (tmp_path / "out" / "merge.json").is_file()
