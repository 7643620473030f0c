"""Post-training quantization of float models into what the hardware runs. NumPy only.

INT8 layers
-----------
- Weights: per-output-channel symmetric int8, ``scale[j] = max|W[:, j]| / 127``.
- Activations: asymmetric int8 (scale, zero point), calibrated on sample data by ``minmax``,
  ``percentile`` or ``entropy`` (the saturating KL-divergence method: choose the clipping
  threshold whose quantized histogram is closest to the original one, TensorRT style).
- The input zero point is folded into the int32 bias, so the hardware multiplies raw int8
  values: ``sum_i (x_i - zx) w_ij = sum_i x_i w_ij - zx * sum_i w_ij``.
- Requantization parameters come from :func:`golden.quantize_multiplier` of
  ``sx * sw[j] / sy``; ReLU is the clamp ``act_min = zy``.

Binary layers
-------------
Batch-norm followed by sign folds into one integer threshold per channel:
``sign(gamma * (acc - mu) / sigma + beta) >= 0``  <=>  ``acc >= T`` when ``gamma > 0``; for
``gamma < 0`` the channel's weights are negated so that the same ``>=`` form holds
(:func:`fold_bn_sign`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import golden

__all__ = [
    "QuantParams", "quantize_weights_per_channel", "calibrate", "activation_params",
    "kl_threshold", "quantize_activations", "fold_zero_point", "requant_params",
    "fold_bn_sign",
]

_METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class QuantParams:
    """Affine int8 quantization: ``real = scale * (q - zero_point)``."""
    scale: float
    zero_point: int

    def quantize(self, x):
        return quantize_activations(x, self)

    def dequantize(self, q):
        return self.scale * (np.asarray(q, dtype=np.float64) - self.zero_point)


def quantize_weights_per_channel(w):
    """Symmetric per-output-channel int8 weights.

    Parameters
    ----------
    w : ndarray, float, shape (K, N)
        One column per output channel.

    Returns
    -------
    q : ndarray, int8, shape (K, N)
        In [-127, 127] (symmetric: -128 is never used).
    scale : ndarray, float64, shape (N,)
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D (K, N), not of shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weights contain NaN or infinity")
    peak = np.abs(w).max(axis=0)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale


def kl_threshold(values, bins=2048, quant_levels=128):
    """Saturation threshold for ``|values|`` by minimum KL divergence.

    Builds a histogram of ``|values|`` with ``bins`` bins; for each candidate threshold
    ``i >= quant_levels`` bins, the reference distribution P is the first ``i`` bins with the
    clipped outliers added to the last one, and Q is P merged into ``quant_levels`` levels and
    expanded back (empty bins stay empty). The threshold with the smallest KL(P || Q) wins.

    Returns
    -------
    float
        The threshold (at most ``max|values|``).
    """
    values = np.abs(np.asarray(values, dtype=np.float64).ravel())
    peak = float(values.max()) if values.size else 0.0
    if peak == 0:
        return 0.0
    hist, edges = np.histogram(values, bins=bins, range=(0, peak))
    hist = hist.astype(np.float64)
    best_i, best_kl = bins, np.inf
    for i in range(quant_levels, bins + 1):
        reference = hist[:i].copy()
        reference[-1] += hist[i:].sum()
        nonzero = hist[:i] > 0
        # merge i bins into quant_levels groups, then spread each group's mass evenly over
        # its non-empty bins
        groups = np.minimum((np.arange(i) * quant_levels) // i, quant_levels - 1)
        mass = np.bincount(groups, weights=hist[:i], minlength=quant_levels)
        count = np.bincount(groups, weights=nonzero, minlength=quant_levels)
        expanded = np.where(nonzero, mass[groups] / np.maximum(count[groups], 1), 0.0)
        p = reference / reference.sum()
        q_total = expanded.sum()
        if q_total == 0:
            continue
        q = expanded / q_total
        mask = p > 0
        if (q[mask] == 0).any():
            continue
        kl = float(np.sum(p[mask] * np.log(p[mask] / q[mask])))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def calibrate(values, method="minmax", percentile=99.99):
    """Real range ``(low, high)`` to quantize, from sample activations.

    Parameters
    ----------
    values : array_like of float
    method : {"minmax", "percentile", "entropy"}
        ``minmax``: the observed extremes. ``percentile``: the ``percentile`` /
        ``100 - percentile`` quantiles. ``entropy``: the KL-divergence threshold of each side
        (:func:`kl_threshold`), never beyond the observed extremes.
    """
    if method not in _METHODS:
        raise ValueError(f"calibration method must be one of {_METHODS}, not {method!r}")
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no calibration values")
    if not np.isfinite(values).all():
        raise ValueError("calibration values contain NaN or infinity")
    low, high = float(values.min()), float(values.max())
    if method == "percentile":
        if not 50 < percentile <= 100:
            raise ValueError(f"percentile must be in (50, 100], not {percentile}")
        low = float(np.percentile(values, 100 - percentile))
        high = float(np.percentile(values, percentile))
    elif method == "entropy":
        positive, negative = values[values > 0], -values[values < 0]
        high = kl_threshold(positive) if positive.size else 0.0
        low = -kl_threshold(negative) if negative.size else 0.0
    return min(low, 0.0), max(high, 0.0)


def activation_params(low, high):
    """Asymmetric int8 :class:`QuantParams` covering ``[low, high]`` (which must hold 0, so
    that zero is exact)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high == low:
        return QuantParams(1.0, 0)
    scale = (high - low) / 255.0
    zero_point = int(np.clip(np.round(-128 - low / scale), -128, 127))
    return QuantParams(scale, zero_point)


def quantize_activations(x, params):
    """Float activations -> int8 with ``params`` (round half to even, saturate)."""
    q = np.round(np.asarray(x, dtype=np.float64) / params.scale) + params.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def fold_zero_point(q_w, bias_float, input_params, weight_scale):
    """int32 bias with the input zero point folded in.

    ``bias'[j] = round(b[j] / (sx * sw[j])) - zx * sum_i qw[i, j]``, so that
    ``sum_i qx[i] qw[i, j] + bias'[j] = sum_i (qx[i] - zx) qw[i, j] + round(b / (sx sw))``
    exactly.
    """
    q_w = np.asarray(q_w)
    acc_scale = input_params.scale * np.asarray(weight_scale, dtype=np.float64)
    bias_q = np.round(np.asarray(bias_float, dtype=np.float64) / acc_scale).astype(np.int64)
    folded = bias_q - int(input_params.zero_point) * q_w.astype(np.int64).sum(axis=0)
    if (folded < golden.INT32_MIN).any() or (folded > golden.INT32_MAX).any():
        raise ValueError("folded bias does not fit in int32; the layer's scales are extreme")
    return folded.astype(np.int32)


def requant_params(input_params, weight_scale, output_params):
    """Per-channel ``(m0, shift)`` for ``sx * sw[j] / sy``."""
    real = input_params.scale * np.asarray(weight_scale, dtype=np.float64) / output_params.scale
    return golden.quantize_multiplier(real)


def fold_bn_sign(gamma, beta, mean, var, eps=1e-5):
    """Fold batch-norm + sign of a binary layer into integer thresholds.

    The float output is ``+1`` where ``gamma * (acc - mean) / sqrt(var + eps) + beta >= 0``.

    Returns
    -------
    thresholds : ndarray, int32, shape (N, 1)
        ``out = [acc' >= T]`` with ``acc'`` the dot product of the (possibly negated) weights.
    flip : ndarray of bool, shape (N,)
        Channels whose weights must be negated (``gamma < 0``).
    """
    gamma, beta, mean, var = (np.asarray(v, dtype=np.float64) for v in
                              (gamma, beta, mean, var))
    sigma = np.sqrt(var + eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        boundary = mean - beta * sigma / gamma
    flip = gamma < 0
    # gamma > 0: acc >= boundary      -> T = ceil(boundary)
    # gamma < 0: acc <= boundary      -> -acc >= -boundary -> T = ceil(-boundary)
    threshold = np.where(flip, np.ceil(-boundary), np.ceil(boundary))
    # gamma == 0: the output is constant, sign(beta) (sign(0) = +1)
    always = np.int64(golden.INT32_MIN)
    never = np.int64(golden.INT32_MAX)
    threshold = np.where(gamma == 0, np.where(beta >= 0, always, never), threshold)
    threshold = np.clip(threshold, golden.INT32_MIN, golden.INT32_MAX)
    return threshold.astype(np.int32).reshape(-1, 1), flip
