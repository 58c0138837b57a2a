"""Merge math: the paper's golden vectors, the theorem's round trip, closed forms, errors."""

import csv
import math
from fractions import Fraction
from pathlib import Path

import pytest

from wsm_exp.merging.weights import (
    CURVES,
    WeightsError,
    explicit_weights,
    merge_weights,
    multipliers_from_weights,
    weights_from_multipliers,
)

# WSM paper (arXiv 2507.17634) Figure 2, N = 10, oldest -> newest, as printed (3 decimals); the
# same file the reports show beside ours (analysis/paper_data/README.md gives its provenance).
PAPER_DATA = Path(__file__).resolve().parents[1] / "analysis" / "paper_data" / "figure2_weights_n10.csv"
FIGURE2_N10 = {row["curve"]: [float(row[f"c{i}"]) for i in range(10)]
               for row in csv.DictReader(PAPER_DATA.open())}


@pytest.mark.parametrize("curve", ["1-sqrt", "cosine", "ema", "linear"])
def test_figure2_golden_vectors(curve):
    got = merge_weights(curve, 10)
    assert [round(c, 3) for c in got] == FIGURE2_N10[curve]


def test_one_minus_sqrt_n4_golden():
    assert [round(c, 3) for c in merge_weights("1-sqrt", 4)] == [0.500, 0.207, 0.159, 0.134]


@pytest.mark.parametrize("curve", ["linear", "mean", "cosine", "1-sqrt", "ema", "sma", "wma"])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16])
def test_weights_sum_to_one_and_non_negative(curve, n):
    c = merge_weights(curve, n)
    assert len(c) == n
    assert math.isclose(sum(c), 1.0, abs_tol=1e-12)
    assert min(c) >= 0


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_linear_and_mean_are_uniform(n):
    assert merge_weights("linear", n) == pytest.approx([1 / n] * n, abs=1e-15)
    assert merge_weights("mean", n) == merge_weights("linear", n)


def test_round_trip_is_exact_with_fractions():
    weights = [Fraction(3, 10), Fraction(1, 5), Fraction(1, 10), Fraction(2, 5)]
    multipliers = multipliers_from_weights(weights)
    assert multipliers == [Fraction(7, 10), Fraction(1, 2), Fraction(2, 5)]
    assert weights_from_multipliers(multipliers) == weights


@pytest.mark.parametrize("curve", ["cosine", "1-sqrt", "ema", "wma"])
def test_round_trip_floats(curve):
    c = merge_weights(curve, 9)
    assert weights_from_multipliers(multipliers_from_weights(c)) == pytest.approx(c, abs=1e-15)


def test_multipliers_sample_the_curve_at_i_over_n():
    n = 8
    w = multipliers_from_weights(merge_weights("1-sqrt", n))
    assert w == pytest.approx([1 - math.sqrt(i / n) for i in range(1, n)], abs=1e-15)


@pytest.mark.parametrize("m", [0.1, 0.3])
@pytest.mark.parametrize("n", [2, 5, 10])
def test_min_lr_closed_forms(m, n):
    lin = merge_weights("linear", n, min_lr=m)
    assert lin[:-1] == pytest.approx([(1 - m) / n] * (n - 1), abs=1e-15)
    assert lin[-1] == pytest.approx((1 - m) / n + m, abs=1e-15)
    # the emulated schedule really ends at m: w(t) = m + (1 - m) f(t)
    mult = multipliers_from_weights(merge_weights("cosine", n, min_lr=m))
    f = [0.5 * (1 + math.cos(math.pi * i / n)) for i in range(1, n)]
    assert mult == pytest.approx([m + (1 - m) * x for x in f], abs=1e-15)


def test_one_minus_sqrt_closed_form():
    n = 6
    expected = [math.sqrt(1 / n)] + [math.sqrt((j + 1) / n) - math.sqrt(j / n) for j in range(1, n)]
    assert merge_weights("1-sqrt", n) == pytest.approx(expected, abs=1e-15)


def test_pma_equivalences():
    n = 5
    wma = merge_weights("wma", n)
    assert wma == pytest.approx([(j + 1) / 15 for j in range(n)])
    assert multipliers_from_weights(wma) == pytest.approx(
        [1 - i * (i + 1) / (n * (n + 1)) for i in range(1, n)]
    )
    a = 0.3
    ema = merge_weights("ema_alpha", n, alpha=a)
    assert sum(ema) == pytest.approx(1.0)
    assert multipliers_from_weights(ema) == pytest.approx([1 - (1 - a) ** (n - i) for i in range(1, n)])


def test_single_checkpoint_is_the_raw_model():
    for curve in ("linear", "1-sqrt", "cosine", "ema"):
        assert merge_weights(curve, 1) == [1.0]


def test_explicit_weights_normalised_and_checked():
    assert explicit_weights([2, 2], 2) == [0.5, 0.5]
    with pytest.raises(WeightsError, match="one weight per checkpoint"):
        explicit_weights([1, 2], 3)
    with pytest.raises(WeightsError, match="non-negative"):
        explicit_weights([1, -1, 1], 3)
    with pytest.raises(WeightsError, match="sum to 0"):
        explicit_weights([0, 0], 2)


def test_non_monotone_schedule_is_refused():
    with pytest.raises(WeightsError, match="rise at segment 2"):
        weights_from_multipliers([0.8, 0.9, 0.1])


def test_out_of_range_schedule_is_refused():
    with pytest.raises(WeightsError, match=r"leave \[0, 1\]"):
        weights_from_multipliers([1.2, 0.5])
    with pytest.raises(WeightsError, match=r"leave \[0, 1\]"):
        weights_from_multipliers([0.5, -0.1])


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_quantity_below_one_is_refused(bad):
    with pytest.raises(WeightsError, match="integer ≥ 1"):
        merge_weights("linear", bad)


def test_unknown_curve_lists_the_allowed_ones():
    with pytest.raises(WeightsError) as err:
        merge_weights("exponential", 4)
    for name in ("1-sqrt", "cosine", "mean"):
        assert name in str(err.value)
    assert set(CURVES) >= {"linear", "mean", "cosine", "1-sqrt", "ema", "sma", "wma", "ema_alpha"}


def test_min_lr_and_alpha_validation():
    with pytest.raises(WeightsError, match="min_lr"):
        merge_weights("linear", 4, min_lr=1.0)
    with pytest.raises(WeightsError, match="alpha"):
        merge_weights("ema_alpha", 4)
