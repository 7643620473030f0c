"""Serial requantizer: the :class:`~qaccel.hw.requant.Requantizer`'s function and ports, one
accumulator at a time, for FPGAs where logic cells are scarcer than cycles.

Computes, bit-exact with :func:`qaccel.sw.golden.requantize`, the same steps as the
pipelined requantizer (see :mod:`qaccel.hw.requant`), in one datapath that works on one item::

    ACCEPT  take an accumulator, read its channel's parameters
    BIAS    x = wrap32(acc + bias)                                (32-bit adder)
    LEFT    x = clamp(x * 2**left): one saturating doubling per cycle, left cycles
    MULT    h = floor((x * m0 +- 2**30) / 2**(31 + right - 1)): one bit of m0 per cycle
            (h = (h + m0[j] * x) >> 1, from h = the nudge), then right - 1 more halvings,
            31 + max(right - 1, 0) cycles
    NARROW  u = h saturated to 11 bits
    EMIT    value = clamp(z + zp_out, act_min, act_max) -> o

The doubling saturates once and stays saturated (``INT32_MAX`` and ``INT32_MIN`` overflow on
every further doubling and saturate to themselves), so ``left`` doublings equal the clamp of
``acc' * 2**left``. The multiplication keeps only the bits of the running sum at and above
the current weight: the bits shifted out are final and matter only through carries already
taken, so after 31 steps ``h`` is the floor of the whole sum over ``2**31``, and each further
halving is one more floor division by 2, which is the right shift of RDBPOT (the nudge
``-2**30`` for a negative ``x`` with rounding absorbs its ``- neg``, as in the pipelined
version).

Cycles: an accumulator accepted at one clock edge has its result on ``o`` from
``36 + left + max(right - 1, 0)`` edges later (``latency``), and the next accumulator is
accepted one cycle after the result is taken, so with no stalls one result leaves every
``37 + left + max(right - 1, 0)`` cycles: 37 to 67 (:meth:`SerialRequantizer.timing`).

Cost, on an iCE40 (Yosys ``synth_ice40``, 8 channels, 11-bit tag): about a third of the
logic cells of the pipelined requantizer with ``mult_cycles=8``; see ``docs/INT8_ENGINE.md``.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import enum

from .requant import (_INT32_MAX, _INT32_MIN, _NUDGE, _narrow, _output_value,
                      _parameter_memory, _RequantizerPorts)

__all__ = ["SerialRequantizer"]

#: Multiplier bits (m0 is a non-negative 31-bit number).
_M0_BITS = 31


class _State(enum.Enum, shape=3):
    IDLE = 0
    BIAS = 1
    LEFT = 2
    MULT = 3
    NARROW = 4
    EMIT = 5
    OUT = 6


class SerialRequantizer(_RequantizerPorts):
    """Bias, MultiplyByQuantizedMultiplier, output zero point and clamp, one item at a time.

    Same ports, parameters semantics and results as
    :class:`~qaccel.hw.requant.Requantizer` (see there for ``i``, ``param``, ``o``,
    ``zp_out``, ``act_min`` and ``act_max``); only the timing differs (module docstring).

    Parameters
    ----------
    channels : int
        Number of output channels (``>= 1``); the parameter memory holds one entry each.
    tag_width : int
        Width of an optional opaque ``tag`` field passed from input to output; ``0`` omits it.

    Attributes
    ----------
    cycles_per_result, latency : int
        The largest values of :meth:`timing` (:meth:`timing_bounds`): for budgets.
    """

    def __init__(self, channels, *, tag_width=0):
        super().__init__(channels, tag_width)

    @staticmethod
    def timing(shift):
        """``(cycles_per_result, latency)`` of an accumulator whose channel has ``shift``.

        ``shift`` is the parameter (``> 0`` left, ``< 0`` right), in ``[-31, 30]``."""
        if isinstance(shift, bool) or not isinstance(shift, int):
            raise TypeError(f"Shift must be an integer, not {shift!r}")
        if not -31 <= shift <= 30:
            raise ValueError(f"Shift must be in -31..30, not {shift}")
        latency = 36 + max(shift, 0) + max(-shift - 1, 0)
        return latency + 1, latency

    @staticmethod
    def timing_bounds():
        """``(fewest, most)``: the :meth:`timing` of the fastest and the slowest shift."""
        timings = [SerialRequantizer.timing(shift) for shift in range(-31, 31)]
        return min(timings), max(timings)

    @property
    def cycles_per_result(self):
        return self.timing_bounds()[1][0]

    @property
    def latency(self):
        return self.timing_bounds()[1][1]

    def elaborate(self, platform):
        m = Module()
        # block RAM even for a few channels: this requantizer is for FPGAs short of logic
        read_addr, read_data, read_en = _parameter_memory(m, self.param, self._channels,
                                                          block_ram=True)

        state = Signal(_State)
        x = Signal(signed(32))          # the accumulator, then acc', then x
        # the running sum: |h| <= 2**31 + 2**30 between steps, so 33 bits (module docstring)
        h = Signal(signed(33))
        left_left = Signal(range(31))   # doublings still to do
        step = Signal(range(_M0_BITS + 31))
        last_step = Signal(range(_M0_BITS + 31))
        rounding = Signal()             # right > 0
        # m0, shifted right one bit per step (zeros follow it: the halvings after bit 30);
        # a register bit, not a multiplexer over m0, gates the adder
        multiplier = Signal(_M0_BITS)
        u = Signal(signed(11))
        passed = [self.o.payload.channel, self.o.payload.last]
        incoming = [self.i.payload.channel, self.i.payload.last]
        if self._tag_width:
            passed.append(self.o.payload.tag)
            incoming.append(self.i.payload.tag)

        accept = Signal()
        m.d.comb += [
            self.i.ready.eq(state == _State.IDLE),
            accept.eq(self.i.valid & self.i.ready),
            read_addr.eq(self.i.payload.channel),
            read_en.eq(accept),
        ]

        shift = read_data.shift
        step_sum = Signal(signed(34))
        m.d.comb += step_sum.eq(h + Mux(multiplier[0], x, 0))
        doubling_overflows = x[31] ^ x[30]
        saturated = Mux(x[31], Const(_INT32_MIN, signed(32)), Const(_INT32_MAX, signed(32)))
        h_narrow = _narrow(m, h, "h_narrow")
        value = _output_value(m, u, rounding, self.zp_out, self.act_min, self.act_max)

        with m.Switch(state):
            with m.Case(_State.IDLE):
                with m.If(accept):
                    m.d.sync += [x.eq(self.i.payload.acc), Cat(*passed).eq(Cat(*incoming)),
                                 state.eq(_State.BIAS)]
            with m.Case(_State.BIAS):
                m.d.sync += [
                    x.eq(x + read_data.bias),   # truncation to 32 bits is the wrap
                    left_left.eq(Mux(shift > 0, shift[:5], 0)),
                    rounding.eq(shift < 0),
                    last_step.eq(_M0_BITS - 1 + Mux(shift < 0, -shift - 1, 0)),
                    multiplier.eq(read_data.m0),
                    state.eq(_State.LEFT),
                ]
            with m.Case(_State.LEFT):
                with m.If(left_left != 0):
                    m.d.sync += [x.eq(Mux(doubling_overflows, saturated, x << 1)),
                                 left_left.eq(left_left - 1)]
                with m.Else():
                    # RDBPOT needs y - (y < 0); x < 0 stands in for y < 0 (see requant.py)
                    m.d.sync += [h.eq(Mux(x[31] & rounding, -_NUDGE, _NUDGE)),
                                 step.eq(0), state.eq(_State.MULT)]
            with m.Case(_State.MULT):
                m.d.sync += [h.eq(step_sum >> 1), step.eq(step + 1),
                             multiplier.eq(multiplier >> 1)]
                with m.If(step == last_step):
                    m.d.sync += state.eq(_State.NARROW)
            with m.Case(_State.NARROW):
                m.d.sync += [u.eq(h_narrow), state.eq(_State.EMIT)]
            with m.Case(_State.EMIT):
                m.d.sync += [
                    self.o.payload.value.eq(value),
                    self.o.valid.eq(1),
                    state.eq(_State.OUT),
                ]
            with m.Case(_State.OUT):
                with m.If(self.o.ready):
                    m.d.sync += [self.o.valid.eq(0), state.eq(_State.IDLE)]
        return m
