"""One merge, decided before any tensor is read: the ``MergePlan``.

``build_plan`` is the only place a merge request becomes weights: ``wsm-merge``, the sweep runner
and the study call it. Everything downstream is a view of the plan: its ``key`` (the content
key of the merged-model cache), the ``--dry-run`` JSON (``describe``), and the provenance the
merger writes to ``merge.json`` and into every shard's header. Curve aliases (``mean``, ``sma``,
``uniform``) become ``linear`` here, so they share one key and one output; the name the user asked for
is kept (``requested``) and shown in the dry run, ``merge.json`` and output folder names.

Example:
    >>> from wsm_exp.merging.series import planned_series, select_window
    >>> window = select_window(planned_series([10, 20, 30]), quantity=2)
    >>> plan = build_plan(window, curve="mean", identify=False)
    >>> plan.curve, plan.weights, plan.key is None, plan.curve_name
    ('linear', (0.5, 0.5), True, 'mean')
    >>> {k: plan.describe()[k] for k in ("curve", "alias_of")}
    {'curve': 'mean', 'alias_of': 'linear'}
    >>> known = plan.with_identities(["a" * 32, "b" * 32])
    >>> known.key == build_plan(window, curve="sma", identify=False).with_identities(["a" * 32, "b" * 32]).key
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from wsm_exp.keys import content_key
from wsm_exp.merging.extrapolate import unnormalized_weights
from wsm_exp.merging.identity import IdentityCache, checkpoint_identity, default_cache, stat_key
from wsm_exp.merging.series import Checkpoint, Window
from wsm_exp.merging.weights import CONVENTION, WeightsError, canonical_curve, explicit_weights, merge_weights

MERGER_VERSION = "mul-add-in-order-2"  # bump when the merger's arithmetic changes (arith.py): every key changes with it
OUTPUT_DTYPES = ("float32", "bfloat16", "float16")
ACCUMULATIONS = ("float32", "float64")
EXPLICIT = "explicit"
FITTED = "fitted"  # weights fitted on held-out text (wsm_exp.merging.fit_lm); the fit's key joins the merge key


class PlanError(ValueError):
    """Options that do not make a merge; nothing was read or written."""


@dataclass(frozen=True)
class MergePlan:
    """Checkpoints (oldest first) with their identities, weights and everything that shapes the output."""

    window: Window
    weights: tuple[float, ...]
    curve: str  # canonical curve name, "explicit" or "fitted"
    min_lr: float
    alpha: float | None  # only for ema_alpha
    dtype: str | None  # output dtype; None keeps each tensor's input dtype
    accumulate: str
    identities: tuple[str | None, ...]  # None: not hashed yet (the merger hashes while it streams)
    algorithm: str = MERGER_VERSION
    requested: str | None = None  # the curve name as asked (an alias such as "mean"); not in the key
    fit: dict[str, Any] | None = None  # fitted weights: the fit's provenance (split, settings, losses; its "key")

    @property
    def checkpoints(self) -> tuple[Checkpoint, ...]:
        return self.window.checkpoints

    @property
    def key(self) -> str | None:
        """Content key: equal keys give bit-identical tensors. None until every input is identified."""
        if any(i is None for i in self.identities):
            return None
        payload = {"inputs": list(self.identities), "weights": [repr(float(w)) for w in self.weights],
                   "curve": self.curve, "min_lr": repr(float(self.min_lr)), "alpha": self.alpha,
                   "dtype": self.dtype, "accumulate": self.accumulate, "algorithm": self.algorithm}
        if self.fit is not None:  # same weights from another split or setting: another merge
            payload["fit"] = self.fit["key"]
        return content_key(payload, length=24)

    @property
    def curve_name(self) -> str:
        """The curve as the user named it (``mean``), where ``curve`` is its canonical name (``linear``)."""
        return self.requested or self.curve

    def with_identities(self, identities: Sequence[str]) -> MergePlan:
        return replace(self, identities=tuple(identities))

    def identified(self, cache: IdentityCache | None = None) -> MergePlan:
        """This plan with every input's identity (hashing the inputs the cache does not know)."""
        if self.key is not None:
            return self
        return self.with_identities([i or checkpoint_identity(c, cache)
                                     for c, i in zip(self.checkpoints, self.identities)])

    def recipe(self) -> dict[str, Any]:
        """What the merge computes, without input identities (known up front: goes in shard headers)."""
        w = self.window
        return {
            "steps": [c.step for c in self.checkpoints], "weights": list(self.weights), "curve": self.curve,
            "min_lr": self.min_lr, "alpha": self.alpha, "dtype": self.dtype or "input",
            "accumulate": self.accumulate, "algorithm": self.algorithm, "convention": CONVENTION,
            "quantity": w.quantity, "interval": w.interval, "duration": w.duration, "span": w.span,
            "end": w.end_step, "tokens_per_step": w.tokens_per_step, "duration_tokens": w.tokens(w.duration),
            **({"fit_key": self.fit["key"]} if self.fit is not None else {}),
        }

    def describe(self) -> dict[str, Any]:
        """The plan as JSON (``--dry-run``, ``merge.json``): recipe, inputs with weights and identities, and the
        key; the curve as the user named it, with ``alias_of`` its canonical name when it is an alias."""
        inputs = [{"step": c.step, "path": str(c.path), "weight": w, "identity": i}
                  for c, w, i in zip(self.checkpoints, self.weights, self.identities)]
        alias = {"curve": self.curve_name, "alias_of": self.curve} if self.curve_name != self.curve else {}
        return {**self.recipe(), **alias, "checkpoints": inputs, "key": self.key,
                **({"fit": self.fit} if self.fit is not None else {})}


def build_plan(
    window: Window | Sequence[Checkpoint], *, curve: str | None = None, weights: Sequence[float] | None = None,
    min_lr: float = 0.0, alpha: float | None = None, dtype: str | None = None, accumulate: str = "float32",
    normalize: bool = True, identify: bool = True, cache: IdentityCache | None = None,
    fit: dict[str, Any] | None = None,
) -> MergePlan:
    """The one way to turn a merge request into a plan.

    Give a ``curve`` (default ``mean``; with ``min_lr``, and ``alpha`` for ``ema_alpha``) or explicit
    ``weights`` (normalised to sum 1 unless ``normalize=False``), not both. ``identify`` hashes the
    inputs the identity cache does not know; without it, their identities stay None until a merge
    streams the inputs. ``fit`` (with the fitted ``weights``): the fit's provenance, which needs a ``key``
    (``fit_lm.FittedWeights``); the plan's curve is then ``fitted``.
    """
    if not isinstance(window, Window):
        checkpoints = tuple(window)
        window = Window(checkpoints, quantity=len(checkpoints), interval=_gap(checkpoints),
                        duration=len(checkpoints) * _gap(checkpoints))
    quantity = len(window.checkpoints)
    if quantity < 1:
        raise PlanError("No checkpoints to merge: select a window with at least one checkpoint.")
    if weights is not None and (curve is not None or min_lr or alpha is not None):
        raise WeightsError("Explicit merge.weights fix the merge, so merge.curve, merge.min_lr and merge.alpha "
                           "would be ignored; drop them, or drop merge.weights to derive the weights from a curve.")
    if dtype is not None and dtype not in OUTPUT_DTYPES:
        raise PlanError(f"Output dtype {dtype!r} is not supported; use {', '.join(OUTPUT_DTYPES)}.")
    if accumulate not in ACCUMULATIONS:
        raise PlanError(f"Accumulation dtype {accumulate!r} is not supported; use float32 or float64.")
    if fit is not None and (weights is None or "key" not in fit):
        raise PlanError("A fitted merge needs its weights and the fit's provenance with its key "
                        "(wsm_exp.merging.fit_lm.fit_window gives both).")
    requested = None
    if weights is not None:  # normalize=False: as given, any sign and sum (extrapolation, docs/beyond.md)
        given = [float(w) for w in weights]
        curve, values = EXPLICIT, explicit_weights(given, quantity) if normalize else unnormalized_weights(given, quantity)
    else:
        requested = curve or "mean"
        curve = canonical_curve(requested)
        values = merge_weights(curve, quantity, min_lr=min_lr, alpha=alpha)
    if fit is not None:
        curve = FITTED
    cache = cache or default_cache()
    identities = tuple((checkpoint_identity(c, cache) if identify else _cached(c, cache)) for c in window.checkpoints)
    return MergePlan(window=window, weights=tuple(values), curve=curve, min_lr=float(min_lr),
                     alpha=alpha if curve == "ema_alpha" else None, dtype=dtype, accumulate=accumulate,
                     identities=identities, fit=fit,
                     requested=requested if weights is None and fit is None and requested != curve else None)


def _cached(checkpoint: Checkpoint, cache: IdentityCache) -> str | None:
    """The identity when every file's digest is cached, else None (nothing is read)."""
    if not checkpoint.files:
        return None
    if any(cache.lookup(stat_key(f)) is None for f in checkpoint.files):
        return None
    return checkpoint_identity(checkpoint, cache)


def _gap(checkpoints: Sequence[Checkpoint]) -> int:
    steps = [c.step for c in checkpoints]
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    return gaps.pop() if len(gaps) == 1 else 0
