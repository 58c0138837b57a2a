"""Golden tests of the beyond-the-paper weight math (wsm_exp/merging/extrapolate.py), exact on Fractions."""

from __future__ import annotations

import math
import random
from fractions import Fraction as F

import pytest

from wsm_exp.merging.extrapolate import (ORDERS, curve_label, extrapolate, is_convex, reorder, transform,
                                         unnormalized_weights)
from wsm_exp.merging.weights import (DECAY_CURVES, WeightsError, merge_weights, multipliers_from_weights,
                                     weights_from_multipliers)

ALPHAS = [F(-1), F(-1, 2), F(-1, 4), F(0), F(1, 4), F(1, 3), F(1, 2), F(1), F(3)]


def exact_mean(n: int) -> list[F]:
    return weights_from_multipliers([F(n - i, n) for i in range(1, n)])


def test_golden_extrapolated_mean():
    assert extrapolate(exact_mean(4), F(1, 2)) == [F(3, 8), F(3, 8), F(3, 8), F(-1, 8)]
    assert extrapolate(exact_mean(4), F(1, 4)) == [F(5, 16), F(5, 16), F(5, 16), F(1, 16)]
    assert extrapolate(exact_mean(4), F(-1, 2)) == [F(1, 8), F(1, 8), F(1, 8), F(5, 8)]
    assert extrapolate(exact_mean(2), F(1), anchor=0) == [F(0), F(1)]  # away from the oldest: the newest


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_extrapolation_is_the_expo_move_exactly(n):
    """Σ c_j θ_j == θ_merge + α(θ_merge − θ_anchor) on random rational 'parameters', for every anchor."""
    rng = random.Random(n)
    weights = [F(rng.randint(1, 9)) for _ in range(n)]
    weights = [w / sum(weights) for w in weights]
    theta = [F(rng.randint(-50, 50), rng.randint(1, 7)) for _ in range(n)]
    merged = sum(w * t for w, t in zip(weights, theta))
    for alpha in ALPHAS:
        for anchor in range(n):
            coefficients = extrapolate(weights, alpha, anchor)
            assert sum(coefficients) == 1  # still one weighted pass, no rescaling
            assert sum(c * t for c, t in zip(coefficients, theta)) == merged + alpha * (merged - theta[anchor])
        assert extrapolate(weights, F(-1), anchor=-1) == [0] * (n - 1) + [1]  # α = −1 is the anchor itself


def test_extrapolations_compose_multiplicatively():
    """ex_b(ex_a(w)) = ex_c(w) with 1 + c = (1 + a)(1 + b): the α axis is a line through the anchor."""
    weights = exact_mean(6)
    for a in ALPHAS:
        for b in ALPHAS:
            assert extrapolate(extrapolate(weights, a), b) == extrapolate(weights, (1 + a) * (1 + b) - 1)


def test_alpha_zero_is_the_merge_and_floats_stay_close():
    for curve in DECAY_CURVES:
        weights = merge_weights(curve, 8)
        assert extrapolate(weights, 0.0) == weights
        assert math.isclose(sum(extrapolate(weights, 0.5)), 1.0, abs_tol=1e-12)


def test_reverse_and_scramble_are_permutations_and_seeded():
    weights = merge_weights("1-sqrt", 8)
    assert reorder(reorder(weights, "reverse"), "reverse") == weights
    assert reorder(weights, "natural") == weights
    for seed in range(20):
        scrambled = reorder(weights, "scramble", seed)
        assert sorted(scrambled) == sorted(weights)
        assert scrambled == reorder(weights, "scramble", seed)
    assert len({tuple(reorder(weights, "scramble", s)) for s in range(20)}) > 10
    # the same permutation as shuffling the list itself with Random(seed) (Megatron-LM's scramble)
    shuffled = list(weights)
    random.Random(7).shuffle(shuffled)
    assert reorder(weights, "scramble", 7) == shuffled


def test_controls_emulate_other_decays():
    """Any convex weights emulate SOME non-increasing LR (Theorem 3.1): the reverse of 1-sqrt is the late, sharp
    decay (LR above 1-sqrt's everywhere), the scramble an irregular staircase; same weights, other schedule."""
    natural = merge_weights("1-sqrt", 8)
    late = multipliers_from_weights(reorder(natural, "reverse"))
    early = multipliers_from_weights(natural)
    assert all(b <= a + 1e-12 for a, b in zip(late, late[1:]))
    assert all(x > y for x, y in zip(late, early))
    assert multipliers_from_weights(reorder(natural, "scramble", 0)) not in (late, early)


def test_transform_reorders_then_extrapolates():
    weights = exact_mean(4)[:3] + [F(1, 4)]
    skewed = [F(1, 10), F(2, 10), F(3, 10), F(4, 10)]
    assert transform(skewed, order="reverse", alpha=F(1)) == extrapolate(skewed[::-1], F(1))
    assert transform(weights) == weights


@pytest.mark.parametrize("n", range(1, 65))
def test_megatron_linear_and_minus_sqrt_equal_ours(n):
    """Megatron-LM's weighted_merge coefficients (re-derived: f sampled at i/N for i = 0..N−1, c_last = f((N−1)/N),
    c_i = f(i/N) − f((i+1)/N), c_0 = 1 − Σ the rest) equal our ``linear`` and ``1-sqrt`` for N = 1..64."""
    for theirs, ours in (("linear", "linear"), ("minus-sqrt", "1-sqrt")):
        f = DECAY_CURVES[ours]
        if n == 1:
            expected = [1.0]
        else:
            schedule = [f(i / n) for i in range(n)]
            expected = [0.0] * n
            expected[-1] = schedule[-1]
            for i in range(1, n - 1):
                expected[i] = schedule[i] - schedule[i + 1]
            expected[0] = 1 - sum(expected)
        assert merge_weights(ours, n) == pytest.approx(expected, abs=1e-12), theirs


def test_unnormalized_weights_kept_as_given_and_checked():
    assert unnormalized_weights([-0.5, 2.0], 2) == [-0.5, 2.0]
    with pytest.raises(WeightsError, match="exactly one weight"):
        unnormalized_weights([1.0], 2)
    with pytest.raises(WeightsError, match="finite"):
        unnormalized_weights([1.0, math.nan], 2)
    assert is_convex([0.5, 0.5]) and not is_convex([1.5, -0.5]) and not is_convex([1.0, 1.0])


def test_bad_requests_name_the_fix():
    with pytest.raises(WeightsError, match="merge.order=reverse"):
        reorder([0.5, 0.5], "backwards")
    with pytest.raises(WeightsError, match="merge.anchor"):
        extrapolate([0.5, 0.5], 0.5, anchor=2)
    with pytest.raises(WeightsError, match="finite"):
        extrapolate([0.5, 0.5], math.inf)
    assert set(ORDERS) == {"natural", "reverse", "scramble"}


def test_labels_are_distinct_per_option():
    labels = {curve_label("1-sqrt", order=o, seed=s, alpha=a) for o in ORDERS for s in (0, 1) for a in (0, 0.5, -0.5)}
    assert len(labels) == 3 * 3 + 3  # natural and reverse ignore the seed; scramble's label carries it
