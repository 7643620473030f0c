"""Engine controllers: run one validated RUN descriptor on an engine, buffers to buffers.

:class:`Int8Controller` drives the :class:`~qaccel.hw.systolic.SystolicArray` and the
:class:`~qaccel.hw.requant.Requantizer`; :class:`BinaryController` drives the
:class:`~qaccel.hw.binary.BinaryEngine`. Both read their operands from the
:class:`~qaccel.hw.buffers.BufferBank`'s engine ports in the layouts of
:mod:`qaccel.sw.layout` and write the results to OUTPUTS. The descriptor has been checked by
the :class:`~qaccel.hw.sequencer.CommandSequencer` (shapes, alignment, every region inside its
buffer), so no address computed here leaves its region.

Memory reads use the read port as the stream's output register (like the frame encoder's
ring): the port's enable is the stream's "advance" (``~valid | ready``), so one word per cycle
flows with no FIFO and nothing is lost when the consumer stalls.
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..sw.layout import PARAM_RECORD_BYTES
from .binary import BinaryEngine, Mode, Op
from .requant import Requantizer
from .requant_serial import SerialRequantizer
from .sequencer import descriptor_layout
from .skid import SkidBuffer
from .systolic import SystolicArray

__all__ = ["Int8Controller", "BinaryController"]

#: Largest K of a RUN (the descriptor field is a u16).
MAX_RUN_K = 0xFFFF
_PARAM_WORDS = PARAM_RECORD_BYTES // 4


def _controller_members(address_width, word_widths, item_bytes):
    """The signature members shared by both controllers.

    ``item_bytes`` maps the activations and weights memories to the size of the engine's
    input word, which each memory word must hold a whole number of.
    """
    for name, item in item_bytes.items():
        if word_widths[name][1] % item:
            raise ValueError(f"{name} word of {word_widths[name][1]} bytes does not hold "
                             f"whole {item}-byte engine words")
    members = {
        "start": In(1), "descriptor": In(descriptor_layout(address_width)),
        "done": Out(1), "running": Out(1), "stall_input": Out(1), "stall_output": Out(1),
    }
    for name in ("activations", "weights", "params"):
        members[f"{name}_rd_addr"] = Out(word_widths[name][0])
        members[f"{name}_rd_en"] = Out(1)
        members[f"{name}_rd_data"] = In(8 * word_widths[name][1])
    members["outputs_wr_addr"] = Out(word_widths["outputs"][0])
    members["outputs_wr_data"] = Out(32)
    members["outputs_wr_en"] = Out(4)
    return members


def _lane(byte_address, item_bytes, word_bytes):
    """Index of the ``item_bytes`` item holding ``byte_address`` inside a memory word."""
    low, high = exact_log2(item_bytes), exact_log2(word_bytes)
    return byte_address[low:high] if high > low else Const(0, 1)


def _word_stream(m, *, name, start, start_address, length, item_bytes, word_bytes, rd_addr,
                 rd_en, rd_data, ready):
    """A stream of ``item_bytes`` items read from ``[start_address, start_address + length)``.

    Returns ``(valid, payload, pending)``; ``pending`` is high while items are left to read.
    """
    pointer = Signal.like(start_address, name=f"{name}_pointer")
    end = Signal(len(start_address) + 1, name=f"{name}_end")
    valid = Signal(name=f"{name}_valid")
    lane = Signal(max(exact_log2(word_bytes) - exact_log2(item_bytes), 1), name=f"{name}_lane")
    pending = pointer != end
    advance = ~valid | ready
    m.d.comb += [rd_addr.eq(pointer >> exact_log2(word_bytes)), rd_en.eq(advance)]
    with m.If(advance):
        m.d.sync += [valid.eq(pending), lane.eq(_lane(pointer, item_bytes, word_bytes))]
        with m.If(pending):
            m.d.sync += pointer.eq(pointer + item_bytes)
    with m.If(start):
        m.d.sync += [pointer.eq(start_address), end.eq(start_address + length),
                     valid.eq(0)]
    payload = rd_data.word_select(lane, 8 * item_bytes) if word_bytes > item_bytes else rd_data
    return valid, payload, pending


def _last_lane(lane, left, size):
    """``lane == min(left, size) - 1``, for ``lane < size``: a lane in ``range(size)`` is the
    last of a tile of ``min(left, size)`` lanes, with a narrow adder instead of a wide
    subtraction and comparison."""
    next_lane = lane + 1      # one bit wider than lane: reaches `size`
    return (lane == size - 1) | (left == next_lane)


class Int8Controller(wiring.Component):
    """Runs an INT8 layer: tiles through the systolic array, raw or requantized outputs.

    Tiles are visited column tile by column tile (outer) and row tile by row tile (inner), so
    a column tile's parameters are loaded once. Three independent walkers follow that order:

    - the *command issuer* sends one array command per tile (``k``, active rows and columns);
    - the *feeder* reads one activation word (``rows`` bytes) and one weight word (``cols``
      bytes) per cycle from the two memories, restarting the weights of the column tile for
      each row tile;
    - the *serializer* takes the array's output rows and sends the active columns one by one,
      with their OUTPUTS byte address computed incrementally (row-major ``m x n``), either to
      the bias adder and the int32 writer (RAW) or to the requantizer and the byte writer.

    In requantized mode a parameter loader copies each column tile's records (bias, m0, shift)
    from PARAMS into the requantizer, double-banked (channel = bank * cols + column) so the
    next column tile loads while the current one drains.

    Parameters
    ----------
    rows, cols : int
        Array shape (powers of two).
    backend : str
        DSP backend of the array.
    mult_cycles : int
        Requantizer multiplier cycles (the pipelined requantizer).
    requantizer : {"pipelined", "serial"}
        :class:`~qaccel.hw.requant.Requantizer` or
        :class:`~qaccel.hw.requant_serial.SerialRequantizer`.
    hold_registers : bool
        Passed to the :class:`~qaccel.hw.systolic.SystolicArray`.
    operand_skid : bool
        ``True``: the operand pairs reach the array through a register slice (a shorter
        path from the array's control to the buffer read enables). ``False``: directly,
        ``16 * (rows + cols)`` flip-flops less.
    output_buffer : {"skid", "register", "none"}, dataflow : {"systolic", "broadcast"}
        Passed to the :class:`~qaccel.hw.systolic.SystolicArray`.
    address_width : int
        Byte address width of the descriptor fields.
    word_widths : dict
        ``{"activations"|"weights"|"params"|"outputs": (word address width, word bytes)}``.

    Members
    -------
    start : In(1)
        Strobe: run ``descriptor`` (which must hold until ``done``).
    descriptor : In(descriptor_layout(address_width))
    done : Out(1)
        Strobe: the last output is written.
    running : Out(1)
    stall_input, stall_output : Out(1)
        Cycles the array waits for operands / cannot hand a result on.
    activations_rd_*, weights_rd_*, params_rd_*, outputs_wr_*
        Buffer engine ports.
    """

    def __init__(self, *, rows, cols, backend, mult_cycles, address_width, word_widths,
                 requantizer="pipelined", hold_registers=True, operand_skid=True,
                 output_buffer="skid", dataflow="systolic"):
        self.rows, self.cols = rows, cols
        self.backend = backend
        self.mult_cycles = mult_cycles
        self.requantizer = requantizer
        self.hold_registers = hold_registers
        self.operand_skid = operand_skid
        self.output_buffer = output_buffer
        self.dataflow = dataflow
        self.address_width = address_width
        self.word_widths = word_widths
        super().__init__(_controller_members(address_width, word_widths,
                                             {"activations": rows, "weights": cols}))

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        aw = self.address_width
        d = self.descriptor
        a_word = self.word_widths["activations"][1]
        w_word = self.word_widths["weights"][1]

        # The sequencer let this descriptor through only if every region fits its buffer, so
        # m, n and k are at most the largest buffer's size in bytes (k * m_pad <= activation
        # bytes, k * n_pad <= weight bytes): the walkers' counters need address_width + 1
        # bits, not the 16 of the descriptor fields (on a 2 KiB build, 12 bits: about 100
        # LUTs less on an iCE40).
        count = min(16, aw + 1)
        m.submodules.array = array = SystolicArray(rows, cols, backend=self.backend,
                                                   max_k=min(MAX_RUN_K, (1 << count) - 1),
                                                   hold_registers=self.hold_registers,
                                                   output_buffer=self.output_buffer,
                                                   dataflow=self.dataflow)
        if self.requantizer == "serial":
            requant = SerialRequantizer(2 * cols, tag_width=aw)
        else:
            requant = Requantizer(2 * cols, mult_cycles=self.mult_cycles, tag_width=aw)
        m.submodules.requant = requant
        m.d.comb += [requant.zp_out.eq(d.zp_out), requant.act_min.eq(d.act_min),
                     requant.act_max.eq(d.act_max)]

        running = Signal()
        m.d.comb += self.running.eq(running)
        with m.If(self.start):
            m.d.sync += running.eq(1)
        with m.If(self.done):
            m.d.sync += running.eq(0)

        def fits(left, size):
            return left <= size

        # ---- command issuer ------------------------------------------------------------------
        issue_active = Signal()
        issue_m_left = Signal(count)
        issue_n_left = Signal(count)
        cmd = array.cmd.payload
        m.d.comb += [
            array.cmd.valid.eq(issue_active),
            cmd.k.eq(d.k),
            cmd.m.eq(Mux(fits(issue_m_left, rows), issue_m_left, rows)),
            cmd.n.eq(Mux(fits(issue_n_left, cols), issue_n_left, cols)),
        ]
        with m.If(array.cmd.valid & array.cmd.ready):
            with m.If(fits(issue_m_left, rows)):
                m.d.sync += issue_m_left.eq(d.m)
                with m.If(fits(issue_n_left, cols)):
                    m.d.sync += issue_active.eq(0)
                with m.Else():
                    m.d.sync += issue_n_left.eq(issue_n_left - cols)
            with m.Else():
                m.d.sync += issue_m_left.eq(issue_m_left - rows)
        with m.If(self.start):
            m.d.sync += [issue_active.eq(1), issue_m_left.eq(d.m), issue_n_left.eq(d.n)]

        # ---- feeder: one activation word and one weight word per step ----------------------
        feed_active = Signal()
        feed_k_left = Signal(count)
        feed_m_left = Signal(count)
        feed_n_left = Signal(count)
        a_pointer = Signal(aw)
        w_pointer = Signal(aw)
        w_column_base = Signal(aw)
        pair_valid = Signal()
        a_lane = Signal(max(exact_log2(a_word // rows), 1))
        w_lane = Signal(max(exact_log2(w_word // cols), 1))
        # The pairs reach the array through a register slice: the array's ready comes from
        # its whole control (output skid, tile spacing, operand validity), too long a path to
        # continue into the block RAM read enables on a fast build.
        pair_stream = stream.Signature(8 * (rows + cols)).create()
        m.d.comb += [
            pair_stream.valid.eq(pair_valid),
            pair_stream.payload.eq(Cat(
                self.activations_rd_data.word_select(a_lane, 8 * rows)
                if a_word > rows else self.activations_rd_data,
                self.weights_rd_data.word_select(w_lane, 8 * cols)
                if w_word > cols else self.weights_rd_data)),
        ]
        if self.operand_skid:
            m.submodules.pair_skid = pair_skid = SkidBuffer(8 * (rows + cols))
            wiring.connect(m, pair_stream, pair_skid.i)
            pairs = pair_skid.o
        else:
            pairs = pair_stream
        advance = ~pair_valid | pair_stream.ready
        m.d.comb += [
            self.activations_rd_addr.eq(a_pointer >> exact_log2(a_word)),
            self.activations_rd_en.eq(advance),
            self.weights_rd_addr.eq(w_pointer >> exact_log2(w_word)),
            self.weights_rd_en.eq(advance),
            # the array takes a and w together
            array.a.valid.eq(pairs.valid),
            array.w.valid.eq(pairs.valid),
            pairs.ready.eq(array.a.ready),
            array.a.payload.as_value().eq(pairs.payload[:8 * rows]),
            array.w.payload.as_value().eq(pairs.payload[8 * rows:]),
        ]
        with m.If(advance):
            m.d.sync += [pair_valid.eq(feed_active),
                         a_lane.eq(_lane(a_pointer, rows, a_word)),
                         w_lane.eq(_lane(w_pointer, cols, w_word))]
            with m.If(feed_active):
                m.d.sync += [a_pointer.eq(a_pointer + rows), w_pointer.eq(w_pointer + cols),
                             feed_k_left.eq(feed_k_left - 1)]
                with m.If(feed_k_left == 1):
                    m.d.sync += feed_k_left.eq(d.k)
                    with m.If(fits(feed_m_left, rows)):
                        # last row tile of the column tile: on to the next column tile
                        with m.If(fits(feed_n_left, cols)):
                            m.d.sync += feed_active.eq(0)
                        with m.Else():
                            m.d.sync += [feed_n_left.eq(feed_n_left - cols),
                                         feed_m_left.eq(d.m), a_pointer.eq(d.a_offset),
                                         w_column_base.eq(w_pointer + cols)]
                    with m.Else():
                        # next row tile: the same weights again
                        m.d.sync += [feed_m_left.eq(feed_m_left - rows),
                                     w_pointer.eq(w_column_base)]
        with m.If(self.start):
            m.d.sync += [feed_active.eq(1), feed_k_left.eq(d.k), feed_m_left.eq(d.m),
                         feed_n_left.eq(d.n), a_pointer.eq(d.a_offset),
                         w_pointer.eq(d.w_offset), w_column_base.eq(d.w_offset),
                         pair_valid.eq(0)]

        # ---- parameter loader (requantized mode) ---------------------------------------------
        # Column tiles are counted by parity only (the requantizer's two parameter banks);
        # `params_ahead` is how many tiles' parameters are loaded beyond the serializer's
        # (0 to 2), kept as a counter rather than compared (two 16-bit comparisons were on
        # the array's output handshake).
        load_column = Signal()           # parity of the column tile being loaded
        params_ahead = Signal(2)
        load_n_left = Signal(count)
        load_more = Signal()             # load_n_left != 0
        load_lane = Signal(range(cols))
        load_phase = Signal(2)
        load_busy = Signal()
        load_pointer = Signal(aw)     # word address of the record
        load_bias = Signal(32)
        load_m0 = Signal(32)
        serial_column = Signal()         # parity of the serializer's column tile
        # The output format, registered at start (from the descriptor it is an 8-bit
        # comparison on the output handshake).
        requant_mode = Signal()
        with m.If(self.start):
            m.d.sync += requant_mode.eq(d.requant)
        load_tile_end = _last_lane(load_lane, load_n_left, cols)
        column_loaded = Signal()
        column_served = Signal()
        m.d.sync += params_ahead.eq(params_ahead + column_loaded - column_served)
        param_port = requant.param.payload
        m.d.comb += [
            param_port.channel.eq(Cat(load_lane, load_column)),
            param_port.bias.eq(load_bias),
            param_port.m0.eq(load_m0[:31]),
            param_port.shift.eq(self.params_rd_data[:6]),
        ]
        with m.If(~load_busy):
            with m.If(running & requant_mode & load_more & ~params_ahead[1]):
                m.d.sync += [load_busy.eq(1), load_phase.eq(0), load_lane.eq(0)]
        with m.Else():
            m.d.sync += load_phase.eq(load_phase + 1)
            with m.Switch(load_phase):
                with m.Case(1):
                    m.d.sync += load_bias.eq(self.params_rd_data)
                with m.Case(2):
                    m.d.sync += load_m0.eq(self.params_rd_data)
                with m.Case(3):
                    m.d.comb += requant.param.valid.eq(1)
                    m.d.sync += load_pointer.eq(load_pointer + _PARAM_WORDS)
                    with m.If(load_tile_end):
                        m.d.comb += column_loaded.eq(1)
                        m.d.sync += [load_busy.eq(0), load_column.eq(~load_column),
                                     load_n_left.eq(load_n_left - cols),
                                     load_more.eq(~fits(load_n_left, cols))]
                    with m.Else():
                        m.d.sync += load_lane.eq(load_lane + 1)
        with m.If(self.start):
            m.d.sync += [load_column.eq(0), load_n_left.eq(d.n),
                         load_more.eq(d.n != 0), params_ahead.eq(0), load_busy.eq(0),
                         load_pointer.eq(d.p_offset >> 2)]

        # ---- serializer: output rows -> one column per transfer ---------------------------
        serial_lane = Signal(range(cols))
        serial_m_left = Signal(count)
        serial_n_left = Signal(count)
        serial_row_address = Signal(aw)      # byte address of the row's first element
        serial_column_address = Signal(aw)   # byte address of the column tile's first element
        serial_param_base = Signal(aw)       # word address of the column tile's first record
        element_shift = Mux(requant_mode, 0, 2)
        # The `<=` comparisons of the column and row counters are kept in registers that
        # move with them, and the end of a row is found without a subtraction (see
        # _last_lane): as carry chains ahead of the array's output handshake they were the
        # ULX3S top's critical path.
        last_column_tile = Signal()          # serial_n_left <= cols
        last_row_tile = Signal()             # serial_m_left <= rows
        end_of_row = _last_lane(serial_lane, serial_n_left, cols)
        tile_last = array.o.payload.last
        final = end_of_row & tile_last & last_row_tile & last_column_tile
        element_address = serial_row_address + (serial_lane << element_shift)
        accumulator = array.o.payload.data[serial_lane]
        params_ready = ~requant_mode | (params_ahead != 0)
        item_valid = running & array.o.valid & params_ready
        item_ready = Mux(requant_mode, requant.i.ready, 1)
        take = item_valid & item_ready
        column_step = (Const(cols, 16) << element_shift)[:aw]
        m.d.comb += array.o.ready.eq(take & end_of_row)
        with m.If(take):
            with m.If(end_of_row):
                m.d.sync += serial_lane.eq(0)
                with m.If(tile_last & last_row_tile):
                    m.d.comb += column_served.eq(requant_mode)
                    m.d.sync += [
                        serial_m_left.eq(d.m),
                        last_row_tile.eq(fits(d.m, rows)),
                        serial_n_left.eq(serial_n_left - cols),
                        last_column_tile.eq(fits(serial_n_left, 2 * cols)),
                        serial_column.eq(~serial_column),
                        serial_column_address.eq(serial_column_address + column_step),
                        serial_row_address.eq(serial_column_address + column_step),
                        serial_param_base.eq(serial_param_base + _PARAM_WORDS * cols),
                    ]
                with m.Else():
                    m.d.sync += serial_row_address.eq(serial_row_address +
                                                      (d.n << element_shift))
                    with m.If(tile_last):
                        m.d.sync += [serial_m_left.eq(serial_m_left - rows),
                                     last_row_tile.eq(fits(serial_m_left, 2 * rows))]
            with m.Else():
                m.d.sync += serial_lane.eq(serial_lane + 1)
        with m.If(self.start):
            m.d.sync += [serial_lane.eq(0), serial_m_left.eq(d.m), serial_n_left.eq(d.n),
                         last_column_tile.eq(fits(d.n, cols)),
                         last_row_tile.eq(fits(d.m, rows)),
                         serial_column.eq(0), serial_row_address.eq(d.out_offset),
                         serial_column_address.eq(d.out_offset),
                         serial_param_base.eq(d.p_offset >> 2)]

        # PARAMS read port: the loader's records (requantized) or the bias of each item (raw).
        bias_address = serial_param_base + (serial_lane << 1) + serial_lane
        m.d.comb += [
            self.params_rd_en.eq(1),
            self.params_rd_addr.eq(Mux(requant_mode, load_pointer + load_phase,
                                       bias_address)),
        ]

        # ---- raw path: bias added with int32 wrap, one word write per item ------------------
        raw_valid = Signal()
        raw_accumulator = Signal(32)
        raw_address = Signal(aw)
        raw_final = Signal()
        m.d.sync += raw_valid.eq(take & ~requant_mode)
        with m.If(take):
            m.d.sync += [raw_accumulator.eq(accumulator), raw_address.eq(element_address),
                         raw_final.eq(final)]
        # The sum is registered before the OUTPUTS write: the bias comes straight from the
        # PARAMS block RAM's output, and its 32-bit adder into the write data was the ULX3S
        # top's critical path. The data registers load every cycle and have no reset
        # (sum_valid says when they matter): with a reset or an enable on them, Yosys 0.70's
        # ABC9 stops on an internal assertion when synthesizing the ULX3S top.
        sum_valid = Signal()
        sum_value = Signal(32, reset_less=True)
        sum_address = Signal(aw, reset_less=True)
        sum_final = Signal(reset_less=True)
        m.d.sync += sum_valid.eq(raw_valid)
        m.d.sync += [sum_value.eq(raw_accumulator + self.params_rd_data),
                     sum_address.eq(raw_address), sum_final.eq(raw_final)]

        # ---- requantized path ----------------------------------------------------------------
        rq_in = requant.i.payload
        m.d.comb += [
            requant.i.valid.eq(item_valid & requant_mode),
            rq_in.acc.eq(accumulator),
            rq_in.channel.eq(Cat(serial_lane, serial_column)),
            rq_in.last.eq(final),
            rq_in.tag.eq(element_address),
            requant.o.ready.eq(1),
        ]
        rq_out = requant.o.payload

        with m.If(sum_valid):
            m.d.comb += [
                self.outputs_wr_addr.eq(sum_address >> 2),
                self.outputs_wr_data.eq(sum_value),
                self.outputs_wr_en.eq(0b1111),
                self.done.eq(sum_final),
            ]
        with m.Elif(requant.o.valid):
            m.d.comb += [
                self.outputs_wr_addr.eq(rq_out.tag >> 2),
                self.outputs_wr_data.eq(Cat(*([rq_out.value.as_unsigned()] * 4))),
                self.outputs_wr_en.eq(Const(1, 4) << rq_out.tag[:2]),
                self.done.eq(rq_out.last),
            ]

        m.d.comb += [
            self.stall_input.eq(running & feed_active & ~pair_valid),
            self.stall_output.eq(running & array.o.valid & ~take),
        ]
        return m


class BinaryController(wiring.Component):
    """Runs a binary layer: LOAD_WEIGHTS, LOAD_THRESHOLDS (when used) and RUN on the engine.

    The three engine commands are queued at once; each of the engine's input streams (``w``
    from WEIGHTS, ``t`` from PARAMS, ``a`` from ACTIVATIONS) is read from its region as one
    contiguous run of words, and the engine takes each only while the matching command runs.
    Results go to OUTPUTS contiguously from ``out_offset``: int32 words (raw dot products),
    bytes (threshold counts) or the bytes of packed ``simd``-bit words (one threshold).

    Parameters
    ----------
    pe, simd, max_k, max_n, max_thresholds : int
        The :class:`~qaccel.hw.binary.BinaryEngine`'s parameters.
    address_width, word_widths
        As for :class:`Int8Controller`.

    Members
    -------
    Same as :class:`Int8Controller`.
    """

    def __init__(self, *, pe, simd, max_k, max_n, max_thresholds, address_width, word_widths):
        self.pe, self.simd = pe, simd
        self.max_k, self.max_n, self.max_thresholds = max_k, max_n, max_thresholds
        self.address_width = address_width
        self.word_widths = word_widths
        super().__init__(_controller_members(address_width, word_widths,
                                             {"activations": simd // 8, "weights": simd // 8}))

    def elaborate(self, platform):
        m = Module()
        d = self.descriptor
        simd_bytes = self.simd // 8
        m.submodules.engine = engine = BinaryEngine(self.pe, self.simd, self.max_k, self.max_n,
                                                    self.max_thresholds)
        running = Signal()
        m.d.comb += self.running.eq(running)
        with m.If(self.start):
            m.d.sync += running.eq(1)
        with m.If(self.done):
            m.d.sync += running.eq(0)

        # ---- commands --------------------------------------------------------------------------
        command_index = Signal(2)   # 0 LOAD_WEIGHTS, 1 LOAD_THRESHOLDS, 2 RUN, 3 none left
        cmd = engine.cmd.payload
        # Registered at start (the descriptor holds during the run): the engine validates
        # the command in the cycle it takes it, so its payload should come from registers.
        out_mode = Signal(Mode)
        with m.If(self.start):
            with m.If(d.thresholds == 0):
                m.d.sync += out_mode.eq(Mode.RAW)
            with m.Elif(d.thresholds == 1):
                m.d.sync += out_mode.eq(Mode.BINARY)
            with m.Else():
                m.d.sync += out_mode.eq(Mode.THRESHOLDS)
        m.d.comb += [cmd.k.eq(d.k), cmd.n.eq(d.n), cmd.m.eq(d.m), cmd.t.eq(d.thresholds),
                     cmd.mode.eq(out_mode), engine.cmd.valid.eq(running & (command_index != 3))]
        with m.Switch(command_index):
            with m.Case(0):
                m.d.comb += cmd.op.eq(Op.LOAD_WEIGHTS)
            with m.Case(1):
                m.d.comb += cmd.op.eq(Op.LOAD_THRESHOLDS)
            with m.Default():
                m.d.comb += cmd.op.eq(Op.RUN)
        with m.If(engine.cmd.valid & engine.cmd.ready):
            m.d.sync += command_index.eq(
                Mux((command_index == 0) & (d.thresholds == 0), 2, command_index + 1))
        with m.If(self.start):
            m.d.sync += command_index.eq(0)

        # ---- input streams ----------------------------------------------------------------------
        pendings = []
        valids = []
        for stream_name, memory, item, start_address, length in (
                ("w", "weights", simd_bytes, d.w_offset, d.w_length),
                ("t", "params", 4, d.p_offset, Mux(d.thresholds == 0, 0, d.p_length)),
                ("a", "activations", simd_bytes, d.a_offset, d.a_length)):
            port = getattr(engine, stream_name)
            valid, payload, pending = _word_stream(
                m, name=f"{stream_name}_stream", start=self.start, start_address=start_address,
                length=length, item_bytes=item, word_bytes=self.word_widths[memory][1],
                rd_addr=getattr(self, f"{memory}_rd_addr"),
                rd_en=getattr(self, f"{memory}_rd_en"),
                rd_data=getattr(self, f"{memory}_rd_data"), ready=port.ready)
            m.d.comb += [port.valid.eq(valid), port.payload.eq(payload)]
            pendings.append(pending)
            valids.append(valid)

        # ---- outputs -------------------------------------------------------------------------
        out_pointer = Signal(self.address_width)
        vectors_left = Signal(16)
        byte_index = Signal(range(simd_bytes))
        result = engine.o.payload
        # The output format, registered at start: decoded from the descriptor in the same
        # cycle, it was the iCEBreaker build's critical path into the OUTPUTS write data.
        raw = Signal()
        packed = Signal()
        with m.If(self.start):
            m.d.sync += [raw.eq(d.thresholds == 0), packed.eq(d.thresholds == 1)]
        last_byte = byte_index == simd_bytes - 1
        m.d.comb += engine.o.ready.eq(~packed | last_byte)
        with m.If(engine.o.valid):
            with m.If(raw):
                m.d.comb += [self.outputs_wr_addr.eq(out_pointer >> 2),
                             self.outputs_wr_data.eq(result.data[:32]),
                             self.outputs_wr_en.eq(0b1111)]
                m.d.sync += out_pointer.eq(out_pointer + 4)
            with m.Else():
                value = Mux(packed, result.data.word_select(byte_index, 8), result.data[:8])
                m.d.comb += [self.outputs_wr_addr.eq(out_pointer >> 2),
                             self.outputs_wr_data.eq(Cat(*([value] * 4))),
                             self.outputs_wr_en.eq(Const(1, 4) << out_pointer[:2])]
                m.d.sync += out_pointer.eq(out_pointer + 1)
                with m.If(packed):
                    m.d.sync += byte_index.eq(Mux(last_byte, 0, byte_index + 1))
        with m.If(engine.o.valid & engine.o.ready & result.last):
            m.d.sync += vectors_left.eq(vectors_left - 1)
            m.d.comb += self.done.eq(vectors_left == 1)
        with m.If(self.start):
            m.d.sync += [out_pointer.eq(d.out_offset), vectors_left.eq(d.m), byte_index.eq(0)]

        starved = Const(0, 1)
        for pending, valid in zip(pendings, valids):
            starved = starved | (pending & ~valid)
        m.d.comb += [
            self.stall_input.eq(running & starved),
            self.stall_output.eq(running & engine.o.valid & ~engine.o.ready),
        ]
        return m
