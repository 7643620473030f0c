"""Command sequencer: executes checked command frames and builds the reply frames.

The sequencer sits between :class:`~qaccel.hw.framing.FrameDecoder` (a good frame held in a
buffer, or an error strobe) and :class:`~qaccel.hw.framing.FrameEncoder` (reply bytes). It
answers the protocol of :mod:`qaccel.sw.protocol` exactly as the behavioural specification,
:class:`qaccel.sim.refdevice.ReferenceDevice`, does, with the differences documented in
``docs/PROTOCOL.md`` (a RUN is accepted and then runs; STATUS says BUSY meanwhile; WRITE,
READ and RUN are refused with ``Status.BUSY`` during a run; cycle counts are measured).

Command processing, in the model's order:

1. a bad frame (the decoder's strobes) is answered with a NAK (seq 0, ``CRC_ERROR``), in
   arrival order with the good frames;
2. an unknown opcode (NAK included) gets ``BAD_COMMAND``;
3. a WRITE, RUN or RESET with the sequence number and opcode of the last executed
   state-changing command gets that command's status again, without being executed;
4. WRITE, READ or RUN during a run get ``BUSY`` (not recorded for duplicate suppression: a
   retry after the run is executed);
5. the body length is checked per opcode (``BAD_LENGTH``), then the command is executed:
   every buffer access is bounds-checked (``OUT_OF_RANGE``) before anything is written, and a
   RUN descriptor is validated completely (engine, mode, shapes, alignment, every region, the
   requantization parameters) before the engine starts. A refused command changes nothing.

Lengths of RUN regions (``row_tiles * k * rows`` and the like) are products of descriptor
fields; a shift-add multiplier computes them (17 cycles each) so that no ``*`` reaches
synthesis, where Yosys would map it to a DSP block that belongs to the systolic array.

Timing: every check (the command decode, bounds, descriptor fields, each region in four
steps) is registered before the state machine acts on it, at the cost of a few cycles per
command, so that no check shares a clock period with the state machine's choices (on the
iCEBreaker they were the critical paths, 35-41 ns). Reply bodies are fetched ahead into a
4-byte FIFO, because the buffers answer a host read two cycles after its address.
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..sw import golden
from ..sw import protocol as proto
from ..sw.layout import PARAM_RECORD_BYTES
from .framing import FrameByte, rom_base

__all__ = ["ShiftAddMultiplier", "CommandSequencer", "descriptor_layout", "BodyKind"]

_FIELDS = proto.RunDescriptor.offsets()
_DESCRIPTOR_BYTES = proto.RunDescriptor.size()
# WRITE body: buffer u8, offset u32, data...; READ body: buffer u8, offset u32, length u16.
_ADDRESS_BYTES = 5
_READ_BYTES = 7
_HEADER_BYTES = max(_DESCRIPTOR_BYTES, _READ_BYTES)
_REPLY_HEADER = 3  # seq, opcode | REPLY_FLAG, status
# The parameter region length is computed as n * 8 + n * 4.
assert PARAM_RECORD_BYTES == 12
#: Reply body bytes fetched ahead of the reply (covers the buffers' two-cycle read latency).
_BODY_PREFETCH = 4
#: Bad frames waiting for their NAK; input stops two short of the limit (a strobe can be on
#: its way while the count is looked at).
_NAK_BACKLOG = 15


class BodyKind:
    """What follows the status byte of a reply."""
    NONE = 0
    INFO = 1
    STATUS = 2
    COUNTERS = 3
    READ = 4


def descriptor_layout(address_width):
    """Layout of the validated RUN descriptor the sequencer hands to the engine controllers.

    Offsets and lengths are byte counts truncated to ``address_width`` bits (they are inside
    the buffers once validated)."""
    return data.StructLayout({
        "m": unsigned(16), "k": unsigned(16), "n": unsigned(16),
        "a_offset": unsigned(address_width), "w_offset": unsigned(address_width),
        "p_offset": unsigned(address_width), "out_offset": unsigned(address_width),
        "a_length": unsigned(address_width + 1), "w_length": unsigned(address_width + 1),
        "p_length": unsigned(address_width + 1), "out_length": unsigned(address_width + 1),
        "requant": unsigned(1), "thresholds": unsigned(8),
        "zp_out": signed(8), "act_min": signed(8), "act_max": signed(8),
    })


class ShiftAddMultiplier(wiring.Component):
    """Unsigned ``x * y``, one bit of ``y`` per cycle, with adders only.

    Parameters
    ----------
    x_width, y_width : int

    Members
    -------
    start : ``In(1)``
        Strobe: latch ``x`` and ``y`` and begin; ``product`` is valid ``y_width`` cycles later,
        when ``busy`` has fallen.
    x : ``In(x_width)``, y : ``In(y_width)``
    busy : ``Out(1)``
    product : ``Out(x_width + y_width)``
    """

    def __init__(self, x_width, y_width):
        for name, value in (("x_width", x_width), ("y_width", y_width)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self.x_width, self.y_width = x_width, y_width
        super().__init__({
            "start": In(1), "x": In(x_width), "y": In(y_width),
            "busy": Out(1), "product": Out(x_width + y_width),
        })

    def elaborate(self, platform):
        m = Module()
        addend = Signal(self.x_width + self.y_width)
        multiplier = Signal(self.y_width)
        steps = Signal(range(self.y_width + 1))
        m.d.comb += self.busy.eq(steps != 0)
        with m.If(self.start):
            m.d.sync += [addend.eq(self.x), multiplier.eq(self.y), self.product.eq(0),
                         steps.eq(self.y_width)]
        with m.Elif(steps != 0):
            m.d.sync += [
                self.product.eq(self.product + Mux(multiplier[0], addend, 0)),
                addend.eq(addend << 1),
                multiplier.eq(multiplier >> 1),
                steps.eq(steps - 1),
            ]
        return m


def _field(header, name):
    offset, size, is_signed = _FIELDS[name]
    value = header[8 * offset:8 * (offset + size)]
    return value.as_signed() if is_signed else value


def _low_bits_zero(value, multiple):
    """``value % multiple == 0`` for a power-of-two ``multiple``."""
    bits = exact_log2(multiple)
    return value[:bits] == 0 if bits else Const(1, 1)


class CommandSequencer(wiring.Component):
    """Executes command frames and produces reply frames (see the module documentation).

    Parameters
    ----------
    capabilities : qaccel.sw.protocol.Capabilities
        What INFO reports; also the buffer sizes, array and binary-engine shape the checks use.
    max_frame : int
        The frame decoder's buffer size.
    address_width : int
        Byte address width of the buffers (:attr:`BufferBank.byte_address_width`).
    counter_width : int
        Width of the counters (:class:`~qaccel.hw.counters.PerformanceCounters`).

    Members
    -------
    frame_valid, frame_length, frame_seq, frame_opcode, frame_rd_data : In
        From the frame decoder.
    frame_rd_addr, frame_done : Out
        To the frame decoder, which keeps :attr:`info_rom` (its ``rom``) from
        :func:`~qaccel.hw.framing.rom_base` on: the INFO reply is read from there.
    frame_error : In(1)
        Strobe: the decoder dropped a bad frame (answered with a NAK).
    hold_input : Out(1)
        The NAK backlog is full: stop feeding the decoder.
    reply : ``Out(stream.Signature(FrameByte))``
        Reply bytes to the frame encoder.
    host_wr_*, host_rd_* : Out; host_rd_data : In
        Byte access to the buffers (:class:`~qaccel.hw.buffers.BufferBank`); a read's data
        comes two cycles after its address.
    descriptor : ``Out(descriptor_layout(address_width))``
        The validated RUN descriptor; holds during the run.
    int8_start, binary_start : Out(1)
        Strobes: start the engine controller.
    run_done : In(1)
        Strobe from the running controller: the run is finished (outputs written).
    engine_reset : Out(1)
        Strobe (registered): RESET stops the controllers.
    frames_rx, crc_errors, command_errors : Out(1)
        Counter events.
    work : Out(counter_width), work_binary : Out(1), work_add : Out(1)
        Work of the finished run, for the counters: ``work_add`` strobes in the cycle after
        ``run_done``; ``work`` (MACs or binary ops, as ``work_binary`` says) holds until the
        next RUN is checked, dozens of cycles later at the earliest.
    counters_clear : Out(1)
    counter_value : In(counter_width), counter_index : In(range(len(Counter))),
    counter_valid : In(1)
        The counters' sweep output (the counter visited last, and its value), for the
        COUNTERS reply: each counter is fetched when the sweep shows it.
    running : Out(1)
        A run is in progress (``RunState.BUSY``).
    busy : Out(1)
        A command is being executed or answered, or a NAK is waiting (for the harness's
        ``busy``; the top adds the encoder's backlog).
    activity, error : Out(1)
        Strobes: a good frame was taken; a command was refused or a bad frame answered.
    """

    def __init__(self, capabilities, *, max_frame=proto.MAX_FRAME, address_width, counter_width):
        if not isinstance(capabilities, proto.Capabilities):
            raise TypeError(f"capabilities must be a protocol.Capabilities, not "
                            f"{capabilities!r}")
        self.capabilities = capabilities
        self.max_frame = max_frame
        #: What INFO replies: the frame decoder keeps it (``FrameDecoder(rom=...)``).
        self.info_rom = capabilities.pack()
        self.address_width = address_width
        self.counter_width = counter_width
        self.sizes = {buffer: capabilities.buffer_bytes(buffer) for buffer in proto.BufferId}
        if max(self.sizes.values()) > 1 << address_width:
            raise ValueError(f"address_width {address_width} does not reach every buffer byte")
        super().__init__({
            "frame_valid": In(1),
            "frame_length": In(range(max_frame + 1)),
            "frame_seq": In(8),
            "frame_opcode": In(8),
            "frame_rd_addr": Out(range(rom_base(max_frame, len(self.info_rom))
                                       + len(self.info_rom))),
            "frame_rd_data": In(8),
            "frame_done": Out(1),
            "frame_error": In(1),
            "hold_input": Out(1),
            "reply": Out(stream.Signature(FrameByte)),
            "host_wr_buffer": Out(2), "host_wr_addr": Out(address_width),
            "host_wr_data": Out(8), "host_wr_en": Out(1),
            "host_rd_buffer": Out(2), "host_rd_addr": Out(address_width),
            "host_rd_data": In(8),
            "descriptor": Out(descriptor_layout(address_width)),
            "int8_start": Out(1), "binary_start": Out(1), "run_done": In(1),
            "engine_reset": Out(1),
            "frames_rx": Out(1), "crc_errors": Out(1), "command_errors": Out(1),
            "work": Out(counter_width), "work_binary": Out(1), "work_add": Out(1),
            "counters_clear": Out(1),
            "counter_value": In(counter_width),
            "counter_index": In(range(len(proto.Counter))),
            "counter_valid": In(1),
            "running": Out(1),
            "busy": Out(1),
            "activity": Out(1), "error": Out(1),
        })

    # -----------------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        caps = self.capabilities
        aw = self.address_width
        sizes = self.sizes
        simd_bytes_log2 = exact_log2(caps.simd // 8)
        simd_log2 = exact_log2(caps.simd)

        # Region lengths are kept saturated just above the largest buffer: a length of
        # `limit` or more never fits, so wider arithmetic would only cost logic.
        length_width = aw + 2
        limit = 1 << (aw + 1)
        x_width = max(17, length_width)
        m.submodules.multiplier = mul = ShiftAddMultiplier(x_width, 17)

        # ---- NAK backlog ---------------------------------------------------------------------
        naks = Signal(range(_NAK_BACKLOG + 1))
        take_nak = Signal()
        m.d.sync += naks.eq(naks + self.frame_error - take_nak)
        m.d.comb += self.hold_input.eq(naks >= _NAK_BACKLOG - 2)

        # ---- run state (STATUS) -------------------------------------------------------------
        run_state = Signal(2, init=proto.RunState.IDLE)
        last_run_status = Signal(8, init=proto.Status.OK)
        run_cycles = Signal(32)
        running = run_state == proto.RunState.BUSY
        m.d.comb += self.running.eq(running)
        run_is_int8 = Signal()
        # The finished run's work (m * k * n, the last product of the RUN's checks, below,
        # left in the multiplier's register) goes to the counters one cycle after run_done.
        # It and `run_is_int8` hold until the next RUN is checked, which cannot start while
        # this one runs (BUSY) and comes dozens of cycles after it (the counters need 9).
        run_finished = Signal()
        m.d.sync += run_finished.eq(running & self.run_done)
        m.d.comb += [self.work.eq(mul.product), self.work_add.eq(run_finished),
                     self.work_binary.eq(~run_is_int8)]
        with m.If(running):
            with m.If(run_cycles != 0xFFFF_FFFF):
                m.d.sync += run_cycles.eq(run_cycles + 1)
            with m.If(self.run_done):
                m.d.sync += [run_state.eq(proto.RunState.DONE),
                             last_run_status.eq(proto.Status.OK)]

        # ---- duplicate suppression ----------------------------------------------------------
        last_valid = Signal()
        last_seq = Signal(8)
        last_opcode = Signal(8)
        last_status = Signal(8)

        # ---- the command being executed ----------------------------------------------------
        seq = Signal(8)
        opcode = Signal(8)
        body_length = Signal(range(self.max_frame + 1))
        status = Signal(8)
        record = Signal()          # update the duplicate record when finishing
        body_kind = Signal(3)
        reply_body = Signal(range(proto.MAX_PAYLOAD + 1))
        header = Signal(8 * _HEADER_BYTES)
        parse_index = Signal(range(_HEADER_BYTES + 1))
        parse_count = Signal(range(_HEADER_BYTES + 1))
        parse_pending = Signal()
        status_snapshot = Signal(48)

        buffer_id = header[0:8]
        offset = header[8:40]
        read_length = header[40:56]
        write_length = Signal(range(self.max_frame + 1))
        m.d.sync += write_length.eq(body_length - _ADDRESS_BYTES)  # valid from DECODE on

        def buffer_size(buffer):
            size = Signal(range(max(sizes.values()) + 1))
            with m.Switch(buffer):
                for b in proto.BufferId:
                    with m.Case(b):
                        m.d.comb += size.eq(sizes[b])
            return size

        # WRITE/READ bounds check, offset + length <= size, in four registered steps (SPAN,
        # SPAN_SUM, SPAN_COMPARE, then the check state): the one-cycle form (length, 33-bit
        # adder, comparator) was the iCE40 build's critical path, and so was the comparator
        # feeding the check state's status logic. The offset is a full u32: only its
        # low `aw + 1` bits go through the adder, the rest must be zero.
        span_length = Signal(range(max(proto.MAX_PAYLOAD, self.max_frame) + 1))
        span_size = Signal(range(max(sizes.values()) + 1))
        span_offset = Signal(aw + 1)
        span_bad = Signal()        # no such buffer, or the offset is beyond every buffer
        span_end = Signal(max(aw + 1, len(span_length)) + 1)
        span_ok = Signal()
        m.d.sync += span_ok.eq(~span_bad & (span_end <= span_size))
        addressed_size = buffer_size(buffer_id[:2])

        # ---- descriptor fields and checks -----------------------------------------------------
        engine = _field(header, "engine")
        mode = _field(header, "mode")
        d_m, d_k, d_n = _field(header, "m"), _field(header, "k"), _field(header, "n")
        # The descriptor's u32 offsets are kept as their low `aw + 1` bits plus one flag for
        # "any higher bit set", and read back with that flag copied into every higher bit:
        # the value is exact whenever it is below 2 ** (aw + 1), and at least that otherwise,
        # which no region check lets through either way. (The header bytes they replace have
        # no reader left, so synthesis drops them: about 80 flip-flops on a 2 KiB build.)
        kept = aw + 1
        offset_store = {}
        for name in ("a_offset", "w_offset", "p_offset", "out_offset"):
            start, size, _ = _FIELDS[name]
            assert 8 * size > kept
            offset_store[name] = (start, size, Signal(kept, name=f"{name}_low"),
                                  Signal(name=f"{name}_high"))

        def stored_offset(name):
            start, size, low, high = offset_store[name]
            return Cat(low, high.replicate(8 * size - kept))

        a_offset, w_offset = stored_offset("a_offset"), stored_offset("w_offset")
        p_offset, out_offset = stored_offset("p_offset"), stored_offset("out_offset")
        zp_out, act_min, act_max = (_field(header, "zp_out"), _field(header, "act_min"),
                                    _field(header, "act_max"))
        t_count = _field(header, "thresholds")
        is_int8 = engine == proto.Engine.INT8
        requant = mode == proto.OutputMode.REQUANT_INT8
        raw_out = mode == proto.OutputMode.RAW_INT32
        shapes_ok = (d_m != 0) & (d_k != 0) & (d_n != 0)

        int8_ok = Const(0, 1)
        binary_ok = Const(0, 1)
        if caps.has_int8:
            int8_ok = (shapes_ok & (raw_out | requant) & (act_min <= act_max)
                       & _low_bits_zero(a_offset, caps.rows)
                       & _low_bits_zero(w_offset, caps.cols)
                       & _low_bits_zero(p_offset, 4)
                       & (requant | _low_bits_zero(out_offset, 4)))
        if caps.has_binary:
            threshold_mode = mode == proto.OutputMode.THRESHOLDS
            binary_ok = (shapes_ok & (raw_out | threshold_mode)
                         & (d_k <= caps.binary_max_k) & (d_n <= caps.binary_max_n)
                         & (threshold_mode == (t_count != 0))
                         & (t_count <= caps.max_thresholds)
                         & _low_bits_zero(a_offset, caps.simd // 8)
                         & _low_bits_zero(w_offset, caps.simd // 8)
                         & ((t_count == 0) | _low_bits_zero(p_offset, 4))
                         & ((t_count != 0) | _low_bits_zero(out_offset, 4)))

        run_int8_q = Signal()
        run_binary_q = Signal()
        run_engine_known_q = Signal()
        int8_ok_q = Signal()
        binary_ok_q = Signal()

        # Products for the region lengths, saturated at `limit`, and the run's work m * n * k
        # (exact for any run that passes the region checks: then m * n < limit). The work is
        # the last product: it stays in the multiplier's register, which no other command
        # uses before the next RUN's checks.
        a_len = Signal(length_width)
        w_len = Signal(length_width)
        mn = Signal(length_width)
        nt = Signal(length_width)
        packed_out = Signal(length_width)
        products = [a_len, w_len, mn, nt, packed_out, None]
        rows_log2 = exact_log2(caps.rows)
        cols_log2 = exact_log2(caps.cols)
        m_pad = (((d_m + caps.rows - 1) >> rows_log2) << rows_log2)[:17]
        n_pad = (((d_n + caps.cols - 1) >> cols_log2) << cols_log2)[:17]
        row_bytes = (((d_k + caps.simd - 1) >> simd_log2) << simd_bytes_log2)[:32]
        packed_row = (((d_n + caps.simd - 1) >> simd_log2) << simd_bytes_log2)[:32]

        def by_engine(int8_value, binary_value):
            # a build with one engine checks only its descriptors (the engine check refuses
            # the other's), so it needs no multiplexer
            if not caps.has_binary:
                return int8_value
            if not caps.has_int8:
                return binary_value
            return Mux(is_int8, int8_value, binary_value)

        # (x, y) of each product: x up to 32 bits, y up to 17 bits
        operands = [
            (by_engine(d_k, row_bytes), by_engine(m_pad, d_m)),         # activations bytes
            (by_engine(d_k, row_bytes), by_engine(n_pad, d_n)),         # weights bytes
            (d_n, d_m),                                                 # m * n
            (t_count, d_n),                                             # n * thresholds
            (packed_row, d_m),                                          # packed binary rows
            (mn, d_k),                                                  # m * n * k: the work
        ]
        if not caps.has_binary:   # the binary regions' products are not needed
            del products[3:5], operands[3:5]
        product_index = Signal(range(len(products) + 1))
        region_width = max(length_width + 2, 20)
        out_len = Signal(region_width)
        p_len = Signal(region_width)
        p_used = Signal()
        with m.If(is_int8):
            m.d.comb += [
                out_len.eq(Mux(requant, mn, mn << 2)),
                p_len.eq((d_n << 3) + (d_n << 2)),  # n * PARAM_RECORD_BYTES
                p_used.eq(1),
            ]
        with m.Else():
            m.d.comb += [
                out_len.eq(Mux(t_count == 0, mn << 2, Mux(t_count == 1, packed_out, mn))),
                p_len.eq(nt << 2),
                p_used.eq(t_count != 0),
            ]

        # Region checks, one per cycle through one adder: offset + length <= size.
        regions = [
            (proto.BufferId.ACTIVATIONS, a_offset, a_len, Const(1, 1)),
            (proto.BufferId.WEIGHTS, w_offset, w_len, Const(1, 1)),
            (proto.BufferId.PARAMS, p_offset, p_len, p_used),
            (proto.BufferId.OUTPUTS, out_offset, out_len, Const(1, 1)),
        ]
        region_index = Signal(range(len(regions) + 1))
        region_offset = Signal(32)
        region_length = Signal(region_width)
        region_size = Signal(range(max(sizes.values()) + 1))
        region_used = Signal()
        with m.Switch(region_index):
            for index, (buffer, r_offset, r_length, used) in enumerate(regions):
                with m.Case(index):
                    m.d.comb += [region_offset.eq(r_offset), region_length.eq(r_length),
                                 region_size.eq(sizes[buffer]), region_used.eq(used)]
        # Four cycles per region, each step registered (the one-cycle check, from the
        # descriptor fields through the length multiplexer, adder and comparator, was about
        # 40 ns on an iCE40): 0 select, 1 add, 2 compare, 3 act on the result.
        region_phase = Signal(2)
        region_offset_q = Signal(aw + 1)
        region_length_q = Signal(region_width)
        region_size_q = Signal.like(region_size)
        region_skip_q = Signal()   # the region is not used by this run
        region_bad_q = Signal()    # its offset is beyond every buffer
        region_end_q = Signal(region_width + 1)
        region_ok_q = Signal()

        # Requantization parameter scan: every m0 >= 0 and shift in [SHIFT_MIN, SHIFT_MAX].
        scan_address = Signal(aw)
        scan_left = Signal(16)
        # `scan_left != 0`, kept in a register that moves with it: the 16-bit comparison into
        # the FSM's decisions was the iCEBreaker top's critical path.
        scan_more = Signal()
        scan_phase = Signal()            # 0: m0's top byte, 1: the shift byte
        scan_pending = Signal()
        scan_pending_phase = Signal()
        scan_bad = Signal()
        # A byte read arrives two cycles after its address (the buffers' read latency):
        # scan_pending, then scan_checking, follow each read. The byte is registered
        # (scan_byte) before it is checked: the buffers' multiplexer, the range check and
        # scan_bad's enable were the iCEBreaker top's critical path.
        scan_checking = Signal()
        scan_checking_phase = Signal()
        scan_byte = Signal(8)
        scan_byte_valid = Signal()
        scan_byte_phase = Signal()
        shift_value = scan_byte.as_signed()
        byte_bad = Mux(scan_byte_phase,
                       (shift_value < golden.SHIFT_MIN) | (shift_value > golden.SHIFT_MAX),
                       scan_byte[7])

        # ---- descriptor out (held during the run: nothing parses while running) -------------
        desc = self.descriptor
        m.d.comb += [
            desc.m.eq(d_m), desc.k.eq(d_k), desc.n.eq(d_n),
            desc.a_offset.eq(a_offset), desc.w_offset.eq(w_offset),
            desc.p_offset.eq(p_offset), desc.out_offset.eq(out_offset),
            desc.a_length.eq(a_len), desc.w_length.eq(w_len), desc.p_length.eq(p_len),
            desc.out_length.eq(out_len),
            desc.requant.eq(requant), desc.thresholds.eq(t_count),
            desc.zp_out.eq(zp_out), desc.act_min.eq(act_min), desc.act_max.eq(act_max),
        ]

        # ---- reply generator ------------------------------------------------------------------
        # the index of the reply's last byte (a register: `reply_index == total - 1` was a
        # carry chain on the reply's handshake)
        reply_last = Signal(range(_REPLY_HEADER + proto.MAX_REPLY_BODY))
        reply_index = Signal(range(_REPLY_HEADER + proto.MAX_REPLY_BODY + 1))
        out_valid = Signal()
        out_byte = Signal(8)
        out_last = Signal()
        m.d.comb += [self.reply.valid.eq(out_valid), self.reply.payload.data.eq(out_byte),
                     self.reply.payload.last.eq(out_last)]
        replying = Signal()
        advance = ~out_valid | self.reply.ready
        loading = Signal()
        reply_left = Signal()      # reply_index <= reply_last, kept as a register
        in_body = Signal()         # reply_index >= _REPLY_HEADER, kept as a register

        # Reply bodies are produced ahead of the reply into a small FIFO, and the reply takes
        # them from there. A READ byte arrives two cycles after its address (block RAM, then
        # the buffers' registered byte multiplexer); the other bodies (the INFO ROM, the STATUS
        # snapshot, the counters) go through two registers to arrive in step with it. A byte
        # is fetched only when the FIFO has room for it and those in flight.
        m.submodules.body_fifo = body_fifo = SyncFIFOBuffered(width=8, depth=_BODY_PREFETCH)
        fetch_left = Signal(range(proto.MAX_REPLY_BODY + 1))
        fetch_index = Signal(range(proto.MAX_REPLY_BODY))
        fetch_addr = Signal(aw)
        fetched = Signal(2)        # bytes fetched one and two cycles ago
        fetch = Signal()
        # A counter's first byte waits until the counters' sweep shows that counter (at most
        # one sweep; the reply reads them in the sweep's order).
        counter_shown = ((body_kind != BodyKind.COUNTERS) | (fetch_index[:3] != 0) |
                         (self.counter_valid & (self.counter_index == fetch_index[3:])))
        m.d.comb += fetch.eq((fetch_left != 0) & counter_shown &
                             (body_fifo.level + fetched[0] + fetched[1] < _BODY_PREFETCH))
        m.d.sync += fetched.eq(Cat(fetch, fetched[0]))
        # A counter is read whole when its first byte is fetched; its bytes above
        # counter_width are zero (no register for them: 64 - counter_width flip-flops less).
        counter_shift = Signal(self.counter_width - 8)
        with m.If(fetch):
            m.d.sync += [fetch_left.eq(fetch_left - 1), fetch_index.eq(fetch_index + 1),
                         fetch_addr.eq(fetch_addr + 1)]
            with m.If(body_kind == BodyKind.COUNTERS):
                m.d.sync += counter_shift.eq(Mux(fetch_index[:3] == 0,
                                                 self.counter_value[8:self.counter_width],
                                                 counter_shift >> 8))

        # INFO bytes come from the frame buffer's ROM part, one cycle after their address
        # (the frame buffer's read port is free once the command is parsed).
        info_base = rom_base(self.max_frame, len(self.info_rom))
        info_bits = (len(self.info_rom) - 1).bit_length()
        m.d.comb += self.frame_rd_addr.eq(info_base | fetch_index[:info_bits])
        table_byte = Signal(8)     # the fetched byte of a STATUS or COUNTERS body
        with m.Switch(body_kind):
            with m.Case(BodyKind.STATUS):
                m.d.comb += table_byte.eq(status_snapshot.word_select(fetch_index[:3], 8))
            with m.Case(BodyKind.COUNTERS):
                m.d.comb += table_byte.eq(Mux(fetch_index[:3] == 0, self.counter_value[:8],
                                              counter_shift[:8]))
        table_byte_1 = Signal(8)
        table_byte_2 = Signal(8)
        m.d.sync += [table_byte_1.eq(table_byte),
                     table_byte_2.eq(Mux(body_kind == BodyKind.INFO, self.frame_rd_data,
                                         table_byte_1))]
        m.d.comb += [
            body_fifo.w_en.eq(fetched[1]),
            body_fifo.w_data.eq(Mux(body_kind == BodyKind.READ, self.host_rd_data,
                                    table_byte_2)),
        ]
        m.d.comb += [loading.eq(replying & advance & reply_left & (~in_body | body_fifo.r_rdy)),
                     body_fifo.r_en.eq(loading & in_body)]
        reply_byte = Signal(8)
        with m.If(reply_index == 0):
            m.d.comb += reply_byte.eq(seq)
        with m.Elif(reply_index == 1):
            m.d.comb += reply_byte.eq(opcode | proto.REPLY_FLAG)
        with m.Elif(reply_index == 2):
            m.d.comb += reply_byte.eq(status)
        with m.Else():
            m.d.comb += reply_byte.eq(body_fifo.r_data)
        with m.If(advance):
            m.d.sync += out_valid.eq(loading)
        with m.If(loading):
            at_last = reply_index == reply_last
            m.d.sync += [out_byte.eq(reply_byte), out_last.eq(at_last), reply_left.eq(~at_last),
                         reply_index.eq(reply_index + 1)]
            with m.If(reply_index == _REPLY_HEADER - 1):
                m.d.sync += in_body.eq(1)
        reply_finished = out_valid & self.reply.ready & out_last

        # ---- host byte ports -------------------------------------------------------------------
        # WRITE_COPY's counters: bytes left to read, the frame byte being read, and the
        # buffer byte being written (the one read in the previous cycle).
        copy_left = Signal(range(self.max_frame + 1))
        copy_frame_addr = Signal(range(self.max_frame))
        copy_addr = Signal(aw)
        copy_pending = Signal()
        m.d.comb += [
            self.host_wr_buffer.eq(buffer_id[:2]),
            self.host_wr_addr.eq(copy_addr),
            self.host_wr_data.eq(self.frame_rd_data),
            self.host_rd_buffer.eq(buffer_id[:2]),
            self.host_rd_addr.eq(fetch_addr),
        ]

        def finish(code, *, record_it, kind=BodyKind.NONE, length=0):
            m.d.sync += [status.eq(code), record.eq(record_it), body_kind.eq(kind),
                         reply_body.eq(length)]
            m.next = "FINISH"

        known = Signal()
        duplicate = Signal()
        refused_busy = Signal()
        empty = Signal()
        write_length_ok = Signal()
        read_length_ok = Signal()
        run_length_ok = Signal()
        is_state_changing = Signal()
        m.d.comb += is_state_changing.eq(
            (opcode == proto.Opcode.WRITE) | (opcode == proto.Opcode.RUN) |
            (opcode == proto.Opcode.RESET))

        # RESET's strobes are registered: they reset every register of the engine
        # controllers, and the command decoding behind them was the iCE40 build's critical
        # path. They come one cycle after DISPATCH, long before the reply.
        m.d.sync += [self.counters_clear.eq(0), self.engine_reset.eq(0)]

        with m.FSM(name="sequencer") as fsm:
            with m.State("IDLE"):
                with m.If(naks != 0):
                    m.d.comb += [take_nak.eq(1), self.crc_errors.eq(1), self.error.eq(1)]
                    m.d.sync += [seq.eq(0), opcode.eq(proto.Opcode.NAK),
                                 status.eq(proto.Status.CRC_ERROR), body_kind.eq(BodyKind.NONE),
                                 reply_last.eq(_REPLY_HEADER - 1), reply_index.eq(0),
                                 reply_left.eq(1), in_body.eq(0)]
                    m.next = "REPLY"
                with m.Elif(self.frame_valid):
                    m.d.comb += [self.frames_rx.eq(1), self.activity.eq(1)]
                    m.d.sync += [seq.eq(self.frame_seq), opcode.eq(self.frame_opcode),
                                 body_length.eq(self.frame_length - 2),
                                 status_snapshot.eq(Cat(run_state.as_unsigned()[:8],
                                                        Const(0, 6), last_run_status,
                                                        run_cycles))]
                    m.next = "DECODE"

            with m.State("DECODE"):
                # What DISPATCH decides on, registered: comparisons of the header bytes
                # with the duplicate record and of the body length with each opcode's.
                m.d.sync += [
                    known.eq((opcode >= proto.Opcode.INFO) & (opcode <= proto.Opcode.RESET)),
                    duplicate.eq(is_state_changing & last_valid & (last_seq == seq) &
                                 (last_opcode == opcode)),
                    refused_busy.eq(running & ((opcode == proto.Opcode.WRITE) |
                                               (opcode == proto.Opcode.READ) |
                                               (opcode == proto.Opcode.RUN))),
                    empty.eq(body_length == 0),
                    write_length_ok.eq((body_length >= _ADDRESS_BYTES + 1) &
                                       (body_length <= _ADDRESS_BYTES + proto.MAX_PAYLOAD)),
                    read_length_ok.eq(body_length == _READ_BYTES),
                    run_length_ok.eq(body_length == _DESCRIPTOR_BYTES),
                ]
                m.next = "DISPATCH"

            with m.State("DISPATCH"):
                m.d.sync += [parse_index.eq(0), parse_pending.eq(0)]
                with m.If(~known):
                    finish(proto.Status.BAD_COMMAND, record_it=0)
                with m.Elif(duplicate):
                    m.d.sync += [status.eq(last_status), record.eq(0),
                                 body_kind.eq(BodyKind.NONE), reply_body.eq(0)]
                    m.next = "FINISH"
                with m.Elif(refused_busy):
                    finish(proto.Status.BUSY, record_it=0)
                with m.Else():
                    with m.Switch(opcode):
                        with m.Case(proto.Opcode.INFO):
                            with m.If(empty):
                                finish(proto.Status.OK, record_it=0, kind=BodyKind.INFO,
                                       length=proto.Capabilities.size())
                            with m.Else():
                                finish(proto.Status.BAD_LENGTH, record_it=0)
                        with m.Case(proto.Opcode.STATUS):
                            with m.If(empty):
                                finish(proto.Status.OK, record_it=0, kind=BodyKind.STATUS,
                                       length=proto.DeviceStatus.size())
                            with m.Else():
                                finish(proto.Status.BAD_LENGTH, record_it=0)
                        with m.Case(proto.Opcode.COUNTERS):
                            with m.If(empty):
                                finish(proto.Status.OK, record_it=0, kind=BodyKind.COUNTERS,
                                       length=8 * len(proto.Counter))
                            with m.Else():
                                finish(proto.Status.BAD_LENGTH, record_it=0)
                        with m.Case(proto.Opcode.RESET):
                            with m.If(empty):
                                m.d.sync += [self.counters_clear.eq(1),
                                             self.engine_reset.eq(1)]
                                m.d.sync += [run_state.eq(proto.RunState.IDLE),
                                             last_run_status.eq(proto.Status.OK),
                                             run_cycles.eq(0)]
                                finish(proto.Status.OK, record_it=1)
                            with m.Else():
                                finish(proto.Status.BAD_LENGTH, record_it=1)
                        with m.Case(proto.Opcode.WRITE):
                            with m.If(write_length_ok):
                                m.d.sync += parse_count.eq(_ADDRESS_BYTES)
                                m.next = "PARSE"
                            with m.Else():
                                finish(proto.Status.BAD_LENGTH, record_it=1)
                        with m.Case(proto.Opcode.READ):
                            with m.If(read_length_ok):
                                m.d.sync += parse_count.eq(_READ_BYTES)
                                m.next = "PARSE"
                            with m.Else():
                                finish(proto.Status.BAD_LENGTH, record_it=0)
                        with m.Case(proto.Opcode.RUN):
                            with m.If(run_length_ok):
                                m.d.sync += parse_count.eq(_DESCRIPTOR_BYTES)
                                m.next = "PARSE"
                            with m.Else():
                                finish(proto.Status.BAD_LENGTH, record_it=1)

            with m.State("PARSE"):
                # Body byte i is at frame byte 2 + i; the buffer answers one cycle later.
                m.d.comb += self.frame_rd_addr.eq(2 + parse_index)
                m.d.sync += parse_pending.eq(parse_index < parse_count)
                with m.If(parse_index < parse_count):
                    m.d.sync += parse_index.eq(parse_index + 1)
                with m.If(parse_pending):
                    byte_index = (parse_index - 1)[:len(parse_index)]
                    m.d.sync += header.word_select(byte_index, 8).eq(self.frame_rd_data)
                    for start, size, low, high in offset_store.values():
                        for j in range(size):
                            kept_here = min(max(kept - 8 * j, 0), 8)
                            above = self.frame_rd_data[kept_here:].any() if kept_here < 8 \
                                else Const(0, 1)
                            with m.If(byte_index == start + j):
                                if kept_here:
                                    m.d.sync += low[8 * j:8 * j + kept_here].eq(
                                        self.frame_rd_data[:kept_here])
                                # the field's first byte restarts the flag
                                m.d.sync += high.eq(above if j == 0 else high | above)
                with m.If(~parse_pending & (parse_index == parse_count)):
                    with m.If((opcode == proto.Opcode.WRITE) | (opcode == proto.Opcode.READ)):
                        m.next = "SPAN"
                    with m.Else():
                        m.next = "RUN_DECODE"

            with m.State("SPAN"):
                m.d.sync += [
                    span_length.eq(Mux(opcode == proto.Opcode.WRITE, write_length,
                                       read_length)),
                    span_size.eq(addressed_size),
                    span_offset.eq(offset[:aw + 1]),
                    span_bad.eq((buffer_id >= len(proto.BufferId)) | offset[aw + 1:].any()),
                ]
                m.next = "SPAN_SUM"

            with m.State("SPAN_SUM"):
                m.d.sync += span_end.eq(span_offset + span_length)
                m.next = "SPAN_COMPARE"

            with m.State("SPAN_COMPARE"):
                with m.If(opcode == proto.Opcode.WRITE):
                    m.next = "WRITE_CHECK"
                with m.Else():
                    m.next = "READ_CHECK"

            with m.State("WRITE_CHECK"):
                m.d.sync += [copy_left.eq(write_length), copy_pending.eq(0),
                             copy_frame_addr.eq(2 + _ADDRESS_BYTES),
                             copy_addr.eq(offset[:aw])]
                with m.If(span_ok):
                    m.next = "WRITE_COPY"
                with m.Else():
                    finish(proto.Status.OUT_OF_RANGE, record_it=1)

            with m.State("WRITE_COPY"):
                # Data byte i is at frame byte 2 + 5 + i; written one cycle after its read.
                m.d.comb += [self.frame_rd_addr.eq(copy_frame_addr),
                             self.host_wr_en.eq(copy_pending)]
                m.d.sync += copy_pending.eq(copy_left != 0)
                with m.If(copy_pending):
                    m.d.sync += copy_addr.eq(copy_addr + 1)
                with m.If(copy_left != 0):
                    m.d.sync += [copy_left.eq(copy_left - 1),
                                 copy_frame_addr.eq(copy_frame_addr + 1)]
                with m.Elif(~copy_pending):
                    finish(proto.Status.OK, record_it=1)

            with m.State("READ_CHECK"):
                with m.If((read_length == 0) | (read_length > proto.MAX_PAYLOAD)):
                    finish(proto.Status.BAD_LENGTH, record_it=0)
                with m.Elif(~span_ok):
                    finish(proto.Status.OUT_OF_RANGE, record_it=0)
                with m.Else():
                    finish(proto.Status.OK, record_it=0, kind=BodyKind.READ,
                           length=read_length)

            with m.State("RUN_DECODE"):
                # The descriptor checks are registered before the state machine acts on
                # them: they are wide comparisons of header fields.
                m.d.sync += [
                    run_int8_q.eq((engine == proto.Engine.INT8) & Const(caps.has_int8, 1)),
                    run_binary_q.eq((engine == proto.Engine.BINARY) &
                                    Const(caps.has_binary, 1)),
                    run_engine_known_q.eq(engine <= proto.Engine.BINARY),
                    int8_ok_q.eq(int8_ok),
                    binary_ok_q.eq(binary_ok),
                ]
                m.next = "RUN_CHECK"

            with m.State("RUN_CHECK"):
                m.d.sync += [product_index.eq(0), region_index.eq(0), region_phase.eq(0)]
                with m.If(run_int8_q):
                    with m.If(int8_ok_q):
                        m.next = "PRODUCTS"
                    with m.Else():
                        finish(proto.Status.BAD_DESCRIPTOR, record_it=1)
                with m.Elif(run_binary_q):
                    with m.If(binary_ok_q):
                        m.next = "PRODUCTS"
                    with m.Else():
                        finish(proto.Status.BAD_DESCRIPTOR, record_it=1)
                with m.Elif(run_engine_known_q):
                    finish(proto.Status.NO_ENGINE, record_it=1)
                with m.Else():
                    finish(proto.Status.BAD_DESCRIPTOR, record_it=1)

            with m.State("PRODUCTS"):
                with m.Switch(product_index):
                    for index, (x, y) in enumerate(operands):
                        with m.Case(index):
                            m.d.comb += [mul.x.eq(x), mul.y.eq(y)]
                started = Signal()
                m.d.sync += started.eq(1)
                with m.If(~started):
                    m.d.comb += mul.start.eq(1)
                with m.Elif(~mul.busy):
                    with m.Switch(product_index):
                        for index, register in enumerate(products):
                            if register is None:       # the work: left in the multiplier
                                continue
                            with m.Case(index):
                                too_big = mul.product[aw + 1:] != 0
                                m.d.sync += register.eq(Mux(too_big, limit, mul.product))
                    m.d.sync += [product_index.eq(product_index + 1), started.eq(0)]
                    with m.If(product_index == len(products) - 1):
                        m.next = "REGIONS"

            with m.State("REGIONS"):
                m.d.sync += [
                    region_offset_q.eq(region_offset[:aw + 1]),
                    region_length_q.eq(region_length),
                    region_size_q.eq(region_size),
                    region_skip_q.eq(~region_used),
                    region_bad_q.eq(region_offset[aw + 1:].any()),
                    region_end_q.eq(region_offset_q + region_length_q),
                    region_ok_q.eq(region_skip_q | (~region_bad_q &
                                                    (region_end_q <= region_size_q))),
                    region_phase.eq(region_phase + 1),
                ]
                with m.If(region_phase == 3):
                    with m.If(~region_ok_q):
                        finish(proto.Status.OUT_OF_RANGE, record_it=1)
                    with m.Elif(region_index == len(regions) - 1):
                        if caps.has_int8:
                            m.d.sync += [scan_address.eq(p_offset + 7), scan_left.eq(d_n),
                                         scan_more.eq(d_n != 0), scan_phase.eq(0),
                                         scan_pending.eq(0), scan_bad.eq(0),
                                         scan_checking.eq(0), scan_byte_valid.eq(0)]
                            with m.If(is_int8 & requant):
                                m.next = "SCAN"
                            with m.Else():
                                m.next = "START"
                        else:
                            m.next = "START"     # no SCAN state in a binary-only build
                    with m.Else():
                        m.d.sync += region_index.eq(region_index + 1)

            if caps.has_int8:   # a binary-only build has no parameter scan
                with m.State("SCAN"):
                    # bytes 7 (top of m0) and 8 (shift) of each 12-byte record
                    m.d.comb += [self.host_rd_buffer.eq(proto.BufferId.PARAMS),
                                 self.host_rd_addr.eq(scan_address + scan_phase)]
                    m.d.sync += [scan_pending.eq(scan_more), scan_pending_phase.eq(scan_phase),
                                 scan_checking.eq(scan_pending),
                                 scan_checking_phase.eq(scan_pending_phase),
                                 scan_byte.eq(self.host_rd_data),
                                 scan_byte_valid.eq(scan_checking),
                                 scan_byte_phase.eq(scan_checking_phase)]
                    with m.If(scan_byte_valid & byte_bad):
                        m.d.sync += scan_bad.eq(1)
                    with m.If(scan_more):
                        m.d.sync += scan_phase.eq(~scan_phase)
                        with m.If(scan_phase):
                            m.d.sync += [scan_address.eq(scan_address + PARAM_RECORD_BYTES),
                                         scan_left.eq(scan_left - 1),
                                         scan_more.eq(scan_left != 1)]
                    with m.Elif(~scan_pending & ~scan_checking & ~scan_byte_valid):
                        with m.If(scan_bad):
                            finish(proto.Status.BAD_DESCRIPTOR, record_it=1)
                        with m.Else():
                            m.next = "START"

            with m.State("START"):
                m.d.comb += [self.int8_start.eq(is_int8), self.binary_start.eq(~is_int8)]
                m.d.sync += [run_state.eq(proto.RunState.BUSY), run_cycles.eq(0),
                             run_is_int8.eq(is_int8)]
                finish(proto.Status.OK, record_it=1)

            with m.State("FINISH"):
                m.d.comb += self.frame_done.eq(1)
                with m.If(status != proto.Status.OK):
                    m.d.comb += [self.command_errors.eq(1), self.error.eq(1)]
                with m.If(record):
                    m.d.sync += [last_valid.eq(1), last_seq.eq(seq), last_opcode.eq(opcode),
                                 last_status.eq(status)]
                sent_body = Mux(status == proto.Status.OK, reply_body, 0)
                m.d.sync += [reply_index.eq(0), reply_left.eq(1), in_body.eq(0),
                             fetch_index.eq(0), reply_last.eq(_REPLY_HEADER - 1 + sent_body),
                             fetch_addr.eq(offset[:aw]), fetch_left.eq(sent_body)]
                m.next = "REPLY"

            with m.State("REPLY"):
                m.d.comb += replying.eq(1)
                with m.If(reply_finished):
                    m.next = "IDLE"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | self.frame_valid | (naks != 0))
        return m
