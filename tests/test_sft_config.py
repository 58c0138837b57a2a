"""The sft config group: every bad key or path is refused with the key named, before any work."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from wsm_exp.sweep.planning.sft_plan import check_sft
from wsm_exp.sweep.spec.schemas import ConfigError


def cfg(**sft):
    return OmegaConf.create({"sft": {"recipe": {"epochs": 2}, **sft}})


def test_defaults_pass():
    job, recipe = check_sft(cfg())
    assert recipe.epochs == 2 and job.runs is None and job.wsd_shape == "1-sqrt"


@pytest.mark.parametrize("sft, message", [
    ({"recipe": {"epoch": 2}}, "sft.recipe.epoch"),
    ({"recipe": {"decay_shape": "cosin"}}, "sft.recipe.decay_shape='cosin'"),
    ({"recipe": {"epochs": 0}}, "must be ≥ 1"),
    ({"bases": {"wsd": "/tmp"}}, "exactly the two bases"),
    ({"bases": {"wsd": "/nonexistent", "wsm": "/tmp"}}, "sft.bases.wsd='/nonexistent' is not a folder"),
    ({"bases": {"wsd": "/tmp", "wsm": "/tmp"}}, "sft.bases.wsd='/tmp' is not a Hugging Face model folder"),
    ({"runs": {"wsd": "/tmp", "wsm": "/tmp"}}, "sft.runs.wsd='/tmp' holds no epoch_<k> model folders"),
    ({"typo": 1}, "sft.typo"),
])
def test_bad_settings_name_the_key(sft, message):
    with pytest.raises(ConfigError) as err:
        check_sft(OmegaConf.create({"sft": sft}))
    assert message in str(err.value)


def test_runs_need_epoch_folders_with_a_config(tmp_path):
    for role in ("wsd", "wsm"):
        (tmp_path / role / "epoch_1").mkdir(parents=True)
        (tmp_path / role / "epoch_x").mkdir()
    runs = {"runs": {r: str(tmp_path / r) for r in ("wsd", "wsm")}}
    with pytest.raises(ConfigError, match="holds no epoch_<k>"):
        check_sft(cfg(**runs))
    for role in ("wsd", "wsm"):
        (tmp_path / role / "epoch_1" / "config.json").write_text("{}")
    assert check_sft(cfg(**runs))[0].runs == runs["runs"]
