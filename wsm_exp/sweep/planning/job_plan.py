"""One job's plan, decided from config alone: the merge variant, its baselines, the branches it needs.

No training, merging or evaluating happens here, so the pre-flight can plan every job of a sweep
in milliseconds and refuse a bad override before any work.

Example:
    >>> from wsm_exp.sweep.planning.job_plan import plan_job   # plan_job(cfg, make_source(cfg)) -> JobPlan
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from wsm_exp.merging.weights import merge_weights
from wsm_exp.study.branch_spec import Fidelity
from wsm_exp.sweep.planning.beyond_plan import (
    final_weights, fitted_settings, probe_baselines, probe_series, user_weights,
)
from wsm_exp.sweep.planning.sft_plan import check_sft
from wsm_exp.sweep.planning.sources import SeriesSource
from wsm_exp.sweep.planning.variant_merge import fit_config
from wsm_exp.sweep.spec.schemas import BaselinesConfig, ConfigError, MergeConfig, MergeFitConfig, from_node
from wsm_exp.sweep.spec.variants import Variant, merge_then_decay_variant, merge_variant, raw_variant, wsd_variant


@dataclass
class JobPlan:
    """Everything a job will evaluate, decided from config alone."""

    variant: Variant
    baselines: list[Variant]
    branches: list[str]  # series the job needs (trained on demand for the embedded study)


def plan_job(cfg: DictConfig, source: SeriesSource) -> JobPlan:
    """Check the variant and decide its baselines without training, merging or evaluating.

    Raises ConfigError naming the key (merge.curve, merge.duration, ...) and what would work.
    """
    from wsm_exp.evaluation import SuiteConfig
    from wsm_exp.merging.series import SeriesError, planned_series, select_window
    from wsm_exp.merging.weights import WeightsError

    if OmegaConf.select(cfg, "sft") is not None:  # the SFT sweep's own keys (wsm_exp/sweep/planning/sft_plan.py)
        check_sft(cfg)
    merge = from_node(MergeConfig, cfg.merge, key="merge")
    base = from_node(BaselinesConfig, cfg.baselines, key="baselines")
    try:
        from_node(SuiteConfig, cfg.eval, key="eval")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    allowed = ["wsm", *(f"wsd_{s}" for s in source.wsd_shapes)]
    if merge.branch not in allowed:
        raise ConfigError(f"merge.branch={merge.branch!r} is not a series here; allowed: {allowed} "
                          "(wsm: the constant-LR run; wsd_<shape>: merge inside that decay, decay-then-merge).")
    probe = probe_series(merge, source)
    series = probe.name if probe else "wsm"  # the constant-LR series: the study's, or a probe of it
    steps = source.planned_steps(series) if probe else source.planned_wsm_steps()
    merge_steps = steps if merge.branch == "wsm" else source.planned_steps(merge.branch)
    end = merge.end if merge.end is None or merge.end > 0 else merge_steps[-1] + merge.end
    try:
        window = select_window(planned_series(merge_steps, source.tokens_per_step), end=end,
                               quantity=merge.quantity, interval=merge.interval, duration=merge.duration)
    except SeriesError as err:
        raise ConfigError(f"merge.quantity/interval/duration/end: {err}") from None
    fit = fitted_settings(merge, source.has_heldout, list(cfg.eval.tasks))  # merge.curve=fitted (docs/beyond.md §5)
    try:
        if merge.weights is not None:
            weights = user_weights(merge, window.quantity)
        elif fit is not None:  # the starting point; the job fits the weights
            weights = merge_weights(fit["init"], window.quantity)
        else:
            weights = merge_weights(merge.curve, window.quantity, min_lr=merge.min_lr, alpha=merge.alpha)
    except WeightsError as err:
        key = "merge.weights" if merge.weights is not None else "merge.curve/min_lr/alpha"
        raise ConfigError(f"{key}: {err}") from None
    seed = int(cfg.seed)
    window_steps = [c.step for c in window.checkpoints]
    weights = final_weights(merge, weights, window_steps)  # merge.order, merge.extrapolate (docs/beyond.md)
    variant = merge_variant(curve=merge.curve, steps=window_steps, weights=weights,
                            interval=window.interval, duration=window.duration, min_lr=merge.min_lr,
                            alpha=merge.alpha, explicit=merge.weights is not None, seed=seed,
                            branch=series if merge.branch == "wsm" else merge.branch,
                            dtype=merge.dtype, accumulate=merge.accumulate, order=merge.order,
                            order_seed=merge.order_seed, extrapolate=merge.extrapolate, anchor=merge.anchor,
                            fit=fit, default_fit=fit_config(MergeFitConfig()).settings())
    if "wsm_heldout_bpb" in list(cfg.eval.tasks) and not source.has_heldout:
        raise ConfigError(
            "eval.tasks: the suite measures wsm_heldout_bpb, but your series has no held-out text. Give "
            "series.heldout=/path/heldout.jsonl ({\"text\": ...} per line), or use a suite without it "
            "(eval=benchmarks)."
        )
    unknown = sorted(set(base.wsd_shapes) - set(source.wsd_shapes))
    if unknown:
        raise ConfigError(
            f"baselines.wsd_shapes: {unknown} not available; allowed: {list(source.wsd_shapes)}. "
            "For your own series, give each WSD run as series.wsd.<shape>=/path."
        )
    last, end = steps[-1], variant.end_step
    baselines: list[Variant] = []
    if probe:  # a probe: its own raw checkpoints and its matched decays (same η, B, λ, length)
        return JobPlan(variant=variant, baselines=probe_baselines(probe, base, source, variant, seed),
                       branches=[probe.name, *(probe.decay(s).name for s in base.wsd_shapes)])
    branches = ["wsm", *(f"wsd_{s}" for s in base.wsd_shapes)]
    if merge.branch not in branches:
        branches.append(merge.branch)
    if base.raw_last:
        baselines.append(raw_variant(step=last, seed=seed))
    if base.matched_tokens and end != last:
        baselines.append(raw_variant(step=end, seed=seed))
    for shape in base.wsd_shapes:
        try:
            wsd_steps = source.planned_steps(f"wsd_{shape}")  # the run's own last step: its budget may differ
        except SeriesError as err:
            raise ConfigError(f"series.wsd.{shape}: {err}") from None
        decay = source.wsd_decay_steps(wsd_steps[-1])
        baselines.append(wsd_variant(shape=shape, step=wsd_steps[-1], decay_steps=decay, seed=seed,
                                     min_lr=source.decay_min_lr))
        if base.matched_tokens and end != wsd_steps[-1] and end in wsd_steps:
            baselines.append(wsd_variant(shape=shape, step=end, decay_steps=decay, seed=seed,
                                         min_lr=source.decay_min_lr))
    if base.fidelity:
        if not source.trains_branches:
            raise ConfigError("baselines.fidelity: real-decay fidelity branches need the embedded study; "
                              "set baselines.fidelity=false for your own series.")
        branch = Fidelity(end, window.duration).name
        branches.append(branch)
        baselines.append(wsd_variant(shape=source.decay_shape, step=end, decay_steps=window.duration, seed=seed,
                                     branch=branch, min_lr=source.decay_min_lr))
    if base.merge_then_decay:
        decays = _merge_then_decay(merge, variant, source)
        baselines += decays
        branches += [v.branch for v in decays]
    return JobPlan(variant=variant, baselines=baselines, branches=branches)


def _merge_then_decay(merge: MergeConfig, variant: Variant, source: SeriesSource) -> list[Variant]:
    """Figure 5c: a real decay over D steps from the merge, and the same decay from its newest checkpoint."""
    if not source.trains_branches:
        raise ConfigError("baselines.merge_then_decay: decays started from a merge are trained by the embedded "
                          "study; set baselines.merge_then_decay=false for your own series.")
    if variant.kind != "wsm" or merge.curve == "fitted" or merge.weights is not None or merge.alpha is not None or merge.min_lr or merge.dtype \
            or merge.extrapolate or merge.order != "natural":
        raise ConfigError("baselines.merge_then_decay: needs a WSM merge by a named curve (not fitted; merge.branch=wsm, no "
                          "merge.weights, merge.alpha, merge.min_lr, merge.dtype, merge.extrapolate or merge.order); "
                          "the decay's parent is named "
                          "by its curve and merged in the checkpoints' dtype.")
    decay, end = variant.duration, variant.end_step
    branch_end = source.branch_start + source.branch_steps
    if end + decay > branch_end:
        raise ConfigError(
            f"merge.end: merge-then-decay decays for D={decay} steps after the window's newest step {end}, past "
            f"the branch end {branch_end}; pick merge.end ≤ {branch_end - decay} (relative: ≤ {-decay})."
        )
    shape, min_lr = source.decay_shape, source.decay_min_lr
    after_merge = merge_then_decay_variant(merge=variant, shape=shape, decay_steps=decay, min_lr=min_lr)
    return [after_merge, wsd_variant(shape=shape, step=end + decay, decay_steps=decay, seed=variant.seed,
                                     branch=Fidelity(end + decay, decay).name, min_lr=min_lr)]

