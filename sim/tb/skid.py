"""Testbench of :class:`qaccel.hw.skid.SkidBuffer`: order, no loss, no duplication, one
transfer per cycle without backpressure, under random idle and backpressure."""

import cocotb

from qaccel.sim.streams import StreamSink, StreamSource, periodic_pause, random_pause
from qaccel.sim.tbkit import TB


class SkidTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        self.width = self.params["width"]
        self.source = StreamSource(dut, "i", self.clock)
        self.sink = StreamSink(dut, "o", self.clock)

    async def run_scenario(self, count, budget):
        payloads = [int(v) for v in self.rng.integers(0, 1 << self.width, count)]
        # corner values first: all zeros, all ones, alternating bits
        corners = [0, (1 << self.width) - 1, int("01" * self.width, 2) & ((1 << self.width) - 1)]
        payloads = corners + payloads
        start = self.sink.transfers
        self.source.send_nowait(*payloads)
        await self.sink.wait_count(start + len(payloads), budget)
        received = [self.sink.received.popleft() for _ in range(len(payloads))]
        assert received == payloads, "payloads reordered, lost or duplicated"
        self.sink.check()


@cocotb.test()
async def full_throughput(dut):
    """Without pauses, N payloads take N + latency cycles."""
    tb = SkidTB(dut)
    await tb.reset()
    count = 200
    tb.source.send_nowait(*range(count))
    cycles = await tb.wait_until(lambda: tb.sink.transfers >= count, count + 10,
                                 f"{count} payloads")
    assert cycles <= count + 3, f"{count} payloads took {cycles} cycles"
    assert list(tb.sink.received) == list(range(count))


@cocotb.test()
async def random_backpressure(dut):
    """Random idle cycles on the input and random backpressure on the output."""
    tb = SkidTB(dut)
    tb.source.set_pause(random_pause(tb.rng, 0.3))
    tb.sink.set_pause(random_pause(tb.rng, 0.5))
    await tb.reset()
    await tb.run_scenario(500, budget=20_000)


@cocotb.test()
async def periodic_backpressure(dut):
    """Bursty backpressure: the skid register must catch the payload in flight."""
    tb = SkidTB(dut)
    tb.sink.set_pause(periodic_pause(3, 2))
    await tb.reset()
    await tb.run_scenario(300, budget=5_000)
