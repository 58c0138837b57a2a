"""Paired statistics and verdicts that respect the noise (pure math, no I/O).

Two models are compared on the same documents: the per-document difference (a weighted mean, bytes as
weights for bits per byte, so the statistic is the aggregate's own quantity) has a standard error from
the documents, clustered by source text where pieces of one text were scored apart. With one training
seed that interval covers evaluation noise only and the verdict says so. With two or more seeds the
interval adds the spread of the per-seed differences to the document noise (the seeds' degrees of
freedom) and the verdict rests on it. Picking the best of K candidates is paid for with the max-t
quantile over the K candidates' joint differences (sharper than Bonferroni for correlated merges). The
intervals are analysis.selection's (arrays), the outcome rules analysis.verdicts'; this module turns them
into ``Comparison`` rows with the words of what each interval covers.

Example:
    >>> compare([1.0, 1.2, 0.9], [0.0, 0.1, -0.1]).verdict
    'reproduced across 3 training seeds (+ evaluation)'
    >>> compare([0.05], [0.0]).verdict
    'unconfirmed (1 seed, no per-document values; observed: better)'
    >>> compare([2.30], [2.35], higher_is_better=False, eval_noise=DocNoise(-0.05, 0.01, 200)).verdict
    'reproduced on evaluation noise (1 seed; training seeds not covered)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analysis.selection import Intervals, intervals, quantile
from analysis.verdicts import AT_CHANCE, sign
from wsm_exp.evaluation.clustered import cluster_influence, detectable


def paired_difference(a, b, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """(effect, standard error) of the weighted mean of a − b over the last axis (documents), vectorized over
    leading axes; the same estimator as ``cluster_influence`` with one document per cluster.

    >>> effect, se = paired_difference(np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, 0.0]))
    >>> float(effect), round(float(se), 4)
    (0.5, 0.2887)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    w = np.ones_like(a) if weights is None else np.broadcast_to(np.asarray(weights, dtype=float), a.shape)
    n = a.shape[-1]
    z = (a - b) * w
    effect = z.sum(-1) / w.sum(-1)
    residual = z - effect[..., None] * w
    se = np.sqrt((residual**2).sum(-1) / (n * (n - 1))) / w.mean(-1) if n > 1 else np.full(effect.shape, np.nan)
    return effect, se


@dataclass(frozen=True)
class DocNoise:
    """A paired per-document difference (A − B) of the seed-averaged per-document values."""

    effect: float
    se: float
    docs: int  # documents (or pieces) of the smallest task
    seeds: int = 1
    clusters: int = 0  # independent units of the smallest task (source texts); 0: every document its own
    unit: str = "documents"  # "pieces" where the held-out texts were cut
    influence: dict = field(default_factory=dict, compare=False)  # (task, cluster) -> influence (joint tests)

    @property
    def dof(self) -> float:
        return max((self.clusters or self.docs) - 1, 1)

    @property
    def describe(self) -> str:
        texts = f" of {self.clusters} texts" if self.clusters and self.unit == "pieces" else ""
        return f"{self.docs} {self.unit}{texts}"


@dataclass(frozen=True)
class Comparison:
    """A − B on one metric: the interval the verdict uses, what it covers, and the power it had."""

    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    outcome: str  # reproduced / not reproduced / inconclusive / unconfirmed / not tested
    noise: str = ""  # what the interval covers
    eval_low: float = math.nan  # evaluation noise only (documents)
    eval_high: float = math.nan
    seed_low: float = math.nan  # training seeds + evaluation
    seed_high: float = math.nan
    candidates: int = 1  # K: the interval is corrected for picking the best of K
    higher_is_better: bool = True
    se: float = math.nan  # standard error behind the verdict's interval
    critical: float = math.nan  # its quantile (selection included)
    detectable: float = math.nan  # smallest true difference found with the stated power
    seed_sd: float = math.nan  # spread of the per-seed differences (two or more seeds)
    doc_se: float = math.nan  # standard error from the documents alone

    @property
    def advantage(self) -> float:
        """The difference in the claimed direction (positive: A better)."""
        return self.mean if self.higher_is_better else -self.mean

    @property
    def verdict(self) -> str:
        return self.phrase(self.outcome)

    def phrase(self, outcome: str) -> str:
        """An outcome worded with what the interval covers."""
        if outcome in ("not tested", AT_CHANCE):
            return outcome
        if outcome == "unconfirmed" or math.isnan(self.ci_low):
            observed = "equal" if self.mean == 0 else "better" if self.advantage > 0 else "worse"
            return f"unconfirmed (1 seed, no per-document values; observed: {observed})"
        if self.seeds >= 2:
            return f"{outcome} across {self.seeds} training seeds (+ evaluation)"
        return f"{outcome} on evaluation noise (1 seed; training seeds not covered)"


def summary(values: list[float], candidates: int = 1) -> tuple[float, float, float, float]:
    """(mean, std, ci_low, ci_high) of a sample; std and interval are NaN for one value."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return (math.nan,) * 4
    m = float(np.mean(values))
    if len(values) < 2:
        return m, math.nan, math.nan, math.nan
    s = float(np.std(values, ddof=1))
    half = quantile(len(values) - 1, candidates) * s / math.sqrt(len(values))
    return m, s, m - half, m + half


def seeds_needed(effect: float, seed_sd: float, doc_se: float, power: float = 0.8, most: int = 50) -> int | None:
    """Training seeds a run needs to detect ``effect`` with ``power`` when seeds differ by ``seed_sd`` and the
    documents add ``doc_se`` (None when even ``most`` seeds would not).

    >>> seeds_needed(0.04, 0.014, 0.002), seeds_needed(0.001, 0.014, 0.002)
    (4, None)
    """
    for n in range(2, most + 1):
        v_seed = seed_sd**2 / n
        q = quantile(n - 1)
        if detectable(math.sqrt(v_seed + doc_se**2), q, power) <= abs(effect):
            return n
    return None


def comparisons(diffs: list[dict], noises: list[DocNoise | None], *, higher_is_better: bool = True,
                power: float = 0.8) -> list[Comparison]:
    """K candidates against one reference: candidate k's per-seed differences (seed id → A − B) and its
    document noise, each interval corrected for picking the best of the K (analysis.selection.intervals: max-t
    over the joint differences; K = 1 is a plain paired comparison).

    >>> [c.outcome for c in comparisons([{0: 0.1, 1: 0.12, 2: 0.08}, {0: 0.0, 1: 0.01, 2: -0.01}], [None, None])]
    ['reproduced', 'inconclusive']
    """
    seeds = sorted(set().union(*diffs))
    d = np.array([[x.get(s, math.nan) for s in seeds] for x in diffs], dtype=float).reshape(len(diffs), len(seeds))
    has = [n is not None and not math.isnan(n.se) for n in noises]
    if any(has):
        parts = [(n.influence or {("", ""): n.se}) if ok else {} for n, ok in zip(noises, has)]
        keys = sorted(set().union(*parts), key=str)
        rows = [[part.get(key, 0.0) for key in keys] if ok else [math.nan] * len(keys) for part, ok in zip(parts, has)]
        effect = [n.effect if ok else math.nan for n, ok in zip(noises, has)]
        dof = [n.dof if ok else math.nan for n, ok in zip(noises, has)]
        iv = intervals(d, np.array(rows), np.array(effect), np.array(dof), power=power)
    else:
        iv = intervals(d, power=power)
    return [_comparison(iv, j, noises[j] if has[j] else None, higher_is_better) for j in range(len(diffs))]


def _comparison(iv: Intervals, j: int, noise: DocNoise | None, higher_is_better: bool) -> Comparison:
    """Candidate ``j`` of ``iv`` as a Comparison, worded with what its interval covers."""
    mean, seeds = float(iv.mean[j]), int(iv.seeds[j])
    if math.isnan(mean):
        return Comparison(math.nan, math.nan, math.nan, 0, "not tested", higher_is_better=higher_is_better)
    if seeds >= 2:
        noise_text = f"training seeds + evaluation ({seeds} seeds" + (f", {noise.describe})" if noise else ")")
    elif noise is not None:
        noise_text = f"evaluation noise only ({noise.describe}, 1 seed; training seeds not covered)"
    else:
        noise_text = "none (1 seed, no per-document values)"
    value = {name: float(getattr(iv, name)[j]) for name in ("low", "high", "eval_low", "eval_high", "seed_low",
                                                            "seed_high", "se", "critical", "detectable", "seed_sd",
                                                            "doc_se")}
    return Comparison(mean, value["low"], value["high"], seeds, sign(value["low"], value["high"], higher_is_better),
                      noise_text, value["eval_low"], value["eval_high"], value["seed_low"], value["seed_high"],
                      iv.candidates, higher_is_better, value["se"], value["critical"], value["detectable"],
                      value["seed_sd"], value["doc_se"])


def compare(a: list[float], b: list[float], *, higher_is_better: bool = True, eval_noise: DocNoise | None = None,
            power: float = 0.8) -> Comparison:
    """A vs B from per-seed values joined by seed (same order), plus the per-document noise if known.

    Two or more seeds: the interval combines the per-seed spread (s²/S) with the documents' variance of the
    seed-averaged difference, with the seeds' S − 1 degrees of freedom; one seed with per-document values:
    the paired document interval (evaluation noise only); otherwise no interval (unconfirmed).
    """
    diffs = {i: x - y for i, (x, y) in enumerate(zip(a, b)) if not (math.isnan(x) or math.isnan(y))}
    return comparisons([diffs], [eval_noise], higher_is_better=higher_is_better, power=power)[0]
