"""The board wrapper around any design with a byte-stream host port.

:class:`BoardCore` is everything on the FPGA except the clock generator and the pins: the
power-on reset, the UART PHY (:class:`qaccel.hw.uart.UART`), the design, and the LED drivers.
It is an ordinary component (ports ``uart_rx``, ``uart_tx``, ``locked``, ``leds``), so it is
simulated as it is built. :class:`BoardTop` adds the board's clocking and requests the pins.

What a design must provide
--------------------------
A :class:`~amaranth.lib.wiring.Component` in the ``sync`` domain with the byte-stream port
contract of :class:`qaccel.hw.top.AcceleratorTop`:

- ``rx : In(stream.Signature(8))``: bytes from the host,
- ``tx : Out(stream.Signature(8))``: bytes to the host,
- optionally ``error : Out(1)`` (a pulse or level per fault: lights the error LED),
  ``busy : Out(1)`` (level: the busy LED) and ``activity : Out(1)`` (pulses: the activity
  LED, besides the link's own bytes).

The design is given the UART's bytes with no flow control behind them: the PHY's receive FIFO
absorbs short stalls, and a byte that finds it full is counted as an overrun (error LED).
"""

from amaranth import ClockDomain, ClockSignal, Const, DomainRenamer, Elaboratable, Module, Signal
from amaranth.lib import io, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..hw.uart import UART
from .base import LED_ROLES

__all__ = ["OPTIONAL_OUTPUTS", "PowerOnReset", "Prescaler", "PulseStretcher", "BoardCore",
           "BoardTop", "check_design"]


def _check_cycles(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    return value


class PowerOnReset(wiring.Component):
    """Holds ``rst`` high for ``cycles`` clocks after configuration and after ``locked`` rises.

    iCE40 block RAM reads as zero for a few microseconds after configuration, and a PLL output
    is not usable before it locks; the counter runs from the fabric clock and has no reset of
    its own (flip-flops start at zero after configuration on every supported FPGA).

    Parameters
    ----------
    cycles : int
        Clocks ``rst`` stays high after ``locked`` is seen high (at least 1).

    Members
    -------
    locked : ``In(1, init=1)``
        Clock is stable (PLL lock); passes a two-flop synchronizer. Falling restarts the count.
    rst : ``Out(1, init=1)``
        Reset for everything else.
    """

    def __init__(self, cycles):
        self._cycles = _check_cycles("Power-on reset cycles", cycles)
        super().__init__({"locked": In(1, init=1), "rst": Out(1, init=1)})

    @property
    def cycles(self):
        return self._cycles

    def elaborate(self, platform):
        m = Module()
        locked = Signal()
        m.submodules.locked_sync = FFSynchronizer(self.locked, locked, reset_less=True)
        count = Signal(range(self._cycles + 1), reset_less=True)
        done = Signal(reset_less=True)
        with m.If(~locked):
            m.d.sync += [count.eq(0), done.eq(0)]
        with m.Elif(count == self._cycles - 1):
            m.d.sync += done.eq(1)
        with m.Else():
            m.d.sync += count.eq(count + 1)
        m.d.comb += self.rst.eq(~done)
        return m


#: Feedback taps (bit numbers, 1-based) of maximal-length Fibonacci LFSRs, by width
#: (Xilinx XAPP052, table 3); ``tests/test_boards.py`` checks that each has period 2**n - 1.
LFSR_TAPS = {
    2: (2, 1), 3: (3, 2), 4: (4, 3), 5: (5, 3), 6: (6, 5), 7: (7, 6), 8: (8, 6, 5, 4),
    9: (9, 5), 10: (10, 7), 11: (11, 9), 12: (12, 6, 4, 1), 13: (13, 4, 3, 1),
    14: (14, 5, 3, 1), 15: (15, 14), 16: (16, 15, 13, 4), 17: (17, 14), 18: (18, 11),
    19: (19, 6, 2, 1), 20: (20, 17), 21: (21, 19), 22: (22, 21), 23: (23, 18),
    24: (24, 23, 22, 17),
}


def lfsr_step(state, width):
    """The next state of the ``width``-bit LFSR of :data:`LFSR_TAPS`: of an integer, or as
    an Amaranth value of a ``width``-bit signal."""
    feedback = 0
    for tap in LFSR_TAPS[width]:
        feedback ^= (state >> (tap - 1)) & 1
    return ((state << 1) | feedback) & ((1 << width) - 1)


class Prescaler(wiring.Component):
    """``tick`` is high one clock in every ``cycles``, from a linear-feedback shift register.

    An LFSR has no carry chain: the next state is a shift and one XOR, the tick a comparison
    with a constant. A binary down-counter of the same period (15 bits for 1 ms at 27 MHz)
    was split by nextpnr-ice40 into carry chain pieces joined through LUTs at 94 % logic cell
    use, and became the critical path (40.7 ns) of an iCEBreaker build. The register starts
    at 1 and returns to it after ``cycles`` states, so the period is exact.

    Parameters
    ----------
    cycles : int
        Period in clocks, 1 to ``2**24 - 1``.

    Members
    -------
    tick : ``Out(1)``
    """

    def __init__(self, cycles):
        self._cycles = _check_cycles("Prescaler cycles", cycles)
        if cycles >= 1 << max(LFSR_TAPS):
            raise ValueError(f"Prescaler cycles must be below {1 << max(LFSR_TAPS)}, "
                             f"not {cycles}")
        super().__init__({"tick": Out(1)})

    @property
    def cycles(self):
        return self._cycles

    def elaborate(self, platform):
        m = Module()
        width = max(2, self._cycles.bit_length())  # so 2**width - 1 >= cycles
        last = 1
        for _ in range(self._cycles - 1):
            last = lfsr_step(last, width)
        state = Signal(width, init=1)
        at_last = state == last
        m.d.comb += self.tick.eq(at_last)
        with m.If(at_last):
            m.d.sync += state.eq(1)
        with m.Else():
            m.d.sync += state.eq(lfsr_step(state, width))
        return m


class PulseStretcher(wiring.Component):
    """``o`` stays high for ``length`` ticks after each clock ``i`` is high (LED pulses).

    Counting ticks of a shared prescaler instead of clocks keeps the counter a few bits wide:
    a 50 ms pulse counted in clocks is a 21-bit down-counter, whose carry chain was the
    critical path of a whole iCE40 build.

    Parameters
    ----------
    length : int
        Pulse length in ticks (at least 1).

    Members
    -------
    i : ``In(1)``
    tick : ``In(1, init=1)``
        Time base; leave it high to count clocks.
    o : ``Out(1)``
        High from the clock after ``i`` until ``length`` ticks have passed since the last
        ``i`` (between ``length - 1`` and ``length`` tick periods, plus one clock).
    """

    def __init__(self, length):
        self._length = _check_cycles("Stretch length", length)
        super().__init__({"i": In(1), "tick": In(1, init=1), "o": Out(1)})

    @property
    def length(self):
        return self._length

    def elaborate(self, platform):
        m = Module()
        remaining = Signal(range(self._length + 1))
        with m.If(self.i):
            m.d.sync += remaining.eq(self._length)
        with m.Elif(self.tick & (remaining != 0)):
            m.d.sync += remaining.eq(remaining - 1)
        m.d.comb += self.o.eq(remaining != 0)
        return m


def check_design(design):
    """Raise TypeError unless ``design`` has the byte-stream ports a board needs."""
    if not isinstance(design, wiring.Component):
        raise TypeError(f"The design must be an amaranth.lib.wiring.Component, not {design!r}")
    members = design.signature.members
    for name, expected, what in (("rx", In(stream.Signature(8)), "from"),
                                 ("tx", Out(stream.Signature(8)), "to")):
        found = members[name] if name in members else "nothing"
        if found != expected:
            raise TypeError(f"The design must have member {name!r}: {expected!r} (the byte "
                            f"stream {what} the host); it has {found!r}")
    for name in OPTIONAL_OUTPUTS:
        if name in members and members[name] != Out(1):
            raise TypeError(f"The design's optional member {name!r} must be Out(1), not "
                            f"{members[name]!r}")


#: One-bit outputs a design may have for the LEDs.
OPTIONAL_OUTPUTS = ("error", "busy", "activity")


class BoardCore(wiring.Component):
    """Power-on reset, UART PHY, the design and the LED drivers, in one clock domain.

    Parameters
    ----------
    design : Component
        See the module documentation; elaborated in the domain this core runs in.
    clock_hz : float
        Frequency of the clock this core runs on (the achieved one), for the UART.
    baud : int
        Host link baud rate.
    por_cycles : int
        Power-on reset length (see :class:`PowerOnReset`).
    tick_cycles : int
        Period of the LED time base (about a millisecond on a board).
    stretch_ticks : int
        Length of an LED pulse, in ticks.
    heartbeat_ticks : int
        Half-period of the heartbeat LED, in ticks.
    uart_fifo_depth : int
        Receive FIFO of the UART PHY.

    Members
    -------
    uart_rx : ``In(1, init=1)``, uart_tx : ``Out(1, init=1)``
        UART pins (idle high).
    locked : ``In(1, init=1)``
        Clock-stable input of the power-on reset.
    leds : ``Out(len(LED_ROLES))``
        One bit per role of :data:`~qaccel.boards.base.LED_ROLES`, active high.
    """

    def __init__(self, design, *, clock_hz, baud, por_cycles, tick_cycles, stretch_ticks,
                 heartbeat_ticks, uart_fifo_depth=16):
        check_design(design)
        self._design = design
        self._por_cycles = _check_cycles("Power-on reset cycles", por_cycles)
        self._tick_cycles = _check_cycles("Tick cycles", tick_cycles)
        self._stretch_ticks = _check_cycles("Stretch ticks", stretch_ticks)
        self._heartbeat_ticks = _check_cycles("Heartbeat ticks", heartbeat_ticks)
        # Validates clock and baud (raises ValueError naming the baud error).
        self._uart = UART(clock_hz, baud, fifo_depth=uart_fifo_depth)
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "locked": In(1, init=1),
            "leds": Out(len(LED_ROLES)),
        })

    @property
    def design(self):
        return self._design

    @property
    def uart(self):
        return self._uart

    def elaborate(self, platform):
        m = Module()
        m.submodules.por = por = PowerOnReset(self._por_cycles)
        m.d.comb += por.locked.eq(self.locked)

        # Everything else runs in a local domain on the same clock, reset by the POR.
        m.domains.app = app = ClockDomain("app", local=True)
        m.d.comb += [app.clk.eq(ClockSignal("sync")), app.rst.eq(por.rst)]

        m.submodules.uart = uart = DomainRenamer("app")(self._uart)
        m.submodules.design = design = DomainRenamer("app")(self._design)
        wiring.connect(m, uart.o, design.rx)
        wiring.connect(m, design.tx, uart.i)
        m.d.comb += [uart.rx.eq(self.uart_rx), self.uart_tx.eq(uart.tx)]

        members = self._design.signature.members
        optional = {name: getattr(self._design, name) if name in members else Const(0)
                    for name in OPTIONAL_OUTPUTS}
        received = uart.o.valid & uart.o.ready
        sent = uart.i.valid & uart.i.ready
        link_error = uart.framing_error | uart.overrun | uart.break_

        # LED time base: one tick every tick_cycles clocks.
        m.submodules.prescaler = prescaler = DomainRenamer("app")(Prescaler(self._tick_cycles))
        tick = prescaler.tick

        events = {"activity": received | sent | optional["activity"],
                  "error": link_error | optional["error"], "rx": received, "tx": sent}
        leds = {}
        for role, event in events.items():
            stretcher = DomainRenamer("app")(PulseStretcher(self._stretch_ticks))
            m.submodules[f"stretch_{role}"] = stretcher
            # Registered: the UART handshakes into the stretcher's counter enable were the
            # iCEBreaker build's critical path (29 ns); an LED may light a clock later.
            event_seen = Signal(name=f"{role}_seen")
            m.d.app += event_seen.eq(event)
            m.d.comb += [stretcher.i.eq(event_seen), stretcher.tick.eq(tick)]
            leds[role] = stretcher.o

        heartbeat = Signal()
        heartbeat_count = Signal(range(self._heartbeat_ticks))
        with m.If(tick):
            with m.If(heartbeat_count == self._heartbeat_ticks - 1):
                m.d.app += [heartbeat_count.eq(0), heartbeat.eq(~heartbeat)]
            with m.Else():
                m.d.app += heartbeat_count.eq(heartbeat_count + 1)
        leds["heartbeat"] = heartbeat
        leds["ready"] = ~por.rst
        leds["busy"] = optional["busy"]
        for index, role in enumerate(LED_ROLES):
            m.d.comb += self.leds[index].eq(leds[role])
        return m


class BoardTop(Elaboratable):
    """The whole FPGA for a board: clocking, :class:`BoardCore`, pins. Elaborate with the platform.

    Parameters
    ----------
    board : Board
    design : Component
        See :class:`BoardCore`.
    config : BuildConfig
        ``clock_hz`` and ``baud`` are used here.
    por_seconds : float
        Power-on reset (at least 256 clocks).
    """

    #: LED time base, LED pulse and heartbeat half-period.
    TICK_SECONDS = 1e-3
    STRETCH_TICKS = 50
    HEARTBEAT_TICKS = 500

    def __init__(self, board, design, config, *, por_seconds=20e-6):
        self.board = board
        self.config = config
        self.clock_hz = board.achievable_clock(config.clock_hz)
        check_design(design)
        self.core = BoardCore(
            design, clock_hz=self.clock_hz, baud=config.baud,
            por_cycles=max(256, round(por_seconds * self.clock_hz)),
            tick_cycles=max(1, round(self.TICK_SECONDS * self.clock_hz)),
            stretch_ticks=self.STRETCH_TICKS, heartbeat_ticks=self.HEARTBEAT_TICKS)

    def elaborate(self, platform):
        m = Module()
        locked, actual = self.board.clocking(m, platform, self.config.clock_hz)
        assert abs(actual - self.clock_hz) < 1, (actual, self.clock_hz)
        m.submodules.core = core = self.core
        m.d.comb += core.locked.eq(locked)

        uart = platform.request(*self.board.uart, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.uart_rx.eq(rx.i), tx.o.eq(core.uart_tx)]
        for role, resource in self.board.leds.items():
            led = io.Buffer("o", platform.request(*resource, dir="-"))
            m.submodules[f"led_{role}"] = led
            m.d.comb += led.o.eq(core.leds[LED_ROLES.index(role)])
        return m
