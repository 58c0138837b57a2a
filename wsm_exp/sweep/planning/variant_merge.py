"""The merge a variant needs: whether its model is a merge, and its ``MergePlan`` (the one construction).

The merge stage (``stage.merge_stage``) and the job (``run.job``) both build a variant's plan here,
so the stage's outputs are exactly the merges the jobs then find in the cache. No I/O.

Example:
    >>> from wsm_exp.sweep.spec.variants import raw_variant
    >>> needs_merge(raw_variant(step=96, seed=0))
    False
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wsm_exp.merging.fit import FitConfig
from wsm_exp.merging.plan import EXPLICIT, FITTED, MergePlan, PlanError, build_plan
from wsm_exp.merging.series import Checkpoint, Window
from wsm_exp.sweep.spec.schemas import MergeFitConfig
from wsm_exp.sweep.spec.variants import Variant

MERGED_KINDS = ("wsm", "decay_merge")


def needs_merge(variant: Variant) -> bool:
    """Whether the variant's model is a merge (a single checkpoint is evaluated as it is)."""
    return variant.kind in MERGED_KINDS and variant.quantity > 1


def is_fitted(variant: Variant) -> bool:
    """Whether the variant's weights come from a fit on held-out text (known only once the job fits them)."""
    return variant.curve == FITTED


def fit_config(settings: MergeFitConfig | Variant) -> FitConfig:
    """The fit's settings (what its key holds) from ``merge.fit`` or from a fitted variant.

    >>> fit_config(MergeFitConfig(steps=3, device="cuda")).steps
    3
    """
    if isinstance(settings, Variant):
        return FitConfig(**json.loads(settings.fit))
    fields = {k: getattr(settings, k) for k in FitConfig.__dataclass_fields__}
    return FitConfig(**fields)


def variant_plan(variant: Variant, checkpoints: Sequence[Checkpoint], tokens_per_step: int | None, *,
                 identify: bool = True, fitted: tuple[list[float], dict[str, Any]] | None = None) -> MergePlan:
    """The ``MergePlan`` of a merge variant over its checkpoints (oldest first): the one construction.

    A fitted variant needs ``fitted`` = (its weights, the fit's provenance): ``fit_lm.fit_or_reuse`` gives both.

    >>> from wsm_exp.merging.series import planned_series
    >>> from wsm_exp.sweep.spec.variants import merge_variant
    >>> v = merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16)
    >>> variant_plan(v, planned_series([8, 16]).checkpoints, 100, identify=False).weights
    (0.5, 0.5)
    """
    if is_fitted(variant) != (fitted is not None):
        raise PlanError(f"{variant.name}: the plan of a fitted merge needs its fit, and only a fitted merge takes one.")
    window = Window(tuple(checkpoints), variant.quantity, variant.interval, variant.duration, tokens_per_step)
    if fitted is not None:
        return build_plan(window, weights=fitted[0], fit=fitted[1], dtype=variant.dtype,
                          accumulate=variant.accumulate, identify=identify)
    given = variant.curve == EXPLICIT or variant.extrapolate or variant.order != "natural"  # not a curve's own weights
    weights = ({"weights": variant.weights, "normalize": False} if given else
               {"curve": variant.curve, "min_lr": variant.min_lr, "alpha": variant.alpha})
    return build_plan(window, **weights, dtype=variant.dtype, accumulate=variant.accumulate, identify=identify)
