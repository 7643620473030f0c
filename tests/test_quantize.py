"""Quantization tools: calibration on known distributions, exact zero-point folding,
BN + sign -> threshold folding."""

import numpy as np
import pytest

from qaccel.sw import golden, quantize as q


def test_kl_threshold_clips_heavy_tails():
    rng = np.random.default_rng(0)
    heavy = rng.standard_cauchy(200_000)
    threshold = q.kl_threshold(heavy)
    assert 0 < threshold < 0.2 * np.abs(heavy).max()
    low, high = q.calibrate(heavy, "entropy")
    assert high < heavy.max() and low > heavy.min()


def test_kl_threshold_keeps_range_of_uniform_data():
    rng = np.random.default_rng(1)
    uniform = rng.uniform(-1, 1, 100_000)
    assert q.kl_threshold(uniform) > 0.9


def test_minmax_and_percentile():
    values = np.concatenate([np.linspace(-1, 3, 10_001), [100.0]])
    assert q.calibrate(values, "minmax") == (-1.0, 100.0)
    low, high = q.calibrate(values, "percentile", percentile=99.0)
    assert -1.0 < low < -0.9 and 2.9 < high < 3.0
    with pytest.raises(ValueError, match="one of"):
        q.calibrate(values, "mse")
    with pytest.raises(ValueError, match="NaN"):
        q.calibrate([np.nan], "minmax")


def test_activation_params_represent_zero_exactly_and_cover_range():
    params = q.activation_params(-0.7, 2.3)
    assert params.dequantize(params.zero_point) == 0.0
    assert q.quantize_activations(-0.7, params) == -128
    assert q.quantize_activations(2.3, params) == 127
    relu = q.activation_params(0.0, 6.0)
    assert relu.zero_point == -128


def test_weights_per_channel_symmetric():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(30, 5)) * np.array([1e-3, 1, 10, 0, 5])
    qw, scale = q.quantize_weights_per_channel(w)
    assert qw.dtype == np.int8 and qw.min() >= -127
    assert (np.abs(qw).max(axis=0)[[0, 1, 2, 4]] == 127).all()
    assert (qw[:, 3] == 0).all()
    np.testing.assert_allclose(qw * scale, w, atol=scale.max() / 2 + 1e-12)


def test_zero_point_folding_is_exact():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 4, (20, 30))
    w = rng.normal(size=(30, 7))
    b = rng.normal(size=7)
    in_params = q.activation_params(*q.calibrate(x, "minmax"))
    qx = q.quantize_activations(x, in_params)
    qw, w_scale = q.quantize_weights_per_channel(w)
    folded = q.fold_zero_point(qw, b, in_params, w_scale)
    hardware = golden.gemm_int8(qx, qw).astype(np.int64) + folded
    reference = ((qx.astype(np.int64) - in_params.zero_point) @ qw.astype(np.int64)
                 + np.round(b / (in_params.scale * w_scale)).astype(np.int64))
    np.testing.assert_array_equal(hardware, reference)


def test_requantized_layer_tracks_float():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (50, 40))
    w = rng.normal(size=(40, 6)) * 0.2
    y_float = np.maximum(x @ w, 0)
    in_params = q.activation_params(0, 1)
    out_params = q.activation_params(*q.calibrate(y_float, "minmax"))
    qx = q.quantize_activations(x, in_params)
    qw, w_scale = q.quantize_weights_per_channel(w)
    bias = q.fold_zero_point(qw, np.zeros(6), in_params, w_scale)
    m0, shift = q.requant_params(in_params, w_scale, out_params)
    qy = golden.requantize(golden.gemm_int8(qx, qw).astype(np.int64) + bias, m0, shift,
                           zp_out=out_params.zero_point, act_min=out_params.zero_point)
    np.testing.assert_allclose(out_params.dequantize(qy), y_float,
                               atol=4 * out_params.scale + 0.02 * y_float.max())


def test_bn_sign_folding_matches_float_bn():
    rng = np.random.default_rng(5)
    n, k = 64, 101
    gamma = rng.normal(size=n)
    gamma[:4] = 0.0
    beta = rng.normal(size=n) * 3
    mean = rng.normal(size=n) * 10
    var = rng.uniform(0.1, 50, n)
    thresholds, flip = q.fold_bn_sign(gamma, beta, mean, var)
    assert thresholds.shape == (n, 1) and thresholds.dtype == np.int32
    for _ in range(20):
        acc = (2 * rng.integers(0, k + 1, (200, n)) - k)  # binary dot products: parity of k
        bn = gamma * (acc - mean) / np.sqrt(var + 1e-5) + beta
        float_out = (bn >= 0).astype(np.int32)
        acc_hw = np.where(flip, -acc, acc)
        np.testing.assert_array_equal(golden.thresholds(acc_hw, thresholds), float_out)
