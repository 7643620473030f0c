"""Tests of the golden model (qaccel.sw.golden), the bit-exact specification.

The requantization functions are checked against a plain Python-int
transcription of the gemmlowp / TFLite reference written below; the DSP
packing models exhaustively against plain integer products; the binary
layer against ±1 integer dot products.
"""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qaccel.sw import golden

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# Deterministic, bounded hypothesis runs (the file must stay fast).
SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ==========================================================================
# Python-int transcription of gemmlowp / TFLite (scalar, arbitrary precision)
# ==========================================================================


def c_div(n: int, d: int) -> int:
    """C integer division: truncates toward zero."""
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d > 0) else -q


def ref_srdhm(a: int, b: int) -> int:
    overflow = a == b and a == INT32_MIN
    if overflow:
        return INT32_MAX
    ab_64 = a * b
    nudge = (1 << 30) if ab_64 >= 0 else (1 - (1 << 30))
    return c_div(ab_64 + nudge, 1 << 31)


def ref_rdbpot(x: int, exponent: int) -> int:
    assert 0 <= exponent <= 31
    mask = (1 << exponent) - 1
    remainder = x & mask  # Python & on negative ints = two's complement bits
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)  # arithmetic shift


def ref_mbqm(x: int, m0: int, shift: int) -> int:
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    shifted = x * (1 << left)
    # qaccel rule: saturate the left-shifted value to int32.
    shifted = max(INT32_MIN, min(INT32_MAX, shifted))
    return ref_rdbpot(ref_srdhm(shifted, m0), right)


def ref_quantize_multiplier(real: float) -> tuple[int, int]:
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    scaled = Fraction(q) * (1 << 31)  # exact
    q_fixed = math.floor(scaled + Fraction(1, 2))  # std::round: half away from zero (q > 0)
    assert q_fixed <= (1 << 31)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    assert q_fixed <= INT32_MAX
    if shift < -31:
        shift = 0
        q_fixed = 0
    return q_fixed, shift


def ref_requantize(acc, m0, shift, zp, lo, hi):
    return max(lo, min(hi, ref_mbqm(acc, m0, shift) + zp))


def wrap32(x):
    return ((np.asarray(x, dtype=np.int64) + 2**31) % 2**32) - 2**31


# Strategies --------------------------------------------------------------

int32s = st.one_of(
    st.sampled_from([INT32_MIN, INT32_MIN + 1, -(2**30), -1, 0, 1, 2**30, INT32_MAX - 1, INT32_MAX]),
    st.integers(INT32_MIN, INT32_MAX),
    st.integers(-1000, 1000),
)
m0s = st.one_of(
    st.sampled_from([0, 1, 2**30, 2**30 + 1, INT32_MAX - 1, INT32_MAX]),
    st.integers(2**30, INT32_MAX),
    st.integers(0, INT32_MAX),
)
shifts = st.integers(-31, 30)


# ==========================================================================
# DSP48E2 packing (WP486)
# ==========================================================================


def test_dsp48e2_pair_exhaustive():
    """All 2**24 int8 triples (a, b, c): both fields exact."""
    v = np.arange(-128, 128, dtype=np.int8)
    b = v[None, :, None]
    c = v[None, None, :]
    c64 = c.astype(np.int32)
    b64 = b.astype(np.int32)
    step = 16
    for a0 in range(0, 256, step):
        a = v[a0:a0 + step, None, None]
        ac, bc = golden.dsp48e2_pair(a, b, c)
        assert ac.dtype == np.int32 and bc.dtype == np.int32
        assert ac.shape == (step, 256, 256)
        np.testing.assert_array_equal(ac, np.broadcast_to(a.astype(np.int32) * c64, ac.shape))
        np.testing.assert_array_equal(bc, np.broadcast_to(b64 * c64, bc.shape))


def test_dsp48e2_pair_scalar_and_errors():
    ac, bc = golden.dsp48e2_pair(np.int8(-128), np.int8(127), np.int8(-128))
    assert (ac, bc) == (16384, -16256)
    assert isinstance(ac, np.int32)
    with pytest.raises(TypeError, match="int16"):
        golden.dsp48e2_pair(np.int16(1), np.int8(1), np.int8(1))
    with pytest.raises(TypeError, match="int64"):
        golden.dsp48e2_pair(np.int8(1), np.int8(1), 3)


def _chain(value_a, value_b, value_c, length):
    shape = (length, 1)
    return (
        np.full(shape, value_a, dtype=np.int8),
        np.full(shape, value_b, dtype=np.int8),
        np.full(shape, value_c, dtype=np.int8),
    )


def test_dsp48e2_accumulation_limit_worst_case():
    assert golden.DSP48E2_PAIR_MAX_ACCUMULATIONS == 7
    # 7 products of (-128)*(-128) = 2**14 fit the 18-bit low field...
    ac, bc = golden.dsp48e2_pair_accumulate(*_chain(-128, -128, -128, 7))
    assert (ac[0], bc[0]) == (7 * 2**14, 7 * 2**14)
    # ...8 overflow it by one: the DSP delivers a wrong pair.
    ac, bc = golden.dsp48e2_pair_accumulate(*_chain(-128, -128, -128, 8))
    assert (ac[0], bc[0]) != (8 * 2**14, 8 * 2**14)
    assert (ac[0], bc[0]) == (8 * 2**14 + 1, -(2**17))
    # The negative worst case (-128 * 127) still fits at 8.
    ac, bc = golden.dsp48e2_pair_accumulate(*_chain(127, -128, 127, 8))
    assert (ac[0], bc[0]) == (8 * 127 * 127, 8 * -128 * 127)


def test_dsp48e2_accumulation_limit_symmetric():
    assert golden.DSP48E2_PAIR_MAX_ACCUMULATIONS_SYMMETRIC == 8
    for b, c in [(127, 127), (-127, -127), (-127, 127), (127, -127)]:
        ac, bc = golden.dsp48e2_pair_accumulate(*_chain(-127, b, c, 8))
        assert (ac[0], bc[0]) == (8 * -127 * c, 8 * b * c)
        ac, bc = golden.dsp48e2_pair_accumulate(*_chain(-127, b, c, 9))
        assert bc[0] != 9 * b * c
        assert (ac[0], bc[0]) != (9 * -127 * c, 9 * b * c)


def test_dsp48e2_accumulation_safe_helper():
    assert golden.dsp48e2_pair_accumulation_safe(0)
    assert golden.dsp48e2_pair_accumulation_safe(7)
    assert not golden.dsp48e2_pair_accumulation_safe(8)
    assert golden.dsp48e2_pair_accumulation_safe(8, symmetric=True)
    assert not golden.dsp48e2_pair_accumulation_safe(9, symmetric=True)
    # Consistent with the field bound for every length.
    for n in range(40):
        assert golden.dsp48e2_pair_accumulation_safe(n) == (n * 2**14 <= 2**17 - 1)
        assert golden.dsp48e2_pair_accumulation_safe(n, symmetric=True) == (n * 127 * 127 <= 2**17 - 1)
    with pytest.raises(ValueError):
        golden.dsp48e2_pair_accumulation_safe(-1)


@pytest.mark.parametrize("length", range(0, 8))
def test_dsp48e2_accumulate_random_chains_exact(length):
    rng = np.random.default_rng(100 + length)
    shape = (length, 20000)
    a, b, c = (rng.integers(-128, 128, shape, dtype=np.int8) for _ in range(3))
    # Half of the columns use only the extremes to stress the fields.
    ext = np.array([-128, 127], dtype=np.int8)
    for arr in (a, b, c):
        arr[:, ::2] = ext[rng.integers(0, 2, (length, shape[1] // 2))]
    ac, bc = golden.dsp48e2_pair_accumulate(a, b, c)
    a64, b64, c64 = (x.astype(np.int64) for x in (a, b, c))
    np.testing.assert_array_equal(ac, (a64 * c64).sum(axis=0))
    np.testing.assert_array_equal(bc, (b64 * c64).sum(axis=0))


def test_dsp48e2_accumulate_symmetric_8_random_exact():
    rng = np.random.default_rng(7)
    a, b, c = (rng.integers(-127, 128, (8, 20000), dtype=np.int8) for _ in range(3))
    ac, bc = golden.dsp48e2_pair_accumulate(a, b, c)
    a64, b64, c64 = (x.astype(np.int64) for x in (a, b, c))
    np.testing.assert_array_equal(ac, (a64 * c64).sum(axis=0))
    np.testing.assert_array_equal(bc, (b64 * c64).sum(axis=0))


def test_dsp48e2_accumulate_matches_stepwise_p_register():
    """Long chains (overflowing) equal a step-by-step 48-bit P register model."""
    rng = np.random.default_rng(3)
    length = 50
    a, b, c = (rng.integers(-128, 128, (length, 300), dtype=np.int8) for _ in range(3))
    ac, bc = golden.dsp48e2_pair_accumulate(a, b, c)
    for col in range(0, 300, 37):
        p = 0
        for i in range(length):
            ad = (int(a[i, col]) << 18) + int(b[i, col])
            p = ((p + ad * int(c[i, col]) + 2**47) % 2**48) - 2**47
        low = ((p & 0x3FFFF) ^ 0x20000) - 0x20000
        high = (p >> 18) + ((p >> 17) & 1)
        assert (int(ac[col]), int(bc[col])) == (high, low)


def test_dsp48e2_accumulate_broadcast_and_shapes():
    a = np.full((3, 4), 2, dtype=np.int8)
    b = np.full((3, 1), -3, dtype=np.int8)
    c = np.full((1, 4), 5, dtype=np.int8)
    ac, bc = golden.dsp48e2_pair_accumulate(a, b, c)
    assert ac.shape == bc.shape == (4,)
    assert (ac == 30).all() and (bc == -45).all()
    ac, bc = golden.dsp48e2_pair_accumulate(*(np.zeros((0, 2), dtype=np.int8),) * 3)
    assert ac.shape == (2,) and (ac == 0).all() and (bc == 0).all()
    with pytest.raises(ValueError):
        golden.dsp48e2_pair_accumulate(np.int8(1), np.int8(1), np.int8(1))


# ==========================================================================
# iCE40 SB_MAC16, dual signed 8x8 mode
# ==========================================================================


def _verilog_sb_mac16_o(a_port: int, b_port: int) -> int:
    """Line-by-line transcription of Yosys' cells_sim.v SB_MAC16 for
    MODE_8x8=1, A_SIGNED=B_SIGNED=1, TOP/BOTOUTPUT_SELECT=2 (16-bit wires)."""
    ah = ((0xFF if a_port & 0x8000 else 0) << 8) | (a_port >> 8)
    al = ((0xFF if a_port & 0x0080 else 0) << 8) | (a_port & 0xFF)
    bh = ((0xFF if b_port & 0x8000 else 0) << 8) | (b_port >> 8)
    bl = ((0xFF if b_port & 0x0080 else 0) << 8) | (b_port & 0xFF)
    f = (ah * bh) & 0xFFFF  # p_Ah_Bh -> iF -> Oh
    g = (al * bl) & 0xFFFF  # p_Al_Bl -> iG -> Ol
    return (f << 16) | g


@pytest.mark.parametrize("half", ["top", "bottom"])
def test_sb_mac16_exhaustive_per_half(half):
    rng = np.random.default_rng(16)
    v = np.arange(-128, 128, dtype=np.int8)
    x = np.repeat(v, 256)
    y = np.tile(v, 256)
    ox = rng.integers(-128, 128, x.size, dtype=np.int8)
    oy = rng.integers(-128, 128, x.size, dtype=np.int8)
    if half == "top":
        a_hi, b_hi, a_lo, b_lo = x, y, ox, oy
    else:
        a_lo, b_lo, a_hi, b_hi = x, y, ox, oy
    top, bottom = golden.sb_mac16_dual8x8(a_hi, a_lo, b_hi, b_lo)
    assert top.dtype == bottom.dtype == np.int32
    np.testing.assert_array_equal(top, a_hi.astype(np.int32) * b_hi)
    np.testing.assert_array_equal(bottom, a_lo.astype(np.int32) * b_lo)
    a_port = golden.sb_mac16_pack_port(a_hi, a_lo)
    b_port = golden.sb_mac16_pack_port(b_hi, b_lo)
    o = golden.sb_mac16_dual8x8_o(a_port, b_port)
    assert o.dtype == np.uint32
    expect = ((top.astype(np.int64) & 0xFFFF) << 16) | (bottom.astype(np.int64) & 0xFFFF)
    np.testing.assert_array_equal(o.astype(np.int64), expect)


def test_sb_mac16_matches_verilog_transcription():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2**16, 3000, dtype=np.uint16)
    b = rng.integers(0, 2**16, 3000, dtype=np.uint16)
    a[:4] = [0x8080, 0x7F7F, 0x0000, 0xFFFF]
    b[:4] = [0x8080, 0x8080, 0xFFFF, 0xFFFF]
    o = golden.sb_mac16_dual8x8_o(a, b)
    assert [int(x) for x in o] == [_verilog_sb_mac16_o(int(p), int(q)) for p, q in zip(a, b)]


def test_sb_mac16_ports_and_scalars():
    assert golden.sb_mac16_pack_port(np.int8(-1), np.int8(1)) == 0xFF01
    assert golden.sb_mac16_pack_port(np.int8(-128), np.int8(5)).dtype == np.uint16
    assert golden.sb_mac16_dual8x8_o(np.uint16(0x8005), np.uint16(0x80FD)) == 0x4000FFF1
    assert golden.sb_mac16_dual8x8(np.int8(-128), np.int8(5), np.int8(-128), np.int8(-3)) == (16384, -15)
    with pytest.raises(TypeError, match="int16"):
        golden.sb_mac16_dual8x8_o(np.int16(1), np.uint16(1))
    with pytest.raises(TypeError, match="uint8"):
        golden.sb_mac16_dual8x8(np.uint8(1), np.int8(1), np.int8(1), np.int8(1))


# ==========================================================================
# Requantization
# ==========================================================================


@SETTINGS
@given(st.lists(st.tuples(int32s, int32s), min_size=1, max_size=40))
def test_srdhm_matches_reference(pairs):
    a = np.array([p[0] for p in pairs], dtype=np.int32)
    b = np.array([p[1] for p in pairs], dtype=np.int32)
    got = golden.srdhm(a, b)
    assert got.dtype == np.int32
    assert got.tolist() == [ref_srdhm(int(x), int(y)) for x, y in pairs]


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 2**31), st.booleans(), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_srdhm_ties(cases):
    """a*b exactly at k + 1/2 (in units of 2**31), both signs."""
    a_list, b_list = [], []
    for s, k, neg_a, neg_b in cases:
        odd = (2 * k + 1) % (1 << (s + 1))  # keeps |a| = odd * 2**(30-s) < 2**31
        a = odd << (30 - s)
        a_list.append(-a if neg_a else a)
        b_list.append(-(1 << s) if neg_b else (1 << s))
    got = golden.srdhm(np.array(a_list, dtype=np.int64), np.array(b_list, dtype=np.int64))
    assert got.tolist() == [ref_srdhm(x, y) for x, y in zip(a_list, b_list)]


def test_srdhm_known_values():
    # Ties round toward +infinity (like ARM SQRDMULH): +0.5 -> 1, -0.5 -> 0, -1.5 -> -1.
    assert golden.srdhm(2**30, 1) == 1
    assert golden.srdhm(-(2**30), 1) == 0
    assert golden.srdhm(-3 * 2**29, 2) == -1
    assert golden.srdhm(-(2**30) - 1, 1) == -1
    assert golden.srdhm(INT32_MIN, INT32_MIN) == INT32_MAX
    assert golden.srdhm(INT32_MIN, INT32_MAX) == -INT32_MAX
    assert golden.srdhm(INT32_MAX, INT32_MAX) == INT32_MAX - 1
    assert isinstance(golden.srdhm(1, 1), np.int32)
    # Broadcasting.
    out = golden.srdhm(np.array([[1], [2]], dtype=np.int32), np.array([2**30, 2**31 - 1], dtype=np.int32))
    assert out.shape == (2, 2)


def test_srdhm_rdbpot_random_bulk_vs_reference():
    """Many random values (a third of them exact ties) against the transcription."""
    rng = np.random.default_rng(11)
    n = 20000
    a = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    b = rng.integers(INT32_MIN, INT32_MAX, n, endpoint=True)
    b[::3] = 1 << rng.integers(0, 31, b[::3].size)
    a[::3] = (a[::3] | 1) >> rng.integers(0, 31, a[::3].size)
    got = golden.srdhm(a, b)
    assert got.tolist() == [ref_srdhm(int(x), int(y)) for x, y in zip(a, b)]
    e = rng.integers(0, 32, n)
    got = golden.rounding_divide_by_pot(a, e)
    assert got.tolist() == [ref_rdbpot(int(x), int(s)) for x, s in zip(a, e)]


@SETTINGS
@given(st.lists(st.tuples(int32s, st.integers(0, 31)), min_size=1, max_size=40))
def test_rdbpot_matches_reference(cases):
    x = np.array([c[0] for c in cases], dtype=np.int32)
    e = np.array([c[1] for c in cases], dtype=np.int32)
    got = golden.rounding_divide_by_pot(x, e)
    assert got.dtype == np.int32
    assert got.tolist() == [ref_rdbpot(int(v), int(s)) for v, s in cases]


@SETTINGS
@given(st.lists(st.tuples(st.integers(1, 31), st.integers(0, 2**31), st.booleans()), min_size=1, max_size=40))
def test_rdbpot_ties(cases):
    xs, es = [], []
    for e, k, neg in cases:
        x = ((2 * k + 1) << (e - 1)) % (1 << 31)  # an odd multiple of 2**(e-1)
        xs.append(-x if neg else x)
        es.append(e)
    got = golden.rounding_divide_by_pot(np.array(xs, dtype=np.int64), np.array(es))
    assert got.tolist() == [ref_rdbpot(x, e) for x, e in zip(xs, es)]


def test_rdbpot_known_values():
    # Ties away from zero.
    assert golden.rounding_divide_by_pot(3, 1) == 2
    assert golden.rounding_divide_by_pot(-3, 1) == -2
    assert golden.rounding_divide_by_pot(1, 1) == 1
    assert golden.rounding_divide_by_pot(-1, 1) == -1
    assert golden.rounding_divide_by_pot(5, 2) == 1
    assert golden.rounding_divide_by_pot(-5, 2) == -1
    assert golden.rounding_divide_by_pot(INT32_MIN, 31) == -1
    assert golden.rounding_divide_by_pot(INT32_MAX, 31) == 1
    assert golden.rounding_divide_by_pot(INT32_MAX, 0) == INT32_MAX
    np.testing.assert_array_equal(
        golden.rounding_divide_by_pot(np.array([7, -7], dtype=np.int32), np.array([[0], [2]])),
        [[7, -7], [2, -2]],
    )


@SETTINGS
@given(st.lists(st.tuples(int32s, m0s, shifts), min_size=1, max_size=40))
def test_mbqm_matches_reference(cases):
    x = np.array([c[0] for c in cases], dtype=np.int32)
    m0 = np.array([c[1] for c in cases], dtype=np.int32)
    sh = np.array([c[2] for c in cases], dtype=np.int8)
    got = golden.multiply_by_quantized_multiplier(x, m0, sh)
    assert got.dtype == np.int32
    assert got.tolist() == [ref_mbqm(*c) for c in cases]


def test_mbqm_per_channel_random():
    rng = np.random.default_rng(21)
    n = 16
    x = rng.integers(INT32_MIN, INT32_MAX, (200, n), endpoint=True, dtype=np.int32)
    x[::4] = rng.integers(-5000, 5000, (50, n), dtype=np.int32)
    m0 = rng.integers(2**30, INT32_MAX, n, endpoint=True).astype(np.int32)
    m0[0], m0[1] = 0, INT32_MAX
    sh = rng.integers(-31, 31, n).astype(np.int32)
    sh[2], sh[3] = -31, 30
    got = golden.multiply_by_quantized_multiplier(x, m0, sh)
    assert got.shape == x.shape
    for r in range(0, 200, 7):
        assert got[r].tolist() == [ref_mbqm(int(x[r, c]), int(m0[c]), int(sh[c])) for c in range(n)]


@pytest.mark.parametrize(
    "xs, ms, zs",
    [((37, 5), (5,), ()), ((5,), (9, 1), (9, 1)), ((4, 6, 3), (6, 1), (3,)), ((1, 50), (50,), (1, 1))],
)
def test_requantize_chunked_broadcasting(monkeypatch, xs, ms, zs):
    rng = np.random.default_rng(len(xs) * 10 + len(ms))
    x = rng.integers(INT32_MIN, INT32_MAX, xs, endpoint=True).astype(np.int32)
    m0 = rng.integers(0, INT32_MAX, ms, endpoint=True)
    sh = rng.integers(-31, 31, ms)
    zp = rng.integers(-128, 128, zs)
    whole_m = golden.multiply_by_quantized_multiplier(x, m0, sh)
    whole_r = golden.requantize(x, m0, sh, zp_out=zp, act_min=-120, act_max=110)
    monkeypatch.setattr(golden, "_ELEMWISE_CHUNK", 7)
    chunk_m = golden.multiply_by_quantized_multiplier(x, m0, sh)
    chunk_r = golden.requantize(x, m0, sh, zp_out=zp, act_min=-120, act_max=110)
    np.testing.assert_array_equal(chunk_m, whole_m)
    np.testing.assert_array_equal(chunk_r, whole_r)
    xb, mb, sb, zb = np.broadcast_arrays(x, m0, sh, zp)
    assert chunk_r.shape == xb.shape and chunk_r.dtype == np.int8
    flat = [
        ref_requantize(int(a), int(b), int(c), int(d), -120, 110)
        for a, b, c, d in zip(xb.flat, mb.flat, sb.flat, zb.flat)
    ]
    assert chunk_r.ravel().tolist() == flat


def test_mbqm_left_shift_saturation_rule():
    mbqm = golden.multiply_by_quantized_multiplier
    # 2**30 << 1 = 2**31 does not fit: saturates to INT32_MAX (wrapping would give INT32_MIN).
    assert mbqm(2**30, 2**30, 1) == ref_srdhm(INT32_MAX, 2**30) == 2**30
    assert mbqm(-(2**30) - 1, 2**30, 1) == ref_srdhm(INT32_MIN, 2**30) == -(2**30)
    assert mbqm(INT32_MIN, INT32_MAX, 30) == -INT32_MAX
    assert mbqm(INT32_MAX, INT32_MAX, 30) == INT32_MAX - 1
    assert mbqm(1, INT32_MAX, 30) == 2**30  # 2**30 fits: no saturation
    assert mbqm(2, INT32_MAX, 30) == INT32_MAX - 1  # 2**31 saturates
    # Values that fit are untouched: x * 2**left exactly representable.
    assert mbqm(-(2**30), 2**30, 1) == -(2**30)


def test_mbqm_errors():
    mbqm = golden.multiply_by_quantized_multiplier
    with pytest.raises(ValueError, match="-1"):
        mbqm(1, -1, 0)
    with pytest.raises(ValueError, match=str(2**31)):
        mbqm(1, 2**31, 0)
    with pytest.raises(ValueError, match="31"):
        mbqm(1, 2**30, 31)
    with pytest.raises(ValueError, match="-32"):
        mbqm(1, 2**30, -32)
    with pytest.raises(ValueError, match=str(2**31)):
        mbqm(np.array([2**31], dtype=np.int64), 2**30, 0)
    with pytest.raises(TypeError, match="float64"):
        mbqm(np.array([1.0]), 2**30, 0)
    with pytest.raises(ValueError, match="broadcast"):
        mbqm(np.zeros((2, 3), dtype=np.int32), np.full(4, 2**30), 0)
    with pytest.raises(TypeError, match="float64"):
        golden.srdhm(1.5, 2)
    with pytest.raises(TypeError, match="bool"):
        golden.srdhm(True, 2)
    with pytest.raises(ValueError, match="32"):
        golden.rounding_divide_by_pot(1, 32)
    with pytest.raises(ValueError, match="-1"):
        golden.rounding_divide_by_pot(1, -1)


# quantize_multiplier -------------------------------------------------------


def test_quantize_multiplier_scales_grid():
    reals = np.concatenate([np.logspace(-6, 1, 3001), np.geomspace(1e-6, 10, 997)])
    m0, sh = golden.quantize_multiplier(reals)
    assert m0.dtype == sh.dtype == np.int32 and m0.shape == reals.shape
    assert list(zip(m0.tolist(), sh.tolist())) == [ref_quantize_multiplier(float(r)) for r in reals]
    assert ((m0 >= 2**30) & (m0 <= INT32_MAX)).all()
    approx = m0.astype(np.float64) * np.exp2(sh.astype(np.float64) - 31)
    assert (np.abs(approx - reals) <= np.exp2(sh.astype(np.float64) - 32)).all()


@SETTINGS
@given(st.lists(st.floats(1e-6, 10.0), min_size=1, max_size=30))
def test_quantize_multiplier_hypothesis(reals):
    m0, sh = golden.quantize_multiplier(np.array(reals))
    assert list(zip(m0.tolist(), sh.tolist())) == [ref_quantize_multiplier(r) for r in reals]


def test_quantize_multiplier_edges():
    qm = golden.quantize_multiplier
    assert qm(0.0) == (0, 0)
    assert qm(0) == (0, 0)
    m0, sh = qm(0.25)
    assert isinstance(m0, np.int32) and isinstance(sh, np.int32)
    # Exact powers of two: m0 = 2**30.
    for e in range(-32, 30):
        assert qm(2.0**e) == (2**30, e + 1), e
    # Below 2**-32 (shift < -31) flushes to (0, 0).
    assert qm(2.0**-33) == (0, 0)
    assert qm(5e-324) == (0, 0)
    # M0 rounds up to 2**31: renormalised to (2**30, shift + 1).
    assert qm(1 - 2.0**-33) == (2**30, 1)
    assert qm(1 - 2.0**-33) == ref_quantize_multiplier(1 - 2.0**-33)
    assert qm(0.5 - 2.0**-34) == (2**30, 0)
    # Renormalisation rescues a would-be shift of -32 ...
    assert qm((1 - 2.0**-40) * 2.0**-32) == (2**30, -31)
    # ... and a shift of -33 renormalised to -32 is still flushed.
    assert qm((1 - 2.0**-40) * 2.0**-33) == (0, 0)
    # Exact tie at q * 2**31 = 2**30 + 1/2 rounds away from zero (not to even).
    assert qm(0.5 + 2.0**-32) == (2**30 + 1, 0)
    assert qm(0.5 + 3 * 2.0**-32) == (2**30 + 2, 0)
    # Largest accepted values.
    assert qm(2.0**30 * (1 - 2.0**-20)) == ref_quantize_multiplier(2.0**30 * (1 - 2.0**-20))
    assert qm(2.0**29)[1] == 30
    # float32 and integer inputs.
    assert qm(np.float32(0.75)) == ref_quantize_multiplier(0.75)
    assert qm(np.int16(3)) == ref_quantize_multiplier(3.0)


def test_quantize_multiplier_errors():
    qm = golden.quantize_multiplier
    for bad in (-1.0, -1e-300, float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="finite"):
            qm(bad)
    with pytest.raises(ValueError, match="-2.5"):
        qm(np.array([1.0, -2.5]))
    with pytest.raises(ValueError):
        qm(2.0**30)
    with pytest.raises(ValueError):
        qm(2.0**30 * (1 - 2.0**-40))  # rounds up to shift 31
    with pytest.raises(TypeError, match="complex"):
        qm(np.array([1 + 0j]))
    with pytest.raises(TypeError, match="bool"):
        qm(True)
    with pytest.raises(TypeError):
        qm("0.5")


# requantize ------------------------------------------------------------------


@SETTINGS
@given(
    st.lists(int32s, min_size=1, max_size=30),
    m0s,
    shifts,
    st.integers(-128, 127),
    st.tuples(st.integers(-128, 127), st.integers(-128, 127)).map(sorted),
)
def test_requantize_matches_reference(accs, m0, shift, zp, bounds):
    lo, hi = bounds
    got = golden.requantize(np.array(accs, dtype=np.int32), m0, shift, zp_out=zp, act_min=lo, act_max=hi)
    assert got.dtype == np.int8
    assert got.tolist() == [ref_requantize(a, m0, shift, zp, lo, hi) for a in accs]


def test_requantize_per_channel():
    rng = np.random.default_rng(9)
    n = 8
    acc = rng.integers(-(2**20), 2**20, (50, n)).astype(np.int32)
    m0, sh = golden.quantize_multiplier(rng.uniform(1e-5, 1e-2, n))
    zp = rng.integers(-128, 128, n)
    y = golden.requantize(acc, m0, sh, zp_out=zp, act_min=-100, act_max=120)
    assert y.shape == acc.shape and y.dtype == np.int8
    for r in range(50):
        assert y[r].tolist() == [
            ref_requantize(int(acc[r, c]), int(m0[c]), int(sh[c]), int(zp[c]), -100, 120) for c in range(n)
        ]


def test_requantize_clamp_and_zero_point():
    rq = golden.requantize
    half = 2**30  # m0 = 2**30, shift 0: multiply by 0.5
    assert rq(100, half, 0) == 50
    assert rq(101, half, 0) == 51  # 50.5: SRDHM ties up
    assert rq(-101, half, 0) == -50  # -50.5: SRDHM ties toward +inf
    assert rq(1000, half, 0) == 127
    assert rq(-1000, half, 0) == -128
    assert rq(-10, half, 0, act_min=0) == 0  # ReLU
    assert rq(100, half, 0, zp_out=-3, act_max=40) == 40
    assert rq(10, half, 0, zp_out=-3) == 2
    # zp addition done wide: INT32_MAX - 1 + 127 does not wrap negative.
    assert rq(INT32_MAX, INT32_MAX, 0, zp_out=127) == 127
    assert rq(INT32_MIN, INT32_MAX, 0, zp_out=-128) == -128
    assert rq(5, 0, 0, zp_out=-7) == -7  # m0 = 0
    assert isinstance(rq(5, half, 0), np.int8)


def test_requantize_errors():
    rq = golden.requantize
    with pytest.raises(ValueError, match="act_min"):
        rq(1, 2**30, 0, act_min=10, act_max=5)
    with pytest.raises(ValueError, match="-129"):
        rq(1, 2**30, 0, act_min=-129)
    with pytest.raises(ValueError, match="128"):
        rq(1, 2**30, 0, act_max=128)
    with pytest.raises(ValueError, match="128"):
        rq(1, 2**30, 0, zp_out=128)
    with pytest.raises(ValueError, match="-129"):
        rq(1, 2**30, 0, zp_out=np.array([0, -129]))
    with pytest.raises(TypeError, match="float"):
        rq(1, 2**30, 0, act_min=-1.5)
    with pytest.raises(TypeError, match="float64"):
        rq(np.array([1.0]), 2**30, 0)
    with pytest.raises(ValueError, match=str(2**31)):
        rq(np.array([2**31]), 2**30, 0)
    with pytest.raises(ValueError, match="31"):
        rq(1, 2**30, 31)


# ==========================================================================
# INT8 GEMM
# ==========================================================================


def _ref_gemm(a, w):
    return wrap32(np.einsum("mk,kn->mn", a.astype(np.int64), w.astype(np.int64)))


@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 1, 7), (3, 17, 2), (16, 64, 16), (33, 300, 9)])
def test_gemm_int8_random(shape):
    m, k, n = shape
    rng = np.random.default_rng(m * 1000 + k)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    got = golden.gemm_int8(a, w)
    assert got.dtype == np.int32 and got.shape == (m, n)
    np.testing.assert_array_equal(got, _ref_gemm(a, w))


def test_gemm_int8_extremes_and_layouts():
    a = np.full((4, 1000), -128, dtype=np.int8)
    w = np.full((1000, 3), -128, dtype=np.int8)
    np.testing.assert_array_equal(golden.gemm_int8(a, w), np.full((4, 3), 1000 * 2**14))
    w[:, 1] = 127
    assert golden.gemm_int8(a, w)[0, 1] == 1000 * -128 * 127
    rng = np.random.default_rng(2)
    a = rng.integers(-128, 128, (40, 30), dtype=np.int8)
    w = rng.integers(-128, 128, (20, 40), dtype=np.int8)
    # Non-contiguous views.
    np.testing.assert_array_equal(golden.gemm_int8(a.T[::2], w.T[:, ::3]), _ref_gemm(a.T[::2], w.T[:, ::3]))


def test_gemm_int8_empty_dims():
    assert golden.gemm_int8(np.zeros((0, 5), np.int8), np.zeros((5, 3), np.int8)).shape == (0, 3)
    assert golden.gemm_int8(np.zeros((2, 5), np.int8), np.zeros((5, 0), np.int8)).shape == (2, 0)
    out = golden.gemm_int8(np.zeros((3, 0), np.int8), np.zeros((0, 4), np.int8))
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.zeros((3, 4)))


def test_gemm_int8_wrap():
    k_safe = golden.GEMM_INT8_MAX_K_NO_WRAP
    assert k_safe == 131071
    a = np.full((1, k_safe + 3), -128, dtype=np.int8)
    w = np.full((k_safe + 3, 2), -128, dtype=np.int8)
    w[:, 1] = 127
    assert golden.gemm_int8(a[:, :k_safe], w[:k_safe])[0, 0] == 2**31 - 2**14  # largest, no wrap
    assert golden.gemm_int8(a[:, : k_safe + 1], w[: k_safe + 1])[0, 0] == INT32_MIN  # 2**31 wraps
    got = golden.gemm_int8(a, w)
    np.testing.assert_array_equal(got, _ref_gemm(a, w))
    assert got[0, 0] == INT32_MIN + 2 * 2**14
    # Negative wrap.
    k = 140000
    got = golden.gemm_int8(np.full((1, k), -128, np.int8), np.full((k, 1), 127, np.int8))
    assert got[0, 0] == wrap32(-128 * 127 * k) and got[0, 0] > 0


def test_gemm_int8_k_chunked_path(monkeypatch):
    monkeypatch.setattr(golden, "_GEMM_K_CHUNK", 4096)
    k = 131072 + 5000
    a = np.full((2, k), -128, dtype=np.int8)
    a[1, ::3] = 127
    w = np.full((k, 2), -128, dtype=np.int8)
    np.testing.assert_array_equal(golden.gemm_int8(a, w), _ref_gemm(a, w))
    monkeypatch.setattr(golden, "_GEMM_K_CHUNK", 7)
    rng = np.random.default_rng(4)
    a = rng.integers(-128, 128, (6, 50), dtype=np.int8)
    w = rng.integers(-128, 128, (50, 5), dtype=np.int8)
    np.testing.assert_array_equal(golden.gemm_int8(a, w), _ref_gemm(a, w))


def test_gemm_int8_errors():
    ok = np.zeros((2, 3), np.int8)
    with pytest.raises(TypeError, match="int16"):
        golden.gemm_int8(ok.astype(np.int16), ok.T)
    with pytest.raises(TypeError, match="uint8"):
        golden.gemm_int8(ok, ok.T.astype(np.uint8))
    with pytest.raises(TypeError, match="float64"):
        golden.gemm_int8(ok.astype(np.float64), ok.T)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        golden.gemm_int8(ok, ok)
    with pytest.raises(ValueError, match="2-D"):
        golden.gemm_int8(np.zeros(3, np.int8), ok.T)


# ==========================================================================
# Binary layers
# ==========================================================================

K_VALUES = [1, 2, 63, 64, 65, 127, 128, 129, 130, 200, 511]


def _pm1(rng, shape):
    return (rng.integers(0, 2, shape) * 2 - 1).astype(np.int8)


def _garbage_padding(words, k, rng):
    """Set random garbage in the padding bits of the last word."""
    words = words.copy()
    if k % 64:
        pad = np.uint64(((1 << 64) - 1) ^ ((1 << (k % 64)) - 1))
        junk = rng.integers(0, 2**64, words.shape[:-1], dtype=np.uint64, endpoint=False)
        words[..., -1] |= junk & pad
    return words


@pytest.mark.parametrize("k", K_VALUES)
def test_binary_gemm_and_dot_vs_integer_dot(k):
    rng = np.random.default_rng(k)
    a = _pm1(rng, (9, k))
    w = _pm1(rng, (7, k))
    a_bits = _garbage_padding(golden.pack_bits(a), k, rng)
    w_bits = _garbage_padding(golden.pack_bits(w), k, rng)
    if k % 64:
        assert (a_bits != golden.pack_bits(a)).any()  # garbage really present
    expect = a.astype(np.int64) @ w.astype(np.int64).T
    got = golden.binary_gemm(a_bits, w_bits, k)
    assert got.dtype == np.int32 and got.shape == (9, 7)
    np.testing.assert_array_equal(got, expect)
    dot = golden.binary_dot(a_bits[:, None, :], w_bits[None, :, :], k)
    assert dot.dtype == np.int32
    np.testing.assert_array_equal(dot, expect)
    assert golden.binary_dot(a_bits[0], w_bits[0], k) == expect[0, 0]


@SETTINGS
@given(st.integers(1, 300), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_binary_gemm_hypothesis(k, m, n, seed):
    rng = np.random.default_rng(seed)
    a = _pm1(rng, (m, k))
    w = _pm1(rng, (n, k))
    got = golden.binary_gemm(_garbage_padding(golden.pack_bits(a), k, rng), golden.pack_bits(w), k)
    np.testing.assert_array_equal(got, a.astype(np.int64) @ w.astype(np.int64).T)


def test_binary_gemm_chunking(monkeypatch):
    monkeypatch.setattr(golden, "_GEMM_BIN_ELEMENTS", 16)
    rng = np.random.default_rng(12)
    k = 150
    a = _pm1(rng, (37, k))
    w = _pm1(rng, (5, k))
    got = golden.binary_gemm(golden.pack_bits(a), golden.pack_bits(w), k)
    np.testing.assert_array_equal(got, a.astype(np.int64) @ w.astype(np.int64).T)


def test_binary_extremes_and_empty():
    k = 130
    ones = np.ones((1, k), np.int8)
    assert golden.binary_gemm(golden.pack_bits(ones), golden.pack_bits(ones), k)[0, 0] == k
    assert golden.binary_gemm(golden.pack_bits(ones), golden.pack_bits(-ones), k)[0, 0] == -k
    # All-ones words (garbage padding) against all -1 weights.
    full = np.full((1, 3), 2**64 - 1, dtype=np.uint64)
    assert golden.binary_dot(full, golden.pack_bits(-ones), k) == -k
    assert golden.binary_dot(full, full, k) == k
    # Empty dimensions and k = 0.
    assert golden.binary_gemm(np.zeros((0, 3), np.uint64), np.zeros((4, 3), np.uint64), k).shape == (0, 4)
    out = golden.binary_gemm(np.zeros((2, 0), np.uint64), np.zeros((3, 0), np.uint64), 0)
    np.testing.assert_array_equal(out, np.zeros((2, 3)))
    assert golden.binary_dot(np.zeros(0, np.uint64), np.zeros(0, np.uint64), 0) == 0


@pytest.mark.parametrize("k", [0, 1, 7, 8, 9, 63, 64, 65, 130, 1000])
def test_pack_unpack_round_trip_and_byte_layout(k):
    rng = np.random.default_rng(k + 1)
    x = _pm1(rng, (2, 3, k))
    words = golden.pack_bits(x)
    assert words.dtype == np.uint64 and words.shape == (2, 3, -(-k // 64))
    np.testing.assert_array_equal(golden.unpack_bits(words, k), x)
    assert golden.unpack_bits(words, k).dtype == np.int8
    packed = np.packbits(x == 1, axis=-1, bitorder="little")
    padded = np.zeros((2, 3, 8 * words.shape[-1]), np.uint8)
    padded[..., : packed.shape[-1]] = packed
    np.testing.assert_array_equal(words.astype("<u8").view(np.uint8), padded)
    if sys.byteorder == "little":
        np.testing.assert_array_equal(words.view(np.uint8), padded)
    # Padding bits are zero.
    if k % 64:
        assert not (words[..., -1] >> np.uint64(k % 64)).any()
    # Unpacking ignores garbage padding.
    np.testing.assert_array_equal(golden.unpack_bits(_garbage_padding(words, k, rng), k), x)


def test_pack_bits_layout_explicit():
    x = -np.ones(130, dtype=np.int64)
    x[0] = 1
    x[65] = 1
    x[129] = 1
    words = golden.pack_bits(x)
    assert words.tolist() == [1, 2, 2]
    # Other integer dtypes.
    assert golden.pack_bits(np.array([1, -1, 1], dtype=np.int16)).tolist() == [5]
    assert golden.pack_bits(np.array([1, 1], dtype=np.uint8)).tolist() == [3]
    assert golden.pack_bits([[-1, 1]]).tolist() == [[2]]


def test_binary_errors():
    with pytest.raises(ValueError, match="0"):
        golden.pack_bits(np.array([1, 0, -1]))
    with pytest.raises(ValueError, match="255"):
        golden.pack_bits(np.array([1, 255], dtype=np.uint8))
    with pytest.raises(TypeError, match="float64"):
        golden.pack_bits(np.array([1.0, -1.0]))
    with pytest.raises(TypeError, match="bool"):
        golden.pack_bits(np.array([True, False]))
    with pytest.raises(ValueError, match="shape"):
        golden.pack_bits(np.int8(1))
    words = golden.pack_bits(np.ones((2, 70), np.int8))
    with pytest.raises(ValueError, match="ceil"):
        golden.unpack_bits(words, 200)
    with pytest.raises(TypeError, match="int64"):
        golden.unpack_bits(words.astype(np.int64), 70)
    with pytest.raises(ValueError, match="ceil"):
        golden.binary_dot(words, words[:, :1], 70)
    with pytest.raises(ValueError, match="-1"):
        golden.binary_gemm(words, words, -1)
    with pytest.raises(TypeError, match="int32"):
        golden.binary_gemm(words.astype(np.int32), words, 70)
    with pytest.raises(ValueError, match="2-D"):
        golden.binary_gemm(words[None], words, 70)
    with pytest.raises(ValueError, match="broadcast"):
        golden.binary_dot(words, np.zeros((3, 2), np.uint64), 70)


# thresholds ------------------------------------------------------------------


def _ref_thresholds(acc, t):
    acc = np.asarray(acc)
    out = np.zeros(acc.shape, dtype=np.int64)
    for idx in np.ndindex(acc.shape):
        tt = t[idx[-1]] if t.ndim == 2 else t
        out[idx] = sum(1 for v in tt.tolist() if int(acc[idx]) >= v)
    return out


def test_thresholds_per_channel_with_ties():
    t = np.array([[5, -3, 0], [10, 10, 2], [-7, 8, 100]], dtype=np.int32)  # unsorted, repeated
    acc = np.array([[5, 10, -7], [-3, 9, 8], [-4, 2, 100], [0, 1, 99]], dtype=np.int32)
    got = golden.thresholds(acc, t)
    assert got.dtype == np.int32 and got.shape == acc.shape
    np.testing.assert_array_equal(got, [[3, 3, 1], [1, 1, 2], [0, 1, 3], [2, 0, 2]])
    np.testing.assert_array_equal(got, _ref_thresholds(acc, t))


def test_thresholds_shared_and_random(monkeypatch):
    t = np.array([3, -1, 3, 0], dtype=np.int64)
    acc = np.array([[-2, -1, 0, 3, 4]], dtype=np.int16)
    np.testing.assert_array_equal(golden.thresholds(acc, t), [[0, 1, 2, 4, 4]])
    rng = np.random.default_rng(8)
    acc = rng.integers(-50, 50, (3, 11, 6))
    t_pc = rng.integers(-50, 50, (6, 7))
    t_sh = rng.integers(-50, 50, 9)
    monkeypatch.setattr(golden, "_CHUNK_ELEMENTS", 64)  # exercise row chunking
    np.testing.assert_array_equal(golden.thresholds(acc, t_pc), _ref_thresholds(acc, t_pc))
    np.testing.assert_array_equal(golden.thresholds(acc, t_sh), _ref_thresholds(acc, t_sh))
    np.testing.assert_array_equal(golden.thresholds(acc, np.zeros((6, 0), np.int32)), 0)
    assert golden.thresholds(np.zeros((2, 0), np.int32), np.zeros((0, 3), np.int32)).shape == (2, 0)
    # Extreme values compare exactly.
    big = np.array([2**62, -(2**62)], dtype=np.int64)
    np.testing.assert_array_equal(golden.thresholds(big, np.array([2**62])), [1, 0])


def test_thresholds_errors():
    acc = np.zeros((2, 3), np.int32)
    with pytest.raises(ValueError, match=r"\(4, 2\)"):
        golden.thresholds(acc, np.zeros((4, 2), np.int32))
    with pytest.raises(ValueError):
        golden.thresholds(acc, np.zeros((3, 2, 1), np.int32))
    with pytest.raises(TypeError, match="float64"):
        golden.thresholds(acc, np.zeros((3, 2)))
    with pytest.raises(TypeError, match="float32"):
        golden.thresholds(acc.astype(np.float32), np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError):
        golden.thresholds(np.int32(5), np.zeros(2, np.int32))
    with pytest.raises(ValueError):
        golden.thresholds(acc, np.array([2**64 - 1], dtype=np.uint64))
