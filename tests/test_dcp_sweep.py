"""A sweep over a user's DCP series, paired with a Hugging Face config: merged, converted, evaluated.

The DCP checkpoints are the micro study's safetensors checkpoints saved again by torch's own
``torch.distributed.checkpoint.save``; the same sweep over the safetensors series is the reference
(same weights, so the same scores).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.dcp import save_single, state
from helpers.merging import tiny_model
from helpers.sweep import micro_study, run_sweep
from safetensors.torch import load_file, save_file

from wsm_exp.sweep.planning import hf_pairing
from wsm_exp.sweep.planning.sources import UserSource
from wsm_exp.sweep.spec.schemas import ConfigError, SeriesConfig

SWEEP = ["+sweep=duration", "merge.quantity=2", "merge.duration=8,16", "baselines.wsd_shapes=[]", "logger=none"]
COLUMNS = ["variant", "kind", "task", "metric", "value", "stderr", "status"]


def dcp_series(root: Path, steps=(10, 20), tensors=state) -> Path:
    for step in steps:
        save_single(root / f"step_{step}", tensors(step))
    return root


def hf_folder(path: Path, config: str | None = None) -> Path:
    """A Hugging Face folder without weights: the tiny Llama's config.json (or ``config``) and a tokenizer file."""
    path.mkdir(parents=True)
    if config is None:
        tiny_model().config.save_pretrained(path)
    else:
        (path / "config.json").write_text(config)
    (path / "tokenizer.json").write_text("{}")
    return path


def tiny_state(step: int) -> dict:
    return tiny_model(step).state_dict()


def source(series: Path, hf_config: Path | None = None) -> UserSource:
    return UserSource(SeriesConfig(path=str(series), tokens_per_step=1, hf_config=hf_config and str(hf_config)))


def test_dcp_series_without_hf_config_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"DCP checkpoints .* series\.hf_config=/path/to/hf"):
        source(dcp_series(tmp_path / "run")).check_hf_config()


def test_hf_config_must_hold_the_config_of_a_model_whose_weights_the_checkpoints_hold(tmp_path):
    series = dcp_series(tmp_path / "run", tensors=tiny_state)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"series\.hf_config=.*has no config\.json"):
        source(series, tmp_path / "empty").check_hf_config()
    with pytest.raises(ConfigError, match=r"does not describe a causal LM"):
        source(series, hf_folder(tmp_path / "blank", config="{}")).check_hf_config()
    source(series, hf_folder(tmp_path / "hf")).check_hf_config()  # the tiny Llama's own names: accepted
    other = dcp_series(tmp_path / "other", tensors=state)  # a framework's own names (embed.weight, ...)
    with pytest.raises(ConfigError, match=r"lacks \d+ weight\(s\) .*'lm_head.weight'.*Hugging Face names"):
        source(other, tmp_path / "hf").check_hf_config()


def test_hf_config_beside_safetensors_checkpoints_is_refused(tmp_path):
    for step in (10, 20):
        (tmp_path / "run" / f"step_{step}").mkdir(parents=True)
        save_file(state(step) | {"half.weight": state(step)["half.weight"].float()},
                  tmp_path / "run" / f"step_{step}" / "model.safetensors")
    with pytest.raises(ConfigError, match="Drop series.hf_config"):
        source(tmp_path / "run", hf_folder(tmp_path / "hf")).check_hf_config()


def test_models_of_another_config_are_cached_and_scored_apart(tmp_path):
    one, two = hf_folder(tmp_path / "one", config="{}"), hf_folder(tmp_path / "two", config="{}")
    assert hf_pairing.merges_dir(tmp_path, one) == hf_pairing.merges_dir(tmp_path, two)  # same files, same place
    (two / "tokenizer.json").write_text('{"other": 1}')
    assert hf_pairing.merges_dir(tmp_path, one) != hf_pairing.merges_dir(tmp_path, two)
    assert hf_pairing.model_hash("ab" * 16, one) != hf_pairing.model_hash("ab" * 16, two)
    before = hf_pairing.config_digest(one)
    for weights in ("model.safetensors", "pytorch_model.bin", "consolidated.pth", "model.safetensors.index.json"):
        (one / weights).write_bytes(b"weights are not part of the pairing")
    assert hf_pairing.config_digest(one) == before
    (one / "tokenizer.json").write_text('{"edited": 1}')  # an edit in place is seen (cache keyed by size, mtime)
    assert hf_pairing.config_digest(one) != before


def test_hf_config_for_series_that_do_not_load_leaves_their_own_error(tmp_path):
    """A series that fails to load reports its own error where it is used, not "Drop series.hf_config"."""
    hf_pairing.check_pairing(str(hf_folder(tmp_path / "hf")), {})
    (tmp_path / "run" / "step_10").mkdir(parents=True)  # a checkpoint folder without weights
    source(tmp_path / "run", tmp_path / "hf").check_hf_config()


@pytest.fixture(scope="module")
def study(root, cache):
    return micro_study(root, cache)


@pytest.mark.slow
def test_sweep_over_a_dcp_series_scores_its_merges_like_the_same_safetensors_series(root, study, tmp_path):
    series, heldout = study
    steps = sorted(series.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    dcp = tmp_path / "dcp"
    for step in steps:  # the same weights, saved by torch.distributed.checkpoint (no config, no tokenizer)
        save_single(dcp / step.name, load_file(step / "model.safetensors"))
    shutil.copy(series / "series.json", dcp / "series.json")
    hf = tmp_path / "hf"  # what series.hf_config names: the model's config and tokenizer, no weights
    shutil.copytree(steps[-1], hf, ignore=shutil.ignore_patterns("*.safetensors", "trainer_state*"))
    user = [f"series.heldout={heldout}", "series.tokens_per_step=256", *SWEEP]

    refused = run_sweep(root, f"series.path={dcp}", *user, name="dcp-refused", cache=tmp_path / "unused")
    assert refused.returncode == 2 and "series.hf_config=" in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr and not (root / "dcp-refused").exists()

    reference = run_sweep(root, f"series.path={series}", *user, name="st", cache=tmp_path / "st-cache")
    assert reference.returncode == 0, reference.stdout[-2000:] + reference.stderr[-4000:]
    run = run_sweep(root, f"series.path={dcp}", f"series.hf_config={hf}", *user, name="dcp",
                    cache=tmp_path / "dcp-cache")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    frame, expected = run.results(), reference.results()
    assert set(frame["status"]) == {"ok"} and set(frame["kind"]) == {"wsm", "raw"}
    assert len(set(frame.loc[frame["kind"] == "wsm", "variant"])) == 2
    assert set(frame["task"]) == {"wsm_heldout_bpb", "wsm_piqa", "wsm_arc_easy"}
    order = ["variant", "task", "metric"]
    pd.testing.assert_frame_equal(frame[COLUMNS].sort_values(order, ignore_index=True),
                                  expected[COLUMNS].sort_values(order, ignore_index=True), check_exact=True)
    # the merges and the raw baseline became Hugging Face folders, cached by content beside the config
    (paired,) = (tmp_path / "dcp-cache" / "merges").glob("hf-*")
    assert paired.name == f"hf-{hf_pairing.config_digest(hf)}"
    models = sorted(p for p in paired.iterdir() if (p / "merge.json").is_file())
    assert len(models) == 3  # two merges and the converted raw checkpoint
    for model in models:
        assert {"config.json", "tokenizer.json", "model.safetensors"} <= {p.name for p in model.iterdir()}
    recipes = {recipe(model): model for model in models}
    st_merges = [p for p in (tmp_path / "st-cache" / "merges").iterdir() if (p / "merge.json").is_file()]
    assert len(st_merges) == 2
    for folder in st_merges:  # same steps and weights, the same tensors bit for bit
        ours, theirs = (load_file(f / "model.safetensors") for f in (recipes[recipe(folder)], folder))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    (raw,) = [m for m in models if len(json.loads((m / "merge.json").read_text())["steps"]) == 1]
    converted, original = load_file(raw / "model.safetensors"), load_file(steps[-1] / "model.safetensors")
    assert converted.keys() == original.keys() and all(torch.equal(converted[k], original[k]) for k in original)

    # merge.keep=false on fresh caches: the merges and the raw checkpoint's conversion become Hugging Face models
    # in memory, scored bit for bit as the written ones (fp32) under the same keys, and nothing is written
    memory = run_sweep(root, f"series.path={dcp}", f"series.hf_config={hf}", *user, "merge.keep=false",
                       name="dcp-memory", cache=tmp_path / "memory-cache")
    assert memory.returncode == 0, memory.stdout[-2000:] + memory.stderr[-4000:]
    in_memory = memory.results()
    assert (in_memory.loc[in_memory["kind"] == "wsm", "merge_seconds"] > 0).all()
    same = [*COLUMNS, "model_hash"]
    pd.testing.assert_frame_equal(in_memory[same].sort_values(order, ignore_index=True),
                                  frame[same].sort_values(order, ignore_index=True), check_exact=True)
    assert set(in_memory["model_hash"]) == {hf_pairing.model_hash(m.name, hf) for m in models}
    written = [p for p in (tmp_path / "memory-cache").rglob("*") if p.is_file() and "merges" in p.parts]
    assert not written, written  # no merge, no conversion, no temporary left in the merge cache

    # another tokenizer config: every model is rewritten beside it and scored anew, never reused
    config = json.loads((hf / "tokenizer_config.json").read_text())
    (hf / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 4096}))
    rerun = run_sweep(root, f"series.path={dcp}", f"series.hf_config={hf}", *user, name="dcp",
                      cache=tmp_path / "dcp-cache")
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-4000:]
    assert (rerun.stdout + rerun.stderr).count("hf config changed") == 3  # each variant says why it recomputed
    assert len(list((tmp_path / "dcp-cache" / "merges").glob("hf-*"))) == 2
    assert set(rerun.results()["model_hash"]).isdisjoint(frame["model_hash"])


def recipe(model: Path) -> tuple:
    record = json.loads((model / "merge.json").read_text())
    return tuple(record["steps"]), tuple(record["weights"])
