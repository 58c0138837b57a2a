"""The merge a variant needs: whether its model is a merge, and its ``MergePlan`` (the one construction).

The merge stage (``stage.merge_stage``) and the job (``run.job``) both build a variant's plan here,
so the stage's outputs are exactly the merges the jobs then find in the cache. No I/O.

Example:
    >>> from wsm_exp.sweep.spec.variants import raw_variant
    >>> needs_merge(raw_variant(step=96, seed=0))
    False
"""

from __future__ import annotations

from collections.abc import Sequence

from wsm_exp.merging.plan import EXPLICIT, MergePlan, build_plan
from wsm_exp.merging.series import Checkpoint, Window
from wsm_exp.sweep.spec.variants import Variant

MERGED_KINDS = ("wsm", "decay_merge")


def needs_merge(variant: Variant) -> bool:
    """Whether the variant's model is a merge (a single checkpoint is evaluated as it is)."""
    return variant.kind in MERGED_KINDS and variant.quantity > 1


def variant_plan(variant: Variant, checkpoints: Sequence[Checkpoint], tokens_per_step: int | None, *,
                 identify: bool = True) -> MergePlan:
    """The ``MergePlan`` of a merge variant over its checkpoints (oldest first): the one construction.

    >>> from wsm_exp.merging.series import planned_series
    >>> from wsm_exp.sweep.spec.variants import merge_variant
    >>> v = merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16)
    >>> variant_plan(v, planned_series([8, 16]).checkpoints, 100, identify=False).weights
    (0.5, 0.5)
    """
    window = Window(tuple(checkpoints), variant.quantity, variant.interval, variant.duration, tokens_per_step)
    given = variant.curve == EXPLICIT or variant.extrapolate or variant.order != "natural"  # not a curve's own weights
    weights = ({"weights": variant.weights, "normalize": False} if given else
               {"curve": variant.curve, "min_lr": variant.min_lr, "alpha": variant.alpha})
    return build_plan(window, **weights, dtype=variant.dtype, accumulate=variant.accumulate, identify=identify)
