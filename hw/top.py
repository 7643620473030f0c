# amaranth: UnusedElaboratable=no
"""The accelerator top: what a board build and a co-simulation instantiate.

::

    rx bytes ─► FrameDecoder ─► CommandSequencer ─► FrameEncoder ─► tx bytes
                                  │  host byte ports      │ start / descriptor
                                  ▼                        ▼
                               BufferBank ◄─ engine ports ─ Int8Controller (SystolicArray,
                       (WEIGHTS, ACTIVATIONS,                Requantizer)
                        PARAMS, OUTPUTS)     ◄───────────── BinaryController (BinaryEngine)
                                  PerformanceCounters ◄── events

:class:`AcceleratorTop` has the byte-stream port contract of the co-simulation harness
(``docs/COSIM.md``): ``rx`` (host to device) and ``tx`` (device to host) byte streams and a
``busy`` level. :class:`UARTAcceleratorTop` puts the UART PHY in front for boards and the
pseudo-terminal co-simulation. :class:`TopConfig` holds every parameter and tells what the
device reports for INFO (:meth:`TopConfig.capabilities`). The wire protocol, command by
command, is in ``docs/PROTOCOL.md``; the behaviour is specified by
:class:`qaccel.sim.refdevice.ReferenceDevice`.
"""

from dataclasses import dataclass

from amaranth import Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw import protocol as proto
from .binary import MAX_DIMENSION, MAX_THRESHOLDS
from .buffers import SINGLE_PORT_BUFFERS, BufferBank
from .controllers import BinaryController, Int8Controller
from .counters import PerformanceCounters, counter_memory_shape
from .dual_mac import BACKENDS
from .framing import RING_DEPTH, FrameByte, FrameDecoder, FrameEncoder, check_crc_bits
from .requant import MULT_CYCLES
from .requant_serial import SerialRequantizer
from .sequencer import CommandSequencer
from .skid import RegisterSlice, SkidBuffer
from .systolic import check_array_options
from .uart import UART

__all__ = ["TopConfig", "AcceleratorTop", "UARTAcceleratorTop"]

#: Requantizer implementations (:attr:`TopConfig.requantizer`).
REQUANTIZERS = ("pipelined", "serial")

#: Largest buffer the byte addresses and the sequencer's checks are built for (16 MiB).
MAX_BUFFER_BYTES = 1 << 24


def _is_power_of_two(value):
    return value >= 1 and not value & (value - 1)


@dataclass(frozen=True)
class TopConfig:
    """Parameters of an accelerator build.

    The defaults are a small simulation build, the same device as
    :class:`qaccel.sim.refdevice.DeviceConfig`'s defaults. Memory use: :meth:`memory_bits`
    and ``docs/PROTOCOL.md`` ("Memory of the default configuration"); ``bench/top.py``
    synthesizes configurations for the iCE40.

    Attributes
    ----------
    rows, cols : int
        INT8 systolic array shape; powers of two, 1 to 128.
    backend : str
        DSP backend of the array: ``"generic"``, ``"ice40"``, ``"ecp5"`` or ``"dsp48e2"``.
    pe : int
        Binary engine output channels per cycle, 1 to 255.
    simd : int
        Binary engine input bits per cycle: a power of two, multiple of 8, 8 to 4096.
    int8, binary : bool
        Which engines are built (at least one).
    weights_bytes, activations_bytes, params_bytes, outputs_bytes : int
        Buffer sizes; each a multiple of its memory word (:meth:`word_bytes`), at most 16 MiB.
    binary_max_k, binary_max_n : int
        Longest binary reduction and most binary output channels (1 to 65535).
    max_thresholds : int
        Thresholds per binary output channel, 1 to 255.
    mult_cycles : int
        Requantizer multiplier cycles per result (:data:`qaccel.hw.requant.MULT_CYCLES`).
    requantizer : str
        ``"pipelined"`` (:class:`~qaccel.hw.requant.Requantizer`, a result every
        ``mult_cycles`` cycles) or ``"serial"``
        (:class:`~qaccel.hw.requant_serial.SerialRequantizer`, 37 to 67 cycles per result in
        about half the logic; ``mult_cycles`` is then not used): same results.
    hold_registers : bool
        The systolic array's hold registers (:class:`~qaccel.hw.systolic.SystolicArray`):
        ``False`` saves a register per lane (and, on an iCE40, a LUT per accumulator bit) for
        ``groups`` idle cycles per tile.
    operand_skid : bool
        The register slice between the INT8 controller's buffer reads and the array
        (:class:`~qaccel.hw.controllers.Int8Controller`); ``False`` saves its
        ``16 * (rows + cols)`` flip-flops for a longer path on slow clocks.
    output_buffer : {"skid", "register", "none"}
        The systolic array's output buffer (:class:`~qaccel.hw.systolic.SystolicArray`): a
        :class:`~qaccel.hw.skid.SkidBuffer` (a row per cycle), a
        :class:`~qaccel.hw.skid.RegisterSlice` (a row per two cycles, half the flip-flops),
        or none (the array waits while the controller takes a row, ``cols`` cycles or more;
        no output registers, and the array's enable follows the controller's ``ready``).
    dataflow : {"systolic", "broadcast"}
        The systolic array's dataflow: operands skewed through the PEs, or broadcast to a row
        or column at once (no skew registers; only with ``hold_registers=False``).
    crc_bits : int
        Bits per cycle of the frame decoder's and encoder's CRC-32
        (:mod:`~qaccel.hw.framing`): 8, a byte per cycle; 1, a byte per 8 cycles (far more
        than a UART needs) in about 70 LUT4s less each.
    spram : bool
        WEIGHTS and ACTIVATIONS with one shared port each, in the iCE40 UltraPlus SPRAM
        (:class:`~qaccel.hw.buffers.BufferBank`'s ``single_port``); their contents are then
        undefined at power-up.
    clock_hz : int
        Fabric clock, reported by INFO and used for the UART divider.
    baud : int
        UART baud rate; 0 for the byte-stream (co-simulation) build.
    counter_width : int
        Bits per performance counter, 16 to 64 (they read as u64).
    """

    rows: int = 4
    cols: int = 4
    backend: str = "generic"
    pe: int = 4
    simd: int = 32
    int8: bool = True
    binary: bool = True
    weights_bytes: int = 4096
    activations_bytes: int = 4096
    params_bytes: int = 1024
    outputs_bytes: int = 4096
    binary_max_k: int = 1024
    binary_max_n: int = 64
    max_thresholds: int = 4
    mult_cycles: int = 8
    requantizer: str = "pipelined"
    hold_registers: bool = True
    operand_skid: bool = True
    output_buffer: str = "skid"
    dataflow: str = "systolic"
    crc_bits: int = 8
    spram: bool = False
    clock_hz: int = 12_000_000
    baud: int = 0
    counter_width: int = 40

    def __post_init__(self):
        def integer(name, low, high):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{name} must be in {low}..{high}, not {value}")
            return value

        for name in ("rows", "cols"):
            if not _is_power_of_two(integer(name, 1, 128)):
                raise ValueError(f"{name} must be a power of two, not {getattr(self, name)}")
        if not isinstance(self.backend, str):
            raise TypeError(f"backend must be a string, not {self.backend!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; "
                             f"not {self.backend!r}")
        integer("pe", 1, 255)
        simd = integer("simd", 8, 4096)
        if simd % 8 or not _is_power_of_two(simd):
            raise ValueError(f"simd must be a power of two and a multiple of 8, not {simd}")
        for name in ("int8", "binary"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if not (self.int8 or self.binary):
            raise ValueError("at least one engine (int8 or binary) must be built")
        for buffer in proto.BufferId:
            name = f"{buffer.name.lower()}_bytes"
            size = integer(name, 1, MAX_BUFFER_BYTES)
            word = self.word_bytes(buffer)
            if size % word:
                raise ValueError(f"{name} must be a multiple of the {word}-byte memory word, "
                                 f"not {size}")
        integer("binary_max_k", 1, MAX_DIMENSION)
        integer("binary_max_n", 1, MAX_DIMENSION)
        integer("max_thresholds", 1, MAX_THRESHOLDS)
        if isinstance(self.mult_cycles, bool) or not isinstance(self.mult_cycles, int):
            raise TypeError(f"mult_cycles must be an integer, not {self.mult_cycles!r}")
        if self.mult_cycles not in MULT_CYCLES:
            raise ValueError(f"mult_cycles must be one of {MULT_CYCLES}, not "
                             f"{self.mult_cycles}")
        if self.requantizer not in REQUANTIZERS:
            raise ValueError(f"requantizer must be one of {', '.join(REQUANTIZERS)}; not "
                             f"{self.requantizer!r}")
        check_crc_bits(self.crc_bits)
        check_array_options(hold_registers=self.hold_registers,
                            output_buffer=self.output_buffer, dataflow=self.dataflow)
        for name in ("hold_registers", "operand_skid", "spram"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, not {getattr(self, name)!r}")
        integer("clock_hz", 1, 2**32 - 1)
        integer("baud", 0, 2**32 - 1)
        integer("counter_width", 16, 64)

    def word_bytes(self, buffer):
        """Bytes per memory word of a buffer (see :mod:`qaccel.hw.buffers`)."""
        buffer = proto.BufferId(buffer)
        simd_bytes = self.simd // 8 if self.binary else 1
        if buffer == proto.BufferId.ACTIVATIONS:
            return max(self.rows if self.int8 else 1, simd_bytes)
        if buffer == proto.BufferId.WEIGHTS:
            return max(self.cols if self.int8 else 1, simd_bytes)
        return 4

    def buffer_bytes(self, buffer):
        return getattr(self, f"{proto.BufferId(buffer).name.lower()}_bytes")

    @property
    def requant_cycles(self):
        """``(fewest, most)`` clock cycles the requantizer spends per result, no stalls."""
        if self.requantizer == "serial":
            fewest, most = SerialRequantizer.timing_bounds()
            return fewest[0], most[0]
        return self.mult_cycles, self.mult_cycles

    def capabilities(self):
        """The :class:`~qaccel.sw.protocol.Capabilities` INFO reports for this build."""
        return proto.Capabilities(
            protocol_version=proto.PROTOCOL_VERSION,
            engines=int(self.int8) | (int(self.binary) << 1),
            rows=self.rows, cols=self.cols, pe=self.pe, simd=self.simd,
            dsp_backend=proto.Capabilities.DSP_BACKENDS.index(self.backend),
            max_payload=proto.MAX_PAYLOAD,
            weights_bytes=self.weights_bytes, activations_bytes=self.activations_bytes,
            params_bytes=self.params_bytes, outputs_bytes=self.outputs_bytes,
            clock_hz=self.clock_hz, baud=self.baud, binary_max_k=self.binary_max_k,
            binary_max_n=self.binary_max_n, max_thresholds=self.max_thresholds,
            counter_width=self.counter_width)

    def memory_shapes(self):
        """``{block: (width, depth)}`` of every memory in the build, as instantiated.

        Block RAMs have a fixed aspect ratio range (an iCE40 EBR is 16 bits wide at most),
        so a wide memory takes more blocks than its bits suggest; the board fit check
        (:func:`qaccel.boards.estimate.bram_blocks`) counts them from these shapes. A memory
        built for the SPRAM (``spram``) is ``(width, depth, "spram")``.
        """
        shapes = {f"buffer {buffer.name.lower()}":
                  (8 * self.word_bytes(buffer),
                   self.buffer_bytes(buffer) // self.word_bytes(buffer))
                  + (("spram",) if self.spram and buffer in SINGLE_PORT_BUFFERS else ())
                  for buffer in proto.BufferId}
        shapes["frame decoder buffer"] = (8, proto.MAX_FRAME)
        shapes["frame encoder ring"] = (8, RING_DEPTH)
        shapes["performance counters"] = counter_memory_shape(self.counter_width)
        if self.int8:
            shapes["requantizer parameters"] = (32 + 31 + 6, 2 * self.cols)
        if self.binary:
            sf = -(-self.binary_max_k // self.simd)
            nf = -(-self.binary_max_n // self.pe)
            threshold_bits = (self.binary_max_k + 1).bit_length() + 1
            shapes["binary weights"] = (self.pe * self.simd, nf * sf)
            shapes["binary activations"] = (self.simd, sf)
            shapes["binary thresholds"] = (self.pe * self.max_thresholds * threshold_bits, nf)
        return shapes

    def memory_bits(self):
        """``{block: bits}`` of every memory in the build (for sizing against a device)."""
        return {name: shape[0] * shape[1] for name, shape in self.memory_shapes().items()}


class AcceleratorTop(wiring.Component):
    """The accelerator behind a byte-stream host link.

    Parameters
    ----------
    config : TopConfig

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Bytes from the host (COBS frames). ``ready`` falls while a command frame waits to
        be executed and when many bad frames wait for their NAK.
    tx : ``Out(stream.Signature(8))``
        Bytes to the host (reply frames).
    busy : ``Out(1)``
        A command is being executed, a run is in progress, or reply bytes are still to leave
        on ``tx``.
    activity : ``Out(1)``
        One-cycle strobe per good command frame (an LED pulse).
    error : ``Out(1)``
        One-cycle strobe per bad frame (NAK) or refused command.
    """

    def __init__(self, config=TopConfig()):
        if not isinstance(config, TopConfig):
            raise TypeError(f"config must be a TopConfig, not {config!r}")
        self.config = config
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "busy": Out(1),
            "activity": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        sizes = {buffer: config.buffer_bytes(buffer) for buffer in proto.BufferId}
        words = {buffer: config.word_bytes(buffer) for buffer in proto.BufferId}

        m.submodules.buffers = bank = BufferBank(sizes, words, single_port=config.spram)
        m.submodules.counters = counters = PerformanceCounters(config.counter_width)
        aw = bank.byte_address_width
        m.submodules.sequencer = seq = CommandSequencer(
            config.capabilities(), max_frame=proto.MAX_FRAME, address_width=aw,
            counter_width=config.counter_width)
        # the INFO reply lives in the frame buffer's block RAM, after the frame
        m.submodules.decoder = decoder = FrameDecoder(proto.MAX_FRAME, crc_bits=config.crc_bits,
                                                      rom=seq.info_rom)
        m.submodules.encoder = encoder = FrameEncoder(crc_bits=config.crc_bits)

        # ---- link ------------------------------------------------------------------------------
        # A register slice before the decoder and one before the encoder: the decoder's COBS
        # logic behind the UART FIFO's block RAM, and the encoder's ready into the sequencer's
        # reply and body FIFO, were the iCE40 top's critical paths. With a narrow CRC the
        # decoder and the encoder take a byte per 2 cycles at most, so the half-rate slice
        # (one register) loses nothing.
        link_slice = SkidBuffer if config.crc_bits == 8 else RegisterSlice
        m.submodules.rx_slice = rx_slice = link_slice(8)
        m.submodules.reply_slice = reply_slice = link_slice(FrameByte)
        m.d.comb += [
            rx_slice.i.valid.eq(self.rx.valid & ~seq.hold_input),
            rx_slice.i.payload.eq(self.rx.payload),
            self.rx.ready.eq(rx_slice.i.ready & ~seq.hold_input),
        ]
        wiring.connect(m, rx_slice.o, decoder.i)
        wiring.connect(m, seq.reply, reply_slice.i)
        wiring.connect(m, reply_slice.o, encoder.i)
        wiring.connect(m, encoder.o, wiring.flipped(self.tx))
        m.d.comb += [
            seq.frame_valid.eq(decoder.frame_valid),
            seq.frame_length.eq(decoder.length),
            seq.frame_seq.eq(decoder.seq),
            seq.frame_opcode.eq(decoder.opcode),
            seq.frame_rd_data.eq(decoder.rd_data),
            decoder.rd_addr.eq(seq.frame_rd_addr),
            decoder.frame_done.eq(seq.frame_done),
            seq.frame_error.eq(decoder.bad_frame | decoder.format_error | decoder.cobs_error),
        ]

        # ---- host side of the buffers ---------------------------------------------------------
        for name in ("host_wr_buffer", "host_wr_addr", "host_wr_data", "host_wr_en",
                     "host_rd_buffer", "host_rd_addr"):
            m.d.comb += getattr(bank, name).eq(getattr(seq, name))
        m.d.comb += seq.host_rd_data.eq(bank.host_rd_data)

        # ---- engines ---------------------------------------------------------------------------
        word_widths = {buffer.name.lower(): (bank.word_address_width(buffer), words[buffer])
                       for buffer in proto.BufferId}
        controllers = []
        if config.int8:
            int8 = Int8Controller(rows=config.rows, cols=config.cols, backend=config.backend,
                                  mult_cycles=config.mult_cycles,
                                  requantizer=config.requantizer,
                                  hold_registers=config.hold_registers,
                                  operand_skid=config.operand_skid,
                                  output_buffer=config.output_buffer,
                                  dataflow=config.dataflow, address_width=aw,
                                  word_widths=word_widths)
            m.submodules.int8 = ResetInserter(seq.engine_reset)(int8)
            m.d.comb += int8.start.eq(seq.int8_start)
            controllers.append(int8)
        if config.binary:
            binary = BinaryController(pe=config.pe, simd=config.simd,
                                      max_k=config.binary_max_k, max_n=config.binary_max_n,
                                      max_thresholds=config.max_thresholds, address_width=aw,
                                      word_widths=word_widths)
            m.submodules.binary = ResetInserter(seq.engine_reset)(binary)
            m.d.comb += binary.start.eq(seq.binary_start)
            controllers.append(binary)

        engine_ports = ["weights_rd_addr", "weights_rd_en", "activations_rd_addr",
                        "activations_rd_en", "params_rd_addr", "params_rd_en",
                        "outputs_wr_addr", "outputs_wr_data", "outputs_wr_en"]
        any_running = Signal()
        for controller in controllers:
            m.d.comb += controller.descriptor.eq(seq.descriptor)
            for name in ("weights_rd_data", "activations_rd_data", "params_rd_data"):
                m.d.comb += getattr(controller, name).eq(getattr(bank, name))
        # Only one controller runs at a time; the last one listed wins while it runs.
        for index, controller in enumerate(controllers):
            condition = controller.running if index else 1
            with m.If(condition):
                for name in engine_ports:
                    m.d.comb += getattr(bank, name).eq(getattr(controller, name))
        running = [controller.running for controller in controllers]
        done = [controller.done for controller in controllers]
        stall_input = [controller.stall_input for controller in controllers]
        stall_output = [controller.stall_output for controller in controllers]

        def any_of(values):
            result = values[0]
            for value in values[1:]:
                result = result | value
            return result

        m.d.comb += [
            any_running.eq(any_of(running)),
            bank.engine_owns.eq(any_running),
            seq.run_done.eq(any_of(done)),
        ]

        # ---- counters --------------------------------------------------------------------------
        m.d.comb += [
            counters.cycles.eq(1),
            counters.int8_busy.eq(int8.running if config.int8 else 0),
            counters.binary_busy.eq(binary.running if config.binary else 0),
            counters.work.eq(seq.work),
            counters.work_binary.eq(seq.work_binary),
            counters.work_add.eq(seq.work_add),
            counters.stall_input.eq(any_of(stall_input)),
            counters.stall_output.eq(any_of(stall_output)),
            counters.frames_rx.eq(seq.frames_rx),
            counters.crc_errors.eq(seq.crc_errors),
            counters.command_errors.eq(seq.command_errors),
            counters.clear.eq(seq.counters_clear),
            seq.counter_value.eq(counters.value),
            seq.counter_index.eq(counters.value_index),
            seq.counter_valid.eq(counters.value_valid),
        ]

        # ---- status outputs ----------------------------------------------------------------
        # Replies handed to the encoder whose delimiter has not left on tx yet (COBS frames
        # hold no other zero byte).
        # The delimiter is counted the cycle after it leaves: compared at once, the encoder
        # ring's block RAM output, the comparator and this adder were the ULX3S top's
        # critical path (12.8 ns). ``busy`` stays high one cycle longer, which nothing sees.
        replies_in_flight = Signal(range(RING_DEPTH + 1))  # a reply is at least 9 ring bytes
        reply_in = seq.reply.valid & seq.reply.ready & seq.reply.payload.last
        reply_out = Signal()
        m.d.sync += reply_out.eq(self.tx.valid & self.tx.ready &
                                 (self.tx.payload == proto.DELIMITER))
        m.d.sync += replies_in_flight.eq(replies_in_flight + reply_in - reply_out)
        m.d.comb += [
            self.busy.eq(seq.busy | seq.running | any_running | rx_slice.o.valid |
                         (replies_in_flight != 0)),
            self.activity.eq(seq.activity),
            self.error.eq(seq.error),
        ]
        return m


class UARTAcceleratorTop(wiring.Component):
    """:class:`AcceleratorTop` behind the UART PHY (8N1, no flow control).

    Parameters
    ----------
    config : TopConfig
        ``baud`` must be set; ``clock_hz`` is the fabric clock.

    Members
    -------
    uart_rx : ``In(1, init=1)``
        Serial input (idles high).
    uart_tx : ``Out(1, init=1)``
        Serial output.
    busy, activity : ``Out(1)``
        As for :class:`AcceleratorTop`; ``busy`` also covers a byte in the UART.
    error : ``Out(1)``
        As for :class:`AcceleratorTop`, plus UART framing errors and receive overruns.
    """

    def __init__(self, config):
        if not isinstance(config, TopConfig):
            raise TypeError(f"config must be a TopConfig, not {config!r}")
        if config.baud == 0:
            raise ValueError("UARTAcceleratorTop needs a baud rate: config.baud is 0")
        self.config = config
        # Built here so that a bad clock/baud combination is refused now, not at elaboration
        # (the pragma on this file's first line keeps a never-elaborated top quiet).
        self._uart = UART(config.clock_hz, config.baud)
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "busy": Out(1),
            "activity": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = self._uart
        m.submodules.core = core = AcceleratorTop(self.config)
        wiring.connect(m, uart.o, core.rx)
        wiring.connect(m, core.tx, uart.i)
        m.d.comb += [
            uart.rx.eq(self.uart_rx),
            self.uart_tx.eq(uart.tx),
            self.busy.eq(core.busy | uart.o.valid | ~uart.i.ready),
            self.activity.eq(core.activity),
            self.error.eq(core.error | uart.framing_error | uart.overrun),
        ]
        return m
