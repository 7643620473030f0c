"""Testbench of :class:`qaccel.sim.cosim_testtop.CosimTestCore`, the co-simulation stand-in.

Checks the toy protocol under random idle cycles and backpressure, ``busy`` high for exactly
the requested cycles, and the cycle counter's meaning (edges since reset, as the co-simulation
harness counts them). ``busy_speed`` times one long busy request with the stream models
running, the way a cocotb driver-in-the-loop would, for ``bench/cosim.py``.

Parameters (``params``): ``requests`` (random session length), ``busy_cycles`` and
``result_path`` (``busy_speed``: where to write ``{"cycles", "seconds"}`` as JSON).
"""

import json
import time

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from qaccel.sim.cosim_testtop import ToyProtocol
from qaccel.sim.streams import StreamSink, StreamSource, random_pause
from qaccel.sim.tbkit import TB


class StandInTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        self.source = StreamSource(dut, "rx", self.clock)
        self.sink = StreamSink(dut, "tx", self.clock)
        self.busy_cycles = 0
        self.edges = 0  # rising edges since the end of reset
        cocotb.start_soon(self._count())

    async def _count(self):
        while True:
            await RisingEdge(self.clock)
            await ReadOnly()
            if not self.dut.rst.value:
                self.edges += 1
                self.busy_cycles += int(self.dut.busy.value)

    async def receive(self, count, budget):
        start = self.sink.transfers
        await self.sink.wait_count(start + count, budget)
        # wait_count returns in the ReadOnly phase; the next wait must start from an edge
        await RisingEdge(self.clock)
        return bytes(self.sink.received.popleft() for _ in range(count))


@cocotb.test()
async def random_requests(dut):
    """Random echo, count, unknown and short busy requests, with pauses on both streams."""
    tb = StandInTB(dut)
    tb.source.set_pause(random_pause(tb.rng, 0.3))
    tb.sink.set_pause(random_pause(tb.rng, 0.4))
    await tb.reset()
    previous_count = -1
    for _ in range(tb.params.get("requests", 40)):
        kind = tb.rng.integers(0, 4)
        if kind == 0:
            length = int(tb.rng.choice([0, 1, 255, int(tb.rng.integers(0, 256))]))
            request, expected = ToyProtocol.echo(tb.rng.integers(0, 256, length, dtype="u1"))
            tb.source.send_nowait(*request)
            assert await tb.receive(len(expected), 20 * len(expected) + 100) == expected
        elif kind == 1:
            tb.source.send_nowait(*ToyProtocol.count())
            count = ToyProtocol.parse_count(await tb.receive(9, 200))
            assert previous_count < count <= tb.edges, (previous_count, count, tb.edges)
            previous_count = count
        elif kind == 2:
            opcode = int(tb.rng.choice([b for b in range(256) if b not in b"EBC"]))
            tb.source.send_nowait(opcode)
            assert await tb.receive(2, 200) == bytes([ord("?"), opcode])
        else:
            wait = int(tb.rng.choice([0, 1, 2, int(tb.rng.integers(3, 300))]))
            before = tb.busy_cycles
            tb.source.send_nowait(*ToyProtocol.busy(wait))
            start, end = ToyProtocol.parse_busy(await tb.receive(17, wait + 400))
            assert end - start == wait, (start, end, wait)
            assert end <= tb.edges
            # busy stays high longer only while the host stalls tx when the wait ends
            assert wait <= tb.busy_cycles - before <= wait + 200, (tb.busy_cycles - before, wait)
        tb.sink.check()


@cocotb.test()
async def busy_exact(dut):
    """Without backpressure, busy is high exactly n cycles."""
    tb = StandInTB(dut)
    await tb.reset()
    wait = 1000
    tb.source.send_nowait(*ToyProtocol.busy(wait))
    start, end = ToyProtocol.parse_busy(await tb.receive(17, wait + 100))
    assert tb.busy_cycles == wait, tb.busy_cycles
    assert end - start == wait
    # the stamps count edges since reset: the reply left after the end of the wait
    assert 5 <= start and end + 17 <= tb.edges, (start, end, tb.edges)


@cocotb.test()
async def busy_speed(dut):
    """One long busy request with the stream models running; writes the timing."""
    tb = StandInTB(dut)
    await tb.reset()
    wait = int(tb.params.get("busy_cycles", 10_000))
    first = tb.edges
    started = time.perf_counter()
    tb.source.send_nowait(*ToyProtocol.busy(wait))
    start, end = ToyProtocol.parse_busy(await tb.receive(17, wait + 100))
    seconds = time.perf_counter() - started
    cycles = tb.edges - first
    assert end - start == wait
    tb.log.info("%d cycles in %.3f s: %.0f cycles/s", cycles, seconds, cycles / seconds)
    if tb.params.get("result_path"):
        with open(tb.params["result_path"], "w") as result:
            json.dump({"cycles": cycles, "seconds": seconds}, result)
