"""Byte layouts of tensors in the device's buffers, for one RUN.

The host writes tensors in these layouts (with WRITE) and reads results back (with READ);
the device's command sequencer reads them in the same layouts. NumPy only.

INT8 engine (array of ``rows x cols`` processing elements)
-----------------------------------------------------------
activations (m, k) int8
    Row tiles of ``rows`` rows; inside a tile, one ``rows``-byte word per reduction step:
    byte ``((t * k) + kk) * rows + r`` holds ``a[t * rows + r, kk]`` (rows past ``m`` are 0).
    Each word feeds the array's rows in one cycle.
weights (k, n) int8
    Column tiles of ``cols`` columns; byte ``((t * k) + kk) * cols + c`` holds
    ``w[kk, t * cols + c]`` (columns past ``n`` are 0).
parameters, per output channel
    12 bytes: bias int32, m0 int32, shift int8, 3 bytes of zero padding.
outputs (m, n)
    Row-major; int32 little-endian (raw accumulators) or int8 (requantized).

Binary engine (``pe`` output channels x ``simd`` input bits per cycle, ``simd`` a multiple
of 8)
-----------------------------------------------------------------------------------------
activations (m, k) in {-1, +1}
    One row per input vector: ``ceil(k / simd)`` words of ``simd`` bits, little-endian, bit
    ``i`` of the row is element ``i`` (1 = +1), padding bits 0.
weights (n, k) in {-1, +1}
    One row per output channel, same packing.
parameters
    Thresholds, ``n x T`` int32 little-endian (channel-major), for the threshold mode.
outputs
    Raw dot products: (m, n) int32 row-major. One threshold: packed bits in the activations
    layout (so the result feeds the next binary layer as is). Several thresholds: (m, n)
    uint8 counts.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PARAM_RECORD_BYTES",
    "int8_activation_bytes", "int8_weight_bytes", "int8_params_bytes",
    "unpack_int8_outputs", "binary_row_bytes", "pack_binary_rows", "unpack_binary_rows",
]

PARAM_RECORD_BYTES = 12
_PARAM_DTYPE = np.dtype([("bias", "<i4"), ("m0", "<i4"), ("shift", "i1"), ("pad", "V3")])
assert _PARAM_DTYPE.itemsize == PARAM_RECORD_BYTES


def _tiles(size, tile):
    return -(-size // tile)


def int8_activation_bytes(a, rows):
    """Activations ``a`` (m, k) int8 in the row-tile layout, as bytes."""
    m, k = a.shape
    tiles = _tiles(m, rows)
    padded = np.zeros((tiles * rows, k), dtype=np.int8)
    padded[:m] = a
    # (tiles, rows, k) -> (tiles, k, rows)
    return padded.reshape(tiles, rows, k).transpose(0, 2, 1).tobytes()


def int8_weight_bytes(w, cols):
    """Weights ``w`` (k, n) int8 in the column-tile layout, as bytes."""
    k, n = w.shape
    tiles = _tiles(n, cols)
    padded = np.zeros((k, tiles * cols), dtype=np.int8)
    padded[:, :n] = w
    # (k, tiles, cols) -> (tiles, k, cols)
    return padded.reshape(k, tiles, cols).transpose(1, 0, 2).tobytes()


def int8_params_bytes(bias, m0, shift):
    """Per-channel parameter records (bias, m0, shift) as bytes."""
    bias, m0, shift = np.broadcast_arrays(np.asarray(bias), np.asarray(m0), np.asarray(shift))
    records = np.zeros(bias.shape, dtype=_PARAM_DTYPE)
    records["bias"], records["m0"], records["shift"] = bias, m0, shift
    return records.tobytes()


def unpack_int8_outputs(data, m, n, requantized):
    """Outputs read back from the device: (m, n) int8 or int32."""
    dtype = np.dtype(np.int8) if requantized else np.dtype("<i4")
    return np.frombuffer(bytes(data), dtype=dtype, count=m * n).reshape(m, n).astype(
        np.int8 if requantized else np.int32)


def binary_row_bytes(k, simd):
    """Bytes one packed row of ``k`` bits takes with ``simd``-bit words."""
    if simd % 8:
        raise ValueError(f"simd must be a multiple of 8 for the buffer layout, not {simd}")
    return _tiles(k, simd) * simd // 8


def pack_binary_rows(values, simd):
    """±1 values (rows, k) -> packed rows as bytes (see module docstring)."""
    values = np.asarray(values)
    rows, k = values.shape
    bits = np.zeros((rows, binary_row_bytes(k, simd) * 8), dtype=np.uint8)
    bits[:, :k] = values > 0
    return np.packbits(bits, axis=1, bitorder="little").tobytes()


def unpack_binary_rows(data, rows, k, simd):
    """Packed rows (bytes) -> ±1 int8 (rows, k)."""
    row_bytes = binary_row_bytes(k, simd)
    packed = np.frombuffer(bytes(data), dtype=np.uint8, count=rows * row_bytes)
    bits = np.unpackbits(packed.reshape(rows, row_bytes), axis=1, bitorder="little")[:, :k]
    return np.where(bits == 1, 1, -1).astype(np.int8)
