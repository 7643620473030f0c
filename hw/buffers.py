"""The accelerator's four on-chip buffers: byte access for the host, word access for the engines.

Each buffer is one :class:`amaranth.lib.memory.Memory` with one write port (byte granularity)
and one read port, so it maps to simple dual-port block RAM. The host side (the command
sequencer's WRITE and READ) moves one byte per cycle; an engine reads or writes a whole memory
word per cycle. Engine words are at least as wide as what an engine consumes in one cycle:

========================  ===================================================================
buffer                    memory word
========================  ===================================================================
WEIGHTS                   ``max(cols, simd / 8)`` bytes (an INT8 weight word or a binary word)
ACTIVATIONS               ``max(rows, simd / 8)`` bytes
PARAMS                    4 bytes (int32 bias / m0 / thresholds)
OUTPUTS                   4 bytes (int32 results; int8 and packed results by byte enables)
========================  ===================================================================

Word sizes are powers of two, so a narrower engine word is a sub-word selected by the low
address bits. The read ports belong to the host while ``engine_owns`` is low and to the
engine ports while it is high; the OUTPUTS write port likewise (the sequencer refuses WRITE and
READ while a run is in progress, so the two never compete).

With ``single_port`` set, WEIGHTS and ACTIVATIONS have one port each, for reads and writes:
the engines only read them, and the host never reads and writes in the same cycle (WRITE
copies, READ fetches its reply, one command at a time). A write wins the port, and the read
data after it is not used (in simulation it holds; the SPRAM's is undefined). Such a memory
is named ``<buffer>_spram`` and carries ``ram_style="huge"``, which Yosys maps to the iCE40
UltraPlus SPRAM (16 bits x 16384 per block, single-port) once its initial contents are
dropped (SPRAM has none; the iCE40 board's build script drops them): the UP5K's 4 SPRAMs
hold 128 KiB, its 30 block RAMs 15 KiB. ``tests/test_buffers.py`` runs
the bank's testbench on that mapping too, with Yosys' ``SB_SPRAM256KA`` model (whose output
is undefined after a write: nothing reads it then).
"""

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..sw.protocol import BufferId
from .ram import NO_RW_CHECK, registered_read_port

__all__ = ["BufferBank", "SINGLE_PORT_BUFFERS", "byte_lane", "word_address"]

#: The buffers ``single_port`` builds with one shared port (nothing ever writes them while
#: it reads them).
SINGLE_PORT_BUFFERS = (BufferId.WEIGHTS, BufferId.ACTIVATIONS)


def word_address(byte_address, word_bytes):
    """Memory word index of a byte address (``word_bytes`` a power of two)."""
    return byte_address >> exact_log2(word_bytes)


def byte_lane(byte_address, word_bytes):
    """Byte position of a byte address inside its memory word."""
    return byte_address[:exact_log2(word_bytes)] if word_bytes > 1 else Const(0, 1)


class _ReadPort:
    """``addr``, ``en`` and (once built) ``data`` of a read port."""

    def __init__(self, addr, en):
        self.addr, self.en, self.data = addr, en, None


def _check_sizes(sizes, words):
    for buffer in BufferId:
        size, word = sizes[buffer], words[buffer]
        if isinstance(size, bool) or not isinstance(size, int):
            raise TypeError(f"{buffer.name} buffer size must be an integer, not {size!r}")
        if isinstance(word, bool) or not isinstance(word, int) or word < 1 or word & (word - 1):
            raise ValueError(f"{buffer.name} word size must be a power of two, not {word!r}")
        if size < word or size % word:
            raise ValueError(f"{buffer.name} buffer size must be a positive multiple of its "
                             f"{word}-byte word, not {size!r}")


class BufferBank(wiring.Component):
    """WEIGHTS, ACTIVATIONS, PARAMS and OUTPUTS memories with host and engine ports.

    Parameters
    ----------
    sizes : dict of BufferId to int
        Bytes per buffer; a multiple of the buffer's word size.
    words : dict of BufferId to int
        Bytes per memory word (powers of two).
    single_port : bool
        WEIGHTS and ACTIVATIONS with one shared port each, for the iCE40 UltraPlus SPRAM
        (see the module documentation).

    Members
    -------
    host_wr_buffer, host_wr_addr, host_wr_data, host_wr_en : In
        Byte write: ``host_wr_data`` to byte ``host_wr_addr`` of buffer ``host_wr_buffer``
        when ``host_wr_en``. The address must be inside the buffer (the sequencer checks).
    host_rd_buffer, host_rd_addr : In
        Byte read address; ``host_rd_data`` (Out, 8 bits) is the byte addressed two cycles
        earlier (latency 2: the block RAM's register, then a register per buffer after its
        byte-lane multiplexer; the buffer multiplexer after those registers is
        combinational).
    engine_owns : In(1)
        The engine ports drive the read ports and the OUTPUTS write port.
    weights_rd_addr, weights_rd_en, weights_rd_data; activations_rd_*; params_rd_*
        Engine read ports (word addresses; ``*_rd_data`` shows the word addressed at the last
        cycle with ``*_rd_en`` high, and holds while ``*_rd_en`` is low).
    outputs_wr_addr, outputs_wr_data, outputs_wr_en : In
        Engine write port of OUTPUTS: word address, 32-bit data, 4 byte enables.
    """

    def __init__(self, sizes, words, *, single_port=False):
        sizes = {BufferId(key): value for key, value in sizes.items()}
        words = {BufferId(key): value for key, value in words.items()}
        if set(sizes) != set(BufferId) or set(words) != set(BufferId):
            raise ValueError("sizes and words must name all four buffers")
        _check_sizes(sizes, words)
        if words[BufferId.PARAMS] != 4 or words[BufferId.OUTPUTS] != 4:
            raise ValueError("PARAMS and OUTPUTS words must be 4 bytes")
        if not isinstance(single_port, bool):
            raise TypeError(f"single_port must be True or False, not {single_port!r}")
        self.sizes = sizes
        self.words = words
        self.single_port = single_port
        self.depths = {b: sizes[b] // words[b] for b in BufferId}
        #: Width of a byte address that reaches every byte of the largest buffer.
        self.byte_address_width = max(ceil_log2(max(sizes.values())), 1)
        members = {
            "host_wr_buffer": In(2), "host_wr_addr": In(self.byte_address_width),
            "host_wr_data": In(8), "host_wr_en": In(1),
            "host_rd_buffer": In(2), "host_rd_addr": In(self.byte_address_width),
            "host_rd_data": Out(8),
            "engine_owns": In(1),
            "outputs_wr_addr": In(self.word_address_width(BufferId.OUTPUTS)),
            "outputs_wr_data": In(32), "outputs_wr_en": In(4),
        }
        for buffer in (BufferId.WEIGHTS, BufferId.ACTIVATIONS, BufferId.PARAMS):
            name = buffer.name.lower()
            members[f"{name}_rd_addr"] = In(self.word_address_width(buffer))
            members[f"{name}_rd_en"] = In(1)
            members[f"{name}_rd_data"] = Out(8 * words[buffer])
        super().__init__(members)

    def word_address_width(self, buffer):
        return max(ceil_log2(self.depths[BufferId(buffer)]), 1)

    def elaborate(self, platform):
        m = Module()
        host_lane = Signal(range(max(self.words.values())))
        host_buffer = Signal(2)
        host_buffer_2 = Signal(2)
        # The byte lane of the host read in flight, for the data one cycle later, and its
        # buffer, for the registered bytes two cycles later.
        m.d.sync += [host_lane.eq(self.host_rd_addr), host_buffer.eq(self.host_rd_buffer),
                     host_buffer_2.eq(host_buffer)]
        host_bytes = []
        for buffer in BufferId:
            word = self.words[buffer]
            lanes = exact_log2(word)
            name = buffer.name.lower()
            # No data read in the cycle its address is written is ever used (WRITE only
            # writes, READ and the parameter scan only read, both are refused during a run,
            # and an engine never reads OUTPUTS), so a collision needs no logic (see
            # qaccel.hw.ram).
            shared = self.single_port and buffer in SINGLE_PORT_BUFFERS
            if shared:
                memory = Memory(shape=8 * word, depth=self.depths[buffer], init=[],
                                attrs={**NO_RW_CHECK, "ram_style": "huge"})
                m.submodules[f"{name}_spram"] = memory
            else:
                memory = Memory(shape=8 * word, depth=self.depths[buffer], init=[],
                                attrs=NO_RW_CHECK)
                m.submodules[name] = memory
            write = memory.write_port(granularity=8)
            read = _ReadPort(Signal(range(self.depths[buffer]), name=f"{name}_rd_addr"),
                             Signal(name=f"{name}_rd_en"))

            host_write = self.host_wr_en & (self.host_wr_buffer == buffer)
            host_word = self.host_wr_addr >> lanes
            host_mask = Mux(host_write, Const(1, word) << byte_lane(self.host_wr_addr, word), 0)
            if shared:
                # One address for both: a synchronous read port (Yosys' SPRAM mapping needs
                # the port as Amaranth emits it, not registered_read_port's form), disabled
                # while writing, so that the port reads or writes, never both, as the
                # SPRAM's single port does.
                sync_read = memory.read_port()
                read.data = sync_read.data
                m.d.comb += [
                    sync_read.addr.eq(Mux(host_write, host_word, read.addr)),
                    write.addr.eq(sync_read.addr),
                    sync_read.en.eq(read.en & ~host_write),
                ]
            else:
                port_addr, read.data = registered_read_port(m, memory, name, read.en)
                m.d.comb += port_addr.eq(read.addr)
            if buffer == BufferId.OUTPUTS:
                m.d.comb += [
                    write.addr.eq(Mux(self.engine_owns, self.outputs_wr_addr, host_word)),
                    write.data.eq(Mux(self.engine_owns, self.outputs_wr_data,
                                      Cat(*([self.host_wr_data] * word)))),
                    write.en.eq(Mux(self.engine_owns, self.outputs_wr_en, host_mask)),
                ]
                m.d.comb += [read.addr.eq(self.host_rd_addr >> lanes), read.en.eq(1)]
            else:
                m.d.comb += [
                    write.data.eq(Cat(*([self.host_wr_data] * word))),
                    write.en.eq(host_mask),
                ]
                if not shared:
                    m.d.comb += write.addr.eq(host_word)
                engine_addr = getattr(self, f"{name}_rd_addr")
                engine_en = getattr(self, f"{name}_rd_en")
                m.d.comb += [
                    read.addr.eq(Mux(self.engine_owns, engine_addr, self.host_rd_addr >> lanes)),
                    read.en.eq(Mux(self.engine_owns, engine_en, 1)),
                    getattr(self, f"{name}_rd_data").eq(read.data),
                ]
            # The byte is registered next to its block RAM, before the buffer multiplexer:
            # registered after it, the block RAM's output (5.6 ns on an ECP5) and both
            # multiplexers with the routing between the four memories were the ULX3S top's
            # critical path (13.9 ns).
            lane = host_lane[:lanes] if lanes else 0
            host_byte = Signal(8, name=f"{name}_host_byte", reset_less=True)
            m.d.sync += host_byte.eq(read.data.word_select(lane, 8))
            host_bytes.append(host_byte)
        with m.Switch(host_buffer_2):
            for buffer in BufferId:
                with m.Case(buffer):
                    m.d.comb += self.host_rd_data.eq(host_bytes[buffer])
        return m
