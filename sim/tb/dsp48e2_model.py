"""Testbench of :class:`qaccel.hw.dsp48e2_model.DSP48E2Model` on its own.

* The WP486 use (A = a << 18, D = b, B = c): the split of P against
  :func:`qaccel.sw.golden.dsp48e2_pair`, for all corner triples and seeded random ones.
* The full-width datapath: random 30-bit A, 27-bit D and 18-bit B against the UG579 equation
  ``P = wrap48(wrap27(A[26:0] + D) * B)`` (pre-adder overflow included).
* Clock enables: all seven are driven by one random pattern, as :class:`DualMAC` does; the
  pipeline must hold while it is low.

Parameters (``tb.params``): ``latency``.
"""

import itertools

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from qaccel.sim.tbkit import TB, signed
from qaccel.sw import golden

CORNERS = (-128, -127, -1, 0, 1, 127)
CLOCK_ENABLES = ("CEA2", "CEB1", "CEB2", "CED", "CEAD", "CEM", "CEP")


def ug579_p(a_port, d_port, b_port):
    """P of the modelled mode from the raw (unsigned) port values, per UG579."""
    ad = signed((signed(a_port & ((1 << 27) - 1), 27) + signed(d_port, 27)), 27)
    return (ad * signed(b_port, 18)) & ((1 << 48) - 1)


class ModelTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        self.latency = self.params["latency"]
        for port in ("A", "B", "D", *CLOCK_ENABLES):
            getattr(dut, port).value = 0

    async def run(self, a_ports, d_ports, b_ports, ce, check):
        """Drive raw port values; ``check(index, p)`` is called with P for each sampled input."""
        sampled = []
        await FallingEdge(self.clock)
        for index in range(len(a_ports)):
            self.dut.A.value = int(a_ports[index])
            self.dut.D.value = int(d_ports[index])
            self.dut.B.value = int(b_ports[index])
            for name in CLOCK_ENABLES:
                getattr(self.dut, name).value = int(ce[index])
            await RisingEdge(self.clock)
            if ce[index]:
                sampled.append(index)
            await FallingEdge(self.clock)
            if len(sampled) >= self.latency:
                check(sampled[-self.latency], self.dut.P.value.to_unsigned())

    async def run_int8(self, a, b, c, ce):
        """The WP486 packing: A = a << 18, D = b, B = c; P split against the golden model."""
        exp_ac, exp_bc = golden.dsp48e2_pair(a, b, c)
        checked = []

        def check(index, p):
            want_p = ug579_p((int(a[index]) << 18) & ((1 << 30) - 1), int(b[index]) & ((1 << 27) - 1),
                             int(c[index]) & ((1 << 18) - 1))
            assert p == want_p, f"a={a[index]} b={b[index]} c={c[index]}: P={p:#x}, UG579 {want_p:#x}"
            high = (signed(p, 48) >> 18) + ((p >> 17) & 1)
            low = signed(p & 0x3FFFF, 18)
            want = (int(exp_ac[index]), int(exp_bc[index]))
            assert (high, low) == want, (
                f"a={a[index]} b={b[index]} c={c[index]}: fields {(high, low)}, golden {want}")
            checked.append(index)

        a_ports = [(int(x) << 18) & ((1 << 30) - 1) for x in a]
        d_ports = [int(x) & ((1 << 27) - 1) for x in b]
        b_ports = [int(x) & ((1 << 18) - 1) for x in c]
        await self.run(a_ports, d_ports, b_ports, ce, check)
        return checked


@cocotb.test()
async def packing_corners(dut):
    """WP486 packing for all 6**3 corner triples: P and its split match the golden model."""
    tb = ModelTB(dut)
    await tb.reset()
    triples = np.array(list(itertools.product(CORNERS, repeat=3)), dtype=np.int8)
    triples = np.concatenate([triples, np.zeros((tb.latency, 3), dtype=np.int8)])
    checked = await tb.run_int8(triples[:, 0], triples[:, 1], triples[:, 2],
                                np.ones(len(triples), dtype=bool))
    assert checked[:6 ** 3] == list(range(6 ** 3))


@cocotb.test()
async def packing_random_with_stalls(dut):
    """Seeded random int8 triples under random clock-enable stalls."""
    tb = ModelTB(dut)
    await tb.reset()
    count = 2000
    ops = tb.rng.integers(-128, 128, size=(count, 3)).astype(np.int8)
    ce = tb.rng.random(count) < 0.7
    ce[-3 * tb.latency:] = True
    checked = await tb.run_int8(ops[:, 0], ops[:, 1], ops[:, 2], ce)
    assert len(checked) >= int(ce.sum()) - tb.latency


@cocotb.test()
async def full_width_datapath(dut):
    """Random full-width A, D, B (pre-adder and 48-bit P wrap included) against UG579."""
    tb = ModelTB(dut)
    await tb.reset()
    count = 1500
    a_ports = [int(x) for x in tb.rng.integers(0, 1 << 30, count)]
    d_ports = [int(x) for x in tb.rng.integers(0, 1 << 27, count)]
    b_ports = [int(x) for x in tb.rng.integers(0, 1 << 18, count)]
    # extremes of every port first: most negative / most positive values
    extremes = [(1 << 26, 1 << 26, 1 << 17), ((1 << 26) - 1, (1 << 26) - 1, (1 << 17) - 1),
                (1 << 26, (1 << 26) - 1, 1 << 17), ((1 << 30) - 1, 0, (1 << 17) - 1)]
    for index, (a, d, b) in enumerate(extremes):
        a_ports[index], d_ports[index], b_ports[index] = a, d, b
    ce = tb.rng.random(count) < 0.8
    ce[-3 * tb.latency:] = True
    checked = []

    def check(index, p):
        want = ug579_p(a_ports[index], d_ports[index], b_ports[index])
        assert p == want, (f"A={a_ports[index]:#x} D={d_ports[index]:#x} B={b_ports[index]:#x}: "
                           f"P={p:#x}, UG579 {want:#x}")
        checked.append(index)

    await tb.run(a_ports, d_ports, b_ports, ce, check)
    assert len(checked) >= int(ce.sum()) - tb.latency
