"""What a job evaluates: the merge variant and its baselines, as plain data (no I/O).

A ``Variant`` is one evaluated model: a merge of WSM checkpoints (``wsm``), a merge of checkpoints
taken inside a real decay (``decay_merge``, paper Figure 5b), the end of a real decay started from
a merge (``merge_then_decay``, Figure 5c), one checkpoint of a real decay (``wsd``), or one
unmerged WSM checkpoint (``raw``). Its name is unique within a sweep
and stable across reruns, so results and W&B runs are keyed by it.

Example:
    >>> v = raw_variant(step=96, seed=0)
    >>> v.name, v.quantity
    ('raw-E96-s0', 1)
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from wsm_exp.keys import content_key
from wsm_exp.study.branch_spec import BranchSpec, MergeThenDecay, Probe, parse_branch


@dataclass(frozen=True)
class Variant:
    """One evaluated model and the fields that describe it in results and W&B."""

    name: str  # unique within a sweep, includes the seed
    kind: str  # "wsm" | "decay_merge" | "merge_then_decay" | "wsd" | "raw" | "sft"
    branch: str  # series it comes from ("wsm", "wsd_1-sqrt", "fidelity_E96_D32", "mergethendecay_...")
    curve: str  # merge curve, decay shape, or "none"
    steps: tuple[int, ...]  # global steps used, oldest first
    weights: tuple[float, ...]  # merge weights, oldest first
    interval: int = 0  # Δ in steps (0 for a single checkpoint)
    duration: int = 0  # D = N·Δ for merges, the decay length for wsd
    min_lr: float = 0.0
    seed: int = 0
    alpha: float | None = None  # EMA factor of curve=ema_alpha
    explicit: bool = False  # weights given by the user, not by a curve
    dtype: str | None = None  # merged model's dtype; None keeps the checkpoints'
    accumulate: str = "float32"  # merge accumulation precision
    extrapolate: float = 0.0  # α of θ_merge + α(θ_merge − θ_anchor) (docs/beyond.md)
    order: str = "natural"  # natural | reverse | scramble: how the curve's weights lie on the window
    fit: str = ""  # curve=fitted: the fit's settings as sorted JSON (its weights are known only after the fit)

    @property
    def spec(self) -> BranchSpec:
        """The typed branch the model comes from."""
        return parse_branch(self.branch)

    @property
    def weights_hash(self) -> str:
        """Short hash of explicit weights ("" for weights given by a curve)."""
        if not self.explicit:
            return ""
        return content_key([round(w, 10) for w in self.weights], length=6)

    @property
    def quantity(self) -> int:
        return len(self.steps)

    @property
    def end_step(self) -> int:
        return self.steps[-1]

    def row_fields(self, *, tokens_per_step: int, branch_start: int, branch_steps: int) -> dict[str, Any]:
        """The variant's columns of a result row (see wsm_exp.sweep.record.results.COLUMNS)."""
        return {
            "variant": self.name, "kind": self.kind, "branch": self.branch, "curve": self.curve,
            "min_lr": self.min_lr, "quantity": self.quantity, "seed": self.seed,
            "interval_steps": self.interval, "interval_tokens": self.interval * tokens_per_step,
            "duration_steps": self.duration, "duration_tokens": self.duration * tokens_per_step,
            "end_step": self.end_step, "end_tokens": (self.end_step - branch_start) * tokens_per_step,
            "branch_steps": branch_steps, "steps": json.dumps(list(self.steps)),
            "weights": json.dumps([round(w, 10) for w in self.weights]),
            "branch_kind": self.spec.kind, "parent_quantity": self.spec.parent_quantity,
            "parent_interval": self.spec.parent_interval,
            "alpha": math.nan if self.alpha is None else float(self.alpha), "weights_hash": self.weights_hash,
            "merge_dtype": self.dtype or "", "accumulate": self.accumulate,
            "extrapolate": float(self.extrapolate), "merge_order": self.order,
        }

    @property
    def merge_provenance(self) -> dict[str, Any]:
        """What merge.json records about how the weights were made (besides the weights themselves)."""
        return {"curve": self.curve, "min_lr": self.min_lr, "variant": self.name, "order": self.order,
                "extrapolate": self.extrapolate, "weights_sum": sum(self.weights),
                "convex": all(w >= 0 for w in self.weights) and abs(sum(self.weights) - 1) < 1e-9}


def merge_variant(
    *, curve: str, steps: list[int], weights: list[float], interval: int, duration: int,
    min_lr: float = 0.0, alpha: float | None = None, explicit: bool = False, seed: int = 0, branch: str = "wsm",
    dtype: str | None = None, accumulate: str = "float32", order: str = "natural", order_seed: int = 0,
    extrapolate: float = 0.0, anchor: int | None = None, fit: dict[str, Any] | None = None,
    default_fit: dict[str, Any] | None = None,
) -> Variant:
    """A merge of WSM-branch checkpoints, or of a decay branch's checkpoints (``branch="wsd_<shape>"``).

    Everything that changes the merged weights is in the name, so two variants never share a result file.

    >>> merge_variant(curve="1-sqrt", steps=[8, 16], weights=[0.7, 0.3], interval=8, duration=16).name
    'wsm-1-sqrt-N2-I8-E16-s0'
    >>> merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16,
    ...               branch="wsd_1-sqrt").name
    'decaymerge-1-sqrt-mean-N2-I8-E16-s0'
    >>> merge_variant(curve="mean", steps=[8, 16], weights=[0.25, 0.75], interval=8, duration=16,
    ...               explicit=True, dtype="bfloat16").name
    'wsm-explicit-fe59e0-N2-I8-E16-bfloat16-s0'
    >>> merge_variant(curve="1-sqrt", steps=[8, 16], weights=[0.3, 0.7], interval=8, duration=16,
    ...               order="reverse", extrapolate=0.5).name
    'wsm-1-sqrt-reverse-ex+0.5-N2-I8-E16-s0'

    A fitted merge (``fit``: its settings; ``weights``: the starting point until the job fits them) is
    named ``fitted``, plus a hash of its settings when they differ from ``default_fit``:

    >>> merge_variant(curve="fitted", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16,
    ...               fit={"steps": 6}, default_fit={"steps": 6}).name
    'wsm-fitted-N2-I8-E16-s0'
    """
    from wsm_exp.merging.extrapolate import curve_label

    label = curve_label("explicit" if explicit else curve, order=order, seed=order_seed, alpha=extrapolate,
                        anchor_step=anchor)
    spec = parse_branch(branch)
    if branch == "wsm":
        kind, prefix = "wsm", "wsm"
    elif isinstance(spec, Probe) and spec.shape is None:  # a probe's constant-LR branch
        kind, prefix = "wsm", f"wsm-{branch}"
    else:
        kind, prefix = "decay_merge", f"decaymerge-{branch[4:]}"
    variant = Variant(name="", kind=kind, branch=branch, curve=label, steps=tuple(steps), weights=tuple(weights),
                      interval=interval, duration=duration, min_lr=min_lr, seed=seed,
                      alpha=alpha if curve == "ema_alpha" else None, explicit=explicit, dtype=dtype,
                      accumulate=accumulate, extrapolate=extrapolate, order=order,
                      fit=json.dumps(fit, sort_keys=True) if fit is not None else "")
    weights_id = f"{label}-{variant.weights_hash}" if explicit else label  # explicit merges differ by weights
    if fit is not None and fit != default_fit:  # fits with other settings are other variants
        weights_id += f"-fit{content_key(fit, length=6)}"
    name = f"{prefix}-{weights_id}-N{len(steps)}-I{interval}-E{steps[-1]}"
    if min_lr:
        name += f"-m{min_lr:g}"
    if alpha is not None and curve == "ema_alpha":
        name += f"-a{alpha:g}"
    if dtype:
        name += f"-{dtype}"
    if accumulate != "float32":
        name += f"-acc{accumulate}"
    return dataclasses.replace(variant, name=f"{name}-s{seed}")


def raw_variant(*, step: int, seed: int = 0, branch: str = "wsm") -> Variant:
    """An unmerged checkpoint of a constant-LR branch (N = 1): the model merging must beat.

    >>> raw_variant(step=96, branch="probe_lr0.02_B8_wd0.1_S64_wsm").name
    'raw-probe_lr0.02_B8_wd0.1_S64_wsm-E96-s0'
    """
    name = f"raw-E{step}-s{seed}" if branch == "wsm" else f"raw-{branch}-E{step}-s{seed}"
    return Variant(name=name, kind="raw", branch=branch, curve="none", steps=(step,), weights=(1.0,), seed=seed)


def wsd_variant(*, shape: str, step: int, decay_steps: int, seed: int = 0, branch: str | None = None,
                min_lr: float = 0.0) -> Variant:
    """A checkpoint of a real decay branch (the WSD baseline, or a fidelity decay).

    >>> wsd_variant(shape="1-sqrt", step=128, decay_steps=64).name
    'wsd-1-sqrt-E128-s0'
    >>> wsd_variant(shape="1-sqrt", step=96, decay_steps=32, branch="fidelity_E96_D32").name
    'fidelity-1-sqrt-E96-D32-s0'
    """
    if branch and branch.startswith("fidelity_"):
        name = f"fidelity-{shape}-E{step}-D{decay_steps}-s{seed}"
    elif branch and branch.startswith("probe_"):
        name = f"wsd-{branch}-E{step}-s{seed}"
    else:
        name = f"wsd-{shape}-E{step}-s{seed}"
    return Variant(name=name, kind="wsd", branch=branch or f"wsd_{shape}", curve=shape, steps=(step,),
                   weights=(1.0,), duration=decay_steps, min_lr=min_lr, seed=seed)


def merge_then_decay_variant(*, merge: Variant, shape: str, decay_steps: int, min_lr: float = 0.0) -> Variant:
    """The end of a real ``shape`` decay over ``decay_steps`` steps started from the ``merge`` variant.

    >>> m = merge_variant(curve="mean", steps=[8, 16], weights=[0.5, 0.5], interval=8, duration=16)
    >>> v = merge_then_decay_variant(merge=m, shape="1-sqrt", decay_steps=16)
    >>> v.name, v.branch, v.steps
    ('mergethendecay-mean-N2-I8-E16-1-sqrt-D16-s0', 'mergethendecay_E16_N2_I8_D16_mean', (32,))
    """
    branch = MergeThenDecay(merge.end_step, merge.quantity, merge.interval, decay_steps, merge.curve).name
    name = f"mergethendecay-{merge.curve}-N{merge.quantity}-I{merge.interval}-E{merge.end_step}-{shape}-D{decay_steps}"
    return Variant(name=f"{name}-s{merge.seed}", kind="merge_then_decay", branch=branch, curve=merge.curve,
                   steps=(merge.end_step + decay_steps,), weights=(1.0,), interval=merge.interval,
                   duration=decay_steps, min_lr=min_lr, seed=merge.seed)


# ---- SFT (paper Table 2; wsm_exp/sweep/run/sft_job.py) ---------------------------------------------------
def sft_variant(*, base: Variant, role: str, epoch: int) -> Variant:
    """Epoch ``epoch`` of the SFT of ``base`` (0 = the base itself), in the comparison's ``role``.

    >>> sft_variant(base=wsd_variant(shape="1-sqrt", step=128, decay_steps=64), role="wsd", epoch=3).name
    'sft-wsd-e3-s0'
    """
    return Variant(name=f"sft-{role}-e{epoch}-s{base.seed}", kind="sft", branch=f"sft_{role}", curve=base.curve,
                   steps=base.steps, weights=base.weights, interval=base.interval, duration=base.duration,
                   min_lr=base.min_lr, seed=base.seed)
