"""Link layer of the host protocol: COBS frame decoder and encoder with CRC-32.

The wire format is defined once in :mod:`qaccel.sw.protocol`: a frame is
``COBS(seq, opcode, [status,] body..., crc32 little-endian)`` followed by the delimiter
``0x00``. :class:`FrameDecoder` turns wire bytes into checked command frames held in a buffer
that the command sequencer reads; :class:`FrameEncoder` turns reply bytes into wire bytes.
Both move one byte per clock cycle in steady state, or one per ``8 / crc_bits`` cycles with a
narrower CRC (``crc_bits``: a bit-serial CRC-32 is about 70 LUT4s smaller than a byte-wide
one, and a UART brings a byte every 10 bit times anyway). docs/FRAMING.md has the design
notes.
"""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.crc import catalog as crc_catalog
from amaranth.lib.wiring import In, Out

from ..sw.protocol import CRC_BYTES, DELIMITER, MAX_FRAME, REPLY_FLAG
from .ram import NO_RW_CHECK, registered_read_port

__all__ = ["FrameByte", "FrameDecoder", "FrameEncoder", "COBS_MAX_BLOCK", "RING_DEPTH",
           "CRC_BITS", "check_crc_bits", "rom_base"]

#: Data bytes in the longest COBS block (code byte 0xFF); fixed by the COBS definition.
COBS_MAX_BLOCK = 254
#: Entries of the encoder's ring buffer: one iCE40 EBR (512 x 8). It holds the open block
#: (at most 255 slots with its code) and as much finished output again, so the writer keeps
#: working while the reader drains the previous block.
RING_DEPTH = 512
#: Shortest command frame: seq, opcode, CRC.
_MIN_COMMAND_FRAME = 2 + CRC_BYTES


class FrameByte(data.Struct):
    """One byte of a frame on its way to the encoder; ``last`` marks the frame's last byte."""
    data: unsigned(8)
    last: unsigned(1)


#: Data bits per cycle the CRC can take (``crc_bits``).
CRC_BITS = (1, 2, 4, 8)


class _ByteCRC(wiring.Component):
    """CRC-32/ISO-HDLC (``zlib.crc32``) over bytes, ``bits`` data bits per cycle.

    A byte is taken when ``valid & ready``; with fewer than 8 bits per cycle its remaining
    bits go through over the next ``8 / bits - 1`` cycles, least significant first (the
    order of a reflected CRC), while ``ready`` is low. ``crc`` and ``match_detected`` include
    a byte once ``ready`` is back; ``start`` restarts the CRC (only while ``ready``).
    """

    def __init__(self, bits):
        self.bits = bits
        super().__init__({"start": In(1), "data": In(8), "valid": In(1), "ready": Out(1),
                          "crc": Out(32), "match_detected": Out(1)})

    def elaborate(self, platform):
        m = Module()
        bits = self.bits
        m.submodules.processor = crc = crc_catalog.CRC32_ISO_HDLC(data_width=bits).create()
        m.d.comb += [crc.start.eq(self.start), self.crc.eq(crc.crc),
                     self.match_detected.eq(crc.match_detected)]
        if bits == 8:
            m.d.comb += [self.ready.eq(1), crc.data.eq(self.data), crc.valid.eq(self.valid)]
            return m
        rest = Signal(8 - bits, reset_less=True)   # the byte's bits still to go
        left = Signal(range(8 // bits))            # chunks of them
        m.d.comb += self.ready.eq(left == 0)
        with m.If(left != 0):
            m.d.comb += [crc.data.eq(rest[:bits]), crc.valid.eq(1)]
            m.d.sync += [rest.eq(rest >> bits), left.eq(left - 1)]
        with m.Else():
            m.d.comb += [crc.data.eq(self.data[:bits]), crc.valid.eq(self.valid)]
            with m.If(self.valid):
                m.d.sync += [rest.eq(self.data[bits:]), left.eq(8 // bits - 1)]
        return m


def rom_base(max_frame, rom_bytes):
    """Address of a :class:`FrameDecoder`'s ``rom``: the first multiple of its size (rounded
    up to a power of two) at or after the frame, so that ``rom_base + i`` is ``rom_base | i``
    (no adder in front of the address)."""
    align = 1 << max(rom_bytes - 1, 0).bit_length()
    return -(-max_frame // align) * align


def _check_int(name, value, minimum, maximum):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be in {minimum}..{maximum}, not {value!r}")


def check_crc_bits(crc_bits):
    """``crc_bits``, if it is one of :data:`CRC_BITS` (else ``ValueError``)."""
    if crc_bits not in CRC_BITS or isinstance(crc_bits, bool):
        raise ValueError(f"crc_bits must be one of {', '.join(map(str, CRC_BITS))}; not "
                         f"{crc_bits!r}")
    return crc_bits


class FrameDecoder(wiring.Component):
    """COBS decoder, CRC-32 checker and frame buffer for command frames.

    Wire bytes are COBS-decoded on the fly into a frame buffer while the CRC-32 runs over the
    decoded bytes. On the delimiter the frame is checked in this order, and dropped at the
    first failure:

    1. no more than ``max_frame`` decoded bytes (else ``format_error``);
    2. COBS well formed: the last block ends exactly at the delimiter (else ``cobs_error``);
    3. at least ``2 + CRC_BYTES`` decoded bytes (else ``format_error``);
    4. the CRC matches (else ``bad_frame``, with the received ``seq``);
    5. the opcode has no ``REPLY_FLAG``: a command, not a reply (else ``format_error``).

    These are exactly the frames :func:`qaccel.sw.protocol.decode_frame` accepts with
    ``reply=False``, limited to ``max_frame`` decoded bytes. Empty frames (two delimiters in a
    row) are ignored without a count. After any drop the decoder starts afresh after the
    delimiter, so it resynchronizes by itself.

    A good frame is *held*: ``frame_valid`` rises and ``i.ready`` falls until the sequencer
    pulses ``frame_done``. The host sends one command and waits for its reply, and a receive
    FIFO in front of the decoder absorbs anything that arrives meanwhile; the decoder itself
    never drops a byte it was offered.

    Parameters
    ----------
    max_frame : int
        Frame buffer size: most decoded bytes (header, body and CRC) in a frame. The default
        is the protocol's :data:`~qaccel.sw.protocol.MAX_FRAME`.
    counter_width : int
        Width of the error counters; they wrap around.
    crc_bits : int
        Data bits the CRC takes per cycle: 8 (a byte per cycle), or 4, 2, 1 (a byte per 2, 4,
        8 cycles, in less logic).
    rom : bytes
        Constant bytes kept in the frame buffer's block RAM after its ``max_frame`` bytes,
        never written, read at ``rd_addr`` :attr:`rom_base` ``+ i`` (the command sequencer
        keeps its INFO reply there: a 512-byte block RAM has room next to a 268-byte frame,
        and a table in logic would cost about 50 LUT4s).

    Members
    -------
    i : ``In(stream.Signature(8))``
        Wire bytes. ``ready`` is low while a good frame is held, and for ``8 / crc_bits - 1``
        cycles after each byte that goes into the CRC.
    frame_valid : ``Out(1)``
        A good frame is in the buffer; stays high until the cycle after ``frame_done``.
    length : ``Out(range(max_frame + 1))``
        Decoded bytes before the CRC (seq, opcode and body); valid with ``frame_valid``.
    seq, opcode : ``Out(8)``
        The frame's first two decoded bytes; valid with ``frame_valid`` and with ``bad_frame``.
    rd_addr : ``In(range(rom_base + len(rom)))``
        Frame buffer read address: byte 0 is ``seq``, 1 is the opcode, 2 the first body byte;
        ``rom`` from :attr:`rom_base` on.
    rd_data : ``Out(8)``
        Byte at the ``rd_addr`` of the previous cycle (read latency 1 cycle).
    frame_done : ``In(1)``
        Strobe from the sequencer: the held frame is consumed; the buffer is free again.
    bad_frame : ``Out(1)``
        One-cycle strobe: a well-formed frame failed its CRC. ``seq`` holds its sequence byte
        as received (for a NAK with ``Status.CRC_ERROR``) during this cycle.
    format_error : ``Out(1)``
        One-cycle strobe: a frame was dropped as too long, too short, or a reply.
    cobs_error : ``Out(1)``
        One-cycle strobe: a frame was dropped as malformed COBS (truncated last block).
    crc_errors, format_errors, cobs_errors : ``Out(counter_width)``
        Counts of the three strobes.

    The strobes rise in the cycle after the delimiter was accepted; ``frame_valid`` too.
    """

    def __init__(self, max_frame=MAX_FRAME, *, counter_width=16, crc_bits=8, rom=b""):
        _check_int("max_frame", max_frame, _MIN_COMMAND_FRAME, 65536)
        _check_int("counter_width", counter_width, 1, 64)
        self._crc_bits = check_crc_bits(crc_bits)
        if not isinstance(rom, (bytes, bytearray)):
            raise TypeError(f"rom must be bytes, not {rom!r}")
        self._rom = bytes(rom)
        self.rom_base = rom_base(max_frame, len(self._rom))
        self._max_frame = max_frame
        self._counter_width = counter_width
        super().__init__({
            "i": In(stream.Signature(8)),
            "frame_valid": Out(1),
            "length": Out(range(max_frame + 1)),
            "seq": Out(8),
            "opcode": Out(8),
            "rd_addr": In(range(self.rom_base + len(self._rom))),
            "rd_data": Out(8),
            "frame_done": In(1),
            "bad_frame": Out(1),
            "format_error": Out(1),
            "cobs_error": Out(1),
            "crc_errors": Out(counter_width),
            "format_errors": Out(counter_width),
            "cobs_errors": Out(counter_width),
        })

    @property
    def max_frame(self):
        return self._max_frame

    @property
    def counter_width(self):
        return self._counter_width

    @property
    def crc_bits(self):
        return self._crc_bits

    def elaborate(self, platform):
        m = Module()
        max_frame = self._max_frame

        # Written while a frame arrives; its read data is used only while a good frame is
        # held (input stopped), or from the ROM part, which is never written, so a
        # same-address collision needs no logic (see qaccel.hw.ram).
        m.submodules.buffer = buffer = memory.Memory(
            shape=8, depth=self.rom_base + len(self._rom),
            init=[0] * self.rom_base + list(self._rom), attrs=NO_RW_CHECK)
        write = buffer.write_port()
        read_addr, read_data = registered_read_port(m, buffer, "buffer_rd")
        m.d.comb += [read_addr.eq(self.rd_addr), self.rd_data.eq(read_data)]

        m.submodules.crc = crc = _ByteCRC(self._crc_bits)

        count = Signal(range(max_frame + 1))      # decoded bytes of the current frame
        block_left = Signal(range(COBS_MAX_BLOCK + 1))  # data bytes left in the COBS block
        full_block = Signal()                     # current block's code was 0xFF: no zero after it
        in_frame = Signal()                       # a byte arrived since the last delimiter
        overflow = Signal()                       # too long: dropping until the delimiter

        # Input is refused while a good frame waits for the sequencer, and while a narrow CRC
        # is busy with the previous byte (so the delimiter finds it complete).
        m.d.comb += self.i.ready.eq(~self.frame_valid & crc.ready)
        accepted = self.i.valid & self.i.ready
        wire_byte = self.i.payload

        # `block_left == 0` and `count == max_frame` (and 0, and 1), kept in registers that
        # move with them: the comparisons between the input byte and the frame buffer's
        # write enable (and the header registers' enables) were the iCEBreaker top's
        # critical path.
        at_code = Signal(init=1)
        count_full = Signal()
        count_0 = Signal(init=1)    # count == 0: the next byte is the sequence number
        count_1 = Signal()          # count == 1: the opcode

        emit = Signal()
        emit_byte = Signal(8)
        with m.If(accepted & (wire_byte != DELIMITER) & ~overflow):
            m.d.sync += in_frame.eq(1)
            with m.If(at_code):
                # A code byte: it ends the previous block, which (unless it was full or this
                # is the frame's first block) stood for a zero byte.
                m.d.sync += [block_left.eq(wire_byte - 1), at_code.eq(wire_byte == 1),
                             full_block.eq(wire_byte == 0xFF)]
                m.d.comb += [emit.eq(in_frame & ~full_block), emit_byte.eq(0)]
            with m.Else():
                m.d.sync += [block_left.eq(block_left - 1), at_code.eq(block_left == 1)]
                m.d.comb += [emit.eq(1), emit_byte.eq(wire_byte)]

        with m.If(emit):
            with m.If(count_full):
                m.d.sync += overflow.eq(1)
            with m.Else():
                m.d.comb += [
                    write.en.eq(1), write.addr.eq(count), write.data.eq(emit_byte),
                    crc.valid.eq(1), crc.data.eq(emit_byte),
                ]
                m.d.sync += [count.eq(count + 1), count_full.eq(count == max_frame - 1),
                             count_0.eq(0), count_1.eq(count_0)]
                with m.If(count_0):
                    m.d.sync += self.seq.eq(emit_byte)
                with m.If(count_1):
                    m.d.sync += self.opcode.eq(emit_byte)

        m.d.sync += [self.bad_frame.eq(0), self.format_error.eq(0), self.cobs_error.eq(0)]
        with m.If(accepted & (wire_byte == DELIMITER)):
            m.d.comb += crc.start.eq(1)
            m.d.sync += [count.eq(0), count_full.eq(0), count_0.eq(1), count_1.eq(0),
                         block_left.eq(0), at_code.eq(1), in_frame.eq(0), overflow.eq(0)]
            with m.If(in_frame):
                with m.If(overflow):
                    m.d.sync += self.format_error.eq(1)
                with m.Elif(~at_code):
                    m.d.sync += self.cobs_error.eq(1)
                with m.Elif(count < _MIN_COMMAND_FRAME):
                    m.d.sync += self.format_error.eq(1)
                with m.Elif(~crc.match_detected):
                    m.d.sync += self.bad_frame.eq(1)
                with m.Elif((self.opcode & REPLY_FLAG) != 0):
                    m.d.sync += self.format_error.eq(1)
                with m.Else():
                    m.d.sync += [self.frame_valid.eq(1), self.length.eq(count - CRC_BYTES)]

        with m.If(self.frame_done & self.frame_valid):
            m.d.sync += self.frame_valid.eq(0)

        with m.If(self.bad_frame):
            m.d.sync += self.crc_errors.eq(self.crc_errors + 1)
        with m.If(self.format_error):
            m.d.sync += self.format_errors.eq(self.format_errors + 1)
        with m.If(self.cobs_error):
            m.d.sync += self.cobs_errors.eq(self.cobs_errors + 1)
        return m


class _WriterState(enum.Enum, shape=2):
    ACCEPT = 0      # taking frame bytes
    CLOSE_FULL = 1  # 254 data bytes without a zero: write code 0xFF, open the next block
    CLOSE_LAST = 2  # frame ended: write the last block's code
    DELIMITER = 3   # write the delimiter and reserve the next frame's first code slot


class FrameEncoder(wiring.Component):
    """CRC-32 appender and COBS encoder for reply frames.

    The frame's bytes arrive on ``i`` (``last`` on the final one); the encoder appends the
    CRC-32 (little-endian), COBS-encodes the result and emits it followed by the delimiter on
    ``o``, byte for byte what :func:`qaccel.sw.protocol.encode_frame` gives.

    A COBS code byte gives the distance to the next zero, so a block must be complete before
    its code can be sent. The encoder writes the encoded stream into a ring buffer of
    :data:`RING_DEPTH` bytes: it reserves a slot for each block's code, writes the data bytes
    after it, fills the slot in when the block closes, and only then lets the reader send the
    block. The writer spends exactly one cycle per output byte, so with a steady input the
    output runs at one byte per cycle once the first block is closed; a long block at the
    start of a frame costs up to 255 cycles of latency, not throughput.

    Parameters
    ----------
    max_block : int
        Data bytes in the longest COBS block. COBS fixes it at 254 (code byte 0xFF); the
        parameter exists so that callers state the assumption, and any other value is refused.
    crc_bits : int
        Data bits the CRC takes per cycle: 8 (a byte per cycle), or 4, 2, 1 (a frame byte per
        2, 4, 8 cycles, in less logic).

    Members
    -------
    i : ``In(stream.Signature(FrameByte))``
        Frame bytes (for a reply: seq, opcode | REPLY_FLAG, status, body...).
    o : ``Out(stream.Signature(8))``
        Wire bytes, each frame followed by the 0x00 delimiter.
    """

    def __init__(self, *, max_block=COBS_MAX_BLOCK, crc_bits=8):
        if not isinstance(max_block, int) or isinstance(max_block, bool):
            raise TypeError(f"max_block must be an integer, not {max_block!r}")
        if max_block != COBS_MAX_BLOCK:
            raise ValueError(f"max_block must be {COBS_MAX_BLOCK} (fixed by COBS), "
                             f"not {max_block!r}")
        self._max_block = max_block
        self._crc_bits = check_crc_bits(crc_bits)
        super().__init__({
            "i": In(stream.Signature(FrameByte)),
            "o": Out(stream.Signature(8)),
        })

    @property
    def max_block(self):
        return self._max_block

    @property
    def crc_bits(self):
        return self._crc_bits

    def elaborate(self, platform):
        m = Module()

        # Stage 1: frame bytes, then the four CRC bytes, as one "raw" byte stream. A narrow
        # CRC takes a byte every 8 / crc_bits cycles: the input waits for it, and so do the
        # CRC bytes after the last one.
        m.submodules.crc = crc = _ByteCRC(self._crc_bits)
        sending_crc = Signal()
        crc_index = Signal(range(CRC_BYTES))
        raw_valid = Signal()
        raw_ready = Signal()
        raw_byte = Signal(8)
        raw_last = Signal()
        with m.If(~sending_crc):
            m.d.comb += [
                raw_valid.eq(self.i.valid & crc.ready),
                raw_byte.eq(self.i.payload.data),
                self.i.ready.eq(raw_ready & crc.ready),
                crc.data.eq(self.i.payload.data),
                crc.valid.eq(self.i.valid & raw_ready),
            ]
            with m.If(self.i.valid & self.i.ready & self.i.payload.last):
                m.d.sync += [sending_crc.eq(1), crc_index.eq(0)]
        with m.Else():
            m.d.comb += [
                raw_valid.eq(crc.ready),
                raw_byte.eq(crc.crc.word_select(crc_index, 8)),
                raw_last.eq(crc_index == CRC_BYTES - 1),
            ]
            with m.If(raw_valid & raw_ready):
                m.d.sync += crc_index.eq(crc_index + 1)
                with m.If(raw_last):
                    m.d.sync += sending_crc.eq(0)
                    m.d.comb += crc.start.eq(1)

        # Stage 2: the writer puts the encoded stream into the ring; `committed` marks the end
        # of what is final (closed blocks and delimiters).
        # The writer writes only slots past `committed`, the reader uses data only from
        # slots before it: a same-address collision is never used (see qaccel.hw.ram).
        m.submodules.ring = ring = memory.Memory(shape=8, depth=RING_DEPTH, init=[],
                                                 attrs=NO_RW_CHECK)
        write = ring.write_port()
        read_en = Signal()
        read_addr, read_data = registered_read_port(m, ring, "ring_rd", read_en)
        pointer_shape = range(RING_DEPTH)

        write_ptr = Signal(pointer_shape, init=1)   # next free slot
        code_slot = Signal(pointer_shape, init=0)   # reserved slot of the open block's code
        committed = Signal(pointer_shape, init=0)   # the reader may read up to here (excl.)
        read_ptr = Signal(pointer_shape, init=0)
        used = Signal(range(RING_DEPTH + 1), init=1)  # slots written or reserved, not yet read
        block_count = Signal(range(COBS_MAX_BLOCK + 1))  # data bytes in the open block
        state = Signal(_WriterState)
        frame_ended = Signal()  # the block closed by CLOSE_FULL was the frame's end

        allocated = Signal(2)
        released = Signal()
        used_next = Signal.like(used)
        m.d.comb += used_next.eq(used + allocated - released)
        m.d.sync += used.eq(used_next)

        # At most two slots are allocated per cycle; keeping one more free means the committed
        # span never covers the whole ring, so read_ptr == committed always means empty.
        # `room` is `used <= RING_DEPTH - 3`, registered from the next value of `used`: the
        # same flag, without a comparator between the registers and `i.ready` (which the
        # sequencer's reply logic, the READ address and the buffers' EBR address follow:
        # the iCE40 top's critical path).
        room = Signal(init=1 <= RING_DEPTH - 3)
        m.d.sync += room.eq(used_next <= RING_DEPTH - 3)
        m.d.comb += raw_ready.eq((state == _WriterState.ACCEPT) & room)

        with m.Switch(state):
            with m.Case(_WriterState.ACCEPT):
                with m.If(raw_valid & raw_ready):
                    with m.If(raw_byte == 0):
                        # The zero ends the block: its code is the distance to the zero.
                        m.d.comb += [write.en.eq(1), write.addr.eq(code_slot),
                                     write.data.eq(block_count + 1), allocated.eq(1)]
                        m.d.sync += [code_slot.eq(write_ptr), write_ptr.eq(write_ptr + 1),
                                     committed.eq(write_ptr), block_count.eq(0)]
                        with m.If(raw_last):
                            m.d.sync += state.eq(_WriterState.CLOSE_LAST)
                    with m.Else():
                        m.d.comb += [write.en.eq(1), write.addr.eq(write_ptr),
                                     write.data.eq(raw_byte), allocated.eq(1)]
                        m.d.sync += [write_ptr.eq(write_ptr + 1), block_count.eq(block_count + 1)]
                        with m.If(block_count == COBS_MAX_BLOCK - 1):
                            m.d.sync += [state.eq(_WriterState.CLOSE_FULL),
                                         frame_ended.eq(raw_last)]
                        with m.Elif(raw_last):
                            m.d.sync += state.eq(_WriterState.CLOSE_LAST)
            with m.Case(_WriterState.CLOSE_FULL):
                with m.If(room):
                    m.d.comb += [write.en.eq(1), write.addr.eq(code_slot), write.data.eq(0xFF),
                                 allocated.eq(1)]
                    m.d.sync += [code_slot.eq(write_ptr), write_ptr.eq(write_ptr + 1),
                                 committed.eq(write_ptr), block_count.eq(0)]
                    # After a full block at the frame's end COBS still sends an empty block.
                    m.d.sync += state.eq(Mux(frame_ended, _WriterState.CLOSE_LAST,
                                             _WriterState.ACCEPT))
            with m.Case(_WriterState.CLOSE_LAST):
                m.d.comb += [write.en.eq(1), write.addr.eq(code_slot),
                             write.data.eq(block_count + 1)]
                m.d.sync += [committed.eq(write_ptr), block_count.eq(0),
                             state.eq(_WriterState.DELIMITER)]
            with m.Case(_WriterState.DELIMITER):
                with m.If(room):
                    m.d.comb += [write.en.eq(1), write.addr.eq(write_ptr),
                                 write.data.eq(DELIMITER), allocated.eq(2)]
                    m.d.sync += [code_slot.eq(write_ptr + 1), write_ptr.eq(write_ptr + 2),
                                 committed.eq(write_ptr + 1), state.eq(_WriterState.ACCEPT)]

        # Stage 3: the reader streams committed bytes out. The ring's read port is the output
        # register: its address advances (and its data changes) only when the output is free.
        advance = ~self.o.valid | self.o.ready
        available = read_ptr != committed
        m.d.comb += [read_addr.eq(read_ptr), read_en.eq(advance),
                     self.o.payload.eq(read_data)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(available)
            with m.If(available):
                m.d.sync += read_ptr.eq(read_ptr + 1)
                m.d.comb += released.eq(1)
        return m
