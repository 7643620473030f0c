"""Testbench of the register slices of :mod:`qaccel.hw.skid` (:class:`SkidBuffer`,
:class:`RegisterSlice`): order, no loss, no duplication, the documented throughput without
backpressure (a transfer every ``interval`` cycles), under random idle and backpressure.

Parameters (``tb.params``): ``width``, and ``interval`` (1 unless given)."""

import cocotb

from qaccel.sim.streams import StreamSink, StreamSource, periodic_pause, random_pause
from qaccel.sim.tbkit import TB


class SkidTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        self.width = self.params["width"]
        self.interval = self.params.get("interval", 1)
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
    """Without pauses, N payloads take interval * N + latency cycles, and no fewer."""
    tb = SkidTB(dut)
    await tb.reset()
    count = 200
    tb.source.send_nowait(*range(count))
    cycles = await tb.wait_until(lambda: tb.sink.transfers >= count,
                                 tb.interval * count + 10, f"{count} payloads")
    assert tb.interval * (count - 1) < cycles <= tb.interval * count + 3, (
        f"{count} payloads took {cycles} cycles (one per {tb.interval} expected)")
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
