"""Performance counters of the accelerator, in the order of :class:`qaccel.sw.protocol.Counter`.

Every counter is ``width`` bits (wrapping) and reads as a zero-extended u64 in the COUNTERS
reply. Each has an input named after it (``cycles``, ``int8_busy``, ..., lower case): the
amount added at the clock edge. Most are one-bit events; ``macs`` and ``binary_ops`` take a
whole run's work at once.
"""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..sw.protocol import Counter

__all__ = ["PerformanceCounters", "WIDE_COUNTERS"]

#: Counters whose input is a full-width amount rather than a one-bit event.
WIDE_COUNTERS = (Counter.MACS, Counter.BINARY_OPS)


class PerformanceCounters(wiring.Component):
    """One register per :class:`~qaccel.sw.protocol.Counter`, with a read multiplexer.

    Parameters
    ----------
    width : int
        Bits per counter, 16 to 64. Narrower counters save area (on an iCE40 every bit is a
        logic cell); at 12 MHz a 40-bit cycle counter wraps after 25 hours.

    Members
    -------
    <counter name> : ``In(1)`` or ``In(width)`` (``macs``, ``binary_ops``)
        Added to the counter: a wide amount at the clock edge, a one-bit event one clock
        later (it is registered first).
    clear : ``In(1)``
        Sets every counter to zero (it wins over the additions of the same cycle).
    select : ``In(range(len(Counter)))``
        Counter shown on ``value``.
    value : ``Out(64)``
        The selected counter, zero-extended (combinational).
    """

    def __init__(self, width=40):
        if isinstance(width, bool) or not isinstance(width, int):
            raise TypeError(f"Counter width must be an integer, not {width!r}")
        if not 16 <= width <= 64:
            raise ValueError(f"Counter width must be in 16..64, not {width}")
        self._width = width
        members = {counter.name.lower(): In(width if counter in WIDE_COUNTERS else 1)
                   for counter in Counter}
        members.update(clear=In(1), select=In(range(len(Counter))), value=Out(64))
        super().__init__(members)

    @property
    def width(self):
        return self._width

    def elaborate(self, platform):
        m = Module()
        registers = []
        for counter in Counter:
            name = counter.name.lower()
            register = Signal(self._width, name=f"count_{name}")
            registers.append(register)
            amount = getattr(self, name)
            if counter not in WIDE_COUNTERS:
                # One-bit events are registered before their adder: they come from the
                # engines' stream handshakes, and the adder is a long carry chain.
                event = Signal(name=f"event_{name}")
                m.d.sync += event.eq(amount & ~self.clear)
                amount = event
            with m.If(self.clear):
                m.d.sync += register.eq(0)
            with m.Else():
                m.d.sync += register.eq(register + amount)
        with m.Switch(self.select):
            for counter, register in zip(Counter, registers):
                with m.Case(counter):
                    m.d.comb += self.value.eq(register)
        return m
