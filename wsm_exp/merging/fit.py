"""Fit merge weights on the simplex: projected or mirror descent on any loss with an exact gradient in w.

The loss of a merged model is a function of its N weights; its gradient is
``∂L/∂w_i = ⟨∇_θ L(θ_w), θ_i⟩`` (``fit_lm`` computes both from real checkpoints). This module is the
optimiser alone, pure numpy: it takes an ``objective(w) -> (loss, gradient)`` and walks the weights
over the simplex (every weight ≥ 0, sum 1; with ``monotone`` also non-increasing from the oldest checkpoint
to the newest, see ``MONOTONE_MEANING``):

- ``projected``: ``w ← P(w − lr · d)`` with the Euclidean projection P onto the (monotone) simplex;
- ``mirror``: exponentiated gradient ``w ← w · exp(−lr · d) / Z`` (the simplex only).

``d`` is the gradient centred (a constant shift does nothing on the simplex) and scaled to max-norm 1,
so ``lr`` is the largest change of one weight (projected) or of its log (mirror) whatever the loss's
scale. A step that does not lower the loss is refused and ``lr`` halved (the objective is evaluated
at the candidate anyway), so the loss per accepted step never rises. An accepted step that lowers it by less
than ``tol`` ends the fit early: the curve has flattened, and further steps would cost full evaluations.

Example (a planted quadratic: minimum at (0.2, 0.3, 0.5)):
    >>> import numpy as np
    >>> target = np.array([0.2, 0.3, 0.5])
    >>> fit = fit_weights(lambda w: (float(((w - target) ** 2).sum()), 2 * (w - target)), 3,
    ...                   FitConfig(steps=60, lr=0.2, tol=0.0))
    >>> [round(x, 3) for x in fit.weights]
    [0.2, 0.3, 0.5]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wsm_exp.merging.implied import isotonic
from wsm_exp.merging.weights import WeightsError, canonical_curve, merge_weights

METHODS = ("projected", "mirror")
MONOTONE_MEANING = (
    "The monotone constraint keeps the weights non-increasing from the oldest checkpoint to the newest, so the "
    "learning-rate decay they emulate is convex: by Theorem 3.1 each weight is the decay's drop over one segment, and "
    "these drops never grow (the family of 1-sqrt, the paper's best curve, and of the mean, where the fit starts). "
    "Without it any point of the simplex is allowed, which already implies a non-increasing learning rate. The old "
    "direction 'decreasing' is this constraint; 'increasing' (newer never weighs less) is not offered"
)  # the one explanation of the switch: FitConfig.check, the Hydra gate (merge.fit.monotone) and wsm-merge use it


@dataclass(frozen=True)
class FitConfig:
    """How the weights are fitted (everything here goes into the merge's key)."""

    steps: int = 6  # a handful: each step costs one forward/backward plus two streaming passes
    lr: float = 0.1  # largest change of one weight in the first step (projected), or of its log (mirror)
    method: str = "projected"  # projected handles the monotone constraint; mirror keeps every weight > 0
    monotone: bool = False  # true: weights non-increasing, oldest first, i.e. a convex decay (MONOTONE_MEANING)
    tol: float = 1e-4  # an accepted step gaining less (loss units: nats/token) ends the fit; 0 runs every step
    init: str = "linear"  # starting curve: the uniform mean, the paper's default merge
    fit_fraction: float = 0.5  # share of held-out documents the fit sees; the rest is the test split
    seed: int = 0  # seeds the fit/test split of the held-out documents
    seq_len: int = 256  # tokens per sequence of the fit loss (within the tiny study's trained context)
    batch_sequences: int = 8  # sequences per forward/backward (memory), gradients summed over all of them
    dtype: str = "float32"  # the fitted model's dtype; float64 for exact gradient checks

    def check(self) -> FitConfig:
        """This config, or a ``WeightsError`` naming the bad field and what would work."""
        problems = []
        if self.method not in METHODS:
            problems.append(f"method={self.method!r} (use {' or '.join(METHODS)})")
        if not isinstance(self.monotone, bool):
            problems.append(f"monotone={self.monotone!r} (true or false. {MONOTONE_MEANING})")
        elif self.monotone and self.method == "mirror":
            problems.append("monotone with method=mirror (the monotone constraint needs method=projected)")
        if not isinstance(self.steps, int) or self.steps < 0:
            problems.append(f"steps={self.steps!r} (an integer ≥ 0)")
        if not self.tol >= 0:
            problems.append(f"tol={self.tol!r} (≥ 0: the smallest gain of an accepted step that continues the fit)")
        if not self.lr > 0:
            problems.append(f"lr={self.lr!r} (a positive step size, e.g. 0.1)")
        if not 0.0 < self.fit_fraction < 1.0:
            problems.append(f"fit_fraction={self.fit_fraction!r} (in (0, 1): the rest is the test split)")
        if self.dtype not in ("float32", "float64"):
            problems.append(f"dtype={self.dtype!r} (float32 or float64)")
        if self.seq_len < 2 or self.batch_sequences < 1:
            problems.append(f"seq_len={self.seq_len!r}, batch_sequences={self.batch_sequences!r} (≥ 2 and ≥ 1)")
        if problems:
            raise WeightsError("Fitted merge weights: bad setting " + "; ".join(problems) + ".")
        canonical_curve(self.init)
        return self

    def settings(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitTrace:
    """The fitted weights and how they were reached: one entry per objective evaluation."""

    weights: list[float]
    loss: float  # at ``weights``
    losses: list[float] = field(default_factory=list)  # every evaluation, in order (accepted or not)
    accepted: list[bool] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)  # step size that produced each evaluation (0 for the start)
    history: list[list[float]] = field(default_factory=list)  # weights of every evaluation


Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def fit_weights(objective: Objective, quantity: int, config: FitConfig = FitConfig(),
                on_step: Callable[[int, dict[str, Any]], None] | None = None) -> FitTrace:
    """Minimise ``objective`` over the N-weight simplex from ``config.init``; ``on_step(i, record)`` sees each
    evaluation (``loss``, ``accepted``, ``lr``, ``weights``), e.g. to log it to W&B."""
    config.check()
    w = project(np.array(merge_weights(config.init, quantity), dtype=np.float64), config.monotone)
    loss, grad = objective(w)
    trace = FitTrace(w.tolist(), loss, [loss], [True], [0.0], [w.tolist()])
    _report(on_step, trace)
    lr = config.lr
    for _ in range(config.steps):
        direction = grad - grad.mean()
        scale = float(np.abs(direction).max())
        if not scale > 0 or not np.isfinite(scale):
            break  # a stationary point of the simplex's interior (or a non-finite gradient): nothing to follow
        candidate = _step(w, direction / scale, lr, config)
        c_loss, c_grad = objective(candidate)
        accepted = bool(np.isfinite(c_loss) and c_loss < loss)
        trace.losses.append(c_loss)
        trace.accepted.append(accepted)
        trace.lrs.append(lr)
        trace.history.append(candidate.tolist())
        if accepted:
            gain = loss - c_loss
            w, loss, grad = candidate, c_loss, c_grad
            trace.weights, trace.loss = w.tolist(), loss
        else:
            lr /= 2
        _report(on_step, trace)
        if accepted and gain < config.tol:
            break  # flat: the next steps would each cost an evaluation for less than tol
    return trace


def _step(w: np.ndarray, direction: np.ndarray, lr: float, config: FitConfig) -> np.ndarray:
    if config.method == "mirror":
        logits = np.log(np.maximum(w, 1e-300)) - lr * direction
        e = np.exp(logits - logits.max())
        return e / e.sum()
    return project(w - lr * direction, config.monotone)


def project(y: np.ndarray, monotone: bool = False) -> np.ndarray:
    """Euclidean projection onto the simplex, or with ``monotone`` onto the monotone simplex (weights also
    non-increasing, oldest first). With the sum as a Lagrange term τ, the projection is
    ``max(iso(y) − τ, 0)`` (isotonic regression commutes with a shift), τ found like the simplex's.

    >>> project(np.array([0.5, 0.5, 0.5])).round(4).tolist()
    [0.3333, 0.3333, 0.3333]
    >>> project(np.array([0.1, 0.6, 0.3]), monotone=True).round(4).tolist()
    [0.35, 0.35, 0.3]
    >>> project(np.array([1.0, -1.0, 0.2])).round(4).tolist()
    [0.9, 0.0, 0.1]
    """
    v = np.asarray(y, dtype=np.float64)
    if monotone:
        v = np.array(isotonic(v.tolist(), increasing=False))
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    ranks = np.arange(1, len(u) + 1)
    last = np.nonzero(u - cumulative / ranks > 0)[0][-1]
    tau = cumulative[last] / (last + 1)
    return np.maximum(v - tau, 0.0)


def _report(on_step, trace: FitTrace) -> None:
    if on_step is not None:
        i = len(trace.losses) - 1
        on_step(i, {"loss": trace.losses[i], "accepted": trace.accepted[i], "lr": trace.lrs[i],
                    "best_loss": trace.loss, "weights": trace.history[i]})
