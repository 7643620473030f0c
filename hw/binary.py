"""XNOR-popcount binary matrix-vector-threshold engine (a FINN-style MVAU).

Weights and activations are in {-1, +1}, encoded bit 1 = +1, bit 0 = -1. Each cycle the
engine computes one *fold*: ``pe`` output channels times ``simd`` input bits, as
``popcount(~(a ^ w) & valid)``, and accumulates the folds of a channel over K. With
``SF = ceil(K / simd)`` input folds and ``NF = ceil(N / pe)`` output folds, one input vector
takes ``NF * SF`` cycles (REFERENCE.md section 4). After the last input fold of a channel the
engine produces ``dot = 2 * popcount - K`` (``golden.binary_dot``) and either sends it out raw
or compares it with up to ``max_thresholds`` per-channel thresholds
(``golden.thresholds``: ``out = sum_i [dot >= t_i]``). With one threshold the outputs are bits,
packed back into ``simd``-bit words in the activation layout, so one run's output is the next
run's input.

Streams
-------
``cmd``
    Commands (:data:`COMMAND_LAYOUT`), executed one at a time:

    - ``LOAD_WEIGHTS`` (``k``, ``n``): ``n * ceil(k / simd)`` words of ``simd`` bits on ``w``,
      channel by channel, each channel's K bits in ``simd``-bit words, bit ``j`` of word ``s``
      being input ``s * simd + j`` (the bits past K in the last word are ignored).
    - ``LOAD_THRESHOLDS`` (``n``, ``t``): ``n * t`` int32 values on ``t``, channel by channel.
      Values beyond the accumulator range are clamped on load, which changes no comparison.
    - ``RUN`` (``k``, ``n``, ``t``, ``mode``, ``m``): ``m`` input vectors of
      ``ceil(k / simd)`` words each on ``a``; for each, on ``o``: ``n`` raw values
      (``Mode.RAW``, int32 sign-extended), ``n`` threshold counts (``Mode.THRESHOLDS``, using
      ``t`` thresholds) or ``ceil(n / simd)`` packed words (``Mode.BINARY``, ``t`` must be 1;
      bit 1 when ``dot >= t_0``, padding bits 0). ``last`` marks the final beat of a vector.
      A run must use the ``k`` and ``n`` the weights were loaded with (the weight memory is
      packed for that shape) and at most the ``t`` thresholds loaded per channel.

    A command with a field out of range (``k`` or ``n`` of 0 or above the maxima, ``t`` of 0
    or above ``max_thresholds`` where thresholds are used, ``t != 1`` in binary mode, an
    unknown ``op`` or ``mode``) is consumed and ignored and sets the sticky ``error`` output.
``w``, ``t``, ``a``
    Weights, thresholds and activations, read only while the matching command runs.
``o``
    Results (``output_layout(simd)``): ``data`` and ``last``.

Datapath and stalls
-------------------
A sequencer issues one fold per cycle through a six-stage pipeline: fetch (weight and
activation memories, synchronous reads), XNOR, popcount, accumulate, threshold comparisons
(into a skid buffer), then the threshold count and the output formatter. Activations are
consumed from ``a`` during the first output fold of a vector and kept in a
``ceil(max_k / simd)``-word buffer for the other ``NF - 1``. Every pipeline register and
memory read port advances on one enable, the skid buffer's registered ``i.ready``, which
drops only when the last stage holds a result the formatter cannot take yet and a second one
is parked: a stall freezes the whole datapath, so nothing is lost or duplicated, and no
``ready`` depends combinationally on ``o.ready``.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .popcount import POPCOUNT_STRUCTURES, popcount
from .ram import registered_read_port
from .skid import SkidBuffer

__all__ = ["Op", "Mode", "COMMAND_LAYOUT", "output_layout", "BinaryEngine"]

#: Largest ``max_k`` / ``max_n`` (the command fields are 16 bits wide).
MAX_DIMENSION = (1 << 16) - 1
#: Largest ``max_thresholds`` (the command field is 8 bits wide).
MAX_THRESHOLDS = (1 << 8) - 1


class Op(enum.Enum, shape=2):
    """What a command does."""
    RUN = 0
    LOAD_WEIGHTS = 1
    LOAD_THRESHOLDS = 2


class Mode(enum.Enum, shape=2):
    """What a ``RUN`` sends out per output channel."""
    RAW = 0          # the int32 dot product
    THRESHOLDS = 1   # the number of thresholds reached
    BINARY = 2       # one bit (one threshold reached), packed into simd-bit words


#: Command payload; fixed whatever the engine's configuration (bit 0 = ``op`` bit 0).
COMMAND_LAYOUT = data.StructLayout({
    "op": Op,
    "mode": Mode,
    "t": unsigned(8),
    "k": unsigned(16),
    "n": unsigned(16),
    "m": unsigned(16),
})


def output_layout(simd):
    """Payload layout of the ``o`` stream of an engine with ``simd`` input bits."""
    return data.StructLayout({"data": unsigned(max(32, simd)), "last": unsigned(1)})


def _at_least(value, constant):
    """``value >= constant`` for unsigned ``value`` as AND/OR logic.

    Yosys maps every ``>=`` to a subtractor, one carry-chain cell per bit on iCE40 and ECP5,
    even against a constant. Against a constant the comparison is an AND/OR chain (the most
    significant differing bit decides), which maps to a few LUTs and shares terms with other
    comparisons of the same value (the fold mask makes ``simd`` of them).
    """
    if constant <= 0:
        return Const(1, 1)
    if constant >= 1 << len(value):
        return Const(0, 1)
    result = Const(1, 1)  # all bits so far equal: value >= constant
    for index in range(len(value)):
        if (constant >> index) & 1:
            result = value[index] & result
        else:
            result = value[index] | result
    return result


def _read_port(m, memory, name, enable):
    """:func:`qaccel.hw.ram.registered_read_port` (the engine never uses data read in the
    same cycle as a write to that address, so collisions may be don't-care)."""
    return registered_read_port(m, memory, name, enable)


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], not {value}")


class BinaryEngine(wiring.Component):
    """Binary matrix-vector unit with XNOR-popcount and multi-threshold activations.

    Parameters
    ----------
    pe : int
        Output channels computed in parallel, in ``[1, 4096]``.
    simd : int
        Input bits per channel per cycle, in ``[1, 4096]``; also the width of activation and
        weight words and of packed binary outputs.
    max_k : int
        Largest input length K, in ``[1, 65535]``.
    max_n : int
        Largest number of output channels N, in ``[1, 65535]``.
    max_thresholds : int
        Thresholds held per output channel, in ``[1, 255]``.
    popcount : str
        Popcount structure, one of :data:`qaccel.hw.popcount.POPCOUNT_STRUCTURES`
        (``"adder_tree"`` by default; ``"naive"`` is Yosys' own ``sum``, for comparison).

    Members
    -------
    cmd : ``In(stream.Signature(COMMAND_LAYOUT))``
        Commands (see the module documentation).
    w : ``In(stream.Signature(simd))``
        Weight words for ``LOAD_WEIGHTS``.
    t : ``In(stream.Signature(signed(32)))``
        Thresholds for ``LOAD_THRESHOLDS``.
    a : ``In(stream.Signature(simd))``
        Activation words for ``RUN``.
    o : ``Out(stream.Signature(output_layout(simd)))``
        Results of ``RUN``.
    busy : ``Out(1)``
        High from the acceptance of a command until its work is done and its last result
        has left ``o``.
    error : ``Out(1)``
        Sticky (until reset): a command with an out-of-range field was ignored.

    Notes
    -----
    Throughput: one fold per cycle, so ``m * NF * SF`` cycles per run plus a pipeline
    latency of 7 cycles from the last fold to its first result on ``o``, as long as the
    formatter keeps up: in raw and threshold modes it sends one value per cycle and takes a
    new group of ``pe`` values every ``pe + 1`` cycles (so it keeps up when
    ``SF >= pe + 1``); in binary mode it sends one word per cycle and takes a new group of
    ``pe`` bits unless a complete word, or a vector's last partial word, waits to be sent (so
    it keeps up when ``SF >= 2`` and ``pe <= simd``).

    Storage: the weight memory is ``pe * simd`` bits wide and
    ``ceil(max_n / pe) * ceil(max_k / simd)`` deep (a layer's weights are packed densely, so
    any ``K <= max_k``, ``N <= max_n`` fits); the activation buffer ``simd`` bits by
    ``ceil(max_k / simd)``; the thresholds ``pe * max_thresholds`` clamped values by
    ``ceil(max_n / pe)``.
    """

    def __init__(self, pe, simd, max_k, max_n, max_thresholds, *, popcount="adder_tree"):
        _check_int("pe", pe, 1, 4096)
        _check_int("simd", simd, 1, 4096)
        _check_int("max_k", max_k, 1, MAX_DIMENSION)
        _check_int("max_n", max_n, 1, MAX_DIMENSION)
        _check_int("max_thresholds", max_thresholds, 1, MAX_THRESHOLDS)
        if popcount not in POPCOUNT_STRUCTURES:
            raise ValueError(f"popcount must be one of {POPCOUNT_STRUCTURES}, not {popcount!r}")
        self.pe = pe
        self.simd = simd
        self.max_k = max_k
        self.max_n = max_n
        self.max_thresholds = max_thresholds
        self.popcount = popcount
        #: Input folds of the longest vector, ``ceil(max_k / simd)``.
        self.max_sf = -(-max_k // simd)
        #: Output folds of the widest layer, ``ceil(max_n / pe)``.
        self.max_nf = -(-max_n // pe)
        #: Shape of ``dot = 2 * popcount - K``, in ``[-max_k, max_k]``.
        self.dot_shape = signed(max_k.bit_length() + 1)
        #: Shape of a stored threshold, clamped to ``[-max_k, max_k + 1]``.
        self.threshold_shape = signed((max_k + 1).bit_length() + 1)
        super().__init__({
            "cmd": In(stream.Signature(COMMAND_LAYOUT)),
            "w": In(stream.Signature(simd)),
            "t": In(stream.Signature(signed(32))),
            "a": In(stream.Signature(simd)),
            "o": Out(stream.Signature(output_layout(simd))),
            "busy": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        pe, simd, max_t = self.pe, self.simd, self.max_thresholds
        thr_width = self.threshold_shape.width
        count_shape = range(max_t + 1)

        # ---- storage --------------------------------------------------------------------
        # All memory reads advance with the pipeline (`advance`, see _read_port). The
        # weights go to block RAM even when shallow: Yosys would put a wide, shallow memory
        # in ECP5 distributed RAM, whose LUTs the XNOR-popcount lanes need (8x64: 6093 ->
        # 3972 LUT4 slots for 16 DP16KD).
        no_rw_check = {"no_rw_check": 1}
        advance = Signal()
        m.submodules.weights = w_mem = Memory(shape=unsigned(pe * simd),
                                              depth=self.max_nf * self.max_sf, init=[],
                                              attrs={**no_rw_check, "ram_style": "block"})
        w_wr = w_mem.write_port(granularity=simd)
        w_rd_addr, w_rd_data = _read_port(m, w_mem, "w_rd", advance)
        m.submodules.activations = a_mem = Memory(shape=unsigned(simd), depth=self.max_sf,
                                                  init=[], attrs=no_rw_check)
        a_wr = a_mem.write_port()
        a_rd_addr, a_rd_data = _read_port(m, a_mem, "a_rd", advance)
        m.submodules.thresholds = t_mem = Memory(shape=unsigned(pe * max_t * thr_width),
                                                 depth=self.max_nf, init=[],
                                                 attrs=no_rw_check)
        t_wr = t_mem.write_port(granularity=thr_width)
        t_rd_addr, t_rd_data = _read_port(m, t_mem, "t_rd", advance)

        t_pending_value = Signal(signed(32), reset_less=True)
        t_pending_addr = Signal(range(self.max_nf), reset_less=True)
        t_pending_en = Signal(pe * max_t)      # the write lanes of the pending value
        m.d.sync += t_pending_en.eq(0)         # unless LOAD_THRESHOLDS takes a value

        # ---- the current command ---------------------------------------------------------
        k = Signal(range(self.max_k + 1))
        n = Signal(range(self.max_n + 1))
        n_thr = Signal(range(max_t + 1))
        mode = Signal(Mode)
        error = Signal()
        m.d.comb += self.error.eq(error)

        # ---- sequencer counters (shared by the loads and the run) ------------------------
        bits_left = Signal(range(self.max_k + 1))      # input bits from the current fold on
        fold = Signal(range(self.max_sf + 1))          # input fold index (activation address)
        lane = Signal(range(pe))                       # PE of the channel being loaded
        base = Signal(range(self.max_nf * self.max_sf + 1))  # weight address of fold 0
        waddr = Signal(range(self.max_nf * self.max_sf + 1))  # weight address being read
        nf = Signal(range(self.max_nf + 1))            # output fold (threshold address)
        slot = Signal(range(max_t))                    # threshold being loaded
        channels_left = Signal(range(self.max_n + 1))
        vectors_left = Signal(16)
        # `vectors_left != 0`, kept in a register: the 16-bit comparison heads the fold
        # issue's handshake chain (the iCEBreaker top's critical path).
        vectors_running = Signal()
        first_pass = Signal()                          # output fold 0: words come from `a`

        # A down-counter compared with a constant: `kpos + simd >= k` (an adder and a
        # comparator) was the iCEBreaker top's critical path.
        last_fold = ~_at_least(bits_left, simd + 1)
        last_channel = channels_left == 1

        # ---- pipeline ----------------------------------------------------------------------
        s1_valid = Signal()
        s1_from_stream = Signal()
        s1_word = Signal(simd, reset_less=True)
        s1_last_valid = Signal(max(simd - 1, 0).bit_length())
        s1_first = Signal()
        s1_last = Signal()
        s1_nf = Signal.like(nf)
        s1_lanes = Signal(range(pe + 1))
        s1_last_nf = Signal()

        s2_valid = Signal()
        # Data registers are reset-less: only the valid bits need a reset.
        s2_agree = [Signal(simd, name=f"s2_agree{lane_}", reset_less=True)
                    for lane_ in range(pe)]
        s2_first = Signal()
        s2_last = Signal()
        s2_nf = Signal.like(nf)
        s2_lanes = Signal(range(pe + 1))
        s2_last_nf = Signal()

        s3_valid = Signal()
        s3_pop = [Signal(range(simd + 1), name=f"s3_pop{lane_}", reset_less=True)
                  for lane_ in range(pe)]
        s3_first = Signal()
        s3_last = Signal()
        s3_lanes = Signal(range(pe + 1))
        s3_last_nf = Signal()
        acc = [Signal(range(self.max_k + 1), name=f"acc{lane_}", reset_less=True)
               for lane_ in range(pe)]

        s4_valid = Signal()
        s4_dot = [Signal(self.dot_shape, name=f"s4_dot{lane_}", reset_less=True)
                  for lane_ in range(pe)]
        s4_lanes = Signal(range(pe + 1))
        s4_last_nf = Signal()

        # Stage 5 is a skid buffer: its registered `i.ready` is the pipeline's `advance`, so
        # the enable of every pipeline register and read port comes straight from a flip-flop
        # (it was a function of the formatter's state, and the enable runs into the popcount).
        m.submodules.s5 = s5 = SkidBuffer(data.StructLayout({
            "lanes": range(pe + 1),
            "last_nf": 1,
            "dot": data.ArrayLayout(self.dot_shape, pe),
            "reached": data.ArrayLayout(unsigned(max_t), pe),
        }))
        s5_valid = s5.o.valid
        s5_lanes, s5_last_nf = s5.o.payload.lanes, s5.o.payload.last_nf
        s5_dot, s5_reached = s5.o.payload.dot, s5.o.payload.reached

        # formatter state
        # raw dots or threshold counts, sign-extended to the output width when sent
        ser_shape = signed(max(self.dot_shape.width, (max_t + 1).bit_length() + 1))
        ser_values = [Signal(ser_shape, name=f"ser{lane_}") for lane_ in range(pe)]
        ser_count = Signal(range(pe + 1))
        ser_last = Signal()
        # Packer of binary outputs. When pe divides simd a group never straddles two words:
        # its bits go straight into their slot of the word (no shifter). Otherwise a group
        # is shifted in at the fill level and full words are shifted out.
        slotted = simd % pe == 0
        pack_flush = Signal()   # the vector's last group is in: send the partial word
        if slotted:
            pack_buffer = Signal(simd)
            pack_slot = Signal(range(simd // pe))
            pack_any = Signal()     # the word holds at least one group
            pack_full = Signal()
            pack_idle = ~pack_any
            pack_ready = ~pack_full & ~pack_flush
            pack_send = pack_full | pack_flush
        else:
            pack_buffer = Signal(simd + pe)
            pack_fill = Signal(range(simd + pe + 1))
            pack_idle = (pack_fill == 0) & ~pack_flush
            pack_ready = (pack_fill < simd) & ~pack_flush
            pack_send = (pack_fill >= simd) | (pack_flush & (pack_fill != 0))

        # Output register, sign-extended to the payload width: wide enough for a raw value
        # and for a packed word plus a 0 bit above it.
        o_value = Signal(max(simd + 1, ser_shape.width))
        o_last = Signal()
        m.d.comb += [self.o.payload.data.eq(o_value.as_signed()), self.o.payload.last.eq(o_last)]

        pipeline_empty = ~s1_valid & ~s2_valid & ~s3_valid & ~s4_valid & ~s5_valid
        formatter_idle = (ser_count == 0) & pack_idle
        formatter_ready = Mux(mode == Mode.BINARY, pack_ready, ser_count == 0)
        m.d.comb += [advance.eq(s5.i.ready), s5.o.ready.eq(formatter_ready)]

        # ---- command decoding --------------------------------------------------------------
        cmd = self.cmd.payload
        k_ok = cmd.k.any() & ~_at_least(cmd.k, self.max_k + 1)
        n_ok = cmd.n.any() & ~_at_least(cmd.n, self.max_n + 1)
        t_ok = cmd.t.any() & ~_at_least(cmd.t, max_t + 1)
        mode_ok = (((cmd.mode == Mode.RAW)) |
                   ((cmd.mode == Mode.THRESHOLDS) & t_ok) |
                   ((cmd.mode == Mode.BINARY) & (cmd.t == 1)))

        issue = Signal()
        decoded_op = Signal.like(cmd.op)
        load_weights_ok = Signal()
        load_thresholds_ok = Signal()
        run_ok = Signal()

        with m.FSM(name="engine") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(pipeline_empty & formatter_idle)
                with m.If(self.cmd.valid & self.cmd.ready):
                    m.d.sync += [
                        k.eq(cmd.k), n.eq(cmd.n), n_thr.eq(cmd.t), mode.eq(cmd.mode),
                        bits_left.eq(cmd.k), fold.eq(0), lane.eq(0), base.eq(0), waddr.eq(0),
                        nf.eq(0), slot.eq(0), channels_left.eq(cmd.n),
                        vectors_left.eq(cmd.m), vectors_running.eq(cmd.m.any()),
                        first_pass.eq(1),
                    ]
                    # The checks are registered and acted on in DECODE: a command's fields
                    # come from far away (the RUN descriptor), and its checks are wide.
                    m.d.sync += [
                        decoded_op.eq(cmd.op),
                        load_weights_ok.eq(k_ok & n_ok),
                        load_thresholds_ok.eq(n_ok & t_ok),
                        run_ok.eq(k_ok & n_ok & mode_ok),
                    ]
                    m.next = "DECODE"

            with m.State("DECODE"):
                m.next = "IDLE"     # unless the command is good
                with m.Switch(decoded_op):
                    for op, ok in ((Op.LOAD_WEIGHTS, load_weights_ok),
                                   (Op.LOAD_THRESHOLDS, load_thresholds_ok),
                                   (Op.RUN, run_ok)):
                        with m.Case(op):
                            with m.If(ok):
                                m.next = op.name
                            with m.Else():
                                m.d.sync += error.eq(1)
                    with m.Default():
                        m.d.sync += error.eq(1)

            with m.State("LOAD_WEIGHTS"):
                m.d.comb += [
                    self.w.ready.eq(1),
                    w_wr.addr.eq(base + fold),
                    w_wr.data.eq(Cat(*([self.w.payload] * pe))),
                    w_wr.en.eq(Mux(self.w.valid, 1 << lane, 0)),
                ]
                with m.If(self.w.valid):
                    with m.If(last_fold):
                        m.d.sync += [bits_left.eq(k), fold.eq(0),
                                     channels_left.eq(channels_left - 1)]
                        with m.If(lane == pe - 1):
                            m.d.sync += [lane.eq(0), base.eq(base + fold + 1)]
                        with m.Else():
                            m.d.sync += lane.eq(lane + 1)
                        with m.If(last_channel):
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [bits_left.eq(bits_left - simd), fold.eq(fold + 1)]

            with m.State("LOAD_THRESHOLDS"):
                m.d.comb += self.t.ready.eq(1)
                with m.If(self.t.valid):
                    m.d.sync += [
                        t_pending_value.eq(self.t.payload),
                        t_pending_addr.eq(nf),
                        t_pending_en.eq(Const(1, pe * max_t) << (lane * max_t + slot)),
                    ]
                    with m.If(slot == n_thr - 1):
                        m.d.sync += [slot.eq(0), channels_left.eq(channels_left - 1)]
                        with m.If(lane == pe - 1):
                            m.d.sync += [lane.eq(0), nf.eq(nf + 1)]
                        with m.Else():
                            m.d.sync += lane.eq(lane + 1)
                        with m.If(last_channel):
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += slot.eq(slot + 1)

            with m.State("RUN"):
                running = vectors_running
                m.d.comb += [
                    issue.eq(running & (~first_pass | self.a.valid)),
                    self.a.ready.eq(running & first_pass & advance),
                ]
                with m.If(~running):
                    m.next = "IDLE"

        # ---- threshold writes, one cycle after their transfer on `t` ------------------------
        # The value is clamped from a register: `t` comes from a block RAM's output, and the
        # clamp after it was the ULX3S top's critical path (15.7 ns). A RUN reads the
        # thresholds no earlier than three cycles after the last write.
        low, high = -self.max_k, self.max_k + 1
        # signed order = unsigned order with the sign bit flipped
        biased = t_pending_value.as_unsigned() ^ (1 << 31)
        clamped = Mux(~_at_least(biased, low + (1 << 31)), low,
                      Mux(_at_least(biased, high + 1 + (1 << 31)), high, t_pending_value))
        m.d.comb += [
            t_wr.addr.eq(t_pending_addr),
            t_wr.data.eq(Cat(*([clamped.as_signed()[:thr_width]] * (pe * max_t)))),
            t_wr.en.eq(t_pending_en),
        ]

        # ---- fold issue (stage 0) --------------------------------------------------------
        fire = issue & advance
        # Valid bits of the fold minus one (bits_left - 1): in [0, simd - 1] on the last fold,
        # so its low bits suffice to build that fold's mask (in stage 1, from these few
        # registered bits rather than a simd-bit register); earlier folds are all valid.
        last_valid = (bits_left - 1)[:len(s1_last_valid)]
        last_nf = channels_left <= pe
        m.d.comb += [
            w_rd_addr.eq(waddr), a_rd_addr.eq(fold),
            a_wr.addr.eq(fold), a_wr.data.eq(self.a.payload),
            a_wr.en.eq(fire & first_pass),
        ]
        with m.If(advance):
            m.d.sync += [
                s1_valid.eq(fire),
                s1_from_stream.eq(first_pass),
                s1_word.eq(self.a.payload),
                s1_last_valid.eq(last_valid),
                s1_first.eq(fold == 0),
                s1_last.eq(last_fold),
                s1_nf.eq(nf),
                s1_lanes.eq(Mux(last_nf, channels_left, pe)),
                s1_last_nf.eq(last_nf),
            ]
        with m.If(fire):
            m.d.sync += waddr.eq(waddr + 1)
            with m.If(last_fold):
                m.d.sync += [bits_left.eq(k), fold.eq(0)]
                with m.If(last_nf):
                    m.d.sync += [first_pass.eq(1), channels_left.eq(n), waddr.eq(0), nf.eq(0),
                                 vectors_left.eq(vectors_left - 1),
                                 vectors_running.eq(vectors_left != 1)]
                with m.Else():
                    m.d.sync += [first_pass.eq(0), channels_left.eq(channels_left - pe),
                                 nf.eq(nf + 1)]
            with m.Else():
                m.d.sync += [bits_left.eq(bits_left - simd), fold.eq(fold + 1)]

        # ---- XNOR (stage 1) --------------------------------------------------------------
        # Registered before the popcount: the block RAM's clock-to-output plus a popcount
        # tree in one cycle was the critical path (ULX3S 8x8 / 16 x 64 top: 52.3 MHz).
        word = Mux(s1_from_stream, s1_word, a_rd_data)
        # A signal, not an expression: Amaranth lowers an expression again at every use, and
        # the XNOR lanes use each mask bit (the top's Verilog grew to 22 MB).
        s1_mask = Signal(simd)
        m.d.comb += s1_mask.eq(Cat(*(~s1_last | _at_least(s1_last_valid, bit)
                                     for bit in range(simd))))
        with m.If(advance):
            m.d.sync += [
                s2_valid.eq(s1_valid),
                s2_first.eq(s1_first),
                s2_last.eq(s1_last),
                s2_nf.eq(s1_nf),
                s2_lanes.eq(s1_lanes),
                s2_last_nf.eq(s1_last_nf),
            ]
            for lane_ in range(pe):
                weights = w_rd_data[lane_ * simd:(lane_ + 1) * simd]
                m.d.sync += s2_agree[lane_].eq(~(word ^ weights) & s1_mask)

        # ---- popcount (stage 2) ------------------------------------------------------------
        s3_nf = Signal.like(nf)
        with m.If(advance):
            m.d.sync += [
                s3_valid.eq(s2_valid),
                s3_first.eq(s2_first),
                s3_last.eq(s2_last),
                s3_nf.eq(s2_nf),
                s3_lanes.eq(s2_lanes),
                s3_last_nf.eq(s2_last_nf),
            ]
            for lane_ in range(pe):
                m.d.sync += s3_pop[lane_].eq(popcount(s2_agree[lane_], self.popcount, m=m))

        # ---- accumulate (stage 3) ----------------------------------------------------------
        m.d.comb += t_rd_addr.eq(s3_nf)
        with m.If(advance):
            m.d.sync += [
                s4_valid.eq(s3_valid & s3_last),
                s4_lanes.eq(s3_lanes),
                s4_last_nf.eq(s3_last_nf),
            ]
            for lane_ in range(pe):
                total = Mux(s3_first, 0, acc[lane_]) + s3_pop[lane_]
                with m.If(s3_valid):
                    m.d.sync += acc[lane_].eq(total)
                m.d.sync += s4_dot[lane_].eq((total << 1) - k)

        # ---- thresholds (stage 4) ---------------------------------------------------------
        # The comparisons are registered before they are counted and formatted: the dot
        # product through the comparators, the count and the formatter's multiplexers in one
        # cycle was the critical path (ULX3S 8x8 / 16 x 64 top: 14.9 ns).
        m.d.comb += [s5.i.valid.eq(s4_valid), s5.i.payload.lanes.eq(s4_lanes),
                     s5.i.payload.last_nf.eq(s4_last_nf)]
        for lane_ in range(pe):
            reached = []
            for index in range(max_t):
                offset = (lane_ * max_t + index) * thr_width
                threshold = t_rd_data[offset:offset + thr_width].as_signed()
                reached.append((s4_dot[lane_] >= threshold) & (index < n_thr))
            m.d.comb += [s5.i.payload.dot[lane_].eq(s4_dot[lane_]),
                         s5.i.payload.reached[lane_].eq(Cat(*reached))]

        # ---- counts (stage 5) ----------------------------------------------------------------
        counts = []
        for lane_ in range(pe):
            count = Signal(count_shape, name=f"count{lane_}")
            m.d.comb += count.eq(popcount(s5_reached[lane_], "naive", m=m))
            counts.append(count)
        bits = [s5_reached[lane_][0] for lane_ in range(pe)]
        lane_mask = Cat(*(s5_lanes > lane_ for lane_ in range(pe)))
        take = s5_valid & formatter_ready

        # ---- output formatter ---------------------------------------------------------------
        o_free = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(take):
            with m.If(mode == Mode.BINARY):
                group = Cat(*bits) & lane_mask
                m.d.sync += pack_flush.eq(s5_last_nf)
                if slotted:
                    m.d.sync += pack_any.eq(1)
                    with m.Switch(pack_slot):
                        for index in range(simd // pe):
                            with m.Case(index):
                                m.d.sync += pack_buffer[index * pe:(index + 1) * pe].eq(group)
                    with m.If(pack_slot == simd // pe - 1):
                        m.d.sync += [pack_slot.eq(0), pack_full.eq(1)]
                    with m.Else():
                        m.d.sync += pack_slot.eq(pack_slot + 1)
                else:
                    m.d.sync += [
                        pack_buffer.eq(pack_buffer | (group << pack_fill)),
                        pack_fill.eq(pack_fill + s5_lanes),
                    ]
            with m.Else():
                m.d.sync += [ser_count.eq(s5_lanes), ser_last.eq(s5_last_nf)]
                for lane_ in range(pe):
                    value = Mux(mode == Mode.RAW, s5_dot[lane_], counts[lane_])
                    m.d.sync += ser_values[lane_].eq(value)

        with m.If(o_free):
            with m.If(ser_count != 0):
                m.d.sync += [
                    self.o.valid.eq(1),
                    o_value.eq(ser_values[0]),
                    o_last.eq(ser_last & (ser_count == 1)),
                    ser_count.eq(ser_count - 1),
                ]
                for lane_ in range(pe - 1):
                    m.d.sync += ser_values[lane_].eq(ser_values[lane_ + 1])
            with m.Elif(pack_send):
                m.d.sync += [self.o.valid.eq(1), o_value.eq(pack_buffer[:simd])]
                if slotted:
                    # pe | simd: the last group never leaves a second word behind
                    m.d.sync += [o_last.eq(pack_flush), pack_buffer.eq(0), pack_slot.eq(0),
                                 pack_any.eq(0), pack_full.eq(0), pack_flush.eq(0)]
                else:
                    done = pack_fill <= simd
                    m.d.sync += [
                        o_last.eq(pack_flush & done),
                        pack_buffer.eq(pack_buffer >> simd),
                        pack_fill.eq(Mux(done, 0, pack_fill - simd)),
                    ]
                    with m.If(done):
                        m.d.sync += pack_flush.eq(0)

        m.d.comb += self.busy.eq(~(fsm.ongoing("IDLE") & pipeline_empty & formatter_idle &
                                   ~self.o.valid))
        return m
