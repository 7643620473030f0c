"""Stream-level word formats of the binary engine (``qaccel.hw.binary``), NumPy only.

The golden model packs ±1 vectors into uint64 words (``golden.pack_bits``: element ``i`` ->
word ``i // 64``, bit ``i % 64``, bit 1 = +1). The engine's streams carry ``simd``-bit words
instead: element ``i`` -> word ``i // simd``, bit ``i % simd``, for any ``simd`` (the buffer
byte layout of ``qaccel.sw.layout`` is the same bits for ``simd`` a multiple of 8). These
functions convert between the two and build command words for testbenches and benches that
drive the engine directly.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "OP_RUN", "OP_LOAD_WEIGHTS", "OP_LOAD_THRESHOLDS",
    "MODE_RAW", "MODE_THRESHOLDS", "MODE_BINARY",
    "COMMAND_FIELDS", "command", "split_words", "join_words", "words_per_vector",
]

OP_RUN, OP_LOAD_WEIGHTS, OP_LOAD_THRESHOLDS = 0, 1, 2
MODE_RAW, MODE_THRESHOLDS, MODE_BINARY = 0, 1, 2

#: (name, width) of the command fields, least significant first (``hw.binary.COMMAND_LAYOUT``).
COMMAND_FIELDS = (("op", 2), ("mode", 2), ("t", 8), ("k", 16), ("n", 16), ("m", 16))


def command(op, *, k=0, n=0, t=0, mode=0, m=0):
    """The command payload (an int) for the engine's ``cmd`` stream.

    Raises
    ------
    ValueError
        If a field does not fit its width.
    """
    values = {"op": op, "mode": mode, "t": t, "k": k, "n": n, "m": m}
    word = 0
    offset = 0
    for name, width in COMMAND_FIELDS:
        value = int(values[name])
        if not 0 <= value < 1 << width:
            raise ValueError(f"command field {name} must be in [0, {(1 << width) - 1}], "
                             f"not {value}")
        word |= value << offset
        offset += width
    return word


def words_per_vector(k, simd):
    """Number of ``simd``-bit words holding ``k`` bits: ``ceil(k / simd)``."""
    return -(-k // simd)


def _bits(packed, k):
    packed = np.asarray(packed)
    if packed.dtype != np.uint64:
        raise TypeError(f"packed must have dtype uint64, got dtype {packed.dtype}")
    if packed.ndim != 2 or packed.shape[1] != -(-k // 64):
        raise ValueError(f"packed must have shape (rows, ceil(k/64) = {-(-k // 64)}) for "
                         f"k={k}, got {packed.shape}")
    raw = np.ascontiguousarray(packed.astype("<u8")).view(np.uint8)
    return np.unpackbits(raw, axis=-1, count=k, bitorder="little")


def split_words(packed, k, simd):
    """Re-slice golden-packed rows into ``simd``-bit words.

    Parameters
    ----------
    packed : ndarray of uint64, shape (rows, ceil(k / 64))
        Rows packed like ``golden.pack_bits``.
    k : int
        Valid bits per row.
    simd : int
        Word width.

    Returns
    -------
    list of list of int
        ``ceil(k / simd)`` words per row; padding bits 0.
    """
    if simd < 1:
        raise ValueError(f"simd must be at least 1, not {simd}")
    bits = _bits(packed, k)
    count = words_per_vector(k, simd)
    padded = np.zeros((bits.shape[0], count * simd), dtype=np.uint8)
    padded[:, :k] = bits
    grouped = np.packbits(padded.reshape(bits.shape[0], count, simd), axis=-1,
                          bitorder="little")
    return [[int.from_bytes(word.tobytes(), "little") for word in row] for row in grouped]


def join_words(words, n, simd):
    """Pack rows of ``simd``-bit words (``n`` valid bits each) back into golden uint64 rows.

    Bits past ``n`` in the last word of a row are ignored.

    Parameters
    ----------
    words : sequence of sequence of int
        ``ceil(n / simd)`` words per row.
    n : int
        Valid bits per row.
    simd : int
        Word width.

    Returns
    -------
    ndarray of uint64, shape (rows, ceil(n / 64))
    """
    count = words_per_vector(n, simd)
    nbytes = -(-simd // 8)
    rows = []
    for row in words:
        if len(row) != count:
            raise ValueError(f"each row must hold ceil(n/simd) = {count} words, got {len(row)}")
        raw = np.frombuffer(b"".join(int(word).to_bytes(nbytes, "little") for word in row),
                            dtype=np.uint8).reshape(count, nbytes)
        rows.append(np.unpackbits(raw, axis=-1, count=simd, bitorder="little").reshape(-1)[:n])
    bits = np.array(rows, dtype=np.uint8).reshape(len(rows), n)
    n_words = -(-n // 64)
    packed = np.packbits(bits, axis=-1, bitorder="little")
    buf = np.zeros((bits.shape[0], 8 * n_words), dtype=np.uint8)
    buf[:, :packed.shape[1]] = packed
    return buf.view("<u8").astype(np.uint64)
