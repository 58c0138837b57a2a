"""Null rates and power of every claim, through the report's own decision functions, vectorized over thousands
of synthetic studies at once.

Each claim's decision is analysis.selection.intervals (max-t over the candidates' joint differences, seeds +
documents combined), analysis.selection.pick, the outcome rules of analysis.verdicts, the clustered
influence of analysis.stats, the R² of analysis.factors and the bootstrap and F-test of analysis.probe. The
functions below only arrange a simulated study's arrays the way analysis.evidence arranges a results frame
(which models are candidates, which is the reference, which is picked by what); ``tests/helpers/null_frames.py``
writes the same draws as result rows and per-document samples, and the wiring test checks that the report's
frame path gives the same verdicts draw by draw.

Simulated per-document values: held-out bits per byte on 25 texts × 4 pieces (a text-level and a piece-level
evaluation noise per model and seed; byte weights), or accuracy (0/1 per item, 200 items, in points). Every
model of a seed gets training noise; the models of one run share part of it (``shared``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
from scipy.special import ndtr

from analysis.factors import duration_contrast, r_squared
from analysis.probe import bootstrap_best_scale, log_scale, varies_between_points
from analysis.selection import intervals, pick, tail_bounds, take
from analysis.stats import cluster_influence
from analysis.verdicts import all_parts, at_least, no_gain, noise_scale, sign

TEXTS, PIECES, ITEMS = 25, 4, 200
CLUSTERS = np.repeat(np.arange(TEXTS), PIECES)
MARGIN_BPB = 0.005  # analysis.margin_bpb's default
CUT = 0.8  # analysis.r2_collapse's default


@dataclass(frozen=True)
class Noise:
    """Training-seed and evaluation noise of a simulated study (bits per byte unless said)."""

    seed_sd: float = 0.0096  # a model's training-seed SD (the duration sweep's merge − decay SD 0.014 per seed)
    shared: float = 0.8  # share of that variance the candidates of one run have in common
    ref_shared: float = 0.0  # share the reference models have in common with the candidates
    text_sd: float = 0.012  # per model and seed, per source text (a one-seed paired SE of ~0.0036 bpb, as
    piece_sd: float = 0.008  # per model and seed, per piece       measured on the main job: [−0.0613, −0.0477])


def losses(rng, n: int, seeds: int, offsets, refs: int, noise: Noise):
    """(values (n, M, S, D), weights (n, D)): held-out bits per byte; the last ``refs`` models are references."""
    offsets = np.asarray(offsets, dtype=float)
    m, docs = len(offsets), TEXTS * PIECES
    share = np.where(np.arange(m) >= m - refs, noise.ref_shared, noise.shared)[None, :, None]
    common = rng.standard_normal((n, 1, seeds))
    training = noise.seed_sd * (np.sqrt(share) * common + np.sqrt(1 - share) * rng.standard_normal((n, m, seeds)))
    difficulty = 2.3 + rng.normal(0, 0.3, (n, 1, 1, TEXTS))[..., CLUSTERS] + rng.normal(0, 0.1, (n, 1, 1, docs))
    evaluation = noise.text_sd * rng.standard_normal((n, m, seeds, TEXTS))[..., CLUSTERS] + \
        noise.piece_sd * rng.standard_normal((n, m, seeds, docs))
    values = difficulty + offsets[None, :, None, None] + training[..., None] + evaluation
    return values, rng.integers(200, 900, (n, docs)).astype(float)


def accuracies(rng, n: int, seeds: int, shifts, shared, seed_sd: float = 0.01):
    """(n, M, S, items) correct (100) or not (0): item difficulty shared by all models, a model's ``shifts``
    (probability), training noise ``seed_sd`` per model and seed, and per-item luck correlated ``shared[m]``
    with the other models' of the seed."""
    shifts, shared = np.asarray(shifts, dtype=float), np.asarray(shared, dtype=float)[None, :, None, None]
    p = np.clip(rng.beta(3, 2, (n, 1, 1, ITEMS)) + shifts[None, :, None, None]
                + rng.normal(0, seed_sd, (n, len(shifts), seeds, 1)), 0, 1)
    luck = np.sqrt(shared) * rng.standard_normal((n, 1, seeds, ITEMS)) + \
        np.sqrt(1 - shared) * rng.standard_normal((n, len(shifts), seeds, ITEMS))
    return 100.0 * (ndtr(luck) < p)


def aggregates(values, weights=None):
    """The per-model, per-seed aggregate (n, M, S): the weighted mean over documents (the results row's value)."""
    w = np.ones(values.shape[-1]) if weights is None else weights[:, None, None, :]
    return (values * w).sum(-1) / w.sum(-1)


def compared(values, candidates, reference, rule: Callable, weights=None, clusters=None, by=None,
             higher: bool = False):
    """``rule``(the chosen candidate's Intervals) for every study: what ``Evidence.compare_best`` and the claim's
    rule give, over arrays. Every candidate − the reference model (index per study, or int), joined by seed and
    document, corrected for the K candidates; the best by its mean difference in the claimed direction (or
    ``by``: an index per study). The max-t quantile is computed only where the outcome differs between the
    bounds of ``analysis.selection.tail_bounds`` (every rule is monotone in it, so the outcome is the exact one)."""
    n = values.shape[0]
    reference = np.broadcast_to(np.asarray(reference), (n,))
    ref = values[np.arange(n), reference]  # (n, S, D)
    w = np.ones((n, values.shape[-1])) if weights is None else weights
    agg = aggregates(values, w)
    args = (agg[:, list(candidates)] - agg[np.arange(n), reference][:, None],
            *cluster_influence((values[:, list(candidates)] - ref[:, None]).mean(axis=2), w[:, None, :], clusters))
    seed_diff, effect, influence = args
    dof = np.full(effect.shape, influence.shape[-1] - 1.0)
    if len(candidates) == 1:
        return rule(take(intervals(seed_diff, influence, effect, dof), np.zeros(n, dtype=int)))
    bounds = [intervals(seed_diff, influence, effect, dof, tail=tail) for tail in tail_bounds(len(candidates))]
    index = pick(bounds[0].mean, higher) if by is None else np.asarray(by)
    low, high = (np.asarray(rule(take(iv, index)), dtype=object) for iv in bounds)
    unsure = low != high
    if unsure.any():
        exact = intervals(seed_diff[unsure], influence[unsure], effect[unsure], dof[unsure])
        low[unsure] = rule(take(exact, index[unsure]))
    return low


def best_model(values, models, weights=None, higher: bool = False):
    """Index (n,) of the best of ``models`` by its mean over seeds (analysis.rules.best on the designs)."""
    means = aggregates(values, weights)[:, list(models)].mean(-1)
    return np.asarray(models)[pick(means, higher)]


# --- the claims: each returns the outcome of every simulated study -------------------------------------------

def _sign(higher: bool) -> Callable:
    return lambda iv: sign(iv.low, iv.high, higher)


def wsm_beats_wsd(bpb, weights, merges, decays):
    return compared(bpb, merges, best_model(bpb, decays, weights), _sign(False), weights, CLUSTERS)


def loss_vs_score(bpb, weights, acc, merges, decays):
    """(combined, loss part, score part): the merge and decay chosen by the primary metric (bpb); the loss must
    be higher (K = 1), the score better (K = the merges: the merge pick is corrected)."""
    ref = best_model(bpb, decays, weights)
    loss = _pair(bpb, best_model(bpb, merges, weights), ref, _sign(True), weights, CLUSTERS)
    score = compared(acc, merges, ref, _sign(True), by=pick(aggregates(bpb, weights)[:, merges].mean(-1), False),
                     higher=True)
    return all_parts([loss, score]), loss, score


def _pair(values, a, b, rule, weights=None, clusters=None):
    """One model (index per study) against another: K = 1."""
    n = values.shape[0]
    stacked = np.stack([values[np.arange(n), np.broadcast_to(a, (n,))],
                        values[np.arange(n), np.broadcast_to(b, (n,))]], axis=1)
    return compared(stacked, [0], 1, rule, weights, clusters)


def curves(bpb, weights, sqrt_merges, mean_merges, ema_merges, margin=MARGIN_BPB):
    """(combined, 1-sqrt ≥ mean (the margin rule), mean > EMA): both parts needed."""
    first = compared(bpb, sqrt_merges, best_model(bpb, mean_merges, weights),
                     lambda iv: at_least(iv.low, iv.high, False, margin), weights, CLUSTERS)
    second = compared(bpb, mean_merges, best_model(bpb, ema_merges, weights), _sign(False), weights, CLUSTERS)
    return all_parts([first, second]), first, second


def one_pair(bpb, weights, a, b):
    """Granularity (finest − coarsest Δ of one family, chosen by design) and any K = 1 sign claim on bpb."""
    return _pair(bpb, a, b, _sign(False), weights, CLUSTERS)


def gains_nothing(bpb, weights, pool, reference, margin=MARGIN_BPB):
    """Decay-then-merge / merge-then-decay: the best of ``pool`` gains nothing over ``reference``."""
    return compared(bpb, pool, reference, lambda iv: no_gain(iv.low, iv.high, False, margin), weights, CLUSTERS)


def extrapolation(bpb, weights, past, plain):
    return compared(bpb, past, plain, _sign(False), weights, CLUSTERS)


def controls(bpb, weights, pairs):
    """Every (natural, control) contrast needed."""
    return all_parts([one_pair(bpb, weights, a, b) for a, b in pairs])


def long_decay(bpb, weights, merges, decays):
    return wsm_beats_wsd(bpb, weights, merges, decays)


def fitted(bpb, weights, closed_forms, fitted_model):
    """Fitted vs the best closed form (picked against the claim), max-t over the K closed forms: reproduced when
    the interval of closed − fitted lies above 0 (analysis.fitted_claim's rule)."""
    return compared(bpb, closed_forms, fitted_model, lambda iv: np.where(
        iv.low > 0, "reproduced", np.where(np.isnan(iv.low), "unconfirmed", "other")), weights, CLUSTERS)


def sft(acc):
    """acc (n, 2 bases [WSD, WSM], E epochs, S, items): the best epoch per base and seed by Overall (the first on
    ties), then WSM − WSD paired by seed and item (K = 1: both bases picked alike)."""
    best = np.argmax(acc.mean(-1), axis=2)  # (n, 2, S)
    chosen = np.take_along_axis(acc, best[:, :, None, :, None], axis=2)[:, :, 0]  # (n, 2, S, items)
    return compared(chosen[:, ::-1], [0], 1, _sign(True))


GRID = np.array([(i * q, i, q) for i in (4, 8, 16) for q in (2, 4, 8)], dtype=float)  # (D, Δ, N): the grid sweep


def duration(y):
    """y (n, S, P) over the merges of GRID (D, Δ, N): per-seed R²(D) − R²(strongest rival), seeds only."""
    x = np.log2(GRID)
    per_seed = np.stack([r_squared(x[:, f], y) for f in range(3)], -1)  # (n, S, 3)
    flat = y.reshape(len(y), -1)
    pooled = np.stack([r_squared(np.tile(x[:, f], y.shape[1]), flat) for f in range(3)], -1)
    diffs, _ = duration_contrast(pooled, per_seed)
    iv = intervals(diffs[:, None, :])
    return sign(iv.low[:, 0], iv.high[:, 0], True)


POINTS = np.array([(lr, b, wd) for lr in (0.005, 0.01, 0.02) for b in (4, 8, 16) for wd in (0.0, 0.1)])
SCALE_X = np.stack([log_scale(v) for v in (POINTS[:, 0], POINTS[:, 1], POINTS[:, 2], POINTS[:, 0] / POINTS[:, 1],
                                           POINTS[:, 0] * POINTS[:, 2])])  # analysis.probe.SCALES' order


def noise(gains, cut=CUT):
    """gains (n, P, S) on the noise grid: the bootstrap of the best scale's R² and the F-test between points."""
    n, points, seeds = gains.shape
    xs = np.repeat(SCALE_X, seeds, axis=1)  # rows point-major, seed-minor (analysis.probe.probe_gains' order)
    low, high, inside = bootstrap_best_scale(xs, gains.reshape(n, -1))
    return noise_scale(low, high, inside, varies_between_points(gains), cut)


@dataclass(frozen=True)
class Sim:
    """One claim's simulation: ``draw(rng, n, seeds, size)`` → outcomes; ``null`` the least favourable null's
    planted size (None: this simulation plants an effect only), ``effect`` the study's observed size in the
    claimed direction (None: a null only) and where it comes from."""

    claim: str
    draw: Callable
    null: float | None
    effect: float | None
    source: str
    measured: bool = False  # the effect's size (and its noise) was measured on this study


def rate(sim: Sim, seeds: int, size: float, draws: int, seed: int = 0, training: bool = True,
         step: int = 500) -> float:
    """Share of ``draws`` simulated studies (seeded) whose outcome is "reproduced"; ``training=False`` plants no
    training-seed noise (the null a one-seed interval covers: two models that differ by evaluation noise only)."""
    rng = np.random.default_rng(seed)
    outcomes = np.concatenate([np.atleast_1d(sim.draw(rng, min(step, draws - i), seeds, size, training))
                               for i in range(0, draws, step)])
    return float(np.mean(outcomes == "reproduced"))


def null_bound(draws: int, level: float = 0.025) -> float:
    """The one-sided level plus its Monte-Carlo error: the 99.9% upper binomial quantile of a rate over ``draws``
    (a correct rule fails this 1 time in 1,000)."""
    from scipy.stats import binom

    return float(binom.ppf(0.999, draws, level)) / draws


def _study(noise: Noise, offsets, refs: int, rule: Callable, *groups):
    """A draw function of a bpb claim: models at ``offsets(size)`` (the last ``refs`` the references); a rule
    that returns its parts too gives the combined outcome."""
    def draw(rng, n, seeds, size, training=True):
        bpb, weights = losses(rng, n, seeds, offsets(size), refs, noise if training else replace(noise, seed_sd=0.0))
        outcome = rule(bpb, weights, *groups)
        return outcome[0] if isinstance(outcome, tuple) else outcome
    return draw


def _loss_score(loss_size, score_size):
    def draw(rng, n, seeds, size, training=True):
        loss, score = loss_size(size), score_size(size)
        bpb, weights = losses(rng, n, seeds, [loss] * 3 + [0.0, 0.1], 2, Noise(seed_sd=0.0096 * training))
        acc = accuracies(rng, n, seeds, [score] * 3 + [0.0, -0.1], [0.8] * 3 + [0.3] * 2, 0.01 * training)
        return loss_vs_score(bpb, weights, acc, [0, 1, 2], [3, 4])[0]
    return draw


def _duration(rng, n, seeds, size, training=True):
    """size 0: y = log N + (√2 − 1) log Δ, where R²(D) = R²(N) (the least favourable null); 1: y = log D."""
    x = np.log2(GRID)
    signal = x[:, 2] + ((np.sqrt(2) - 1) * (1 - size) + size) * x[:, 1]
    return duration(signal + rng.normal(0, 0.6, (n, seeds, len(GRID))))


def _sft(rng, n, seeds, size, training=True):
    rise = np.array([0.0, 0.05, 0.08, 0.06])  # epochs 1-4 of the SFT: rise, then fall
    acc = accuracies(rng, n, seeds, np.concatenate([rise, rise + size]), [0.7] * 8, 0.01 * training)
    return sft(acc.reshape(n, 2, 4, seeds, ITEMS))


def _noise(shape: str):
    lr, b = np.log10(POINTS[:, 0]), np.log10(POINTS[:, 0] / POINTS[:, 1])

    def draw(rng, n, seeds, size, training=True):  # the gains' noise is what the bootstrap resamples
        if shape == "flat":
            signal, sd = np.full(len(POINTS), 0.03), 0.01
        elif shape == "monotone":  # the study's: the gain rises with η over the whole grid (adjusted R² ≈ 0.87)
            signal, sd = 0.06 + 0.13 * (lr - lr.mean()), 0.01
        else:  # a peak inside the grid in η/B; "boundary": noise sized so the peak's R² is about the cut-off
            signal = 0.06 - 0.3 * (b - b.mean()) ** 2
            sd = np.sqrt(signal.var() * (1 - CUT) / CUT) if shape == "boundary" else 0.01
        return noise(signal[None, :, None] + rng.normal(0, sd, (n, len(POINTS), seeds)))
    return draw


# Least favourable nulls: a reference picked against the claim (the best decay, mean, EMA, closed form) has no
# close rival, so its pick cannot help the claim's false-positive rate.
SAME_RUN = Noise(shared=0.98, ref_shared=0.98, text_sd=0.005, piece_sd=0.005)  # merges of one window (diff SD ~0.002)
SIMS = [
    Sim("WSM beats WSD", _study(Noise(), lambda s: [-s] * 3 + [0.0, 0.1], 2, wsm_beats_wsd, [0, 1, 2], [3, 4]),
        0.0, 0.04, "the duration sweep: merge − decay −0.027…−0.055 bpb per seed", True),
    Sim("higher loss yet better scores (score part null)", _loss_score(lambda s: 0.07, lambda s: s), 0.0, 0.0128,
        "the paper's Table 1: +1.28 points, the loss 3% (0.07 bpb) higher (Table 5)"),
    Sim("higher loss yet better scores (loss part null)", _loss_score(lambda s: s, lambda s: 0.1), 0.0, 0.07,
        "the paper's Table 5: the loss 3% (0.07 bpb here) higher, scores +10 points"),
    Sim("duration matters more than Δ and N", _duration, 0.0, 1.0,
        "not measured (no grid run): the metric follows log D only (R²(D) ≈ 0.6 per seed)"),
    Sim("1-sqrt ≥ mean > EMA (≥ part at its margin)",
        _study(SAME_RUN, lambda s: [MARGIN_BPB - s] * 2 + [0.0, 0.1, 0.05, 0.15], 0, curves, [0, 1], [2, 3], [4, 5]),
        0.0, MARGIN_BPB, "not measured: 1-sqrt = mean, EMA 0.05 bpb worse"),
    Sim("1-sqrt ≥ mean > EMA (> part null)",
        _study(SAME_RUN, lambda s: [-0.02] * 2 + [0.0] * 2 + [s, s + 0.1], 0, curves, [0, 1], [2, 3], [4, 5]),
        0.0, 0.01, "not measured: EMA 0.01 bpb worse than mean, 1-sqrt 0.02 better"),
    Sim("finer granularity is slightly better", _study(SAME_RUN, lambda s: [-s, 0.0], 0, one_pair, 0, 1),
        0.0, 0.01, "not measured: 0.01 bpb"),
    Sim("decay-then-merge gives no gain", _study(
        Noise(shared=0.9995, ref_shared=0.9995, text_sd=0.001, piece_sd=0.001), lambda s: [-s] * 3 + [0.0], 1,
        gains_nothing, [0, 1, 2], 3), MARGIN_BPB, -0.0013,
        "the decay_then_merge sweep: merges 0.0010–0.0016 bpb worse", True),
    Sim("merge-then-decay gives no gain", _study(
        Noise(shared=0.999, ref_shared=0.999, text_sd=0.001, piece_sd=0.001), lambda s: [-s, 0.0], 1,
        gains_nothing, [0], 1), MARGIN_BPB, 0.0, "the paper's Figure 5c (no gain); the study measured +0.0107 bpb"),
    Sim("extrapolating past the merge lowers the loss", _study(  # per-seed SD of the difference ~0.0007, as measured
        Noise(shared=0.999, ref_shared=0.999, text_sd=0.002, piece_sd=0.002), lambda s: [-s] * 4 + [0.0], 1,
        extrapolation, [0, 1, 2, 3], 4), 0.0, 0.0086,
        "the extrapolate sweep: |best α > 0 − α = 0| = 0.0086 bpb", True),
    Sim("the merge's gain is the schedule's shape (one contrast null)", _study(
        Noise(shared=0.955, ref_shared=0.955, text_sd=0.005, piece_sd=0.005), lambda s: [0.0, s, 0.02], 0, controls,
        [(0, 1), (0, 2)]), 0.0, 0.0083, "the controls sweep: |1-sqrt − its reverse| = 0.0083 bpb", True),
    Sim("merging keeps its advantage as the decay lengthens", _study(  # per-seed SD of the advantage ~0.004
        Noise(seed_sd=0.0011), lambda s: [-s] * 3 + [0.0], 1, long_decay, [0, 1, 2], [3]),
        0.0, 0.02, "the long_decay sweep: |merge − decay| = 0.0202 bpb at 51% of training", True),
    Sim("fitted weights beat the best closed form", _study(
        Noise(shared=0.91, ref_shared=0.91, text_sd=0.003, piece_sd=0.003), lambda s: [0.0, 0.05, 0.05, -s], 1, fitted,
        [0, 1, 2], 3), 0.0, 0.05, "not measured (pending): 0.05 bpb, the size docs/beyond.md §5 quotes"),
    Sim("WSM's advantage persists after SFT", _sft, 0.0, 0.0117, "the paper's Table 2: +1.17 points Overall"),
    Sim("one noise scale governs the merge gain (flat null)", _noise("flat"), 0.0, None, "a null: no variation"),
    Sim("one noise scale governs the merge gain (monotone)", _noise("monotone"), 0.0, None,
        "the noise sweep: η collapses the gain (adjusted R² 0.87) with no peak inside"),
    Sim("one noise scale governs the merge gain (peak at the cut-off)", _noise("boundary"), 0.0, None,
        "a peak inside whose R² is about the cut-off 0.8"),
    Sim("one noise scale governs the merge gain (peak inside)", _noise("peak"), None, 1.0,
        "not measured (the study's gain has no peak): a quadratic in log η/B peaked mid-grid"),
]
