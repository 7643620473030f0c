"""Testbench of :class:`qaccel.hw.dual_mac.DualMAC`: both products against the golden model of
the backend, for every corner triple, seeded random operands, and random clock-enable stalls.

Parameters (``tb.params``): ``backend`` and ``latency``.

Timing: inputs are written at the falling edge, sampled by the design at the rising edge,
and the outputs are checked at the next falling edge. The expected output after each edge is
the product of the inputs sampled ``latency`` *enabled* edges earlier; while ``ce`` is low the
outputs must hold.
"""

import itertools

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from qaccel.sim.tbkit import TB
from qaccel.sw import golden

CORNERS = (-128, -127, -1, 0, 1, 127)


def expected_products(backend, a, b, c):
    """``(ac, bc)`` from the golden model of ``backend`` (int8 arrays in, int arrays out)."""
    if backend == "dsp48e2":
        ac, bc = golden.dsp48e2_pair(a, b, c)
    elif backend == "ice40":
        # A = {a, b}, B = {c, c}: top = a*c, bottom = b*c
        ac, bc = golden.sb_mac16_dual8x8(a, b, c, c)
    else:
        # Plain multipliers: the exact products, as the golden INT8 GEMM computes them (K = 1).
        ac = [golden.gemm_int8(x.reshape(1, 1), y.reshape(1, 1))[0, 0] for x, y in zip(a, c)]
        bc = [golden.gemm_int8(x.reshape(1, 1), y.reshape(1, 1))[0, 0] for x, y in zip(b, c)]
    return np.asarray(ac, dtype=np.int64), np.asarray(bc, dtype=np.int64)


class DualMacTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        self.backend = self.params["backend"]
        self.latency = self.params["latency"]
        dut.a.value = 0
        dut.b.value = 0
        dut.c.value = 0
        dut.ce.value = 1

    async def run(self, a, b, c, ce):
        """Drive the operand triples with the clock-enable pattern ``ce``; check every cycle.

        Returns the number of checked output cycles.
        """
        exp_ac, exp_bc = expected_products(self.backend, a, b, c)
        sampled = []   # indices of the triples sampled at enabled edges, in order
        checked = 0
        await FallingEdge(self.clock)
        for index in range(len(a)):
            self.dut.a.value = int(a[index])
            self.dut.b.value = int(b[index])
            self.dut.c.value = int(c[index])
            self.dut.ce.value = int(ce[index])
            await RisingEdge(self.clock)
            if ce[index]:
                sampled.append(index)
            await FallingEdge(self.clock)
            if len(sampled) >= self.latency:
                source = sampled[-self.latency]
                got = (self.dut.ac.value.to_signed(), self.dut.bc.value.to_signed())
                want = (int(exp_ac[source]), int(exp_bc[source]))
                assert got == want, (
                    f"{self.backend}: a={a[source]} b={b[source]} c={c[source]}: "
                    f"(ac, bc) = {got}, golden {want} (cycle {index}, ce={ce[index]})")
                checked += 1
        return checked


@cocotb.test()
async def corner_triples(dut):
    """All 6**3 triples of -128, -127, -1, 0, 1, 127, back to back (ce always high)."""
    tb = DualMacTB(dut)
    await tb.reset()
    triples = np.array(list(itertools.product(CORNERS, repeat=3)), dtype=np.int8)
    flush = np.zeros((tb.latency, 3), dtype=np.int8)  # push the last triples out
    triples = np.concatenate([triples, flush])
    ce = np.ones(len(triples), dtype=bool)
    checked = await tb.run(triples[:, 0], triples[:, 1], triples[:, 2], ce)
    assert checked == len(triples) - tb.latency + 1


@cocotb.test()
async def random_with_stalls(dut):
    """Seeded random operands (a quarter of them corner values) under random ce stalls."""
    tb = DualMacTB(dut)
    await tb.reset()
    count = 3000
    ops = tb.rng.integers(-128, 128, size=(count, 3)).astype(np.int8)
    corner_mask = tb.rng.random((count, 3)) < 0.25
    ops[corner_mask] = tb.rng.choice(np.array(CORNERS, dtype=np.int8), size=corner_mask.sum())
    ce = tb.rng.random(count) < 0.7
    ce[-3 * tb.latency:] = True   # drain the pipeline at the end
    checked = await tb.run(ops[:, 0], ops[:, 1], ops[:, 2], ce)
    assert checked >= int(ce.sum()) - tb.latency


@cocotb.test()
async def long_stall_holds(dut):
    """A long stall in the middle of the pipeline: every stage holds, nothing is lost."""
    tb = DualMacTB(dut)
    await tb.reset()
    count = 40
    ops = tb.rng.integers(-128, 128, size=(count, 3)).astype(np.int8)
    ce = np.ones(count, dtype=bool)
    ce[10:25] = False      # 15-cycle freeze with new (ignored) inputs on every cycle
    ce[27:29] = False
    await tb.run(ops[:, 0], ops[:, 1], ops[:, 2], ce)
