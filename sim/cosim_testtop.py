"""Stand-in designs for the co-simulation harness (:mod:`qaccel.sim.cosim`).

They follow the co-simulation port contract of ``docs/COSIM.md`` and speak a tiny
request/response protocol, so the harness can be tested (and benchmarked) before the real
accelerator top exists:

========================  ===================================================================
request (host to device)  reply (device to host)
========================  ===================================================================
``'E' n d[0..n-1]``       ``'e' n ~d[0] ... ~d[n-1]``: echo of ``n`` (0-255) bytes, each
                          inverted, streamed out as they arrive.
``'B' n[4]``              busy for ``n`` (u32, little-endian) cycles: ``busy`` is high for
                          exactly ``n`` cycles and ``rx`` is not ready meanwhile; then
                          ``'b' start[8] end[8]``, the cycle counter when the wait began and
                          ended (``end - start == n``).
``'C'``                   ``'c' count[8]``: the cycle counter (clock edges since reset).
anything else             ``'?' opcode``.
========================  ===================================================================

Multi-byte integers are little-endian. The cycle counter counts rising clock edges since the
end of reset, like the harness's ``cycles`` statistic.

:class:`CosimTestCore` is the byte-stream variant (``rx``/``tx`` streams and ``busy``);
:class:`CosimUartTestTop` puts the same core behind a minimal UART (``uart_rx``/``uart_tx``
pins at a fixed number of clocks per bit) for the pseudo-terminal mode.
:class:`ToyProtocol` builds requests and checks replies on the host side.
"""

from __future__ import annotations

import struct

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import enum, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CosimTestCore", "CosimUartTestTop", "MinimalUartRX", "MinimalUartTX",
           "ToyProtocol", "ECHO", "BUSY", "COUNT"]

ECHO = ord("E")
BUSY = ord("B")
COUNT = ord("C")

#: Longest reply held in the output shift register: 'b' + two u64 counters.
_REPLY_BYTES = 17
_COUNTER_WIDTH = 64


class _State(enum.Enum, shape=3):
    OPCODE = 0
    ECHO_LENGTH = 1
    ECHO_DATA = 2
    BUSY_ARGUMENT = 3
    BUSY_RUN = 4
    BUSY_REPLY = 5


class CosimTestCore(wiring.Component):
    """The stand-in device with the byte-stream port of the co-simulation contract.

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Request bytes from the host.
    tx : ``Out(stream.Signature(8))``
        Reply bytes to the host.
    busy : ``Out(1)``
        High while a ``'B'`` request is waiting (exactly ``n`` cycles) and until its reply is
        loaded into the output register.
    """

    def __init__(self):
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()

        counter = Signal(_COUNTER_WIDTH)
        next_counter = Signal(_COUNTER_WIDTH)
        m.d.comb += next_counter.eq(counter + 1)
        m.d.sync += counter.eq(next_counter)

        # Replies leave through a shift register: the low byte is on tx, one byte per transfer.
        reply = Signal(8 * _REPLY_BYTES)
        reply_left = Signal(range(_REPLY_BYTES + 1))
        m.d.comb += [
            self.tx.valid.eq(reply_left != 0),
            self.tx.payload.eq(reply[:8]),
        ]
        tx_fire = self.tx.valid & self.tx.ready
        with m.If(tx_fire):
            m.d.sync += [reply.eq(reply >> 8), reply_left.eq(reply_left - 1)]
        # A new reply may be loaded when the register is empty or its last byte leaves now;
        # the load below overrides the shift.
        can_load = (reply_left == 0) | ((reply_left == 1) & self.tx.ready)

        def load(*parts):
            value = Cat(*parts)
            m.d.sync += [reply.eq(value), reply_left.eq(len(value) // 8)]

        state = Signal(_State)
        echo_left = Signal(8)
        argument = Signal(32)
        argument_index = Signal(2)
        wait_left = Signal(32)
        wait_start = Signal(_COUNTER_WIDTH)

        waiting = (state == _State.BUSY_RUN) | (state == _State.BUSY_REPLY)
        m.d.comb += [
            self.rx.ready.eq(can_load & ~waiting),
            self.busy.eq(waiting),
        ]
        rx_fire = self.rx.valid & self.rx.ready
        byte = self.rx.payload
        # The wait length once its last byte arrives (the argument register is shifted in).
        full_argument = Cat(argument[8:], byte)

        with m.Switch(state):
            with m.Case(_State.OPCODE):
                with m.If(rx_fire):
                    with m.If(byte == ECHO):
                        m.d.sync += state.eq(_State.ECHO_LENGTH)
                    with m.Elif(byte == BUSY):
                        m.d.sync += [state.eq(_State.BUSY_ARGUMENT), argument_index.eq(0)]
                    with m.Elif(byte == COUNT):
                        load(Const(ord("c"), 8), counter)
                    with m.Else():
                        load(Const(ord("?"), 8), byte)
            with m.Case(_State.ECHO_LENGTH):
                with m.If(rx_fire):
                    load(Const(ord("e"), 8), byte)
                    m.d.sync += echo_left.eq(byte)
                    m.d.sync += state.eq(_State.OPCODE)
                    with m.If(byte != 0):
                        m.d.sync += state.eq(_State.ECHO_DATA)
            with m.Case(_State.ECHO_DATA):
                with m.If(rx_fire):
                    load(~byte)
                    m.d.sync += echo_left.eq(echo_left - 1)
                    with m.If(echo_left == 1):
                        m.d.sync += state.eq(_State.OPCODE)
            with m.Case(_State.BUSY_ARGUMENT):
                with m.If(rx_fire):
                    m.d.sync += [argument.eq(full_argument),
                                 argument_index.eq(argument_index + 1)]
                    with m.If(argument_index == 3):
                        with m.If(full_argument == 0):
                            load(Const(ord("b"), 8), next_counter, next_counter)
                            m.d.sync += state.eq(_State.OPCODE)
                        with m.Else():
                            m.d.sync += [wait_left.eq(full_argument),
                                         wait_start.eq(next_counter),
                                         state.eq(_State.BUSY_RUN)]
            with m.Case(_State.BUSY_RUN):
                m.d.sync += wait_left.eq(wait_left - 1)
                with m.If(wait_left == 1):
                    # The counter after this edge is start + n: the end of the wait.
                    with m.If(can_load):
                        load(Const(ord("b"), 8), wait_start, next_counter)
                        m.d.sync += state.eq(_State.OPCODE)
                    with m.Else():
                        m.d.sync += [wait_left.eq(0), state.eq(_State.BUSY_REPLY)]
            with m.Case(_State.BUSY_REPLY):
                # Only when the host stalls tx: the end stamp is then the loading cycle.
                with m.If(can_load):
                    load(Const(ord("b"), 8), wait_start, next_counter)
                    m.d.sync += state.eq(_State.OPCODE)
        return m


class MinimalUartRX(wiring.Component):
    """8N1 receiver sampling mid-bit, for the stand-in only (``hw/uart.py`` is the real PHY).

    Parameters
    ----------
    clocks_per_bit : int
        Clock cycles per bit, at least 4.

    Members
    -------
    pin : ``In(1, init=1)``
        The line (idle high), synchronised by two flops inside.
    o : ``Out(stream.Signature(8))``
        Received bytes; ``valid`` is a one-cycle strobe (there is no flow control on a UART).
    active : ``Out(1)``
        A character is being received.
    framing_errors : ``Out(16)``
        Characters dropped because the stop bit was low.
    """

    def __init__(self, clocks_per_bit):
        self.clocks_per_bit = _check_clocks_per_bit(clocks_per_bit)
        super().__init__({
            "pin": In(1, init=1),
            "o": Out(stream.Signature(8, always_ready=True)),
            "active": Out(1),
            "framing_errors": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit
        meta = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [meta.eq(self.pin), line.eq(meta)]

        timer = Signal(range(cpb))
        bit_index = Signal(range(9))
        shift = Signal(8)
        m.d.sync += self.o.valid.eq(0)
        m.d.comb += self.o.payload.eq(shift)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(cpb // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += self.active.eq(1)
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(line):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(cpb - 1), bit_index.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += self.active.eq(1)
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(cpb - 1),
                                 bit_index.eq(bit_index + 1)]
                    with m.If(bit_index == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.comb += self.active.eq(1)
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += self.o.valid.eq(1)
                    with m.Else():
                        m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                    m.next = "IDLE"
        return m


class MinimalUartTX(wiring.Component):
    """8N1 transmitter, for the stand-in only.

    Parameters
    ----------
    clocks_per_bit : int
        Clock cycles per bit, at least 4.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes to send; accepted when the previous character has left.
    pin : ``Out(1, init=1)``
        The line (idle high).
    active : ``Out(1)``
        A character is being sent.
    """

    def __init__(self, clocks_per_bit):
        self.clocks_per_bit = _check_clocks_per_bit(clocks_per_bit)
        super().__init__({
            "i": In(stream.Signature(8)),
            "pin": Out(1, init=1),
            "active": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit
        # start bit, 8 data bits LSB first, stop bit; shifted out from bit 0
        frame = Signal(10, init=0x3FF)
        bits_left = Signal(range(11))
        timer = Signal(range(cpb))
        # The next byte is taken in the stop bit's last cycle: characters leave back to back,
        # as fast as the host's characters arrive (an echo must not fall behind).
        m.d.comb += [
            self.pin.eq(frame[0]),
            self.active.eq(bits_left != 0),
            self.i.ready.eq((bits_left == 0) | ((bits_left == 1) & (timer == 0))),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [frame.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                         bits_left.eq(10), timer.eq(cpb - 1)]
        with m.Elif(bits_left != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))),
                             bits_left.eq(bits_left - 1), timer.eq(cpb - 1)]
        return m


class CosimUartTestTop(wiring.Component):
    """:class:`CosimTestCore` behind a UART: the pin variant of the co-simulation contract.

    Parameters
    ----------
    clocks_per_bit : int
        Clock cycles per UART bit (at least 4); the harness must use the same value.
    fifo_depth : int
        Received bytes buffered while the core is busy; later bytes are lost, as on a board.

    Members
    -------
    uart_rx : ``In(1, init=1)``
        Host to device line.
    uart_tx : ``Out(1, init=1)``
        Device to host line.
    busy : ``Out(1)``
        The core is busy, or bytes are buffered, being received or being sent.
    """

    def __init__(self, clocks_per_bit, fifo_depth=64):
        self.clocks_per_bit = _check_clocks_per_bit(clocks_per_bit)
        if not isinstance(fifo_depth, int) or fifo_depth < 2:
            raise ValueError(f"FIFO depth must be an integer of at least 2, not {fifo_depth!r}")
        self.fifo_depth = fifo_depth
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = MinimalUartRX(self.clocks_per_bit)
        m.submodules.transmitter = transmitter = MinimalUartTX(self.clocks_per_bit)
        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        m.submodules.core = core = CosimTestCore()
        m.d.comb += [
            receiver.pin.eq(self.uart_rx),
            self.uart_tx.eq(transmitter.pin),
            buffer.w_data.eq(receiver.o.payload),
            buffer.w_en.eq(receiver.o.valid),
            core.rx.valid.eq(buffer.r_rdy),
            core.rx.payload.eq(buffer.r_data),
            buffer.r_en.eq(core.rx.ready),
            self.busy.eq(core.busy | buffer.r_rdy | receiver.active | receiver.o.valid
                         | core.tx.valid | transmitter.active),
        ]
        wiring.connect(m, core.tx, transmitter.i)
        return m


def _check_clocks_per_bit(clocks_per_bit):
    if not isinstance(clocks_per_bit, int) or isinstance(clocks_per_bit, bool):
        raise TypeError(f"Clocks per bit must be an integer, not {clocks_per_bit!r}")
    if clocks_per_bit < 4:
        raise ValueError(f"Clocks per bit must be at least 4, not {clocks_per_bit}")
    return clocks_per_bit


class ToyProtocol:
    """Host side of the stand-in protocol: request encoders and reply parsers."""

    @staticmethod
    def echo(data):
        """``'E'`` request for ``data`` (at most 255 bytes); returns (request, expected reply)."""
        data = bytes(data)
        if len(data) > 255:
            raise ValueError(f"An echo request holds at most 255 bytes, not {len(data)}")
        request = bytes([ECHO, len(data)]) + data
        return request, bytes([ord("e"), len(data)]) + bytes(b ^ 0xFF for b in data)

    @staticmethod
    def busy(cycles):
        """``'B'`` request: stay busy for ``cycles`` (0 to 2**32 - 1)."""
        if not 0 <= cycles < 1 << 32:
            raise ValueError(f"Busy cycles must be in [0, 2**32), not {cycles}")
        return bytes([BUSY]) + struct.pack("<I", cycles)

    BUSY_REPLY_BYTES = 17
    COUNT_REPLY_BYTES = 9

    @staticmethod
    def count():
        """``'C'`` request."""
        return bytes([COUNT])

    @staticmethod
    def parse_busy(reply):
        """(start, end) counters of a ``'b'`` reply."""
        if len(reply) != 17 or reply[0] != ord("b"):
            raise ValueError(f"Not a busy reply: {reply!r}")
        return struct.unpack("<QQ", reply[1:])

    @staticmethod
    def parse_count(reply):
        """Counter value of a ``'c'`` reply."""
        if len(reply) != 9 or reply[0] != ord("c"):
            raise ValueError(f"Not a count reply: {reply!r}")
        return struct.unpack("<Q", reply[1:])[0]
