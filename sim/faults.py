"""A fault-injecting transport: flips, drops and inserts bytes in both directions.

Sits between the driver and any other transport (the co-simulation, the reference model) to
show that link faults end in a bit-exact result or a raised error, never a silent wrong
answer.
"""

from __future__ import annotations

import numpy as np

from qaccel.sw.transport import Transport

__all__ = ["FaultInjector"]


class FaultInjector(Transport):
    """Corrupts bytes with probability ``rate`` per byte, in each direction.

    Each corrupted byte is flipped (random non-zero XOR), dropped, or followed by an inserted
    random byte, with equal probability. ``counts`` records how many of each happened.
    """

    def __init__(self, inner, rate, seed):
        if not 0 <= rate < 1:
            raise ValueError(f"fault rate must be in [0, 1), not {rate}")
        self.inner = inner
        self.rate = rate
        self.rng = np.random.default_rng(seed)
        self.counts = {"flip": 0, "drop": 0, "insert": 0}
        self.description = f"faults({rate:g}) over {inner.description}"

    def _corrupt(self, data):
        if not data or self.rate == 0:
            return data
        hits = np.flatnonzero(self.rng.random(len(data)) < self.rate)
        if hits.size == 0:
            return data
        out = bytearray()
        previous = 0
        for index in hits:
            out += data[previous:index]
            kind = ("flip", "drop", "insert")[self.rng.integers(3)]
            self.counts[kind] += 1
            if kind == "flip":
                out.append(data[index] ^ int(self.rng.integers(1, 256)))
            elif kind == "insert":
                out.append(data[index])
                out.append(int(self.rng.integers(256)))
            previous = index + 1
        out += data[previous:]
        return bytes(out)

    def write(self, data):
        self.inner.write(self._corrupt(data))

    def read(self, timeout):
        return self._corrupt(self.inner.read(timeout))

    def close(self):
        self.inner.close()
