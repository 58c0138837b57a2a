"""The merger's numpy arithmetic (wsm_exp.merging.arith) against torch's conversions, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsm_exp.merging.arith import accumulate, all_finite, narrow, widen

EDGES = np.array([
    0x00000000, 0x80000000,  # ±0
    0x7F800000, 0xFF800000,  # ±Inf
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FA00000,  # quiet / signalling NaNs
    0x00000001, 0x807FFFFF, 0x00008000, 0x00018000, 0x00010000,  # f32 subnormals, incl. bf16 ties
    0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,  # 1 + tie (to even, down / up), just below, just above
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F7FFF, 0x7F7F8000,  # overflow to ±Inf when rounded up; max bf16; tie at max
    0x477FF000, 0x477FEFFF, 0x477FF001, 0x38800000, 0x33800000, 0x33000000, 0x33000001, 0x387FC000,  # f16 edges
], dtype=np.uint32)


def random_bits(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=count, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([EDGES, bits])


def torch_bits(values: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    return torch.from_numpy(values.copy()).to(dtype).view(torch.int16).numpy().view(np.uint16)


@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_narrowing_equals_torch_bit_for_bit(seed):
    values = random_bits(300_000, seed).view(np.float32)
    ours = narrow(values, "BF16", np.empty(values.size, np.uint16), np.empty(values.size, np.uint32))
    assert np.array_equal(ours, torch_bits(values, torch.bfloat16))
    # one element at a time too (torch's scalar tail), for the edge cases
    for value in EDGES.view(np.float32):
        one = narrow(np.array([value]), "BF16", np.empty(1, np.uint16), np.empty(1, np.uint32))
        assert one[0] == torch_bits(np.array([value]), torch.bfloat16)[0], hex(value.view(np.uint32))


@pytest.mark.parametrize("seed", [0, 1])
def test_float16_narrowing_equals_torch_bit_for_bit(seed):
    values = random_bits(300_000, seed).view(np.float32)
    ours = narrow(values, "F16", np.empty(values.size, np.uint16).view(np.float16), None)
    assert np.array_equal(ours.view(np.uint16), torch_bits(values, torch.float16))
    near = (np.random.default_rng(seed).standard_normal(200_000) * 2.0 ** np.arange(-30, 20, 0.00025)).astype(np.float32)
    assert np.array_equal(narrow(near, "F16", np.empty(near.size, np.float16), None).view(np.uint16),
                          torch_bits(near, torch.float16))


def test_widening_is_exact():
    bits = random_bits(100_000, 2)
    high = (bits >> 16).astype(np.uint16)
    wide = widen(high, "BF16", np.empty(high.size, np.float32))
    expected = torch.from_numpy(high.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    assert np.array_equal(wide.view(np.uint32), expected.view(np.uint32))
    as64 = widen(high, "BF16", np.empty(high.size, np.float64))
    assert np.array_equal(as64, expected.astype(np.float64), equal_nan=True)
    half = high.view(np.float16)
    ours, theirs = widen(half, "F16", np.empty(half.size, np.float32)), torch.from_numpy(half.copy()).float().numpy()
    number = ~np.isnan(theirs)  # a NaN stays NaN; its payload is not part of the definition
    assert np.array_equal(ours[number].view(np.uint32), theirs[number].view(np.uint32))
    assert np.isnan(ours[~number]).all() and (~number).sum() > 100
    same = np.arange(4, dtype=np.float32)
    assert widen(same, "F32", np.empty(4, np.float32)) is same


def test_accumulation_is_multiply_then_add_each_rounded():
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((4, 50_000)).astype(np.float32) * 10.0 ** rng.uniform(-8, 8, (4, 50_000))
    xs = xs.astype(np.float32)
    weights = [0.1, 0.2, 0.3, 0.4]
    acc, tmp = np.empty(50_000, np.float32), np.empty(50_000, np.float32)
    for i, (x, w) in enumerate(zip(xs, weights)):
        accumulate(acc, x, w, tmp, first=i == 0)
    # the definition, one rounding per operation: exact in float64, then rounded to float32
    expected = (np.float64(np.float32(weights[0])) * xs[0]).astype(np.float32)
    for x, w in zip(xs[1:], weights[1:]):
        product = (np.float64(np.float32(w)) * x.astype(np.float64)).astype(np.float32)
        expected = (expected.astype(np.float64) + product.astype(np.float64)).astype(np.float32)
    assert np.array_equal(acc, expected)
    # and it is not torch's fused addcmul_: the two definitions differ in the last bit somewhere
    fused = torch.zeros(50_000)
    for x, w in zip(xs, weights):
        fused.addcmul_(torch.from_numpy(x), torch.tensor(w, dtype=torch.float32))
    assert not np.array_equal(acc, fused.numpy())


def test_float64_sums_narrow_through_float32():
    """As torch does: 1 + 2⁻⁸ + 2⁻⁴⁰ is 1 + 2⁻⁸ in float32, a tie that bf16 rounds to even (1.0), where a
    direct rounding of the float64 value would give 1 + 2⁻⁷."""
    values = np.array([1 + 2.0**-8 + 2.0**-40, np.nan, 1e300], np.float64)
    assert narrow(values, "F32", np.empty(3, np.float32), None).tolist()[0] == np.float32(1 + 2.0**-8)
    bf16 = narrow(values, "BF16", np.empty(3, np.uint16), np.empty(3, np.uint32))
    assert bf16[0] == 0x3F80  # 1.0, not 0x3F81 (1 + 2⁻⁷)
    finite = np.isfinite(values)  # torch's float64 → bf16 (NaN: another payload than its float32 path's)
    assert np.array_equal(bf16[finite], torch_bits(values, torch.bfloat16)[finite])
    assert np.array_equal(bf16, torch_bits(values.astype(np.float32), torch.bfloat16))


def test_all_finite():
    assert all_finite(np.array([1.0, -3.0], np.float32), "F32")
    assert not all_finite(np.array([1.0, np.inf], np.float16), "F16")
    assert not all_finite(np.array([0x3F80, 0x7FC0], np.uint16), "BF16")
    assert all_finite(np.array([0x3F80, 0xFF7F], np.uint16), "BF16")
