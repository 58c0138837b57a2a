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


def test_the_sft_base_is_the_best_plain_merge_not_a_control_or_an_extrapolation(tmp_path):
    """A reversed-order or extrapolated merge with a lower bpb is not the recipe the SFT claim tests."""
    import json

    from wsm_exp.sweep.planning.sft_plan import best_merge
    from wsm_exp.sweep.record import folder, results
    from wsm_exp.sweep.spec.schemas import SFTJobConfig

    class Source:
        def identity(self):
            return {"study": "micro", "seed": 0}

    def row(variant, value, **fields):
        base = dict(variant=variant, kind="wsm", branch="wsm", curve="mean", quantity=4, seed=0,
                    steps=json.dumps([8, 16, 24, 32]), weights=json.dumps([0.25] * 4), interval_steps=8,
                    duration_steps=32, task="wsm_heldout_bpb", metric="bits_per_byte", value=value)
        return results.make_row(**{**base, **fields})

    frame = results.to_frame([
        row("wsm-mean-N4-reverse", 2.10, merge_order="reverse"),
        row("wsm-mean-N4-ex+0.5", 2.05, extrapolate=0.5),
        row("raw-like-N1", 2.00, quantity=1),
        row("wsm-mean-N4-plain", 2.20),
        row("wsm-mean-N4-other-seed", 1.90, seed=1),
    ])
    frame.to_parquet(tmp_path / "results.parquet")
    key, payload = folder.identity(Source().identity(), {})
    folder.claim(tmp_path, key, payload)
    chosen = best_merge(SFTJobConfig(select_from=str(tmp_path)), Source(), seed=0)
    assert chosen is not None and chosen.name == "wsm-mean-N4-plain"
