"""From float multi-layer perceptrons to the quantized models qaccel runs. NumPy only.

- :func:`quantize_mlp`: post-training quantization of a float ReLU MLP (any source: NumPy,
  scikit-learn's ``coefs_``/``intercepts_``, PyTorch ``weight.T``/``bias``) into an
  :class:`~qaccel.sw.model.Int8MLP`.
- :func:`train_binary_mlp`: trains a binarized MLP (±1 weights and activations, batch-norm)
  with the straight-through estimator, in NumPy, and folds it into a
  :class:`~qaccel.sw.model.BinaryMLP` with integer thresholds.
"""

from __future__ import annotations

import numpy as np

from . import quantize as q
from .model import BinaryLayer, BinaryMLP, Int8Layer, Int8MLP

__all__ = ["float_forward", "quantize_mlp", "train_binary_mlp"]


def float_forward(layers, x):
    """Float ReLU MLP: ``layers`` is a list of ``(W (K, N), b (N,))``; no ReLU after the
    last layer. Returns the activations after each layer."""
    outputs = []
    h = np.asarray(x, dtype=np.float64)
    for index, (w, b) in enumerate(layers):
        h = h @ w + b
        if index < len(layers) - 1:
            h = np.maximum(h, 0)
        outputs.append(h)
    return outputs


def quantize_mlp(layers, calibration_x, method="entropy"):
    """Quantize a float ReLU MLP for the INT8 engine.

    Parameters
    ----------
    layers : list of (ndarray (K, N), ndarray (N,))
        Weights and biases; ReLU after every layer but the last.
    calibration_x : ndarray (M, K0)
        Representative inputs for activation ranges.
    method : {"minmax", "percentile", "entropy"}
        Calibration of the hidden activations (the input always uses min/max).

    Returns
    -------
    Int8MLP
    """
    if not layers:
        raise ValueError("an MLP needs at least one layer")
    activations = float_forward(layers, calibration_x)
    in_params = q.activation_params(*q.calibrate(calibration_x, "minmax"))
    model = Int8MLP(in_params)
    for index, (w, b) in enumerate(layers):
        q_w, w_scale = q.quantize_weights_per_channel(w)
        bias = q.fold_zero_point(q_w, b, in_params, w_scale)
        acc_scale = in_params.scale * w_scale
        if index == len(layers) - 1:
            model.layers.append(Int8Layer(q_w, bias, acc_scale))
            break
        out_params = q.activation_params(*q.calibrate(activations[index], method))
        m0, shift = q.requant_params(in_params, w_scale, out_params)
        # ReLU: clamp below at the zero point
        model.layers.append(Int8Layer(q_w, bias, acc_scale, m0, shift,
                                      (out_params.zero_point, out_params.zero_point, 127)))
        in_params = out_params
    return model


def _sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def train_binary_mlp(x, y, *, hidden=(256,), classes=None, input_threshold=None, epochs=30,
                     batch=64, lr=0.01, seed=0, progress=None):
    """Train a binarized MLP with the straight-through estimator and fold it.

    Every layer is ``sign(W) @ h`` followed by batch-norm; hidden layers end in ``sign``
    (folded into one integer threshold per channel), the last layer's batch-norm becomes the
    logits' scale and offset.

    Parameters
    ----------
    x : ndarray (M, K0) float
    y : ndarray (M,) int class labels
    hidden : tuple of int
    input_threshold : float or ndarray (K0,), optional
        Inputs ``>=`` it become +1; defaults to the per-feature mean.
    progress : callable(epoch, epochs), optional

    Returns
    -------
    BinaryMLP
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    classes = int(classes or y.max() + 1)
    if input_threshold is None:
        input_threshold = x.mean(axis=0)
    input_threshold = np.broadcast_to(np.asarray(input_threshold, np.float64),
                                      (x.shape[1],)).copy()
    xb = _sign(x - input_threshold)
    sizes = [x.shape[1], *hidden, classes]
    weights = [rng.normal(0, 1 / np.sqrt(a), (a, b)) for a, b in zip(sizes, sizes[1:])]
    gammas = [np.ones(b) for b in sizes[1:]]
    betas = [np.zeros(b) for b in sizes[1:]]
    run_mean = [np.zeros(b) for b in sizes[1:]]
    run_var = [np.ones(b) for b in sizes[1:]]
    params = weights + gammas + betas
    moment1 = [np.zeros_like(p) for p in params]
    moment2 = [np.zeros_like(p) for p in params]
    onehot = np.eye(classes)[y]
    step = 0
    last = len(weights) - 1
    for epoch in range(epochs):
        order = rng.permutation(len(xb))
        for start in range(0, len(xb), batch):
            index = order[start:start + batch]
            h, cache = xb[index], []
            for l, w in enumerate(weights):
                w_bin = _sign(w)
                a = h @ w_bin
                mu, var = a.mean(0), a.var(0) + 1e-5
                a_hat = (a - mu) / np.sqrt(var)
                run_mean[l] = 0.9 * run_mean[l] + 0.1 * mu
                run_var[l] = 0.9 * run_var[l] + 0.1 * var
                z = gammas[l] * a_hat + betas[l]
                cache.append((h, w_bin, var, a_hat, z))
                if l < last:
                    h = _sign(z)
            p = np.exp(z - z.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            dz = (p - onehot[index]) / len(index)
            grads_w, grads_g, grads_b = [None] * len(weights), [None] * len(weights), \
                [None] * len(weights)
            for l in reversed(range(len(weights))):
                h, w_bin, var, a_hat, z = cache[l]
                if l < last:
                    dz = dz * (np.abs(z) <= 1)  # straight-through estimator of sign
                grads_g[l] = (dz * a_hat).sum(0)
                grads_b[l] = dz.sum(0)
                da_hat = dz * gammas[l]
                da = (da_hat - da_hat.mean(0) - a_hat * (da_hat * a_hat).mean(0)) / np.sqrt(var)
                grads_w[l] = h.T @ da
                dz = da @ w_bin.T
            step += 1
            for j, (param, grad) in enumerate(zip(params, grads_w + grads_g + grads_b)):
                moment1[j] = 0.9 * moment1[j] + 0.1 * grad
                moment2[j] = 0.999 * moment2[j] + 0.001 * grad * grad
                param -= lr * (moment1[j] / (1 - 0.9**step)) / (
                    np.sqrt(moment2[j] / (1 - 0.999**step)) + 1e-8)
            for w in weights:
                np.clip(w, -1, 1, out=w)
        if progress:
            progress(epoch + 1, epochs)

    model = BinaryMLP(input_threshold)
    for l, w in enumerate(weights):
        w_bin = _sign(w).T.astype(np.int8)        # (N, K): one row per output channel
        if l < last:
            thresholds, flip = q.fold_bn_sign(gammas[l], betas[l], run_mean[l], run_var[l],
                                              eps=0.0)
            w_bin[flip] = -w_bin[flip]
            model.layers.append(BinaryLayer(w_bin, thresholds))
        else:
            scale = gammas[l] / np.sqrt(run_var[l])
            model.layers.append(BinaryLayer(w_bin, out_scale=scale,
                                            out_offset=betas[l] - scale * run_mean[l]))
    return model
