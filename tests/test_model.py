"""Quantized MLPs: conversion from float, binary STE training, the .npz format."""

import numpy as np
import pytest

from qaccel.sw.mlp import float_forward, quantize_mlp, train_binary_mlp
from qaccel.sw.model import load_model, save_model


def blobs(rng, n=600, k=16, classes=4):
    centers = rng.normal(0, 3, (classes, k))
    y = rng.integers(0, classes, n)
    return centers[y] + rng.normal(0, 1, (n, k)), y


def test_int8_mlp_tracks_float_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x, y = blobs(rng)
    layers = [(rng.normal(0, 0.3, (16, 12)), rng.normal(0, 0.1, 12)),
              (rng.normal(0, 0.3, (12, 4)), rng.normal(0, 0.1, 4))]
    model = quantize_mlp(layers, x, "entropy")
    float_logits = float_forward(layers, x)[-1]
    int_logits = model.logits(model.forward_golden(x))
    agree = (float_logits.argmax(1) == int_logits.argmax(1)).mean()
    assert agree > 0.95
    path = tmp_path / "m.npz"
    save_model(path, model)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.forward_golden(x), model.forward_golden(x))


def test_binary_mlp_learns_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    x, y = blobs(rng)
    model = train_binary_mlp(x[:500], y[:500], hidden=(64,), epochs=15, seed=2)
    accuracy = (model.logits(model.forward_golden(x[500:])).argmax(1) == y[500:]).mean()
    assert accuracy > 0.85
    path = tmp_path / "b.npz"
    save_model(path, model)
    np.testing.assert_array_equal(load_model(path).forward_golden(x), model.forward_golden(x))


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(ValueError, match="not a qaccel-model-1 file"):
        load_model(path)
