"""A merge evaluated straight from memory scores exactly like the same merge written and loaded back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.dcp import save_single
from helpers.evaluation import TEXT, tiny_series
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from wsm_exp.evaluation import SuiteConfig, evaluate
from wsm_exp.evaluation.tasks import loaders as task_loaders
from wsm_exp.evaluation.in_memory import build_model, from_merge
from wsm_exp.merging.identity import folder_identity
from wsm_exp.merging.memory_sink import merge_in_memory
from wsm_exp.merging.merger import MergeError, merge_plan
from wsm_exp.merging.plan import build_plan
from wsm_exp.merging.series import load_series, select_window

SHARD = 40_000  # bytes: the tiny model's merge is cut into several shards, so each shard's header counts


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return tiny_series(tmp_path_factory.mktemp("run"), [10, 20, 30, 40])


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "heldout.jsonl"
    path.write_text("".join(json.dumps({"text": " ".join(TEXT[i:i + 6])}) + "\n" for i in range(0, 24, 6)))
    return path


def plan_of(series, **kwargs):
    return build_plan(select_window(load_series(series), quantity=3), curve="mean", **kwargs)


def test_in_memory_merge_has_the_written_merges_identity_key_and_bytes(series, tmp_path):
    written = merge_plan(plan_of(series), tmp_path / "written", shard_size_bytes=SHARD, progress=False)
    assert written.shards > 1
    with merge_in_memory(plan_of(series), shard_size_bytes=SHARD, progress=False) as merged:
        assert merged.identity == written.identity == folder_identity(written.out_dir)
        assert merged.key == written.key
        on_disk = {}
        for file in sorted(written.out_dir.glob("*.safetensors")):
            on_disk |= load_file(file)
        arrays = merged.arrays()
        assert sorted(arrays) == sorted(on_disk)
        for name, (st_dtype, shape, data) in arrays.items():
            assert st_dtype == "F32" and shape == tuple(on_disk[name].shape)
            assert data.tobytes() == on_disk[name].numpy().tobytes()
        assert merged.nbytes() == sum(t.numel() * 4 for t in on_disk.values())
        assert not list(merged.folder.glob("*.safetensors"))  # only side files were written
        folder = merged.folder
    assert not folder.exists()  # close() removes them


def test_a_different_shard_size_gives_a_different_identity(series):
    """The identity is that of the files the merge would write, so it follows the shard size (use the sweep's)."""
    with merge_in_memory(plan_of(series), shard_size_bytes=SHARD, progress=False) as small, \
            merge_in_memory(plan_of(series), progress=False) as whole:
        assert small.identity != whole.identity and small.key == whole.key


@pytest.mark.slow
def test_in_memory_scores_equal_the_written_merges_bit_for_bit_and_share_its_cache(series, heldout, tmp_path):
    suite = SuiteConfig(tasks=["wsm_heldout_bpb", "wsm_arc_easy"], limit=6, batch_size=4)
    extra = {"heldout": heldout}
    written = merge_plan(plan_of(series), tmp_path / "written", progress=False)
    from_disk = evaluate(written.out_dir, suite, cache_dir=None, extra_data=extra)
    with merge_in_memory(plan_of(series), progress=False) as merged:
        model = from_merge(merged)
        loaded = AutoModelForCausalLM.from_pretrained(written.out_dir, dtype=torch.float32)
        built = build_model(model, "float32", "cpu")
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), built.state_dict().values()))
        in_memory = evaluate(model, suite, cache_dir=tmp_path / "scores", extra_data=extra)
    values = [(s.task, s.metric, s.value) for s in in_memory.scores]
    assert values == [(s.task, s.metric, s.value) for s in from_disk.scores]
    assert in_memory.samples.equals(from_disk.samples)
    assert in_memory.samples["metric"].eq("bits_per_byte").sum() == 4  # per-document losses, compared exactly
    # throughput: the held-out task read each document's tokens once (rolling windows: prefix + all but the last)
    tokenizer = AutoTokenizer.from_pretrained(written.out_dir)
    texts = task_loaders.heldout(str(heldout))["test"]["text"]  # the documents as the task cuts them
    (bpb,) = [s for s in in_memory.scores if s.metric == "bits_per_byte"]
    assert bpb.tokens == sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
    assert all(s.tokens > 0 and s.tokens_per_second == s.tokens / s.seconds for s in in_memory.scores)
    # the in-memory merge filled the cache under the written merge's identity: the folder finds every score there
    cached = evaluate(written.out_dir, suite, cache_dir=tmp_path / "scores", extra_data=extra)
    assert all(s.from_cache for s in cached.scores) and [s.value for s in cached.scores] == [v for *_, v in values]


def test_dcp_checkpoints_merge_into_memory_with_hf_config(series, tmp_path):
    steps = [10, 20, 30]
    for step in steps:
        save_single(tmp_path / "dcp" / f"step_{step}", load_file(series / f"step_{step}" / "model.safetensors"))
    plan = build_plan(select_window(load_series(tmp_path / "dcp"), quantity=3), curve="mean")
    hf = series / "step_40"  # config and tokenizer of the same model
    written = merge_plan(plan, tmp_path / "written", hf_config=hf, progress=False)
    with merge_in_memory(plan, hf_config=hf, progress=False) as merged:
        assert merged.identity == written.identity == folder_identity(written.out_dir)
        on_disk = load_file(written.out_dir / "model.safetensors")
        assert all(np.array_equal(data, on_disk[name].numpy().view(np.uint8).reshape(-1))
                   for name, (_, _, data) in merged.arrays().items())
    with pytest.raises(MergeError, match="pass hf_config"):  # a DCP output cannot be held as a model
        merge_in_memory(plan, progress=False)
