"""UART physical layer of the host link: 8 data bits, no parity, one stop bit (8N1), no flow
control.

:class:`UARTRX` turns the ``rx`` pin into a stream of bytes, :class:`UARTTX` turns a stream of
bytes into the ``tx`` pin, and :class:`UART` holds both. The rest of the accelerator only sees
the byte streams, so a co-simulation build can leave the PHY out and drive the streams
directly.

Timing comes from integer dividers of the fabric clock. The achieved baud rate is reported
(``actual_baud``, ``baud_error``) and a configuration whose rate is off by more than
:data:`MAX_BAUD_ERROR` is rejected: the other end of the link (an FTDI bridge) has its own
error, and the receiver follows a sender at most 5.3 % slow and, depending on the samples per
bit, 2.6 % (4 samples) to 4.2 % (16 samples) fast in total (``bench/uart_tolerance.py``).

Receiver
--------
The ``rx`` pin passes a two-flop synchronizer. While idle the receiver looks at the line on
every clock, so the falling edge of a start bit is found to one clock; the oversampling divider
restarts there. Each bit is then sampled ``oversampling`` times, ``divider`` clocks apart. The
value of a bit is taken at sample ``ceil(oversampling / 2)`` (the middle): with 8 or more
samples per bit as the majority of three samples around the middle (``oversampling // 16``
samples apart, at least one), with fewer as that single sample.

- Start-bit validation: the start bit must still read low in the middle, so a low pulse no
  longer than half a bit is ignored.
- Framing error: the stop bit reads low. The byte is dropped, ``framing_error`` pulses, and the
  receiver waits for the line to be high for half a bit before it looks for a start bit again.
- Break: the line reads low for a whole character (ten bit samples in a row: start, eight data
  bits and stop) or longer, counted from the first low bit sample, also when the break starts
  in the middle of a character. No byte is delivered; ``break_`` stays high until the line has
  been high for half a bit.
- Overrun: received bytes go through a FIFO (the line has no flow control). A byte that
  finds the FIFO full is dropped and ``overrun`` pulses; the bytes already in the FIFO are
  kept.

After the stop bit's sample the receiver hunts for the next start bit at once (it does not wait
for the end of the stop bit), so a sender a few percent fast does not push every following
frame later.

Transmitter
-----------
``round(clk_freq / baud)`` clocks per bit; back-to-back bytes leave with no idle time between
frames (exactly ten bit times per byte). ``tx`` is a register and idles high.
"""

from numbers import Real

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

__all__ = ["MAX_BAUD_ERROR", "MIN_OVERSAMPLING", "UARTRX", "UARTTX", "UART"]

#: Largest accepted relative difference between the achieved and the requested baud rate.
MAX_BAUD_ERROR = 0.02

#: Fewest samples per bit the receiver works with.
MIN_OVERSAMPLING = 4

#: Bits in a frame: start, 8 data bits, stop.
_FRAME_BITS = 10


def _check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")
    return value


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    return value


def _check_error(what, clk_freq, baud, clocks_per_bit, how):
    actual = clk_freq / clocks_per_bit
    error = actual / baud - 1
    if abs(error) > MAX_BAUD_ERROR:
        raise ValueError(
            f"{what} baud error {error:+.2%} exceeds the {MAX_BAUD_ERROR:.0%} limit: "
            f"{clk_freq} Hz / {how} gives {actual:.1f} baud for {baud} requested")
    return actual, error


def _rx_timing(clk_freq, baud, oversampling):
    """(oversampling, divider, actual baud, error) of a receiver; validates the parameters."""
    clk_freq = _check_rate("Clock frequency", clk_freq)
    baud = _check_rate("Baud rate", baud)
    if oversampling is None:
        # As many samples as the clock allows: one per clock.
        if clk_freq < MIN_OVERSAMPLING * baud:
            raise ValueError(
                f"Clock frequency {clk_freq} Hz is below {MIN_OVERSAMPLING} x baud "
                f"({MIN_OVERSAMPLING} x {baud} = {MIN_OVERSAMPLING * baud} Hz)")
        oversampling = round(clk_freq / baud)
        divider = 1
    else:
        if isinstance(oversampling, bool) or not isinstance(oversampling, int):
            raise TypeError(f"Oversampling must be None or an integer, not {oversampling!r}")
        if oversampling < MIN_OVERSAMPLING:
            raise ValueError(
                f"Oversampling must be at least {MIN_OVERSAMPLING}, not {oversampling!r}")
        if clk_freq < oversampling * baud:
            raise ValueError(
                f"Clock frequency {clk_freq} Hz is below oversampling x baud "
                f"({oversampling} x {baud} = {oversampling * baud} Hz)")
        divider = round(clk_freq / (baud * oversampling))
    actual, error = _check_error("RX", clk_freq, baud, oversampling * divider,
                                 f"({oversampling} samples x {divider} clocks)")
    return oversampling, divider, actual, error


def _tx_timing(clk_freq, baud):
    clk_freq = _check_rate("Clock frequency", clk_freq)
    baud = _check_rate("Baud rate", baud)
    if clk_freq < baud:
        raise ValueError(f"Clock frequency {clk_freq} Hz is below the baud rate {baud}")
    divider = round(clk_freq / baud)
    actual, error = _check_error("TX", clk_freq, baud, divider, f"{divider} clocks")
    return divider, actual, error


def _count_saturating(m, counter, event):
    with m.If(event & (counter != (1 << len(counter)) - 1)):
        m.d.sync += counter.eq(counter + 1)


class UARTRX(wiring.Component):
    """UART receiver (8N1) with oversampling, majority vote, framing-error, break and overrun
    detection, and a FIFO on its byte stream.

    Parameters
    ----------
    clk_freq : float
        Clock frequency in Hz.
    baud : float
        Baud rate.
    oversampling : int or None
        Samples per bit, at least 4; the sample clock is ``clk_freq / divider`` with
        ``divider = round(clk_freq / (baud * oversampling))``. ``None`` (the default) samples on
        every clock: ``oversampling = round(clk_freq / baud)``, ``divider = 1``.
    fifo_depth : int
        Bytes the receive FIFO holds while the consumer is not ready (at least 1).
    counter_width : int
        Width of the saturating error counters.

    Raises
    ------
    TypeError
        A parameter of the wrong type.
    ValueError
        A non-positive rate, too few samples per bit, a clock below ``oversampling x baud``, or
        a baud error above :data:`MAX_BAUD_ERROR`.

    Members
    -------
    rx : ``In(1)``
        The line (idle high), asynchronous to the clock.
    o : ``Out(stream.Signature(8))``
        Received bytes, through a FIFO. With the FIFO empty, ``valid`` rises
        ``9 * oversampling * divider + vote_samples[-1] * divider + 3`` clocks after the clock
        edge that first sees the start bit's falling edge on ``rx`` (42 clocks at 12 MHz and
        3 Mbaud).
    break_ : ``Out(1)``
        High from the detection of a break until the line has been high for half a bit.
    framing_error : ``Out(1)``
        One-clock pulse per frame dropped for a low stop bit (breaks are not counted here).
    overrun : ``Out(1)``
        One-clock pulse per byte dropped because the FIFO was full.
    break_count, framing_error_count, overrun_count : ``Out(counter_width)``
        Events so far, saturating.
    """

    def __init__(self, clk_freq, baud, *, oversampling=None, fifo_depth=16, counter_width=16):
        self._oversampling, self._divider, self._actual_baud, self._baud_error = \
            _rx_timing(clk_freq, baud, oversampling)
        self._fifo_depth = _check_int("FIFO depth", fifo_depth, 1)
        counter_width = _check_int("Counter width", counter_width, 1)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "break_": Out(1),
            "framing_error": Out(1),
            "overrun": Out(1),
            "break_count": Out(counter_width),
            "framing_error_count": Out(counter_width),
            "overrun_count": Out(counter_width),
        })

    @property
    def oversampling(self):
        """Samples per bit."""
        return self._oversampling

    @property
    def divider(self):
        """Clocks between samples."""
        return self._divider

    @property
    def actual_baud(self):
        """``clk_freq / (oversampling * divider)``."""
        return self._actual_baud

    @property
    def baud_error(self):
        """``actual_baud / baud - 1``."""
        return self._baud_error

    @property
    def fifo_depth(self):
        return self._fifo_depth

    @property
    def vote_samples(self):
        """Indices (within a bit, sample 0 at its start) of the samples that decide it."""
        center = (self._oversampling + 1) // 2
        if self._oversampling < 8:
            return (center,)
        spread = max(1, self._oversampling // 16)
        return (center - spread, center, center + spread)

    def elaborate(self, platform):
        m = Module()
        oversampling, divider_max = self._oversampling, self._divider - 1
        vote_at = self.vote_samples
        center = (oversampling + 1) // 2

        line = Signal(init=1)
        m.submodules.synchronizer = FFSynchronizer(self.rx, line, init=1, stages=2)

        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        wiring.connect(m, fifo.r_stream, wiring.flipped(self.o))

        # Sample clock: a tick every `divider` clocks, restarted at each start edge.
        divider = Signal(range(divider_max + 1))
        tick = Signal()
        m.d.comb += tick.eq(divider == 0)
        m.d.sync += divider.eq(divider_max)
        with m.If(~tick):
            m.d.sync += divider.eq(divider - 1)

        sample = Signal(range(oversampling))      # index (within the bit) of the next sample
        bit = Signal(range(_FRAME_BITS))         # 0 start, 1-8 data, 9 stop
        early_votes = Signal(len(vote_at) - 1)
        shift = Signal(8)
        low_bits = Signal(range(_FRAME_BITS + 1))  # bit samples low in a row, saturating
        high_ticks = Signal(range(center + 1))

        if len(vote_at) == 3:
            a, b = early_votes[0], early_votes[1]
            value = (a & b) | (a & line) | (b & line)
        else:
            value = line

        byte_done = Signal()
        framing_error = Signal()
        break_found = Signal()

        with m.If(tick):
            with m.If(sample == oversampling - 1):
                m.d.sync += sample.eq(0)
            with m.Else():
                m.d.sync += sample.eq(sample + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    # This clock is sample 0 of the start bit.
                    m.d.sync += [
                        divider.eq(divider_max),
                        sample.eq(1),
                        bit.eq(0),
                        low_bits.eq(1),
                    ]
                    m.next = "FRAME"

            with m.State("FRAME"):
                with m.If(tick):
                    with m.If(sample == oversampling - 1):
                        m.d.sync += bit.eq(bit + 1)
                    for index, at in enumerate(vote_at[:-1]):
                        with m.If(sample == at):
                            m.d.sync += early_votes[index].eq(line)
                    with m.If(sample == vote_at[-1]):
                        with m.If(bit == 0):
                            with m.If(value):
                                m.next = "IDLE"  # a glitch, not a start bit
                        with m.Elif(bit == _FRAME_BITS - 1):
                            with m.If(value):
                                m.d.comb += byte_done.eq(1)
                                m.next = "IDLE"  # hunt for the next start bit right away
                            with m.Else():
                                with m.If(low_bits == _FRAME_BITS - 1):
                                    m.d.comb += break_found.eq(1)
                                with m.Else():
                                    m.d.comb += framing_error.eq(1)
                                m.d.sync += [
                                    low_bits.eq(low_bits + 1),
                                    high_ticks.eq(0),
                                ]
                                m.next = "WAIT_HIGH"
                        with m.Else():
                            m.d.sync += shift.eq(Cat(shift[1:], value))
                            with m.If(value):
                                m.d.sync += low_bits.eq(0)
                            with m.Else():
                                m.d.sync += low_bits.eq(low_bits + 1)

            with m.State("WAIT_HIGH"):
                # After a low stop bit: the line must be high for half a bit before a new
                # start bit is accepted; meanwhile a line still low is counted towards a break.
                with m.If(tick):
                    with m.If(line):
                        with m.If(high_ticks == center - 1):
                            m.d.sync += self.break_.eq(0)
                            m.next = "IDLE"
                        m.d.sync += high_ticks.eq(high_ticks + 1)
                    with m.Else():
                        m.d.sync += high_ticks.eq(0)
                        with m.If((sample == center) & (low_bits != _FRAME_BITS)):
                            m.d.sync += low_bits.eq(low_bits + 1)
                            with m.If(low_bits == _FRAME_BITS - 1):
                                m.d.comb += break_found.eq(1)

        with m.If(break_found):
            m.d.sync += self.break_.eq(1)

        m.d.comb += [
            fifo.w_data.eq(shift),
            fifo.w_en.eq(byte_done),
            self.overrun.eq(byte_done & ~fifo.w_rdy),
            self.framing_error.eq(framing_error),
        ]
        _count_saturating(m, self.break_count, break_found)
        _count_saturating(m, self.framing_error_count, framing_error)
        _count_saturating(m, self.overrun_count, self.overrun)
        return m


class UARTTX(wiring.Component):
    """UART transmitter (8N1).

    Parameters
    ----------
    clk_freq : float
        Clock frequency in Hz.
    baud : float
        Baud rate; a bit lasts ``divider = round(clk_freq / baud)`` clocks.

    Raises
    ------
    TypeError
        A parameter of the wrong type.
    ValueError
        A non-positive rate, a clock below the baud rate, or a baud error above
        :data:`MAX_BAUD_ERROR`.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes to send. ``ready`` is high while idle and in the last clock of a stop bit, so
        back-to-back bytes take exactly ``10 * divider`` clocks each. The start bit begins on
        the clock after the transfer.
    tx : ``Out(1, init=1)``
        The line, registered, idle high.
    """

    def __init__(self, clk_freq, baud):
        self._divider, self._actual_baud, self._baud_error = _tx_timing(clk_freq, baud)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divider(self):
        """Clocks per bit."""
        return self._divider

    @property
    def actual_baud(self):
        return self._actual_baud

    @property
    def baud_error(self):
        """``actual_baud / baud - 1``."""
        return self._baud_error

    def elaborate(self, platform):
        m = Module()
        clocks_left = Signal(range(self._divider))  # in the current bit, after this one
        bits_left = Signal(range(_FRAME_BITS))      # after the current bit
        shift = Signal(9)                          # data bits, then the stop bit
        ready = Signal()
        m.d.comb += [
            ready.eq((clocks_left == 0) & (bits_left == 0)),
            self.i.ready.eq(ready),
        ]
        with m.If(self.i.valid & ready):
            m.d.sync += [
                self.tx.eq(0),
                shift.eq(Cat(self.i.payload, 1)),
                bits_left.eq(_FRAME_BITS - 1),
                clocks_left.eq(self._divider - 1),
            ]
        with m.Elif(clocks_left != 0):
            m.d.sync += clocks_left.eq(clocks_left - 1)
        with m.Elif(bits_left != 0):
            m.d.sync += [
                self.tx.eq(shift[0]),
                shift.eq(shift >> 1),
                bits_left.eq(bits_left - 1),
                clocks_left.eq(self._divider - 1),
            ]
        return m


class UART(wiring.Component):
    """UART PHY: a :class:`UARTRX` and a :class:`UARTTX` sharing one clock and baud rate.

    Parameters
    ----------
    clk_freq, baud : float
        Clock frequency in Hz and baud rate.
    oversampling, fifo_depth, counter_width
        Receiver parameters, see :class:`UARTRX`.

    Attributes
    ----------
    oversampling, rx_divider, rx_baud_error
        The receiver's timing (see :class:`UARTRX`: ``oversampling``, ``divider``,
        ``baud_error``).
    tx_divider, tx_baud_error
        The transmitter's clocks per bit and baud error.

    Members
    -------
    rx : ``In(1)``, tx : ``Out(1, init=1)``
        The pins.
    i : ``In(stream.Signature(8))``
        Bytes to send.
    o : ``Out(stream.Signature(8))``
        Bytes received.
    break_, framing_error, overrun, break_count, framing_error_count, overrun_count
        Receiver status, see :class:`UARTRX`.
    """

    def __init__(self, clk_freq, baud, *, oversampling=None, fifo_depth=16, counter_width=16):
        self._params = dict(clk_freq=clk_freq, baud=baud, oversampling=oversampling,
                            fifo_depth=fifo_depth, counter_width=counter_width)
        # Validate now (the parts themselves are built in elaborate()).
        self._oversampling, self._rx_divider, _, self._rx_baud_error = \
            _rx_timing(clk_freq, baud, oversampling)
        self._tx_divider, _, self._tx_baud_error = _tx_timing(clk_freq, baud)
        _check_int("FIFO depth", fifo_depth, 1)
        _check_int("Counter width", counter_width, 1)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "break_": Out(1),
            "framing_error": Out(1),
            "overrun": Out(1),
            "break_count": Out(counter_width),
            "framing_error_count": Out(counter_width),
            "overrun_count": Out(counter_width),
        })

    @property
    def oversampling(self):
        """Receiver samples per bit."""
        return self._oversampling

    @property
    def rx_divider(self):
        """Clocks between receiver samples."""
        return self._rx_divider

    @property
    def tx_divider(self):
        """Clocks per transmitted bit."""
        return self._tx_divider

    @property
    def rx_baud_error(self):
        return self._rx_baud_error

    @property
    def tx_baud_error(self):
        return self._tx_baud_error

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTRX(
            self._params["clk_freq"], self._params["baud"],
            oversampling=self._params["oversampling"],
            fifo_depth=self._params["fifo_depth"],
            counter_width=self._params["counter_width"])
        m.submodules.transmitter = transmitter = UARTTX(self._params["clk_freq"],
                                                        self._params["baud"])
        wiring.connect(m, wiring.flipped(self.i), transmitter.i)
        wiring.connect(m, receiver.o, wiring.flipped(self.o))
        m.d.comb += [
            receiver.rx.eq(self.rx),
            self.tx.eq(transmitter.tx),
        ]
        for name in ("break_", "framing_error", "overrun", "break_count",
                     "framing_error_count", "overrun_count"):
            m.d.comb += getattr(self, name).eq(getattr(receiver, name))
        return m
