"""Register slices for streams: every output registered, ``ready`` included.

:class:`SkidBuffer` cuts every combinational path through a stream without losing
throughput: one transfer per cycle in steady state, with one extra register to hold the
payload that was in flight when the consumer dropped ``ready``. :class:`RegisterSlice` has
one register and half the throughput (a transfer every other cycle at best), for consumers
that are slower than that anyway, at half the flip-flops. Both keep long ``ready`` chains
out of the critical path.
"""

from amaranth import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer", "RegisterSlice"]


def _check_shape(shape):
    try:
        Shape.cast(shape)
    except TypeError as exc:
        raise TypeError(f"Payload shape must be a shape-like object, not {shape!r}") from exc


class SkidBuffer(wiring.Component):
    """Register slice with a skid register: all outputs, ``i.ready`` included, are registered.

    Parameters
    ----------
    shape : ShapeLike
        Shape of the payload.

    Members
    -------
    i : ``In(stream.Signature(shape))``
        Incoming stream.
    o : ``Out(stream.Signature(shape))``
        The same payloads, in order, one cycle later at the earliest.
    """

    #: Cycles between transfers in steady state.
    interval = 1

    def __init__(self, shape):
        _check_shape(shape)
        self._shape = shape
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    @property
    def shape(self):
        return self._shape

    def elaborate(self, platform):
        m = Module()

        skid_valid = Signal()
        skid_payload = Signal(self._shape)
        i_ready = Signal(init=1)
        m.d.comb += self.i.ready.eq(i_ready)

        # The input is accepted while the skid register is empty; i.ready is therefore the
        # registered inverse of skid_valid and never depends on o.ready combinationally.
        m.d.comb += i_ready.eq(~skid_valid)
        o_free = ~self.o.valid | self.o.ready

        with m.If(o_free):
            with m.If(skid_valid):
                m.d.sync += [
                    self.o.payload.eq(skid_payload),
                    self.o.valid.eq(1),
                    skid_valid.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    self.o.payload.eq(self.i.payload),
                    self.o.valid.eq(self.i.valid),
                ]
        with m.Elif(self.i.valid & i_ready):
            # Output is stalled: park the incoming payload in the skid register.
            m.d.sync += [
                skid_payload.eq(self.i.payload),
                skid_valid.eq(1),
            ]
        return m


class RegisterSlice(SkidBuffer):
    """Register slice with one register: all outputs registered, a transfer every other cycle.

    ``i.ready`` is the registered "empty" flag, so a payload is taken only when the previous
    one has gone: at most one transfer per two cycles. Half the flip-flops of a
    :class:`SkidBuffer`, and the register is loaded from the input alone (no multiplexer in
    front of it). Parameters and members are those of :class:`SkidBuffer`.
    """

    interval = 2

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(~self.o.valid)
        with m.If(self.i.valid & ~self.o.valid):
            m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
