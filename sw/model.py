"""Quantized models that qaccel runs layer by layer, and their file format. NumPy only.

Two kinds of multi-layer perceptron:

:class:`Int8MLP`
    int8 activations (asymmetric) and weights (per-channel symmetric); each hidden layer is a
    GEMM with on-chip requantization (bias, ``m0``/``shift``, zero point, ReLU as a clamp); the
    last layer returns int32 accumulators that the host scales into logits.
:class:`BinaryMLP`
    ±1 activations and weights; hidden layers end in one threshold per channel (batch-norm and
    sign folded); the last layer returns the raw dot products, scaled into logits.

Each model runs on the golden model (:meth:`forward_golden`) or on an
:class:`~qaccel.sw.Accelerator` (:meth:`forward`); both return the integer outputs of the last
layer, so results can be compared bit for bit.

File format (``.npz``, written by :func:`save_model`)
----------------------------------------------------
``format``: ``"qaccel-model-1"``; ``kind``: ``"int8"`` or ``"binary"``; ``num_layers``.

int8: ``input_scale``, ``input_zero_point``; per layer ``i``: ``layer{i}_weights`` (K, N) int8,
``layer{i}_bias`` (N,) int32, ``layer{i}_acc_scale`` (N,) float64 (real value of one
accumulator unit); hidden layers also ``layer{i}_m0``, ``layer{i}_shift`` (N,) int32 and
``layer{i}_clamp`` = (zp_out, act_min, act_max) int32.

binary: ``input_threshold`` (K0,) float64 (input feature ``>=`` threshold is +1); per layer:
``layer{i}_weights`` (N, K) int8 of ±1; hidden layers ``layer{i}_thresholds`` (N, 1) int32;
the last layer ``layer{i}_out_scale`` and ``layer{i}_out_offset`` (N,) float64 (logits =
scale * dot + offset).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import golden
from .quantize import QuantParams, quantize_activations

__all__ = ["Int8Layer", "Int8MLP", "BinaryLayer", "BinaryMLP", "save_model", "load_model"]

FORMAT = "qaccel-model-1"


@dataclass
class Int8Layer:
    weights: np.ndarray                  # (K, N) int8
    bias: np.ndarray                     # (N,) int32, input zero point folded in
    acc_scale: np.ndarray                # (N,) float64
    m0: np.ndarray | None = None         # (N,) int32; None for the raw last layer
    shift: np.ndarray | None = None
    clamp: tuple = (0, -128, 127)        # zp_out, act_min, act_max

    @property
    def requantized(self):
        return self.m0 is not None


@dataclass
class Int8MLP:
    input_params: QuantParams
    layers: list = field(default_factory=list)
    kind = "int8"

    def quantize_input(self, x):
        return quantize_activations(x, self.input_params)

    def _layer_golden(self, layer, q):
        acc = golden.gemm_int8(q, layer.weights).astype(np.int64) + layer.bias
        acc = ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)
        if not layer.requantized:
            return acc
        return golden.requantize(acc, layer.m0, layer.shift, *layer.clamp)

    def forward_golden(self, x):
        """int32 accumulators of the last layer for float inputs ``x`` (M, K0)."""
        q = self.quantize_input(x)
        for layer in self.layers:
            q = self._layer_golden(layer, q)
        return q

    def forward(self, accelerator, x):
        """The same, with every layer run on ``accelerator``."""
        q = self.quantize_input(x)
        for layer in self.layers:
            if layer.requantized:
                zp_out, act_min, act_max = (int(v) for v in layer.clamp)
                q = accelerator.gemm(q, layer.weights, bias=layer.bias, m0=layer.m0,
                                     shift=layer.shift, zp_out=zp_out, act_min=act_min,
                                     act_max=act_max)
            else:
                q = accelerator.gemm(q, layer.weights, bias=layer.bias)
        return q

    def logits(self, out):
        return out.astype(np.float64) * self.layers[-1].acc_scale

    def macs(self, batch):
        return batch * sum(int(l.weights.shape[0] * l.weights.shape[1]) for l in self.layers)


@dataclass
class BinaryLayer:
    weights: np.ndarray                  # (N, K) int8 of ±1
    thresholds: np.ndarray | None = None  # (N, 1) int32; None for the raw last layer
    out_scale: np.ndarray | None = None  # (N,) float64, last layer
    out_offset: np.ndarray | None = None


@dataclass
class BinaryMLP:
    input_threshold: np.ndarray          # (K0,) float64
    layers: list = field(default_factory=list)
    kind = "binary"

    def binarize_input(self, x):
        return np.where(np.asarray(x) >= self.input_threshold, 1, -1).astype(np.int8)

    def forward_golden(self, x):
        """int32 dot products of the last layer for float inputs ``x``."""
        h = self.binarize_input(x)
        for layer in self.layers:
            k = h.shape[1]
            dot = golden.binary_gemm(golden.pack_bits(h), golden.pack_bits(layer.weights), k)
            if layer.thresholds is None:
                return dot
            h = (2 * golden.thresholds(dot, layer.thresholds) - 1).astype(np.int8)
        raise ValueError("a BinaryMLP must end in a raw layer")

    def forward(self, accelerator, x):
        h = self.binarize_input(x)
        for layer in self.layers:
            if layer.thresholds is None:
                return accelerator.binary_layer(h, layer.weights)
            h = (2 * accelerator.binary_layer(h, layer.weights, thresholds=layer.thresholds)
                 - 1).astype(np.int8)
        raise ValueError("a BinaryMLP must end in a raw layer")

    def logits(self, out):
        last = self.layers[-1]
        return out.astype(np.float64) * last.out_scale + last.out_offset

    def ops(self, batch):
        return batch * sum(int(l.weights.shape[0] * l.weights.shape[1]) for l in self.layers)


def save_model(path, model):
    """Write ``model`` as ``.npz`` (schema in the module docstring)."""
    arrays = {"format": np.array(FORMAT), "kind": np.array(model.kind),
              "num_layers": np.array(len(model.layers))}
    if model.kind == "int8":
        arrays["input_scale"] = np.array(model.input_params.scale)
        arrays["input_zero_point"] = np.array(model.input_params.zero_point)
        for i, layer in enumerate(model.layers):
            arrays[f"layer{i}_weights"] = layer.weights
            arrays[f"layer{i}_bias"] = layer.bias
            arrays[f"layer{i}_acc_scale"] = layer.acc_scale
            if layer.requantized:
                arrays[f"layer{i}_m0"] = layer.m0
                arrays[f"layer{i}_shift"] = layer.shift
                arrays[f"layer{i}_clamp"] = np.array(layer.clamp, dtype=np.int32)
    else:
        arrays["input_threshold"] = model.input_threshold
        for i, layer in enumerate(model.layers):
            arrays[f"layer{i}_weights"] = layer.weights
            if layer.thresholds is not None:
                arrays[f"layer{i}_thresholds"] = layer.thresholds
            else:
                arrays[f"layer{i}_out_scale"] = layer.out_scale
                arrays[f"layer{i}_out_offset"] = layer.out_offset
    np.savez(path, **arrays)


def load_model(path):
    """Read a model written by :func:`save_model`; raises ``ValueError`` on another format."""
    with np.load(path, allow_pickle=False) as data:
        if "format" not in data or str(data["format"]) != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file")
        kind, count = str(data["kind"]), int(data["num_layers"])
        if kind == "int8":
            model = Int8MLP(QuantParams(float(data["input_scale"]),
                                        int(data["input_zero_point"])))
            for i in range(count):
                layer = Int8Layer(data[f"layer{i}_weights"], data[f"layer{i}_bias"],
                                  data[f"layer{i}_acc_scale"])
                if f"layer{i}_m0" in data:
                    layer.m0, layer.shift = data[f"layer{i}_m0"], data[f"layer{i}_shift"]
                    layer.clamp = tuple(int(v) for v in data[f"layer{i}_clamp"])
                model.layers.append(layer)
        elif kind == "binary":
            model = BinaryMLP(data["input_threshold"])
            for i in range(count):
                layer = BinaryLayer(data[f"layer{i}_weights"])
                if f"layer{i}_thresholds" in data:
                    layer.thresholds = data[f"layer{i}_thresholds"]
                else:
                    layer.out_scale = data[f"layer{i}_out_scale"]
                    layer.out_offset = data[f"layer{i}_out_offset"]
                model.layers.append(layer)
        else:
            raise ValueError(f"{path}: unknown model kind {kind!r}")
    return model
