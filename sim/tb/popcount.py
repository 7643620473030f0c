"""Testbench of :mod:`qaccel.hw.popcount`: every structure at several widths (a bank built by
``tests/test_binary.py``) against ``int.bit_count``, exhaustively over the low 13 input bits
and on seeded random and corner vectors over the full width.

Parameters (``params``): ``widths``, the widths in the bank.
"""

import cocotb
import numpy as np
from cocotb.triggers import Timer

from qaccel.hw.popcount import POPCOUNT_STRUCTURES
from qaccel.sim.tbkit import params


@cocotb.test()
async def exhaustive_and_random(dut):
    widths = params()["widths"]
    top = max(widths)
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    full = (1 << top) - 1
    values = list(range(1 << min(13, top)))
    values += [full, full ^ 1, full >> 1, int("01" * top, 2) & full, int("10" * top, 2) & full]
    values += [int.from_bytes(rng.bytes(8), "little") & full for _ in range(2000)]
    structures = params().get("structures", POPCOUNT_STRUCTURES)
    outputs = {(s, w): getattr(dut, f"{s}_{w}") for s in structures for w in widths}
    for value in values:
        dut.i.value = value
        await Timer(1, "ns")
        for (structure, width), port in outputs.items():
            expected = (value & ((1 << width) - 1)).bit_count()
            got = int(port.value)
            assert got == expected, f"{structure} popcount of {width} bits of {value:#x}: {got}"
