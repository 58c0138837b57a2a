"""``merge.curve=fitted`` at plan time: the settings' checks, the variant's name, the plan needs the fit."""

from __future__ import annotations

import pytest

from wsm_exp.merging.plan import PlanError
from wsm_exp.merging.series import planned_series
from wsm_exp.sweep.planning.beyond_plan import fitted_settings
from wsm_exp.sweep.planning.variant_merge import fit_config, is_fitted, variant_plan
from wsm_exp.sweep.spec.schemas import ConfigError, MergeConfig, MergeFitConfig, from_node
from wsm_exp.sweep.spec.variants import merge_variant

TASKS = ["wsm_heldout_bpb", "wsm_piqa"]
TEST = MergeFitConfig(score_on="test")


def _fitted(**fit) -> MergeConfig:
    return MergeConfig(curve="fitted", fit=MergeFitConfig(**{"score_on": "test", **fit}))


def test_nested_keys_are_built_and_named_in_full():
    merge = from_node(MergeConfig, {"curve": "fitted", "fit": {"steps": 3, "score_on": "test"}}, key="merge")
    assert merge.fit == MergeFitConfig(steps=3, score_on="test")
    with pytest.raises(ConfigError, match=r"merge\.fit\.stepz.*Allowed under merge\.fit"):
        from_node(MergeConfig, {"fit": {"stepz": 3}}, key="merge")


@pytest.mark.parametrize("merge, tasks, has_heldout, match", [
    (MergeConfig(curve="fitted"), TASKS, True, r"needs merge\.fit\.score_on=test"),
    (_fitted(steps=-1), TASKS, True, r"merge\.fit: .*steps=-1"),
    (_fitted(monotone="increasing"), TASKS, True, r"merge\.fit: .*monotone='increasing' \(true or false"),
    (MergeConfig(curve="fitted", weights=[1, 2], fit=TEST), TASKS, True, r"merge\.weights cannot be set"),
    (MergeConfig(curve="fitted", extrapolate=0.5, order="reverse", fit=TEST), TASKS, True,
     r"merge\.extrapolate, merge\.order"),
    (MergeConfig(curve="mean", fit=MergeFitConfig(score_on="fit")), TASKS, True, r"score_on='fit'"),
    (MergeConfig(curve="mean", fit=TEST), ["wsm_piqa"], True, r"suite lacks wsm_heldout_bpb"),
    (MergeConfig(curve="mean", fit=TEST), TASKS, False, r"no held-out text"),
])
def test_refusals_name_the_key(merge, tasks, has_heldout, match):
    with pytest.raises(ConfigError, match=match):
        fitted_settings(merge, has_heldout, tasks)


def test_settings_only_for_a_fitted_curve():
    assert fitted_settings(MergeConfig(curve="mean", fit=TEST), True, TASKS) is None
    assert fitted_settings(_fitted(monotone=True), True, TASKS)["monotone"] is True
    settings = fitted_settings(_fitted(steps=3, device="cuda"), True, TASKS)
    assert settings == fit_config(MergeFitConfig(steps=3)).settings() and "device" not in settings


def test_name_carries_fitted_and_the_settings_hash_when_not_default():
    default = fit_config(MergeFitConfig()).settings()
    common = dict(curve="fitted", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16, default_fit=default)
    plain = merge_variant(fit=default, **common)
    other = merge_variant(fit={**default, "steps": 2}, **common)
    assert plain.name == "wsm-fitted-N2-I8-E16-s0" and plain.curve == "fitted" and is_fitted(plain)
    assert other.name.startswith("wsm-fitted-fit") and other.name != plain.name
    assert fit_config(other).steps == 2


def test_plan_of_a_fitted_variant_needs_its_fit():
    default = fit_config(MergeFitConfig()).settings()
    v = merge_variant(curve="fitted", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16, fit=default)
    checkpoints = planned_series([8, 16]).checkpoints
    with pytest.raises(PlanError, match="needs its fit"):
        variant_plan(v, checkpoints, 100, identify=False)
    plan = variant_plan(v, checkpoints, 100, identify=False, fitted=([0.3, 0.7], {"key": "abc"}))
    assert plan.curve == "fitted" and plan.weights == (0.3, 0.7) and plan.fit == {"key": "abc"}
    mean = merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16)
    with pytest.raises(PlanError, match="only a fitted merge"):
        variant_plan(mean, checkpoints, 100, identify=False, fitted=([0.3, 0.7], {"key": "abc"}))
