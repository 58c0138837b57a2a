"""The merger's arithmetic, defined bit for bit, in numpy (no torch): widen, accumulate, narrow.

A merged tensor is ``acc = w_1·θ_1``, then ``acc = acc + w_i·θ_i`` for i = 2..N in checkpoint
order: a **non-fused multiply-add**, each product and each sum one IEEE-754 round-to-nearest-even
operation in the accumulation dtype (float32, or float64). Inputs are widened exactly to that
dtype (bf16 → float32 by shifting its 16 bits up; float16 → float32 and float32 → float64 are
exact), each weight is rounded once to it. The sum is then narrowed to the output dtype:

- float32: kept (float64 sums are rounded to float32, round to nearest even);
- bfloat16: from float32, round to nearest even on the 16 high bits (ties to even, overflow to
  ±Inf, subnormals rounded like any other value), NaN becomes ``0xFFFF``: what torch's
  ``tensor.to(torch.bfloat16)`` writes on CPU (tested bit for bit against it);
- float16: from float32, IEEE round to nearest even (numpy's ``astype``), NaN keeps its sign
  and payload and is made quiet: what torch's ``tensor.to(torch.float16)`` writes;
- float64 sums of float64 inputs stay float64.

A bf16 or float16 output of a float64 sum is rounded to float32 first. Everything works on flat
arrays with caller-provided ``out`` buffers (bf16 travels as its ``uint16`` bits), so a merge
allocates nothing per tensor.

Example:
    >>> import numpy as np
    >>> a, b = np.array([1.0, 2.0], np.float32), np.array([3.0, -1.0], np.float32)
    >>> acc, tmp = np.empty(2, np.float32), np.empty(2, np.float32)
    >>> accumulate(acc, a, 0.25, tmp, first=True); accumulate(acc, b, 0.75, tmp, first=False)
    >>> acc.tolist()
    [2.5, -0.25]
    >>> bits = np.empty(2, np.uint16)
    >>> narrow(acc, "BF16", bits, np.empty(2, np.uint32)).tolist() == [0x4020, 0xBE80]
    True
    >>> widen(bits, "BF16", np.empty(2, np.float32)).tolist()
    [2.5, -0.25]
"""

from __future__ import annotations

import numpy as np

NUMPY_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
FLOAT_DTYPES = tuple(NUMPY_DTYPES)  # safetensors dtypes the merger sums; others are copied unchanged
ACCUMULATE_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
BF16_NAN = 0xFFFF
_F16_QUIET = 0x0200


def widen(raw: np.ndarray, st_dtype: str, out: np.ndarray) -> np.ndarray:
    """``raw`` (stored as ``st_dtype``, bf16 as uint16 bits) exactly in ``out``'s dtype; ``raw`` itself if
    it already has it. ``out`` is at least as long as ``raw``; the result may be a view of it."""
    if raw.dtype == out.dtype and st_dtype != "BF16":
        return raw
    out = out[:raw.size]
    if st_dtype == "BF16":
        wide = out if out.dtype == np.float32 else np.empty(raw.size, np.float32)
        np.left_shift(raw, 16, out=wide.view(np.uint32), dtype=np.uint32)
        if wide is not out:
            with np.errstate(invalid="ignore"):
                out[...] = wide
        return out
    with np.errstate(invalid="ignore"):
        out[...] = raw  # float16 -> float32/64 and float32 -> float64 are exact (NaN stays NaN)
    return out


def accumulate(acc: np.ndarray, x: np.ndarray, weight: float, tmp: np.ndarray, *, first: bool) -> None:
    """``acc = w·x`` (``first``) or ``acc = acc + w·x``, each operation rounded in ``acc``'s dtype.

    ``x`` has ``acc``'s dtype and length; ``tmp`` is scratch of that dtype, at least as long."""
    w = acc.dtype.type(weight)
    if first:
        np.multiply(x, w, out=acc)
        return
    tmp = tmp[:acc.size]
    np.multiply(x, w, out=tmp)
    np.add(acc, tmp, out=acc)


def narrow(acc: np.ndarray, st_dtype: str, out: np.ndarray, work: np.ndarray) -> np.ndarray:
    """``acc`` (float32 or float64) rounded to ``st_dtype`` as defined above; the result may be ``acc``
    itself or a view of ``out`` (``st_dtype``'s numpy dtype), ``work`` is uint32 scratch (bf16 only)."""
    if NUMPY_DTYPES[st_dtype] == acc.dtype:
        return acc
    n = acc.size
    if acc.dtype == np.float64:  # a float64 sum goes through float32 (a copy: a rare combination)
        with np.errstate(over="ignore"):
            if st_dtype == "F32":
                out[:n] = acc
                return out[:n]
            acc = acc.astype(np.float32)
    out = out[:n]
    if st_dtype == "BF16":
        return _bf16_bits(acc, out, work[:n])
    return _float16(acc, out)


def _bf16_bits(x: np.ndarray, out: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 → bf16 bits: ``(u + 0x7FFF + ((u >> 16) & 1)) >> 16``; NaN → 0xFFFF."""
    nan = np.isnan(x)
    any_nan = nan.any()
    u = x.view(np.uint32)
    np.right_shift(u, 16, out=work)
    np.bitwise_and(work, 1, out=work)
    np.add(work, 0x7FFF, out=work)
    np.add(work, u, out=work)  # wraps only for NaN bit patterns, replaced below
    np.right_shift(work, 16, out=work)
    out[...] = work
    if any_nan:
        out[nan] = BF16_NAN
    return out


def _float16(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """float32 → float16, IEEE round to nearest even; a NaN keeps sign and payload, made quiet."""
    with np.errstate(over="ignore", invalid="ignore"):
        out[...] = x
    nan = np.isnan(x)
    if nan.any():
        u = x.view(np.uint32)[nan]
        out.view(np.uint16)[nan] = (((u >> 16) & 0x8000) | 0x7C00 | _F16_QUIET | ((u >> 13) & 0x3FF)).astype(np.uint16)
    return out


def all_finite(values: np.ndarray, st_dtype: str) -> bool:
    """Whether every element of ``values`` (``st_dtype``, bf16 as bits) is finite.

    >>> all_finite(np.array([0x7F7F, 0xFF80], np.uint16), "BF16")
    False
    """
    if st_dtype == "BF16":
        return not np.any(np.bitwise_and(values, 0x7F80) == 0x7F80)
    return bool(np.isfinite(values).all())


__all__ = ["ACCUMULATE_DTYPES", "FLOAT_DTYPES", "NUMPY_DTYPES", "accumulate", "all_finite", "narrow", "widen"]
