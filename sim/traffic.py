"""Canned protocol traffic, shared by the cocotb ``speed`` test of the top (``sim/tb/top.py``)
and ``bench/cosim.py``, so that both measure the same frames."""

from __future__ import annotations

import numpy as np

from qaccel.sw import protocol as proto

__all__ = ["bulk_write_frames"]


def bulk_write_frames(caps, count, rng):
    """``count`` WRITE frames of ``max_payload`` random bytes each, cycling over the weights
    buffer, with consecutive sequence numbers from 1.

    Parameters
    ----------
    caps : qaccel.sw.protocol.Capabilities
        The device's capabilities (``max_payload``, ``weights_bytes``).
    count : int
        Number of frames.
    rng : numpy.random.Generator
        Source of the payload bytes.

    Returns
    -------
    tuple of (bytes, int)
        The frames back to back on the wire, and the payload bytes they carry.
    """
    step = min(caps.max_payload, caps.weights_bytes)
    offsets = range(0, caps.weights_bytes - step + 1, step)
    frames = []
    for index in range(count):
        chunk = rng.integers(0, 256, step, dtype=np.uint8).tobytes()
        body = proto.write_body(proto.BufferId.WEIGHTS, offsets[index % len(offsets)], chunk)
        frames.append(proto.encode_frame((index + 1) & 0xFF, proto.Opcode.WRITE, body))
    return b"".join(frames), count * step
