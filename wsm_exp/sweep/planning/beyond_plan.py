"""The runner's side of the beyond-the-paper options (docs/beyond.md): plan-time, no I/O.

* ``final_weights``: a window's weights after ``merge.order`` (reverse / scramble controls),
  ``merge.extrapolate`` (ExPO's move past the merge) and ``merge.normalize=false`` (explicit weights as given).
* ``probe_series``: the probe branch a job merges when ``merge.branch_lr / branch_batch_size /
  branch_weight_decay / branch_steps`` override the WSM branch (noise-scale probe, long decays).

Example:
    >>> from wsm_exp.sweep.spec.schemas import MergeConfig
    >>> final_weights(MergeConfig(order="reverse"), [0.75, 0.25], [8, 16])
    [0.25, 0.75]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from wsm_exp.merging.extrapolate import ORDERS, is_convex, transform, unnormalized_weights
from wsm_exp.merging.weights import WeightsError
from wsm_exp.study.branch_spec import Probe, StudyError
from wsm_exp.sweep.spec.schemas import ConfigError, MergeConfig

log = logging.getLogger(__name__)


def user_weights(merge: MergeConfig, quantity: int) -> list[float]:
    """``merge.weights`` normalised (the default) or, with ``merge.normalize=false``, taken as given."""
    from wsm_exp.merging.weights import explicit_weights

    values = [float(w) for w in merge.weights or []]
    if merge.normalize:
        return explicit_weights(values, quantity)
    weights = unnormalized_weights(values, quantity)
    if not is_convex(weights):
        log.warning("merge.normalize=false: weights %s are used as given (sum %.6g%s); the merge is not an average "
                    "of the window and may leave the models' scale.", weights, sum(weights),
                    ", some negative" if min(weights) < 0 else "")
    return weights


def final_weights(merge: MergeConfig, weights: Sequence[float], window_steps: Sequence[int]) -> list[float]:
    """Apply ``merge.order`` then ``merge.extrapolate`` (anchor: ``merge.anchor``'s step, else the newest).

    >>> final_weights(MergeConfig(extrapolate=1.0), [0.5, 0.5], [8, 16])
    [1.0, 0.0]
    """
    if merge.order not in ORDERS:
        raise ConfigError(f"merge.order={merge.order!r}: allowed {', '.join(ORDERS)} (reverse and scramble are "
                          "ablation controls: the same weights laid on the window in another order).")
    if merge.anchor is not None and merge.anchor not in window_steps:
        raise ConfigError(f"merge.anchor={merge.anchor}: not a checkpoint of the window {list(window_steps)}; name one "
                          "of its steps, or leave it unset for the newest.")
    if merge.normalize is False and merge.weights is None:
        raise ConfigError("merge.normalize=false only applies to explicit merge.weights; a curve's weights always sum "
                          "to 1 (use merge.extrapolate to go past the merge).")
    anchor = -1 if merge.anchor is None else list(window_steps).index(merge.anchor)
    try:
        return transform(list(weights), order=merge.order, seed=merge.order_seed, alpha=merge.extrapolate,
                         anchor=anchor)
    except WeightsError as err:
        raise ConfigError(f"merge.order/extrapolate/anchor: {err}") from None


def probe_series(merge: MergeConfig, source) -> Probe | None:
    """The probe WSM branch the merge window comes from, or None for the series' own WSM branch.

    >>> from wsm_exp.study.config import TrainConfig
    >>> class Study: trains_branches, train_cfg = True, TrainConfig()
    >>> probe_series(MergeConfig(branch_lr=0.02), Study()).name
    'probe_lr0.02_B8_wd0.1_S256_wsm'
    """
    overrides = (merge.branch_lr, merge.branch_batch_size, merge.branch_weight_decay, merge.branch_steps)
    if all(value is None for value in overrides):
        return None
    if not source.trains_branches:
        raise ConfigError("merge.branch_lr/batch_size/weight_decay/steps: probe branches are trained by the embedded "
                          "study; leave them unset for your own series.")
    if merge.branch != "wsm":
        raise ConfigError(f"merge.branch_lr/batch_size/weight_decay/steps override the WSM branch, but merge.branch="
                          f"{merge.branch!r}; leave merge.branch=wsm.")

    train_cfg = source.train_cfg

    def pick(value, default):
        return default if value is None else value

    probe = Probe(float(pick(merge.branch_lr, train_cfg.peak_lr)),
                  int(pick(merge.branch_batch_size, train_cfg.batch_size)),
                  float(pick(merge.branch_weight_decay, train_cfg.weight_decay)),
                  int(pick(merge.branch_steps, train_cfg.branch_steps)))
    try:
        probe.check(train_cfg)
    except StudyError as err:
        raise ConfigError(f"merge.branch_lr/batch_size/weight_decay/steps: {err}") from None
    return probe


def probe_baselines(probe: Probe, base, source, variant, seed: int) -> list:
    """The probe's newest raw checkpoint (and the one at the window's end) and the end of each matched decay."""
    from wsm_exp.sweep.spec.variants import raw_variant, wsd_variant

    if base.fidelity or base.merge_then_decay:
        raise ConfigError("baselines.fidelity / merge_then_decay: not trained for probe branches "
                          "(merge.branch_lr/batch_size/weight_decay/steps); set them to false.")
    last, end = source.planned_steps(probe.name)[-1], variant.end_step
    baselines = []
    if base.raw_last:
        baselines.append(raw_variant(step=last, seed=seed, branch=probe.name))
    if base.matched_tokens and end != last:
        baselines.append(raw_variant(step=end, seed=seed, branch=probe.name))
    for shape in base.wsd_shapes:
        baselines.append(wsd_variant(shape=shape, step=last, decay_steps=probe.steps, seed=seed,
                                     branch=probe.decay(shape).name, min_lr=source.decay_min_lr))
    return baselines


SCORE_ON = ("all", "test")


def fitted_settings(merge: MergeConfig, has_heldout: bool, tasks: Sequence[str]) -> dict | None:
    """The fit's settings when ``merge.curve=fitted`` (else None), after checking ``merge.fit.*``.

    ``merge.fit.score_on=test`` (every job of a fitted sweep) scores the held-out loss on the split's test
    documents only; a fitted merge requires it, so it is never judged on the text it was fitted on.

    >>> from wsm_exp.sweep.spec.schemas import MergeFitConfig
    >>> fitted_settings(MergeConfig(curve="fitted", fit=MergeFitConfig(score_on="test")), True,
    ...                 ["wsm_heldout_bpb"])["steps"]
    6
    """
    from wsm_exp.merging.plan import FITTED
    from wsm_exp.sweep.planning.variant_merge import fit_config

    fit = merge.fit
    if fit.score_on not in SCORE_ON:
        raise ConfigError(f"merge.fit.score_on={fit.score_on!r}: allowed {', '.join(SCORE_ON)} (test: score the "
                          "held-out loss on the fit split's test documents only, as a fitted sweep must).")
    if fit.score_on == "test" and not (has_heldout and "wsm_heldout_bpb" in tasks):
        raise ConfigError("merge.fit.score_on=test scores wsm_heldout_bpb on the held-out test split, but this job "
                          "has no held-out text or its suite lacks wsm_heldout_bpb; give series.heldout and a suite "
                          "with it (eval=tiny), or set merge.fit.score_on=all.")
    if merge.curve != FITTED:
        return None
    clashing = [key for key, on in (("merge.weights", merge.weights is not None), ("merge.alpha", merge.alpha),
                                    ("merge.min_lr", merge.min_lr), ("merge.extrapolate", merge.extrapolate),
                                    ("merge.order", merge.order != "natural")) if on]
    if clashing:
        raise ConfigError(f"merge.curve=fitted: the fit decides the weights, so {', '.join(clashing)} cannot be set; "
                          "drop them (or fit, then give the fitted weights as merge.weights).")
    if fit.score_on != "test":
        raise ConfigError("merge.curve=fitted needs merge.fit.score_on=test for every job of the sweep, so the fitted "
                          "merge and the variants it is compared with are scored on held-out text the fit never saw "
                          "(+sweep=fitted sets it).")
    try:
        return fit_config(fit).check().settings()
    except WeightsError as err:
        raise ConfigError(f"merge.fit: {err}") from None
