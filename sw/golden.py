"""Bit-exact NumPy golden model of the qaccel arithmetic.

This module **is the specification** of every arithmetic block in qaccel.
Each hardware block (systolic INT8 array, DSP-packed multipliers,
requantization pipeline, XNOR-popcount binary engine, threshold unit) is
tested for bit-for-bit equality against the function here that models it.
When the hardware and this module disagree, the hardware is wrong, or this
module is changed on purpose, with its tests, first.

Everything is vectorized NumPy (no Python loop over elements; some functions
loop over chunks to bound memory). Requires NumPy >= 2.0 (``np.bitwise_count``
and NEP 50 integer comparison semantics). Integer semantics are stated exactly:
where C leaves behaviour undefined (signed overflow) this module defines it,
and the hardware implements the same definition.

Conventions
-----------
Errors
    Wrong dtype raises :class:`TypeError` naming the dtype received. Wrong
    shape or out-of-range values raise :class:`ValueError` naming the
    offending shape or value. Functions documented as taking ``int8`` (or
    ``uint16``/``uint64``) require exactly that dtype, because they model
    hardware ports of that width. Functions documented as taking "int32
    values" accept any NumPy integer dtype (or Python ints) whose values lie
    in the int32 range, and raise :class:`ValueError` otherwise.
Scalars
    Functions whose result would be 0-d return a NumPy scalar
    (e.g. ``np.int32``) instead of a 0-d array.

INT8 GEMM
---------
``gemm_int8`` accumulates int8 x int8 products into a 32-bit accumulator.
The result is the exact integer sum reduced modulo 2**32 into int32 two's
complement, like a hardware accumulator that wraps. No wrap can occur for
``K <= GEMM_INT8_MAX_K_NO_WRAP = 131071``; at ``K = 131072`` the single
worst case (every product ``(-128) * (-128) = 2**14``) sums to ``2**31``
and wraps to ``INT32_MIN``.

Requantization (gemmlowp / TFLite "double rounding")
----------------------------------------------------
``srdhm`` (SaturatingRoundingDoublingHighMul), ``rounding_divide_by_pot``
(RoundingDivideByPOT) and ``multiply_by_quantized_multiplier`` follow the
gemmlowp reference code exactly, including C's truncating division in
SRDHM. ``quantize_multiplier`` follows TFLite's ``QuantizeMultiplier``
(round half away from zero, the ``M0 == 2**31`` renormalisation, and flushing
multipliers whose shift would be below -31 to ``(0, 0)``).

**Left-shift saturation rule (defined here; undefined behaviour in C).**
With ``shift > 0``, MultiplyByQuantizedMultiplier first computes
``x * 2**shift`` in int32. In C that overflows (undefined behaviour) when the
product leaves the int32 range. qaccel defines::

    x_shifted = clamp(x * 2**shift, INT32_MIN, INT32_MAX)

i.e. the left shift **saturates** to int32 before SRDHM. The hardware
implements the same rule. For products that fit, this equals the reference.

Shift convention: ``shift > 0`` is a left shift (multiplier >= 1),
``shift < 0`` a right shift. The accepted range is ``[-31, 30]``
(``SHIFT_MIN``, ``SHIFT_MAX``); ``m0`` must lie in ``[0, 2**31 - 1]``.

Binary layers
-------------
Encoding: bit 1 means +1, bit 0 means -1. Packed layout: **uint64 words;
element ``i`` of the last axis goes to word ``i // 64``, bit ``i % 64``
(least significant bit first).** Padding bits (positions ``>= K`` in the last
word) are written as 0 by :func:`pack_bits` and are ignored (masked) by every
consumer whatever they hold. Consequently ``words.astype('<u8').view(np.uint8)``
equals ``np.packbits(bits, axis=-1, bitorder="little")`` zero-padded to a
multiple of 8 bytes, on any host (on a little-endian host ``words.view(np.uint8)``
directly). The binary dot product over ``K`` valid bits is
``2 * popcount(xnor(a, w)) - K``.

DSP packing models
------------------
``dsp48e2_pair`` and ``dsp48e2_pair_accumulate`` model the Xilinx WP486
trick: two int8 products sharing an operand computed by one DSP48E2
(27-bit pre-adder, 27x18 multiplier, 48-bit P register), with the
borrow correction of the high field. ``sb_mac16_dual8x8`` models the
Lattice iCE40 SB_MAC16 in dual signed 8x8 mode, mirroring Yosys'
simulation model (``share/ice40/cells_sim.v``).
"""

from __future__ import annotations

import operator

import numpy as np

__all__ = [
    "INT32_MIN",
    "INT32_MAX",
    "SHIFT_MIN",
    "SHIFT_MAX",
    "GEMM_INT8_MAX_K_NO_WRAP",
    "DSP48E2_PAIR_MAX_ACCUMULATIONS",
    "DSP48E2_PAIR_MAX_ACCUMULATIONS_SYMMETRIC",
    "gemm_int8",
    "srdhm",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
    "requantize",
    "pack_bits",
    "unpack_bits",
    "binary_dot",
    "binary_gemm",
    "thresholds",
    "dsp48e2_pair",
    "dsp48e2_pair_accumulate",
    "dsp48e2_pair_accumulation_safe",
    "sb_mac16_pack_port",
    "sb_mac16_dual8x8_o",
    "sb_mac16_dual8x8",
]

#: Smallest int32 value, ``-2**31``.
INT32_MIN = -(2**31)
#: Largest int32 value, ``2**31 - 1``.
INT32_MAX = 2**31 - 1
#: Smallest accepted requantization shift (a right shift by 31).
SHIFT_MIN = -31
#: Largest accepted requantization shift (a left shift by 30).
SHIFT_MAX = 30
#: Largest K for which ``gemm_int8`` can never wrap (``K * 2**14 < 2**31``).
GEMM_INT8_MAX_K_NO_WRAP = 131071
#: Products (worst case ``(-128) * (-128) = 2**14``) that may be summed in one
#: DSP48E2 P register before the 18-bit low field overflows.
DSP48E2_PAIR_MAX_ACCUMULATIONS = 7
#: Same limit when all inputs lie in ``[-127, 127]`` (worst product ``127**2``).
DSP48E2_PAIR_MAX_ACCUMULATIONS_SYMMETRIC = 8

# K chunk for gemm_int8: float64 sums of int8 products are exact while
# K * 2**14 <= 2**53 (every partial sum, in any order, is an integer of at
# most that magnitude).
_GEMM_K_CHUNK = 2**39
# Element budget of temporaries in chunked functions (elements, not bytes).
_CHUNK_ELEMENTS = 1 << 21
# Chunk of elementwise int64 pipelines (requantization), in elements.
_ELEMWISE_CHUNK = 1 << 16
# Row-chunk budget of binary_gemm's (rows, N) temporaries (elements).
_GEMM_BIN_ELEMENTS = 1 << 16


# --------------------------------------------------------------------------
# Input validation helpers
# --------------------------------------------------------------------------


def _exact_dtype(x, name, dtype):
    """Return ``x`` as an ndarray, requiring exactly ``dtype``."""
    arr = np.asarray(x)
    if arr.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got dtype {arr.dtype}")
    return arr


def _int_array(x, name, lo=None, hi=None, to_int64=True):
    """Return ``x`` as an ndarray (int64 unless ``to_int64`` is False) after
    checking dtype and value range.

    Any NumPy integer dtype (not bool) is accepted; ``lo``/``hi`` are
    inclusive bounds checked on the values.
    """
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must have an integer dtype, got dtype {arr.dtype}")
    if hi is None:
        hi = np.iinfo(np.int64).max
    if arr.size:
        mn = arr.min()
        mx = arr.max()
        if lo is not None and mn < lo:
            raise ValueError(f"{name} must be >= {lo}, got value {int(mn)}")
        if mx > hi:
            raise ValueError(f"{name} must be <= {hi}, got value {int(mx)}")
    return arr.astype(np.int64, copy=False) if to_int64 else arr


def _int_scalar(x, name, lo, hi):
    """Validate a Python/NumPy integer scalar in ``[lo, hi]``; return int."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(x).__name__} {x!r}")
    v = operator.index(x)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def _ret(arr):
    """Return a NumPy scalar for 0-d arrays, the array otherwise."""
    return arr[()] if arr.ndim == 0 else arr


def _wrap_signed(x, bits):
    """Reduce int64 ``x`` modulo ``2**bits`` into the signed ``bits``-bit range."""
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


# --------------------------------------------------------------------------
# INT8 GEMM
# --------------------------------------------------------------------------


def gemm_int8(a, w):
    """INT8 matrix product with a wrapping 32-bit accumulator.

    Computes ``acc[m, n] = sum_k a[m, k] * w[k, n]`` exactly, then reduces it
    modulo ``2**32`` into int32 two's complement (the behaviour of a 32-bit
    hardware accumulator). No wrap can happen for
    ``K <= GEMM_INT8_MAX_K_NO_WRAP`` (131071).

    Parameters
    ----------
    a : ndarray of int8, shape (M, K)
        Activations.
    w : ndarray of int8, shape (K, N)
        Weights.

    Returns
    -------
    ndarray of int32, shape (M, N)
        Wrapped accumulators. Empty dimensions are allowed (``K == 0`` gives
        zeros).

    Raises
    ------
    TypeError
        If ``a`` or ``w`` is not int8.
    ValueError
        If they are not 2-D or the inner dimensions differ.

    Notes
    -----
    Implemented as a float64 BLAS matmul, which is exact because every
    partial sum is an integer of magnitude at most ``K * 2**14 <= 2**53``;
    for larger K the product is computed in exact K chunks and summed
    modulo ``2**32``.
    """
    a = _exact_dtype(a, "a", np.int8)
    w = _exact_dtype(w, "w", np.int8)
    if a.ndim != 2 or w.ndim != 2:
        raise ValueError(f"a and w must be 2-D, got shapes {a.shape} and {w.shape}")
    m, k = a.shape
    k2, n = w.shape
    if k != k2:
        raise ValueError(f"inner dimensions differ: a is {a.shape}, w is {w.shape}")
    if k <= _GEMM_K_CHUNK:
        acc = (a.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    else:
        acc = np.zeros((m, n), dtype=np.int64)
        for k0 in range(0, k, _GEMM_K_CHUNK):
            k1 = k0 + _GEMM_K_CHUNK
            part = a[:, k0:k1].astype(np.float64) @ w[k0:k1].astype(np.float64)
            acc = _wrap_signed(acc + part.astype(np.int64), 32)
    if k > GEMM_INT8_MAX_K_NO_WRAP:
        acc = _wrap_signed(acc, 32)
    return acc.astype(np.int32)


# --------------------------------------------------------------------------
# Requantization (gemmlowp / TFLite)
# --------------------------------------------------------------------------


def _srdhm64(a, b):
    """SRDHM on validated int64 arrays holding int32 values; returns int64.

    Evaluated in the equivalent form ``min((a*b + 2**30) >> 31, INT32_MAX)``.
    Proof: for ``ab >= 0`` the reference is ``(ab + 2**30) // 2**31``. For
    ``ab < 0`` it is ``trunc((n + 1 - 2**31) / 2**31)`` with
    ``n = ab + 2**30 < 2**31``, a non-positive quotient, so it equals
    ``ceil((n + 1) / 2**31) - 1 = floor(n / 2**31)``. The only result above
    INT32_MAX is ``a == b == INT32_MIN`` (``2**62``), which the reference
    saturates to INT32_MAX. (The tests check this against a literal
    transcription of the reference.)
    """
    ab = np.asarray(a * b)  # |ab| <= 2**62: exact in int64 (asarray: 0-d stays an array)
    ab += 1 << 30
    ab >>= 31
    np.minimum(ab, INT32_MAX, out=ab)
    return ab


def _rdbpot64(x, e):
    """RoundingDivideByPOT on validated int64 arrays; returns int64.

    Evaluated as ``(x + h - ((x < 0) & (e > 0))) >> e`` with
    ``h = 2**(e-1)`` (0 for ``e == 0``), equal to the reference
    ``(x >> e) + ((x & mask) > (mask >> 1) + (x < 0))``: for ``x >= 0``
    both round half up; for ``x < 0`` the reference adds 1 iff
    ``rem >= h + 1``, i.e. ``floor((x + h - 1) / 2**e)``; for ``e == 0``
    both are ``x``. (The tests check this against a literal transcription.)
    """
    h = (np.int64(1) << e) >> 1
    neg = np.asarray((x >> 63) & (e > 0))  # 1 where x < 0 and e > 0, else 0 (-1 & 1 == 1)
    out = np.subtract(x, neg, out=neg)
    out += h
    out >>= e
    return out


def _mbqm64(x, m0, shift):
    """MultiplyByQuantizedMultiplier on validated int64 arrays; returns int64."""
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    # qaccel rule: the left shift saturates to int32 (|x << 30| < 2**62).
    xl = np.asarray(x << left)
    np.clip(xl, INT32_MIN, INT32_MAX, out=xl)
    return _rdbpot64(_srdhm64(xl, m0), right)


def srdhm(a, b):
    """SaturatingRoundingDoublingHighMul (gemmlowp), elementwise.

    Exactly the gemmlowp reference::

        if a == b == INT32_MIN: return INT32_MAX
        ab = int64(a) * b
        nudge = 2**30 if ab >= 0 else 1 - 2**30
        return (ab + nudge) / 2**31      # C division: truncates toward zero

    This equals ``floor((a*b + 2**30) / 2**31)`` (round to nearest, ties
    toward +infinity, as ARM ``SQRDMULH``) except for the saturated case; the
    hardware may use that form.

    Parameters
    ----------
    a, b : array_like of int32 values
        Any integer dtype with values in the int32 range; broadcast together.

    Returns
    -------
    ndarray of int32 (or np.int32 scalar)
        Broadcast shape of ``a`` and ``b``.
    """
    a = _int_array(a, "a", INT32_MIN, INT32_MAX)
    b = _int_array(b, "b", INT32_MIN, INT32_MAX)
    return _ret(_srdhm64(a, b).astype(np.int32))


def rounding_divide_by_pot(x, exponent):
    """RoundingDivideByPOT (gemmlowp): ``x / 2**exponent``, ties away from zero.

    Exactly the gemmlowp reference::

        mask = 2**exponent - 1; rem = x & mask
        threshold = (mask >> 1) + (x < 0)
        return (x >> exponent) + (rem > threshold)   # >> is arithmetic

    Parameters
    ----------
    x : array_like of int32 values
        Any integer dtype with values in the int32 range.
    exponent : array_like of int
        Values in ``[0, 31]``; broadcast against ``x``.

    Returns
    -------
    ndarray of int32 (or np.int32 scalar)
        Broadcast shape of ``x`` and ``exponent``.
    """
    x = _int_array(x, "x", INT32_MIN, INT32_MAX)
    e = _int_array(exponent, "exponent", 0, 31)
    return _ret(_rdbpot64(x, e).astype(np.int32))


def multiply_by_quantized_multiplier(x, m0, shift):
    """MultiplyByQuantizedMultiplier (gemmlowp/TFLite) with qaccel's saturation rule.

    Computes approximately ``x * m0 * 2**(shift - 31)``::

        left = max(shift, 0); right = max(-shift, 0)
        x_shifted = clamp(x * 2**left, INT32_MIN, INT32_MAX)   # qaccel rule
        return RDBPOT(SRDHM(x_shifted, m0), right)

    **Saturation rule:** when ``x * 2**left`` does not fit in int32 (undefined
    behaviour in the C reference) it is saturated to ``INT32_MIN`` /
    ``INT32_MAX`` before SRDHM. The hardware implements the same rule.

    Parameters
    ----------
    x : array_like of int32 values, shape (..., N)
        Accumulators; any integer dtype with values in the int32 range.
    m0 : array_like of int, shape (N,) or scalar
        Per-channel (last axis) fixed-point multipliers in ``[0, 2**31 - 1]``
        (``quantize_multiplier`` yields ``[2**30, 2**31 - 1]`` or 0).
    shift : array_like of int, shape (N,) or scalar
        Per-channel exponents in ``[SHIFT_MIN, SHIFT_MAX] = [-31, 30]``;
        ``shift > 0`` is a left shift. ``m0`` and ``shift`` broadcast against
        ``x`` by ordinary NumPy rules (i.e. over its last axis).

    Returns
    -------
    ndarray of int32 (or np.int32 scalar)
        Broadcast shape of the inputs.
    """
    x = _int_array(x, "x", INT32_MIN, INT32_MAX, to_int64=False)
    m0 = _int_array(m0, "m0", 0, INT32_MAX)
    shift = _int_array(shift, "shift", SHIFT_MIN, SHIFT_MAX)
    return _ret(_chunked(lambda x, m, s: _mbqm64(x.astype(np.int64), m, s), np.int32, x, m0, shift))


def _broadcast_shape(*arrays):
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(f"shapes do not broadcast: {shapes}") from None


def _chunked(fn, out_dtype, *arrays):
    """Evaluate elementwise ``fn(*arrays)`` (broadcasting) into a new array of
    ``out_dtype``, in slices along axis 0 of the broadcast shape so that
    int64 temporaries stay cache-sized (``_ELEMWISE_CHUNK`` elements)."""
    shape = _broadcast_shape(*arrays)
    out = np.empty(shape, dtype=out_dtype)
    if len(shape) == 0 or out.size <= _ELEMWISE_CHUNK:
        out[...] = fn(*arrays)
        return out
    rows = max(1, _ELEMWISE_CHUNK // (out.size // shape[0]))
    padded = [a.reshape((1,) * (len(shape) - a.ndim) + a.shape) for a in arrays]
    for r0 in range(0, shape[0], rows):
        out[r0:r0 + rows] = fn(*(a if a.shape[0] == 1 else a[r0:r0 + rows] for a in padded))
    return out


def quantize_multiplier(real):
    """Quantize a real multiplier into ``(m0, shift)`` (TFLite ``QuantizeMultiplier``).

    ``real ~= m0 * 2**(shift - 31)`` with ``m0`` in ``[2**30, 2**31 - 1]``::

        q, shift = frexp(real)               # q in [0.5, 1)
        m0 = round(q * 2**31)                # half away from zero (std::round)
        if m0 == 2**31: m0 /= 2; shift += 1
        if shift < -31: m0 = shift = 0       # flush tiny multipliers to zero

    ``real == 0`` gives ``(0, 0)``.

    Parameters
    ----------
    real : array_like of float
        Finite, ``>= 0``; float or integer dtype, computed in float64.

    Returns
    -------
    m0 : ndarray of int32 (or np.int32 scalar for scalar input)
        Same shape as ``real``.
    shift : ndarray of int32 (or np.int32 scalar for scalar input)
        Same shape as ``real``; in ``[-31, 30]``.

    Raises
    ------
    TypeError
        If ``real`` is not of a real numeric dtype.
    ValueError
        If a value is negative, NaN or infinite, or so large
        (``>= 2**30`` after rounding) that ``shift`` would exceed 30.
    """
    arr = np.asarray(real)
    real_dtype = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    if arr.dtype == np.bool_ or not real_dtype:
        raise TypeError(f"real must have a real numeric dtype, got dtype {arr.dtype}")
    r = arr.astype(np.float64)
    bad = ~np.isfinite(r) | (r < 0)
    if bad.any():
        raise ValueError(f"real must be finite and >= 0, got value {r[bad].flat[0]}")
    q, e = np.frexp(r)
    # q * 2**31 is exact and has at most 22 fractional bits, so adding 0.5 is
    # exact too: floor(. + 0.5) is round-half-away-from-zero for q >= 0.
    m0 = np.floor(q * 2.0**31 + 0.5).astype(np.int64)
    e = e.astype(np.int64)
    renorm = m0 == 2**31
    m0 = np.where(renorm, m0 >> 1, m0)
    e = e + renorm
    tiny = e < -31
    m0 = np.where(tiny, 0, m0)
    e = np.where(tiny, 0, e)
    if (e > SHIFT_MAX).any():
        raise ValueError(
            f"real must be < 2**30 (shift would exceed {SHIFT_MAX}), got value {r[e > SHIFT_MAX].flat[0]}"
        )
    return _ret(m0.astype(np.int32)), _ret(e.astype(np.int32))


def requantize(acc, m0, shift, zp_out=0, act_min=-128, act_max=127):
    """Requantize int32 accumulators to int8 outputs.

    ``y = clamp(MBQM(acc, m0, shift) + zp_out, act_min, act_max)``, the
    addition done in wide integers (no wrap), MBQM being
    :func:`multiply_by_quantized_multiplier` (with its saturation rule).

    Parameters
    ----------
    acc : array_like of int32 values, shape (..., N)
        Accumulators (bias and input zero point already folded in).
    m0 : array_like of int, shape (N,) or scalar
        Multipliers in ``[0, 2**31 - 1]``.
    shift : array_like of int, shape (N,) or scalar
        Exponents in ``[-31, 30]``, ``> 0`` meaning left shift.
    zp_out : int or array_like of int, optional
        Output zero point(s) in ``[-128, 127]``, broadcasting like ``m0``.
    act_min, act_max : int, optional
        Clamp bounds with ``-128 <= act_min <= act_max <= 127``.

    Returns
    -------
    ndarray of int8 (or np.int8 scalar)
        Broadcast shape of the inputs.
    """
    lo = _int_scalar(act_min, "act_min", -128, 127)
    hi = _int_scalar(act_max, "act_max", -128, 127)
    if lo > hi:
        raise ValueError(f"act_min must be <= act_max, got act_min={lo}, act_max={hi}")
    x = _int_array(acc, "acc", INT32_MIN, INT32_MAX, to_int64=False)
    m0 = _int_array(m0, "m0", 0, INT32_MAX)
    shift = _int_array(shift, "shift", SHIFT_MIN, SHIFT_MAX)
    zp = _int_array(zp_out, "zp_out", -128, 127)

    def kernel(x, m0, shift, zp):
        y = np.asarray(_mbqm64(x.astype(np.int64), m0, shift) + zp)  # int64: no wrap
        return np.clip(y, lo, hi, out=y)

    return _ret(_chunked(kernel, np.int8, x, m0, shift, zp))


# --------------------------------------------------------------------------
# Binary layers
# --------------------------------------------------------------------------


def _n_words(k):
    return (k + 63) // 64


def _valid_mask(k, n_words):
    """uint64 mask per word: 1 for the ``k`` valid bit positions."""
    mask = np.full(n_words, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    if n_words and k % 64:
        mask[-1] = np.uint64((1 << (k % 64)) - 1)
    return mask


def _check_words(words, name, k):
    words = _exact_dtype(words, name, np.uint64)
    if words.ndim < 1:
        raise ValueError(f"{name} must have at least 1 dimension, got shape {words.shape}")
    if words.shape[-1] != _n_words(k):
        raise ValueError(
            f"{name} last axis must hold ceil(k/64) = {_n_words(k)} words for k={k}, got shape {words.shape}"
        )
    return words


def pack_bits(x):
    """Pack ±1 values into uint64 words along the last axis.

    Element ``i`` of the last axis becomes bit ``i % 64`` of word ``i // 64``
    (LSB first); +1 is bit 1, -1 is bit 0; padding bits are 0. The bytes of
    the result in little-endian order (``words.astype('<u8').view(np.uint8)``)
    equal ``np.packbits(x == 1, axis=-1, bitorder="little")`` zero-padded to
    a multiple of 8 bytes.

    Parameters
    ----------
    x : array_like of int, shape (..., K)
        Values in {-1, +1}; any integer dtype. ``K`` may be 0.

    Returns
    -------
    ndarray of uint64, shape (..., ceil(K / 64))

    Raises
    ------
    TypeError
        If ``x`` is not of an integer dtype.
    ValueError
        If ``x`` is 0-d or holds a value other than -1 or +1.
    """
    x = np.asarray(x)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"x must have an integer dtype holding -1/+1, got dtype {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"x must have at least 1 dimension, got shape {x.shape}")
    pos = x == 1
    ok = pos | (x == -1)
    if not ok.all():
        raise ValueError(f"x must hold only -1 and +1, got value {x[~ok].flat[0]}")
    k = x.shape[-1]
    n_words = _n_words(k)
    packed = np.packbits(pos, axis=-1, bitorder="little")
    buf = np.zeros(x.shape[:-1] + (8 * n_words,), dtype=np.uint8)
    buf[..., : packed.shape[-1]] = packed
    return buf.view("<u8").astype(np.uint64)


def unpack_bits(words, k):
    """Unpack uint64 words into ±1 values (inverse of :func:`pack_bits`).

    Parameters
    ----------
    words : ndarray of uint64, shape (..., ceil(k / 64))
        Packed bits, layout as in :func:`pack_bits`; padding bits ignored.
    k : int
        Number of valid elements, ``>= 0``.

    Returns
    -------
    ndarray of int8, shape (..., k)
        +1 for set bits, -1 for clear bits.
    """
    k = _int_scalar(k, "k", 0, INT32_MAX)
    words = _check_words(words, "words", k)
    le = np.ascontiguousarray(words.astype("<u8"))
    bits = np.unpackbits(le.view(np.uint8), axis=-1, count=k, bitorder="little")
    return bits.astype(np.int8) * np.int8(2) - np.int8(1)


def binary_dot(a_bits, w_bits, k):
    """Binary (±1) dot product of packed vectors: ``2 * popcount(xnor(a, w)) - k``.

    Only the ``k`` valid bit positions are counted: the padding bits of the
    last word are masked whatever they hold.

    Parameters
    ----------
    a_bits, w_bits : ndarray of uint64, shape (..., ceil(k / 64))
        Packed operands (layout of :func:`pack_bits`); leading axes broadcast.
    k : int
        Number of valid elements, ``0 <= k <= 2**31 - 1``.

    Returns
    -------
    ndarray of int32 (or np.int32 scalar)
        Broadcast leading shape; values in ``[-k, k]`` with the parity of k.
    """
    k = _int_scalar(k, "k", 0, INT32_MAX)
    a = _check_words(a_bits, "a_bits", k)
    w = _check_words(w_bits, "w_bits", k)
    _broadcast_shape(a, w)
    mask = _valid_mask(k, _n_words(k))
    agree = np.bitwise_count(~(a ^ w) & mask).sum(axis=-1, dtype=np.int64)
    return _ret((2 * agree - k).astype(np.int32))


def binary_gemm(a_bits, w_bits, k):
    """Binary (±1) matrix product of packed operands.

    ``out[m, n] = binary_dot(a_bits[m], w_bits[n], k)``.

    Parameters
    ----------
    a_bits : ndarray of uint64, shape (M, ceil(k / 64))
        Packed activations, one row per output row.
    w_bits : ndarray of uint64, shape (N, ceil(k / 64))
        Packed weights, one row per output channel (packed along K).
    k : int
        Number of valid elements per row, ``0 <= k <= 2**31 - 1``.

    Returns
    -------
    ndarray of int32, shape (M, N)

    Notes
    -----
    Computed as ``k - 2 * popcount(a ^ w)`` on operands whose padding bits
    are cleared first (equal to the xnor form), word by word, chunked over
    M so that temporaries stay around ``2**16`` elements.
    """
    k = _int_scalar(k, "k", 0, INT32_MAX)
    a = _check_words(a_bits, "a_bits", k)
    w = _check_words(w_bits, "w_bits", k)
    if a.ndim != 2 or w.ndim != 2:
        raise ValueError(f"a_bits and w_bits must be 2-D, got shapes {a.shape} and {w.shape}")
    n_words = _n_words(k)
    mask = _valid_mask(k, n_words)
    a = a & mask
    w = w & mask
    m, n = a.shape[0], w.shape[0]
    out = np.empty((m, n), dtype=np.int32)
    if m == 0 or n == 0:
        return out
    if n_words == 0:
        out[...] = 0
        return out
    # Mismatches are counted word by word into an (rows, N) accumulator, the
    # row chunk keeping the (rows, N) temporaries small (cache-sized).
    rows = max(1, _GEMM_BIN_ELEMENTS // n)
    wt = np.ascontiguousarray(w.T)  # (W, N)
    at = np.ascontiguousarray(a.T)  # (W, M)
    xor = np.empty((min(rows, m), n), dtype=np.uint64)
    cnt = np.empty((min(rows, m), n), dtype=np.uint8)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        h = r1 - r0
        diff = np.zeros((h, n), dtype=np.int32)
        for j in range(n_words):
            np.bitwise_xor(at[j, r0:r1, None], wt[j, None, :], out=xor[:h])
            np.bitwise_count(xor[:h], out=cnt[:h])
            diff += cnt[:h]
        out[r0:r1] = k - 2 * diff
    return out


def thresholds(acc, t):
    """Multi-threshold activation: count the thresholds each value reaches.

    ``out[..., n] = sum_i [acc[..., n] >= t[n, i]]`` (per channel) or
    ``sum_i [acc[..., n] >= t[i]]`` (shared). A value equal to a threshold
    reaches it. Thresholds need not be sorted. Real-valued thresholds must
    be rounded up first (``acc >= t`` iff ``acc >= ceil(t)`` for integer acc).

    Parameters
    ----------
    acc : array_like of int, shape (..., N)
        Integer accumulators (any integer dtype).
    t : array_like of int, shape (N, T) or (T,)
        Per-channel thresholds (first axis matches the last axis of ``acc``)
        or thresholds shared by all channels. ``T`` may be 0.

    Returns
    -------
    ndarray of int32, shape (..., N)
        Values in ``[0, T]``.
    """
    acc = _int_array(acc, "acc", np.iinfo(np.int64).min)
    t = _int_array(t, "t", np.iinfo(np.int64).min)
    if acc.ndim < 1:
        raise ValueError(f"acc must have at least 1 dimension (..., N), got shape {acc.shape}")
    n = acc.shape[-1]
    if t.ndim == 1:
        t2 = np.broadcast_to(t, (n, t.shape[0]))
    elif t.ndim == 2:
        if t.shape[0] != n:
            raise ValueError(
                f"per-channel thresholds must have shape (N, T) with N={n} "
                f"(last axis of acc {acc.shape}), got {t.shape}"
            )
        t2 = t
    else:
        raise ValueError(f"t must have shape (N, T) or (T,), got {t.shape}")
    n_t = t2.shape[1]
    flat = acc.reshape(int(np.prod(acc.shape[:-1], dtype=np.int64)), n)
    out = np.zeros(flat.shape, dtype=np.int32)
    if n_t and flat.size:
        rows = max(1, _CHUNK_ELEMENTS // (n * n_t))
        for r0 in range(0, flat.shape[0], rows):
            blk = flat[r0:r0 + rows]
            out[r0:r0 + rows] = (blk[:, :, None] >= t2[None, :, :]).sum(axis=-1, dtype=np.int32)
    return out.reshape(acc.shape)


# --------------------------------------------------------------------------
# DSP packing models
# --------------------------------------------------------------------------


def _dsp48e2_ad(a, b):
    """Pre-adder: AD = (a << 18) + b, wrapped to 27 bits signed."""
    return _wrap_signed((a.astype(np.int64) << 18) + b.astype(np.int64), 27)


def _dsp48e2_split(p):
    """Split a 48-bit signed P into (high, low) fields with the borrow correction."""
    low = ((p & 0x3FFFF) ^ 0x20000) - 0x20000  # P[17:0] as signed 18-bit
    high = (p >> 18) + ((p >> 17) & 1)  # arithmetic shift + P[17]
    return high.astype(np.int32), low.astype(np.int32)


def dsp48e2_pair(a, b, c):
    """Two int8 products sharing ``c`` in one DSP48E2 (WP486 packing).

    Datapath modelled::

        AD = (a << 18) + b            # 27-bit pre-adder, wraps to 27 bits signed
        P  = AD * c                   # 27x18 signed multiply, wraps to 48 bits signed
        low  = P[17:0] as signed 18-bit                   # = b*c
        high = (P >> 18) + P[17]      # arithmetic shift, borrow-corrected = a*c

    Exact for all int8 inputs (checked exhaustively by the tests).

    Parameters
    ----------
    a, b, c : ndarray of int8
        ``a`` on the A port (shifted by 18), ``b`` on the D port, ``c`` the
        shared operand on the B port; broadcast together.

    Returns
    -------
    ac : ndarray of int32 (or np.int32 scalar)
        High field, ``a * c``.
    bc : ndarray of int32 (or np.int32 scalar)
        Low field, ``b * c``.
    """
    a = _exact_dtype(a, "a", np.int8)
    b = _exact_dtype(b, "b", np.int8)
    c = _exact_dtype(c, "c", np.int8)
    p = _wrap_signed(_dsp48e2_ad(a, b) * c.astype(np.int64), 48)
    high, low = _dsp48e2_split(p)
    return _ret(high), _ret(low)


def dsp48e2_pair_accumulate(a, b, c):
    """Accumulate L packed products in the DSP48E2 P register, split once.

    Models ``P = 0; for l in range(L): P = wrap48(P + AD[l] * c[l])`` (AD and
    the product as in :func:`dsp48e2_pair`), then the same field split and
    borrow correction as :func:`dsp48e2_pair` on the final P. The result is
    what the DSP delivers: equal to ``(sum a*c, sum b*c)`` only while the low
    field sum stays in ``[-2**17, 2**17 - 1]`` -- see
    :func:`dsp48e2_pair_accumulation_safe`. Beyond that it is wrong, exactly
    as the hardware is (e.g. eight ``(-128)*(-128)`` products give
    ``(8 * 2**14 + 1, -2**17)``).

    Parameters
    ----------
    a, b, c : ndarray of int8
        Broadcast together; axis 0 of the broadcast shape (length L >= 0)
        is the accumulation axis.

    Returns
    -------
    ac : ndarray of int32
        High field, shape = broadcast shape without axis 0.
    bc : ndarray of int32
        Low field, same shape.
    """
    a = _exact_dtype(a, "a", np.int8)
    b = _exact_dtype(b, "b", np.int8)
    c = _exact_dtype(c, "c", np.int8)
    shape = _broadcast_shape(a, b, c)
    if len(shape) < 1:
        raise ValueError("a, b, c must have at least 1 dimension (the accumulation axis 0)")
    prod = _dsp48e2_ad(a, b) * c.astype(np.int64)
    prod = np.broadcast_to(prod, shape)
    # Wrapping every step equals wrapping the (mod 2**64) total once: 2**48 | 2**64.
    p = _wrap_signed(prod.sum(axis=0, dtype=np.int64), 48)
    high, low = _dsp48e2_split(p)
    return _ret(high), _ret(low)


def dsp48e2_pair_accumulation_safe(length, symmetric=False):
    """Whether ``length`` packed products may be accumulated before splitting.

    The low field holds ``[-2**17, 2**17 - 1]``. The worst product is
    ``(-128) * (-128) = 2**14``, so at most
    ``DSP48E2_PAIR_MAX_ACCUMULATIONS = 7`` products are always exact (8
    overflow only when all eight are ``(-128) * (-128)``; the worst negative
    product ``-128 * 127`` still fits eight times). With all inputs in
    ``[-127, 127]`` (``symmetric=True``) the worst magnitude is ``127**2``
    for either sign and ``DSP48E2_PAIR_MAX_ACCUMULATIONS_SYMMETRIC = 8``
    products are exact (9 are not).

    Parameters
    ----------
    length : int
        Number of products accumulated (``>= 0``).
    symmetric : bool, optional
        True if every input lies in ``[-127, 127]``.

    Returns
    -------
    bool
        True iff every input combination of that length is exact.
    """
    length = _int_scalar(length, "length", 0, np.iinfo(np.int64).max)
    limit = DSP48E2_PAIR_MAX_ACCUMULATIONS_SYMMETRIC if symmetric else DSP48E2_PAIR_MAX_ACCUMULATIONS
    return length <= limit


def sb_mac16_pack_port(hi, lo):
    """Build a 16-bit SB_MAC16 A or B port word from two int8 halves.

    Parameters
    ----------
    hi, lo : ndarray of int8
        Upper byte (bits 15:8) and lower byte (bits 7:0); broadcast together.

    Returns
    -------
    ndarray of uint16 (or np.uint16 scalar)
        ``(hi & 0xFF) << 8 | (lo & 0xFF)``.
    """
    hi = _exact_dtype(hi, "hi", np.int8)
    lo = _exact_dtype(lo, "lo", np.int8)
    return _ret((hi.view(np.uint8).astype(np.uint16) << 8) | lo.view(np.uint8).astype(np.uint16))


def sb_mac16_dual8x8_o(a_port, b_port):
    """Output word O of an iCE40 SB_MAC16 in dual signed 8x8 mode.

    Modelled parameters: ``MODE_8x8=1``, ``A_SIGNED=1``, ``B_SIGNED=1``,
    ``TOPOUTPUT_SELECT=2``, ``BOTOUTPUT_SELECT=2`` (the 8x8 products,
    unregistered with ``TOP_8x8_MULT_REG=BOT_8x8_MULT_REG=0`` or one cycle
    later with them set to 1; the values are identical). As in Yosys'
    ``share/ice40/cells_sim.v``::

        Ah = {8{A[15]}, A[15:8]}; Bh = {8{B[15]}, B[15:8]}
        Al = {8{A[7]},  A[7:0]};  Bl = {8{B[7]},  B[7:0]}
        F = Ah * Bh  (16 bits);   G = Al * Bl  (16 bits)
        O = {F, G}                 # O[31:16] = top product, O[15:0] = bottom

    Each field is the exact signed int8 product as a 16-bit two's complement
    value (``(-128)*(-128) = 0x4000`` fits).

    Parameters
    ----------
    a_port, b_port : ndarray of uint16
        The A and B port words (see :func:`sb_mac16_pack_port`); broadcast.

    Returns
    -------
    ndarray of uint32 (or np.uint32 scalar)
        The O port word.
    """
    a = _exact_dtype(a_port, "a_port", np.uint16).astype(np.int64)
    b = _exact_dtype(b_port, "b_port", np.uint16).astype(np.int64)

    def sext8(v):  # low byte of v, sign-extended (a 16-bit {8{v[7]}, v[7:0]})
        return ((v & 0xFF) ^ 0x80) - 0x80

    f = (sext8(a >> 8) * sext8(b >> 8)) & 0xFFFF
    g = (sext8(a) * sext8(b)) & 0xFFFF
    return _ret(((f << 16) | g).astype(np.uint32))


def sb_mac16_dual8x8(a_hi, a_lo, b_hi, b_lo):
    """Two signed 8x8 products from one iCE40 SB_MAC16 (dual 8x8 mode).

    Packs ``A = {a_hi, a_lo}`` and ``B = {b_hi, b_lo}``, evaluates
    :func:`sb_mac16_dual8x8_o` and reads ``O[31:16]`` and ``O[15:0]`` as
    signed 16-bit fields.

    Parameters
    ----------
    a_hi, a_lo, b_hi, b_lo : ndarray of int8
        Port halves; broadcast together.

    Returns
    -------
    top : ndarray of int32 (or np.int32 scalar)
        ``a_hi * b_hi`` (from ``O[31:16]``).
    bottom : ndarray of int32 (or np.int32 scalar)
        ``a_lo * b_lo`` (from ``O[15:0]``).
    """
    o = np.asarray(sb_mac16_dual8x8_o(sb_mac16_pack_port(a_hi, a_lo), sb_mac16_pack_port(b_hi, b_lo)))
    o = o.astype(np.int64)
    top = (((o >> 16) ^ 0x8000) - 0x8000).astype(np.int32)
    bottom = (((o & 0xFFFF) ^ 0x8000) - 0x8000).astype(np.int32)
    return _ret(top), _ret(bottom)
