"""LR schedules: exact values."""

import math

import pytest

from wsm_exp.study.schedules import decay_factor, warmup_constant, wsd


@pytest.mark.parametrize("shape, t, expected", [
    ("1-sqrt", 0.0, 1.0), ("1-sqrt", 0.25, 0.5), ("1-sqrt", 1.0, 0.0),
    ("linear", 0.0, 1.0), ("linear", 0.3, 0.7), ("linear", 1.0, 0.0),
    ("cosine", 0.0, 1.0), ("cosine", 0.5, 0.5), ("cosine", 1.0, 0.0),
])
def test_decay_factor_exact(shape, t, expected):
    assert decay_factor(shape, t) == pytest.approx(expected, abs=1e-15)


def test_warmup_then_constant():
    assert [warmup_constant(s, peak=2.0, warmup=4) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert warmup_constant(0, peak=2.0, warmup=0) == 2.0


def test_wsd_table():
    lrs = [wsd(s, peak=1.0, warmup=2, decay_start=4, decay_steps=4, shape="1-sqrt") for s in range(8)]
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.5, 1 - math.sqrt(0.5), 1 - math.sqrt(0.75), 0.0])
    with_min = [wsd(s, peak=1.0, warmup=0, decay_start=0, decay_steps=2, shape="linear", min_ratio=0.2) for s in range(2)]
    assert with_min == pytest.approx([0.6, 0.2])


def test_unknown_shape():
    with pytest.raises(ValueError, match="allowed: 1-sqrt, linear, cosine"):
        decay_factor("step", 0.5)
