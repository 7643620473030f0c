"""Testbench of :class:`qaccel.hw.uart.UART` against an independent UART model
(``cocotbext-uart``'s ``UartSource`` and ``UartSink``) and a bit-level line driver.

Time is scaled: the simulated clock period is ``params["period_ns"]`` whatever ``clk_freq`` the
design was built for, and the UART models run at ``baud * (1e9 / period_ns) / clk_freq`` so
that a bit lasts ``clk_freq / baud`` clocks, as in hardware. Periods are long enough that the
models' whole-nanosecond bit times are accurate to better than 0.1 %.

Parameters (``params``): ``clk_freq``, ``baud``, ``period_ns``, ``oversampling``,
``rx_divider``, ``tx_divider``, ``fifo_depth``, ``random_bytes``, ``loopback_bytes``.
"""

import itertools

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time
from cocotbext.uart import UartSink, UartSource

from qaccel.sim.streams import StreamSink, StreamSource, random_pause
from qaccel.sim.tbkit import TB, params

CORNER_BYTES = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80, 0x7F, 0xFE]
FRAME_BITS = 10

#: The configuration of this run, read at import so tests can be skipped by it.
PARAMS = params()
VOTING = PARAMS.get("oversampling", 0) >= 8


def idle_gaps(rng, probability, longest):
    """Pause generator: with ``probability`` per active cycle, an idle gap of 1 to ``longest``
    cycles."""
    while True:
        if rng.random() < probability:
            yield from itertools.repeat(True, int(rng.integers(1, longest + 1)))
        else:
            yield False


def frame_bits(byte, stop=1):
    """Line levels of one 8N1 frame, LSB first."""
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


class UartTB(TB):
    def __init__(self, dut):
        super().__init__(dut, period_ns=PARAMS["period_ns"])
        p = self.params
        self.period_ns = p["period_ns"]
        #: Clocks per bit at the requested baud rate (need not be an integer).
        self.bit_clocks = p["clk_freq"] / p["baud"]
        self.bit_ns = self.bit_clocks * self.period_ns
        self.sim_baud = 1e9 / self.bit_ns
        self.frame_clocks = int(FRAME_BITS * self.bit_clocks) + 1
        self.rx_bit_clocks = p["oversampling"] * p["rx_divider"]
        dut.rx.value = 1
        self.source = StreamSource(dut, "i", self.clock)
        self.sink = StreamSink(dut, "o", self.clock)
        self.pulses = {"framing_error": 0, "overrun": 0, "break_": 0}
        for name in self.pulses:
            cocotb.start_soon(self._count_pulses(name))

    async def _count_pulses(self, name):
        # The strobes last one clock and are never on two clocks in a row; break_ is a level.
        signal = getattr(self.dut, name)
        while True:
            await RisingEdge(signal)
            self.pulses[name] += 1

    def counter(self, name):
        return self.dut[f"{name}_count"].value.to_unsigned()

    def errors(self):
        return {name: self.counter(name) for name in ("framing_error", "overrun", "break")}

    def check_counters(self, framing_error=0, overrun=0, break_=0):
        """The counters hold the expected numbers and agree with the strobes seen."""
        expected = {"framing_error": framing_error, "overrun": overrun, "break": break_}
        assert self.errors() == expected, f"error counters {self.errors()}, expected {expected}"
        seen = {"framing_error": self.pulses["framing_error"], "overrun": self.pulses["overrun"],
                "break": self.pulses["break_"]}
        assert seen == expected, f"strobes seen {seen}, expected {expected}"

    def random_bytes(self, count):
        return [int(b) for b in self.rng.integers(0, 256, count)]

    def uart_source(self, factor=1.0):
        return UartSource(self.dut.rx, baud=self.sim_baud * factor)

    def budget(self, frames, factor=1.0):
        """Cycles for ``frames`` characters at ``factor`` times the baud rate, with margin."""
        return int(frames * self.frame_clocks / factor * 1.1) + 4 * self.frame_clocks

    async def wait_for(self, predicate, budget, what):
        """:meth:`wait_until`, then on to the next rising edge (out of the read-only phase, so
        that signals may be written)."""
        cycles = await self.wait_until(predicate, budget, what)
        await RisingEdge(self.clock)
        return cycles

    async def receive(self, expected, factor=1.0, since=None):
        """Wait for ``len(expected)`` bytes on ``o`` after the first ``since`` (default: those
        received so far) and compare them."""
        start = self.sink.transfers if since is None else since
        await self.sink.wait_count(start + len(expected), self.budget(len(expected), factor))
        received = [self.sink.received.popleft() for _ in range(len(expected))]
        assert received == list(expected), \
            f"received {bytes(received).hex()} expected {bytes(expected).hex()}"
        self.sink.check()
        await RisingEdge(self.clock)

    async def drive(self, segments):
        """Drive ``rx`` through ``(level, duration_ns)`` segments, times exact to 1 ps."""
        start = get_sim_time("ps")
        end = start
        for level, duration_ns in segments:
            self.dut.rx.value = level
            end += duration_ns * 1000
            now = get_sim_time("ps")
            if round(end) > now:
                await Timer(round(end) - now, "ps")

    async def drive_frames(self, bit_levels):
        await self.drive([(level, self.bit_ns) for level in bit_levels])

    async def assert_nothing_received(self, frames, since=None):
        """Wait ``frames`` character times and check that no byte came out (since the first
        ``since`` bytes; default: since now)."""
        start = self.sink.transfers if since is None else since
        await self.cycles(int(frames * self.frame_clocks))
        await ReadOnly()
        assert self.sink.transfers == start, \
            f"{self.sink.transfers - start} unexpected bytes: {bytes(self.sink.received).hex()}"
        await RisingEdge(self.clock)


@cocotb.test()
async def rx_corner_and_random_bytes(dut):
    """Bytes from the UART model arrive exactly, in order, under backpressure on ``o``."""
    tb = UartTB(dut)
    tb.sink.set_pause(random_pause(tb.rng, 0.3))
    await tb.reset()
    data = CORNER_BYTES + tb.random_bytes(tb.params["random_bytes"])
    uart = tb.uart_source()
    uart.write_nowait(data)
    await tb.receive(data)
    tb.check_counters()
    assert dut.tx.value == 1, "tx left idle"


@cocotb.test()
@cocotb.parametrize(factor=[1.02, 0.98])
async def rx_baud_mismatch(dut, factor):
    """A sender 2 % fast or slow, back to back, is still received exactly."""
    tb = UartTB(dut)
    await tb.reset()
    data = CORNER_BYTES + tb.random_bytes(tb.params["random_bytes"])
    uart = tb.uart_source(factor)
    uart.write_nowait(data)
    await tb.receive(data, factor)
    tb.check_counters()


@cocotb.test()
async def rx_framing_error(dut):
    """A low stop bit drops the byte and counts a framing error; a whole character low is a
    break; the receiver then recovers."""
    tb = UartTB(dut)
    await tb.reset()
    uart = tb.uart_source()
    await tb.drive_frames(frame_bits(0xA5, stop=0) + [1])
    await tb.assert_nothing_received(1)
    tb.check_counters(framing_error=1)
    data = tb.random_bytes(8)
    uart.write_nowait(data)
    await tb.receive(data)
    # 0x00 with a low stop bit: the line is low for exactly one character.
    await tb.drive_frames(frame_bits(0x00, stop=0) + [1])
    await tb.assert_nothing_received(1)
    tb.check_counters(framing_error=1, break_=1)
    assert dut.break_.value == 0, "break_ still set after the line returned high"
    data = tb.random_bytes(8)
    uart.write_nowait(data)
    await tb.receive(data)


@cocotb.test()
async def rx_break(dut):
    """A break (line low for 2.5 characters) is flagged, delivers nothing, and the bytes after
    it arrive; likewise a break that starts in the middle of a character."""
    tb = UartTB(dut)
    await tb.reset()
    uart = tb.uart_source()
    before = tb.random_bytes(6)
    uart.write_nowait(before)
    await tb.receive(before)
    await tb.wait_for(uart.idle, tb.frame_clocks, "the UART model to finish")

    # Break from an idle line.
    low_frames = 2.5
    dut.rx.value = 0
    # Not yet a break after 8.5 bit times of low...
    await tb.cycles(int(8.5 * tb.bit_clocks))
    await ReadOnly()
    assert dut.break_.value == 0, "break_ set before the line was low for a character"
    await RisingEdge(tb.clock)
    # ... but one after a whole character.
    await tb.wait_for(lambda: dut.break_.value == 1, int(2 * tb.bit_clocks) + 4,
                      "break_ after one character of low line")
    await tb.cycles(int((low_frames - 1) * tb.frame_clocks))
    await ReadOnly()
    assert dut.break_.value == 1, "break_ dropped while the line was still low"
    assert tb.sink.transfers == len(before), "garbage byte delivered during the break"
    await RisingEdge(tb.clock)
    dut.rx.value = 1
    await tb.wait_for(lambda: dut.break_.value == 0, int(tb.bit_clocks) + 4,
                      "break_ to clear once the line is high")
    tb.check_counters(break_=1)
    after = tb.random_bytes(6)
    uart.write_nowait(after)
    await tb.receive(after)

    # Break that starts in the middle of a character (after start, 1, 0, 1): the partial
    # character is a framing error, the long low line a break.
    await tb.drive([(0, tb.bit_ns), (1, tb.bit_ns), (0, tb.bit_ns), (1, tb.bit_ns),
                    (0, low_frames * FRAME_BITS * tb.bit_ns), (1, tb.bit_ns)])
    await tb.assert_nothing_received(1)
    tb.check_counters(framing_error=1, break_=2)
    assert dut.break_.value == 0
    after = CORNER_BYTES + tb.random_bytes(4)
    uart.write_nowait(after)
    await tb.receive(after)
    tb.check_counters(framing_error=1, break_=2)


@cocotb.test()
async def rx_glitches_ignored(dut):
    """Low pulses of up to half a bit on the idle line are not start bits; a pulse of 0.8 bit
    is one (the receiver reads 0xFF), so the threshold is where it should be."""
    tb = UartTB(dut)
    await tb.reset()
    half_bit_ns = min(tb.bit_clocks, tb.rx_bit_clocks) * tb.period_ns / 2
    lengths = [tb.period_ns / 2, tb.period_ns, half_bit_ns] + \
        [float(x) for x in tb.rng.uniform(1, half_bit_ns, 20)]
    for length in lengths:
        gap = float(tb.rng.uniform(1, 3)) * tb.bit_ns
        await tb.drive([(1, gap), (0, length), (1, tb.bit_ns)])
    await tb.assert_nothing_received(1, since=0)
    tb.check_counters()

    # (Starting off the clock edge: a pulse that starts and ends on edges is a clock
    # shorter in the synchronizer.)
    start = tb.sink.transfers
    await tb.drive([(1, 0.3 * tb.period_ns), (0, 0.8 * tb.bit_ns), (1, tb.bit_ns / 4)])
    await tb.receive([0xFF], since=start)

    data = CORNER_BYTES + tb.random_bytes(8)
    uart = tb.uart_source()
    uart.write_nowait(data)
    await tb.receive(data)
    tb.check_counters()


@cocotb.test(skip=not VOTING)
async def rx_majority_vote(dut):
    """A short inverted pulse near the middle of every bit (at most one of the three voting
    samples) does not change the byte. Only with 8 or more samples per bit (majority vote)."""
    tb = UartTB(dut)
    await tb.reset()
    oversampling, divider = tb.params["oversampling"], tb.params["rx_divider"]
    spread_clocks = max(1, oversampling // 16) * divider
    data = CORNER_BYTES + tb.random_bytes(24)
    start = tb.sink.transfers
    for byte in data:
        segments = []
        for level in frame_bits(byte):
            # A pulse of `spread_clocks` clocks covers at most one voting sample.
            width = (spread_clocks - 0.25) * tb.period_ns
            offset = float(tb.rng.uniform(-1.5, 1.5)) * width
            before = tb.bit_ns / 2 + offset - width / 2
            segments += [(level, before), (1 - level, width), (level, tb.bit_ns - before - width)]
        await tb.drive(segments)
    await tb.drive([(1, tb.bit_ns)])
    await tb.receive(data, since=start)
    tb.check_counters()


@cocotb.test()
async def rx_overrun(dut):
    """With the consumer stalled longer than the FIFO lasts, bytes that find it full are
    dropped and counted; the kept bytes are the sent ones, in order, uncorrupted."""
    tb = UartTB(dut)
    depth = tb.params["fifo_depth"]
    stalled_frames = depth + 6
    stall = itertools.repeat(True, stalled_frames * tb.frame_clocks)
    tb.sink.set_pause(itertools.chain(stall, random_pause(tb.rng, 0.3)))
    await tb.reset()
    data = tb.random_bytes(stalled_frames + 10)
    uart = tb.uart_source()
    uart.write_nowait(data)
    await tb.wait_for(lambda: tb.sink.transfers + tb.counter("overrun") >= len(data),
                      tb.budget(len(data)), f"{len(data)} bytes received or dropped")
    dropped = tb.counter("overrun")
    received = list(tb.sink.received)
    assert dropped >= 1, "no overrun although the consumer stalled beyond the FIFO"
    assert len(received) + dropped == len(data)
    # The FIFO keeps the first `depth` bytes; the dropped ones are a contiguous run.
    kept = len(received)
    matches = [k for k in range(depth, kept + 1)
               if received == data[:k] + data[k + dropped:]]
    assert matches, (f"kept bytes {bytes(received).hex()} are not the sent "
                     f"{bytes(data).hex()} minus {dropped} consecutive bytes after the first "
                     f"{depth}")
    tb.sink.check()
    tb.check_counters(overrun=dropped)


@cocotb.test()
@cocotb.parametrize(factor=[1.0, 1.02, 0.98])
async def tx_bytes(dut, factor):
    """Bytes on ``i`` with random idle gaps reach a UART model running at 100 %, 102 % and
    98 % of the baud rate."""
    tb = UartTB(dut)
    tb.source.set_pause(idle_gaps(tb.rng, 0.5 / tb.frame_clocks, 2 * tb.frame_clocks))
    await tb.reset()
    uart = UartSink(dut.tx, baud=tb.sim_baud * factor)
    data = CORNER_BYTES + tb.random_bytes(tb.params["random_bytes"])
    tb.source.send_nowait(*data)
    await tb.wait_for(lambda: uart.count() >= len(data), 3 * tb.budget(len(data)),
                      f"the UART model to receive {len(data)} bytes")
    await tb.cycles(2 * tb.frame_clocks)
    received = list(uart.read_nowait())
    assert received == data, f"sent {bytes(data).hex()} received {bytes(received).hex()}"
    assert tb.sink.transfers == 0, "tx looped back into o"


@cocotb.test()
async def tx_back_to_back(dut):
    """Without idle time on ``i``, frames follow each other with no gap: the line, sampled in
    the middle of every bit from the first start edge on, is exactly the concatenated frames,
    ``tx_divider`` clocks per bit."""
    tb = UartTB(dut)
    await tb.reset()
    data = CORNER_BYTES + tb.random_bytes(12)
    tb.source.send_nowait(*data)
    await FallingEdge(dut.tx)
    start_ps = get_sim_time("ps")
    bit_ps = tb.params["tx_divider"] * tb.period_ns * 1000
    expected = [level for byte in data for level in frame_bits(byte)] + [1, 1]
    line = []
    for k in range(len(expected)):
        await Timer(round(start_ps + (k + 0.5) * bit_ps) - get_sim_time("ps"), "ps")
        line.append(int(dut.tx.value))
    assert line == expected, "tx line differs from back-to-back frames"


@cocotb.test()
async def loopback(dut):
    """``tx`` wired to ``rx``: many random bytes at full rate come back exactly."""
    tb = UartTB(dut)
    tb.sink.set_pause(random_pause(tb.rng, 0.2))
    await tb.reset()

    async def wire():
        while True:
            await dut.tx.value_change
            dut.rx.value = dut.tx.value

    cocotb.start_soon(wire())
    data = tb.random_bytes(tb.params["loopback_bytes"])
    tb.source.send_nowait(*data)
    await tb.receive(data)
    tb.check_counters()
