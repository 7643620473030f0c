"""Requantization pipeline: int32 accumulators -> int8 outputs (gemmlowp "double rounding").

For every accumulator of output channel ``ch`` the pipeline computes, bit-exact with
:func:`qaccel.sw.golden.requantize`::

    acc'  = wrap32(acc + bias[ch])                        # int32 two's complement wrap
    left  = max(shift[ch], 0);  right = max(-shift[ch], 0)
    x     = clamp(acc' * 2**left, INT32_MIN, INT32_MAX)   # qaccel's saturation rule
    y     = SRDHM(x, m0[ch]) = floor((x * m0[ch] + 2**30) / 2**31)
    z     = RDBPOT(y, right)                              # y if right == 0, else
          = floor((floor((y - neg) / 2**(right-1)) + 1) / 2),  neg = (y < 0)
    value = clamp(z + zp_out, act_min, act_max)           # int8

``SRDHM`` never saturates here: its only saturating case is ``x == m0 == INT32_MIN`` and the
multiplier is a non-negative 31-bit number. The floor form of SRDHM equals gemmlowp's
truncating division with the ``1 - 2**30`` nudge for negative products (see the golden
model's proof). The RDBPOT form is the golden model's ``(y + 2**(right-1) - neg) >> right``
with the shift split in two, so that the halving merges with the ``zp_out`` addition; it
equals gemmlowp's ``(y >> e) + (rem > (mask >> 1) + neg)``.

Pipeline (one stage per register; a stage holds its item while the next one is full)::

    S0  accept, read the channel's parameters (synchronous memory read)
    S1  acc' = acc + bias                                   (32-bit adder)
    S2  x = saturating left shift of acc'                   (barrel shifter + overflow test)
    M   y - neg = floor((x * m0 +- 2**30) / 2**31): iterative radix-4 Booth multiplier,
        ``mult_cycles`` cycles, or one ``*`` (``mult_cycles=1``); the nudge's sign absorbs
        the ``- neg`` of RDBPOT
    S3  y - neg
    S4  u = (y - neg) >> (right - 1), saturated to 11 bits  (barrel shifter)
    S5  clamp(((u + 1 + 2 * zp_out) >> 1 or u + zp_out), act_min, act_max) -> output

Only the multiplier is iterative, so a result leaves every ``mult_cycles`` cycles when the
input keeps it fed and the output does not stall, and the latency from the clock edge that
accepts an accumulator to the edge at which its result can first be taken is
``mult_cycles + 5`` cycles.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .ram import NO_RW_CHECK, registered_read_port

__all__ = ["MULT_CYCLES", "Requantizer", "requant_layouts"]

#: Accepted values of ``mult_cycles``: 1 is the parallel multiplier (one ``*``), the others
#: are the iterative Booth multiplier with ``16 // mult_cycles`` radix-4 digits per cycle.
MULT_CYCLES = (1, 2, 4, 8, 16)

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
# The rounding nudge of SRDHM, added to the 63-bit product before taking bits [31, 63).
_NUDGE = 1 << 30
# S5 saturates (y - neg) >> (right - 1) to this many bits: the output stage stays 13 bits
# wide, and since zp_out and the clamp bounds lie in [-128, 127] a value at either limit
# still clamps the same way after the final halving (1024 / 2 - 128 > 127).
_NARROW_BITS = 11


def _at_least(value, bound):
    """``value >= bound`` for a constant ``bound``, as AND/OR logic.

    Yosys maps a comparison with ``>=`` to a carry chain, which costs a logic cell per bit
    on iCE40; this form costs a LUT or two and is shared between neighbouring bounds.
    """
    width = len(value)
    if bound <= 0:
        return Const(1, 1)
    if bound >= 1 << width:
        return Const(0, 1)
    top = 1 << (width - 1)
    if bound & top:
        return value[width - 1] & _at_least(value[:width - 1], bound - top)
    return value[width - 1] | _at_least(value[:width - 1], bound)


def _booth_digit(bits):
    """Radix-4 Booth recoding of ``(b[2j+1], b[2j], b[2j-1])`` (``bits`` LSB first).

    Returns ``(one, two, negative)``: the digit is ``+-1`` when ``one``, ``+-2`` when
    ``two``, 0 when neither, and negative when ``negative``.
    """
    low, mid, high = bits[0], bits[1], bits[2]
    one = mid ^ low
    two = (high & ~mid & ~low) | (~high & mid & low)
    negative = high & ~(mid & low)  # "111" is -0: keep it positive
    return one, two, negative


def _add_with_carry_in(a, b, carry_in):
    """Signed ``a + b + carry_in`` as a single two-operand adder (the carry enters at the LSB).

    Yosys would fold a separate one-bit summand into a generic ``$macc``; putting the bit
    below the LSB of both operands, ``(2a + c) + (2b + 1) = 2(a + b + c) + 1``, keeps it a
    plain carry-chain adder.
    """
    total = Cat(carry_in, a).as_signed() + Cat(Const(1, 1), b).as_signed()
    return total[1:].as_signed()


def _narrow(m, u, name):
    """``u`` (signed) saturated to ``_NARROW_BITS`` bits: the clamp to int8 after adding a
    zero point of at most 128 in magnitude gives the same result from either."""
    high = u[_NARROW_BITS - 1:]  # all copies of the sign iff u fits the narrow range
    narrow_max = (1 << (_NARROW_BITS - 1)) - 1
    narrowed = Signal(signed(_NARROW_BITS), name=name)
    m.d.comb += narrowed.eq(Mux(high.all() | ~high.any(), u[:_NARROW_BITS],
                                Mux(u[-1], Const(-narrow_max - 1, signed(_NARROW_BITS)),
                                    Const(narrow_max, signed(_NARROW_BITS)))))
    return narrowed


def _output_value(m, u, rounding, zp_out, act_min, act_max):
    """``clamp(z + zp_out, act_min, act_max)`` from the narrowed ``u`` (module docstring).

    With rounding ``z = (u + 1) >> 1``, so ``z + zp_out = (u + 1 + 2 * zp_out) >> 1``: one
    adder for both."""
    with_zero_point = Signal(signed(_NARROW_BITS + 2))
    m.d.comb += with_zero_point.eq(
        u + Mux(rounding, Cat(Const(1, 1), zp_out).as_signed(), zp_out))
    result = Signal(signed(_NARROW_BITS + 1))
    m.d.comb += result.eq(Mux(rounding, with_zero_point >> 1, with_zero_point))
    return Mux(result < act_min, act_min, Mux(result > act_max, act_max, result[:8]))


def _parameter_memory(m, param, channels, *, block_ram=False):
    """The per-channel parameter memory, written from the ``param`` stream (always ready).

    ``block_ram`` asks synthesis for block RAM whatever the depth (Yosys builds a few
    entries of 69 bits from flip-flops otherwise: about 350 iCE40 logic cells for 4).

    Returns ``(read_addr, read_data, read_en)`` of its registered read port (the data holds
    while ``read_en`` is low). Synchronous, not transparent (see the ``param`` docs of
    :class:`Requantizer`): the Int8Controller writes the parameters of one column tile while
    the other half of the memory is read, so a same-address collision needs no logic (see
    qaccel.hw.ram).
    """
    entry = data.StructLayout({"bias": signed(32), "m0": unsigned(31), "shift": signed(6)})
    attrs = dict(NO_RW_CHECK, ram_style="block") if block_ram else NO_RW_CHECK
    m.submodules.params = params = Memory(shape=entry, depth=channels, init=[], attrs=attrs)
    write = params.write_port()
    read_en = Signal()
    read_addr, read_data = registered_read_port(m, params, "params_rd", read_en)
    m.d.comb += [
        param.ready.eq(1),
        write.en.eq(param.valid),
        write.addr.eq(param.payload.channel),
        write.data.bias.eq(param.payload.bias),
        write.data.m0.eq(param.payload.m0),
        write.data.shift.eq(param.payload.shift),
    ]
    return read_addr, read_data, read_en


def _check_channels(channels):
    if isinstance(channels, bool) or not isinstance(channels, int):
        raise TypeError(f"Channel count must be an integer, not {channels!r}")
    if channels < 1:
        raise ValueError(f"Channel count must be at least 1, not {channels}")


def _check_tag_width(tag_width):
    if isinstance(tag_width, bool) or not isinstance(tag_width, int):
        raise TypeError(f"Tag width must be an integer, not {tag_width!r}")
    if tag_width < 0:
        raise ValueError(f"Tag width must be non-negative, not {tag_width}")


def requant_layouts(channels, tag_width=0):
    """Payload layouts of a :class:`Requantizer`'s ``i``, ``param`` and ``o`` streams.

    Parameters
    ----------
    channels : int
        Number of output channels (``>= 1``); ``channel`` fields are
        ``unsigned(ceil_log2(channels))``.
    tag_width : int
        Width of the ``tag`` field of ``i`` and ``o``; 0 omits it.

    Returns
    -------
    tuple of data.StructLayout
        ``(input_layout, param_layout, output_layout)``.
    """
    _check_channels(channels)
    _check_tag_width(tag_width)
    channel_shape = unsigned(ceil_log2(channels))
    tag_fields = {"tag": unsigned(tag_width)} if tag_width else {}
    input_layout = data.StructLayout({
        "acc": signed(32), "channel": channel_shape, "last": unsigned(1), **tag_fields})
    param_layout = data.StructLayout({
        "channel": channel_shape, "bias": signed(32), "m0": unsigned(31), "shift": signed(6)})
    output_layout = data.StructLayout({
        "value": signed(8), "channel": channel_shape, "last": unsigned(1), **tag_fields})
    return input_layout, param_layout, output_layout


class _RequantizerPorts(wiring.Component):
    """What :class:`Requantizer` and the serial requantizer share: parameter checks, the
    payload layouts and the ports (documented on :class:`Requantizer`)."""

    def __init__(self, channels, tag_width):
        _check_channels(channels)
        _check_tag_width(tag_width)
        self._channels = channels
        self._tag_width = tag_width
        self._input_layout, self._param_layout, self._output_layout = \
            requant_layouts(channels, tag_width)
        super().__init__({
            "i": In(stream.Signature(self._input_layout)),
            "param": In(stream.Signature(self._param_layout)),
            "o": Out(stream.Signature(self._output_layout)),
            "zp_out": In(signed(8)),
            "act_min": In(signed(8), init=-128),
            "act_max": In(signed(8), init=127),
        })

    @property
    def channels(self):
        return self._channels

    @property
    def tag_width(self):
        return self._tag_width

    @property
    def input_layout(self):
        return self._input_layout

    @property
    def param_layout(self):
        return self._param_layout

    @property
    def output_layout(self):
        return self._output_layout


class Requantizer(_RequantizerPorts):
    """Bias, MultiplyByQuantizedMultiplier, output zero point and clamp, per output channel.

    Parameters
    ----------
    channels : int
        Number of output channels (``>= 1``); the parameter memory holds one entry each.
    mult_cycles : int
        Cycles per result of the 32 x 31-bit multiplier, one of :data:`MULT_CYCLES`.
        ``1`` uses one ``*`` per result (Yosys maps it to DSP blocks where it may; for
        devices with DSPs to spare). ``2``-``16`` use an iterative radix-4 Booth multiplier
        written without ``*`` (``16 // mult_cycles`` digits per cycle, LUTs and carry chains
        only, so no synthesis option can put it on a DSP block). Default 8.
    tag_width : int
        Width of an optional opaque ``tag`` field passed from input to output with its
        accumulator (e.g. a row index); ``0`` (default) omits the field.

    Members
    -------
    i : ``In(stream.Signature(input_layout))``
        Accumulators: ``acc`` (``signed(32)``), ``channel`` (``unsigned(ceil_log2(channels))``,
        must be ``< channels``), ``last`` (end of a tile, passed through) and ``tag``.
    param : ``In(stream.Signature(param_layout))``
        Parameter writes: ``channel``, ``bias`` (``signed(32)``), ``m0`` (``unsigned(31)``)
        and ``shift`` (``signed(6)``, ``> 0`` is a left shift; the supported range is
        ``[-31, 30]`` like the golden model, other codes give unspecified results).
        Always ready: one write per cycle. An accumulator uses the parameters of its channel
        as written before the clock edge that accepts it on ``i``; a write in the same cycle
        as that edge is not seen. Reset does not clear the parameters.
    o : ``Out(stream.Signature(output_layout))``
        Results in input order: ``value`` (``signed(8)``), ``channel``, ``last`` and ``tag``.
    zp_out : ``In(signed(8))``
        Output zero point (layer-wide).
    act_min, act_max : ``In(signed(8))``
        Clamp bounds, ``act_min <= act_max`` (ReLU: ``act_min = zp_out``). Defaults -128
        and 127. ``zp_out``, ``act_min`` and ``act_max`` are read at the last stage: hold
        them while results are in flight.

    Attributes
    ----------
    cycles_per_result : int
        Steady-state cycles per result (``mult_cycles``).
    latency : int
        Cycles from the edge that accepts an accumulator to the first edge at which its
        result can be taken (``mult_cycles + 5``).
    """

    def __init__(self, channels, *, mult_cycles=8, tag_width=0):
        _check_channels(channels)
        if isinstance(mult_cycles, bool) or not isinstance(mult_cycles, int):
            raise TypeError(f"Multiplier cycle count must be an integer, not {mult_cycles!r}")
        if mult_cycles not in MULT_CYCLES:
            raise ValueError(
                f"Multiplier cycle count must be one of {MULT_CYCLES}, not {mult_cycles}")
        self._mult_cycles = mult_cycles
        super().__init__(channels, tag_width)

    @staticmethod
    def timing(mult_cycles):
        """``(cycles_per_result, latency)`` of a requantizer with ``mult_cycles``."""
        return mult_cycles, mult_cycles + 5

    @property
    def mult_cycles(self):
        return self._mult_cycles

    @property
    def cycles_per_result(self):
        return self.timing(self._mult_cycles)[0]

    @property
    def latency(self):
        return self.timing(self._mult_cycles)[1]

    def elaborate(self, platform):
        m = Module()

        read_addr, read_data, read_en = _parameter_memory(m, self.param, self._channels)

        # Each stage k has valid[k]; it takes a new item (or a bubble) when it is empty or
        # its item moves on in this cycle. `ready` is combinational from the output back.
        passthrough = data.StructLayout({
            "channel": self._input_layout["channel"].shape, "last": unsigned(1),
            **({"tag": unsigned(self._tag_width)} if self._tag_width else {})})

        def stage(name):
            return (Signal(name=f"{name}_valid"), Signal(passthrough, name=f"{name}_pass"),
                    Signal(name=f"{name}_load"))

        # ---- S0: accept, read parameters -------------------------------------------------
        s0_valid, s0_pass, s0_load = stage("s0")
        s0_acc = Signal(signed(32))
        m.d.comb += [
            self.i.ready.eq(s0_load),
            read_addr.eq(self.i.payload.channel),
            read_en.eq(s0_load),
        ]
        with m.If(s0_load):
            m.d.sync += [
                s0_valid.eq(self.i.valid),
                s0_acc.eq(self.i.payload.acc),
                s0_pass.channel.eq(self.i.payload.channel),
                s0_pass.last.eq(self.i.payload.last),
            ]
            if self._tag_width:
                m.d.sync += s0_pass.tag.eq(self.i.payload.tag)

        # ---- S1: acc' = wrap32(acc + bias); decode the shift -----------------------------
        s1_valid, s1_pass, s1_load = stage("s1")
        s1_acc = Signal(signed(32))
        s1_m0 = Signal(unsigned(31))
        s1_left = Signal(unsigned(5))  # max(shift, 0)
        s1_guard = Signal(31)  # bit j: acc' bit j leaves int32 in acc' << left
        s1_rounding = Signal()  # right > 0
        s1_right_m1 = Signal(unsigned(5))  # right - 1 (0 when right == 0)
        m.d.comb += s0_load.eq(~s0_valid | s1_load)
        shift = read_data.shift
        left = Signal(unsigned(5))
        m.d.comb += left.eq(Mux(shift > 0, shift[:5], 0))
        with m.If(s1_load):
            m.d.sync += [
                s1_valid.eq(s0_valid),
                s1_pass.eq(s0_pass),
                s1_acc.eq(s0_acc + read_data.bias),  # truncation to 32 bits is the wrap
                s1_m0.eq(read_data.m0),
                s1_left.eq(left),
                # bit j (j < 31) leaves the range when j + left >= 31
                s1_guard.eq(Cat(*[_at_least(left, 31 - j) for j in range(31)])),
                s1_rounding.eq(shift < 0),
                s1_right_m1.eq(Mux(shift < 0, -shift - 1, 0)),
            ]

        # ---- S2: x = clamp(acc' << left, INT32_MIN, INT32_MAX) ---------------------------
        s2_valid, s2_pass, s2_load = stage("s2")
        s2_x = Signal(signed(32))
        s2_m0 = Signal(unsigned(31))
        s2_rounding = Signal()
        s2_right_m1 = Signal(unsigned(5))
        m.d.comb += s1_load.eq(~s1_valid | s2_load)
        shifted = Signal(signed(32))
        m.d.comb += shifted.eq((s1_acc << s1_left)[:32])
        # acc' << left fits in int32 iff the guarded bits of acc' all equal its sign
        sign = s1_acc[31]
        overflow = (s1_guard & (s1_acc[:31] ^ sign.replicate(31))).any()
        saturated = Mux(sign, Const(_INT32_MIN, signed(32)), Const(_INT32_MAX, signed(32)))
        with m.If(s2_load):
            m.d.sync += [
                s2_valid.eq(s1_valid),
                s2_pass.eq(s1_pass),
                s2_x.eq(Mux(overflow, saturated, shifted)),
                s2_m0.eq(s1_m0),
                s2_rounding.eq(s1_rounding),
                s2_right_m1.eq(s1_right_m1),
            ]

        # ---- M: y' = SRDHM(x, m0) - neg -> S3 --------------------------------------------
        # RDBPOT(y, right) needs y - (y < 0) when right > 0 (module docstring). x < 0 stands
        # in for y < 0: they differ only when y == 0 > x, where y - 1 = -1 rounds to the same
        # 0. And y - 1 = floor((x * m0 + 2**30 - 2**31) / 2**31): the multiplier starts from
        # the nudge -2**30 instead of 2**30, and no extra adder is needed.
        s3_valid, s3_pass, s3_load = stage("s3")
        s3_y = Signal(signed(32))
        s3_rounding = Signal()
        s3_right_m1 = Signal(unsigned(5))
        product_y = Signal(signed(32))
        final_step = Signal()
        if self._mult_cycles == 1:
            nudge = Mux(s2_x[31] & s2_rounding, -_NUDGE, _NUDGE)
            m.d.comb += [
                final_step.eq(1),
                product_y.eq(((s2_x * s2_m0 + nudge) >> 31)[:32]),
            ]
        else:
            # the sign of x is the sign of acc' (the left shift saturates, keeping it)
            self._elaborate_booth(m, s2_valid, s2_x, s2_m0, final_step, product_y,
                                  load=s2_load, load_m0=s1_m0,
                                  negative_nudge=s1_acc[31] & s1_rounding)
        # S2's item leaves (and S2 may reload) only when the multiplier delivers its result.
        m.d.comb += s2_load.eq(~s2_valid | (final_step & s3_load))
        with m.If(s3_load):
            m.d.sync += [
                s3_valid.eq(s2_valid & final_step),
                s3_pass.eq(s2_pass),
                s3_y.eq(product_y),
                s3_rounding.eq(s2_rounding),
                s3_right_m1.eq(s2_right_m1),
            ]

        # ---- S4: u = y' >> (right - 1), saturated to the narrow range --------------------
        s4_valid, s4_pass, s4_load = stage("s4")
        s4_u = Signal(signed(_NARROW_BITS))
        s4_rounding = Signal()
        m.d.comb += s3_load.eq(~s3_valid | s4_load)
        u = Signal(signed(32))
        m.d.comb += u.eq(s3_y >> s3_right_m1)
        u_narrow = _narrow(m, u, "u_narrow")
        with m.If(s4_load):
            m.d.sync += [
                s4_valid.eq(s3_valid),
                s4_pass.eq(s3_pass),
                s4_u.eq(u_narrow),
                s4_rounding.eq(s3_rounding),
            ]

        # ---- S5: value = clamp(z + zp_out, act_min, act_max) -> o ------------------------
        s5_load = Signal()
        m.d.comb += [
            s4_load.eq(~s4_valid | s5_load),
            s5_load.eq(~self.o.valid | self.o.ready),
        ]
        clamped = _output_value(m, s4_u, s4_rounding, self.zp_out, self.act_min, self.act_max)
        with m.If(s5_load):
            m.d.sync += [
                self.o.valid.eq(s4_valid),
                self.o.payload.value.eq(clamped),
                self.o.payload.channel.eq(s4_pass.channel),
                self.o.payload.last.eq(s4_pass.last),
            ]
            if self._tag_width:
                m.d.sync += self.o.payload.tag.eq(s4_pass.tag)
        return m

    def _elaborate_booth(self, m, valid, x, m0, final_step, product_y, *, load, load_m0,
                         negative_nudge):
        """Iterative ``floor((x * m0 +- 2**30) / 2**31)``, least significant digits first.

        Each cycle adds ``digits`` radix-4 Booth partial products of ``x`` to the running
        sum ``high`` and shifts the ``bits = 2 * digits`` finished low bits out (they only
        matter through their carries). After the last step bits ``[bits-1, bits+31)`` of
        the sum are bits ``[31, 63)`` of the product plus the nudge, i.e. the result.
        ``x`` and ``m0`` stay in S2's registers for the whole multiplication. When S2 loads
        (``load``), the running sum is set to the nudge (``+-2**30``) of the incoming item
        and the first step's Booth digits are decoded from its multiplier ``load_m0``.
        """
        cycles = self._mult_cycles
        digits = 16 // cycles
        bits = 2 * digits
        # |high| <= 2**30 + 1 between steps (the Booth digits of the low 2n bits of a
        # non-negative m0 sum to those bits read as a signed 2n-bit number); the sum of one
        # step needs at most 33 + bits bits.
        high = Signal(signed(33), init=_NUDGE)
        step = Signal(range(cycles))
        sum_width = 34 + bits

        def windows(multiplier):
            # m0 as a 32-bit non-negative number with the implicit bit -1 = 0 below it;
            # step k uses bits [k * bits - 1, (k + 1) * bits] of m0.
            recoded = Cat(Const(0, 1), multiplier, Const(0, 1))
            return [recoded[k * bits:k * bits + bits + 1] for k in range(cycles)]

        # The digits of a step are decoded a cycle ahead into registers, which keeps the
        # window multiplexer and the recoding off the path through the adders.
        following = Array(windows(m0)[1:] + [Const(0, bits + 1)])[step]
        next_window = Mux(load, windows(load_m0)[0], following)
        controls = []
        for j in range(digits):
            one, two, negative = (Signal(name=f"booth{j}_{n}") for n in ("one", "two", "neg"))
            with m.If(load | (valid & ~final_step)):
                m.d.sync += Cat(one, two, negative).eq(
                    Cat(*_booth_digit(next_window[2 * j:2 * j + 3])))
            controls.append((one, two, negative))

        total = high
        for j, (one, two, negative) in enumerate(controls):
            magnitude = Mux(one, x, 0) | Mux(two, x << 1, 0)  # signed, 34 bits
            term = magnitude.as_signed() ^ negative.replicate(34).as_signed()
            # Bits below 2j are final after this digit: add the term and its "+1" (two's
            # complement negation) to the part above them only.
            upper = _add_with_carry_in(total[2 * j:].as_signed(), term, negative)
            # a named signal per partial sum: expressions are trees, not shared DAGs
            partial = Signal(signed(len(upper) + 2 * j), name=f"booth_partial{j}")
            m.d.comb += partial.eq(Cat(total[:2 * j], upper).as_signed() if j else upper)
            total = partial
        step_sum = Signal(signed(sum_width))
        # `step == cycles - 1`, kept in a register that moves with `step`: compared at once,
        # it led the ready chain back to the INT8 controller and the array's output (the
        # ULX3S top's critical path, 12.8 ns).
        last_step = Signal()
        m.d.comb += [
            step_sum.eq(total),
            final_step.eq(last_step),
            product_y.eq(step_sum[bits - 1:bits + 31]),
        ]
        with m.If(load):
            m.d.sync += [
                high.eq(Mux(negative_nudge, -_NUDGE, _NUDGE)),
                step.eq(0),
                last_step.eq(cycles == 1),
            ]
        with m.Elif(valid & ~final_step):
            m.d.sync += [
                high.eq(step_sum >> bits),
                step.eq(step + 1),
                last_step.eq(step == cycles - 2),
            ]
