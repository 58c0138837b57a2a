"""Paired statistics and verdicts that respect the noise (pure math, no I/O).

Two models are compared on the same documents: the per-document difference (a weighted mean, bytes as
weights for bits per byte, so the statistic is the aggregate's own quantity) has a standard error from
the documents, clustered by source text where pieces of one text were scored apart. With one training
seed that interval covers evaluation noise only and the verdict says so. With two or more seeds the
interval adds the spread of the per-seed differences to the document noise (Welch–Satterthwaite degrees
of freedom) and the verdict rests on it. Picking the best of K candidates is paid for with the max-t
quantile over the K candidates' joint differences (sharper than Bonferroni for correlated merges).
Three outcomes: reproduced (interval excludes zero in the claimed direction), not reproduced
(excludes it the other way), inconclusive; without any interval, "unconfirmed".

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

LEVEL = 0.95  # two-sided confidence of every interval in the report
AT_CHANCE = "at chance (no verdict)"


def quantile(dof: float, candidates: int = 1) -> float:
    """Two-sided Student-t quantile at LEVEL, Bonferroni-adjusted for ``candidates`` (normal for dof = inf).

    >>> round(quantile(math.inf), 3), round(quantile(math.inf, 3), 3)
    (1.96, 2.394)
    """
    from scipy.stats import t

    return float(t.ppf(1 - (1 - LEVEL) / (2 * candidates), dof))


def selection_quantile(correlation, dof: float, draws: int = 20_000, seed: int = 0) -> float:
    """Critical value for the best of K correlated estimates: the (1 − α/2) quantile of max_j Z_j over
    Z ~ N(0, correlation) (seeded Monte Carlo), carried to Student-t at ``dof`` by its tail probability.
    Equals ``quantile(dof)`` for K = 1; between it and Bonferroni's for K > 1.

    >>> round(selection_quantile(np.eye(1), math.inf), 2), round(selection_quantile(np.ones((3, 3)), math.inf), 2)
    (1.96, 1.96)
    >>> 2.3 < selection_quantile(np.eye(3), math.inf) < quantile(math.inf, 3) + 0.02
    True
    """
    from scipy.stats import norm, t

    corr = np.atleast_2d(np.asarray(correlation, dtype=float))
    if len(corr) == 1:
        return quantile(dof)
    values, vectors = np.linalg.eigh((corr + corr.T) / 2)
    z = np.random.default_rng(seed).standard_normal((draws, len(corr))) @ (vectors * np.sqrt(np.clip(values, 0, None))).T
    top = (z / np.sqrt(np.clip(np.diag(corr), 1e-300, None))).max(axis=1)
    return float(t.ppf(norm.cdf(float(np.quantile(top, 1 - (1 - LEVEL) / 2))), dof))


def cluster_influence(diff, weights=None, clusters=None) -> tuple[float, np.ndarray]:
    """(effect, per-cluster influence) of the weighted mean difference Σ d·w / Σ w: the effect's squared
    standard error is the sum of squared influences (ratio estimator, clustered, with G/(G−1)); each
    document is its own cluster when ``clusters`` is None.

    >>> effect, u = cluster_influence([1.0, 1.0, 0.0, 1.0])
    >>> float(effect), round(float(np.sqrt((u ** 2).sum())), 4)
    (0.75, 0.25)
    >>> round(float(np.sqrt((cluster_influence([1.0, 1.0, 0.0, 1.0], clusters=[0, 0, 1, 1])[1] ** 2).sum())), 4)
    0.25
    """
    d = np.asarray(diff, dtype=float)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=float)
    effect = float((d * w).sum() / w.sum())
    residual = (d - effect) * w / w.sum()
    if clusters is None:
        sums = residual
    else:
        _, index = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
        sums = np.bincount(index, weights=residual)
    groups = len(sums)
    return effect, sums * math.sqrt(groups / (groups - 1)) if groups > 1 else np.full(1, math.nan)


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


def reproduced(low, high, higher_is_better: bool = True):
    """True where the interval excludes zero in the claimed direction (vectorized)."""
    return np.asarray(low) > 0 if higher_is_better else np.asarray(high) < 0


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


def judge(mean: float, low: float, high: float, higher_is_better: bool = True) -> str:
    """reproduced / not reproduced / inconclusive from an interval of A − B (unconfirmed without one)."""
    if math.isnan(low):
        return "unconfirmed"
    if bool(reproduced(low, high, higher_is_better)):
        return "reproduced"
    if bool(reproduced(-high, -low, higher_is_better)):
        return "not reproduced"
    return "inconclusive"


def all_parts(outcomes: list[str]) -> str:
    """Outcome of a claim made of several parts: reproduced only when every part is; one part significantly
    the other way refutes it; anything else is inconclusive (or unconfirmed / not tested / at chance).

    >>> all_parts(["reproduced", "inconclusive"]), all_parts(["reproduced", "not reproduced"])
    ('inconclusive', 'not reproduced')
    """
    for word in (AT_CHANCE, "not reproduced"):
        if word in outcomes:
            return word
    if all(v == "reproduced" for v in outcomes):
        return "reproduced"
    for word in ("not tested", "unconfirmed"):
        if word in outcomes:
            return word
    return "inconclusive"


def welch_dof(v_seed: float, seed_dof: float, v_doc: float, doc_dof: float) -> float:
    """Welch–Satterthwaite degrees of freedom of a sum of two variance estimates.

    >>> round(welch_dof(1.0, 2, 0.0, 100), 6), round(welch_dof(0.0, 2, 1.0, 100), 6)
    (2.0, 100.0)
    """
    denominator = v_seed**2 / seed_dof + v_doc**2 / doc_dof
    return (v_seed + v_doc) ** 2 / denominator if denominator > 0 else math.inf


def detectable(se: float, critical: float, power: float = 0.8) -> float:
    """Smallest true difference this test finds with probability ``power``: (critical + z_power)·se.

    >>> round(detectable(0.01, 1.96), 4)
    0.028
    """
    from scipy.stats import norm

    return (critical + float(norm.ppf(power))) * se


def seeds_needed(effect: float, seed_sd: float, doc_se: float, power: float = 0.8, most: int = 50) -> int | None:
    """Training seeds a run needs to detect ``effect`` with ``power`` when seeds differ by ``seed_sd`` and the
    documents add ``doc_se`` (None when even ``most`` seeds would not).

    >>> seeds_needed(0.04, 0.014, 0.002), seeds_needed(0.001, 0.014, 0.002)
    (3, None)
    """
    for n in range(2, most + 1):
        v_seed = seed_sd**2 / n
        q = quantile(welch_dof(v_seed, n - 1, doc_se**2, 1e9))
        if detectable(math.sqrt(v_seed + doc_se**2), q, power) <= abs(effect):
            return n
    return None


def compare(a: list[float], b: list[float], *, higher_is_better: bool = True, candidates: int = 1,
            eval_noise: DocNoise | None = None, correlation=None, power: float = 0.8) -> Comparison:
    """A vs B from per-seed values joined by seed (same order), plus the per-document noise if known.

    Two or more seeds: the interval combines the per-seed spread (s²/S) with the documents' variance of the
    seed-averaged difference, with Welch–Satterthwaite degrees of freedom; one seed with per-document values:
    the paired document interval (evaluation noise only). ``candidates`` > 1: the interval is corrected for
    picking the best, by max-t over ``correlation`` (K × K) when given, else Bonferroni.
    """
    diffs = [x - y for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    seeds = len(diffs)
    docs = eval_noise is not None and not math.isnan(eval_noise.se)
    mean = float(np.mean(diffs)) if diffs else (eval_noise.effect if docs else math.nan)
    if math.isnan(mean):
        return Comparison(math.nan, math.nan, math.nan, 0, "not tested", higher_is_better=higher_is_better)

    def critical(dof: float) -> float:
        if candidates > 1 and correlation is not None:
            return selection_quantile(correlation, dof)
        return quantile(dof, candidates)

    eval_low = eval_high = doc_se = math.nan
    if docs:
        doc_se = eval_noise.se
        half = critical(eval_noise.dof) * doc_se
        eval_low, eval_high = eval_noise.effect - half, eval_noise.effect + half
    seed_low = seed_high = seed_sd = se = q = math.nan
    if seeds >= 2:
        seed_sd = float(np.std(diffs, ddof=1))
        v_seed, v_doc = seed_sd**2 / seeds, doc_se**2 if docs else 0.0
        se = math.sqrt(v_seed + v_doc)
        q = critical(welch_dof(v_seed, seeds - 1, v_doc, eval_noise.dof if docs else 1.0))
        seed_low, seed_high = mean - q * se, mean + q * se
        low, high = seed_low, seed_high
        noise = f"training seeds + evaluation ({seeds} seeds" + (f", {eval_noise.describe})" if docs else ")")
    elif docs:
        low, high, se, q = eval_low, eval_high, doc_se, critical(eval_noise.dof)
        noise = f"evaluation noise only ({eval_noise.describe}, 1 seed; training seeds not covered)"
    else:
        low = high = math.nan
        noise = "none (1 seed, no per-document values)"
    return Comparison(mean, low, high, seeds, judge(mean, low, high, higher_is_better), noise, eval_low, eval_high,
                      seed_low, seed_high, candidates, higher_is_better, se, q,
                      detectable(se, q, power) if not math.isnan(se) else math.nan, seed_sd, doc_se)
