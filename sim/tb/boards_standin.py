"""Testbench of :class:`qaccel.boards.standin.StandIn` (the board-bring-up design) against the
golden model: INT8 outer products accumulated over several commands equal
``golden.gemm_int8``, binary dot products equal ``golden.binary_gemm``, rejected headers pulse
``error``; with random idle cycles on the input and backpressure on the output.

Parameters (``params``): ``rows``, ``cols``, ``pe``, ``simd``, ``int8``, ``binary``.
"""

import cocotb
import numpy as np
from cocotb.triggers import ReadOnly, RisingEdge

from qaccel.boards.standin import HEADER_BINARY, HEADER_CLEAR_MAC, HEADER_MAC
from qaccel.sim.streams import StreamSink, StreamSource, periodic_pause, random_pause
from qaccel.sim.tbkit import TB
from qaccel.sw import golden

INT8_CORNERS = np.array([-128, 127, 0, -1, 1, -127, 64, -64], dtype=np.int8)


class StandInTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        p = self.params
        self.rows, self.cols = p["rows"], p["cols"]
        self.pe, self.simd = p["pe"], p["simd"]
        self.source = StreamSource(dut, "rx", self.clock)
        self.sink = StreamSink(dut, "tx", self.clock)
        self.errors = 0
        # model state: the accumulators (int64, wrapped to int32 when compared)
        self.acc = np.zeros((self.rows, self.cols), dtype=np.int64)
        cocotb.start_soon(self._count_errors())

    async def _count_errors(self):
        while True:
            await RisingEdge(self.clock)
            await ReadOnly()
            if self.dut.error.value:
                self.errors += 1

    # -- commands ----------------------------------------------------------------------------

    def int8_command(self, a, w, clear):
        """Bytes of one INT8 command; updates the model with ``golden.gemm_int8``."""
        product = golden.gemm_int8(a.reshape(self.rows, 1), w.reshape(1, self.cols))
        self.acc = (0 if clear else self.acc) + product.astype(np.int64)
        header = HEADER_CLEAR_MAC if clear else HEADER_MAC
        expected = _wrap32(self.acc).astype("<i4").tobytes()
        return [header, *a.view(np.uint8), *w.view(np.uint8)], expected

    def binary_command(self, x, w):
        """Bytes of one binary command (x: simd of +-1; w: pe x simd); golden reply."""
        dots = golden.binary_gemm(golden.pack_bits(x[None, :]), golden.pack_bits(w), self.simd)
        expected = dots[0].astype("<i2").tobytes()
        body = np.packbits(np.concatenate([x[None, :], w]) == 1, axis=-1, bitorder="little")
        return [HEADER_BINARY, *body.reshape(-1)], expected

    async def transact(self, command, expected, budget=None):
        start = self.sink.transfers
        self.source.send_nowait(*(int(b) for b in command))
        budget = budget or 200 + 40 * (len(command) + len(expected))
        await self.sink.wait_count(start + len(expected), budget)
        got = bytes(self.sink.received.popleft() for _ in range(len(expected)))
        assert got == expected, f"reply {got.hex()} != golden {expected.hex()}"

    def random_int8(self, size):
        return self.rng.integers(-128, 128, size).astype(np.int8)

    def random_bits(self, shape, p_plus=0.5):
        return np.where(self.rng.random(shape) < p_plus, 1, -1).astype(np.int8)


def _wrap32(values):
    return ((values + 2**31) % 2**32 - 2**31).astype(np.int64)


@cocotb.test()
async def int8_corners_accumulate(dut):
    """Corner operands, then accumulation over commands equals golden.gemm_int8(A, W)."""
    tb = StandInTB(dut)
    if not tb.params["int8"]:
        return
    await tb.reset()
    for value in INT8_CORNERS:
        for w_value in (-128, 127, -1):
            a = np.full(tb.rows, value, dtype=np.int8)
            w = np.full(tb.cols, w_value, dtype=np.int8)
            await tb.transact(*tb.int8_command(a, w, clear=True))
    # K steps of accumulation: the accumulators must equal the golden GEMM of the stacked
    # operands (A is rows x K, W is K x cols).
    steps = 12
    a_steps = np.resize(INT8_CORNERS, (steps, tb.rows)).astype(np.int8)
    w_steps = tb.random_int8((steps, tb.cols))
    w_steps[0] = -128
    for k in range(steps):
        await tb.transact(*tb.int8_command(a_steps[k], w_steps[k], clear=(k == 0)))
    expected = golden.gemm_int8(np.ascontiguousarray(a_steps.T), w_steps)
    assert np.array_equal(_wrap32(tb.acc), expected.astype(np.int64))
    assert tb.errors == 0


@cocotb.test()
async def binary_corners(dut):
    """All +1, all -1, alternating and single-bit vectors against golden.binary_gemm."""
    tb = StandInTB(dut)
    if not tb.params["binary"]:
        return
    await tb.reset()
    ones = np.ones(tb.simd, dtype=np.int8)
    alternating = np.where(np.arange(tb.simd) % 2, 1, -1).astype(np.int8)
    single = -ones.copy()
    single[tb.simd - 1] = 1
    for x in (ones, -ones, alternating, single):
        for w_row in (ones, -ones, alternating, single):
            w = np.resize(w_row, (tb.pe, tb.simd)).astype(np.int8)
            await tb.transact(*tb.binary_command(x, w))
    await tb.transact(*tb.binary_command(tb.random_bits(tb.simd),
                                         tb.random_bits((tb.pe, tb.simd))))
    assert tb.errors == 0


@cocotb.test()
async def random_commands_with_backpressure(dut):
    """Seeded random mix of INT8, binary and rejected headers under idle cycles and
    backpressure; replies match the golden model, each rejected header pulses error once."""
    tb = StandInTB(dut)
    tb.source.set_pause(random_pause(tb.rng, 0.4))
    tb.sink.set_pause(random_pause(tb.rng, 0.5))
    await tb.reset()
    int8, binary = tb.params["int8"], tb.params["binary"]
    valid = {HEADER_MAC, HEADER_CLEAR_MAC} if int8 else set()
    if binary:
        valid.add(HEADER_BINARY)
    bad_sent = 0
    first_int8 = True
    for index in range(60):
        if index == 30:
            tb.sink.set_pause(periodic_pause(2, 5))  # bursty backpressure for the second half
        kind = tb.rng.integers(0, 10)
        if kind < 2:
            # a rejected header (or the header of an absent engine): no reply
            header = int(tb.rng.integers(3, 256)) if tb.rng.random() < 0.7 else \
                int(tb.rng.choice([HEADER_MAC, HEADER_CLEAR_MAC, HEADER_BINARY]))
            if header in valid:
                continue
            tb.source.send_nowait(header)
            bad_sent += 1
            await tb.source.wait_idle(200)
        elif (kind < 6 and int8) or not binary:
            clear = first_int8 or bool(tb.rng.random() < 0.2)
            first_int8 = False
            await tb.transact(*tb.int8_command(tb.random_int8(tb.rows), tb.random_int8(tb.cols),
                                               clear))
        else:
            p_plus = float(tb.rng.choice([0.05, 0.5, 0.95]))
            await tb.transact(*tb.binary_command(tb.random_bits(tb.simd, p_plus),
                                                 tb.random_bits((tb.pe, tb.simd), p_plus)))
    await tb.cycles(5)
    assert tb.errors == bad_sent, f"{tb.errors} error pulses for {bad_sent} rejected headers"
    assert not tb.sink.received, "reply bytes nobody asked for"
    tb.sink.check()
