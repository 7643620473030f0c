"""Testbench of :class:`qaccel.hw.buffers.BufferBank` against a byte-array model, in both
forms: two ports per buffer, and ``single_port`` (WEIGHTS and ACTIVATIONS on one shared port
each, as in the iCE40 UltraPlus SPRAM).

Every cycle is driven at the falling edge and checked after the next rising edge:

- host phase (``engine_owns`` low): random byte writes and reads (one or the other per cycle,
  as the command sequencer does), back to back, the same address written then read and read
  then written; ``host_rd_data`` must be the model's byte addressed two cycles earlier;
- engine phase (``engine_owns`` high): random engine word reads with random enables on
  WEIGHTS, ACTIVATIONS and PARAMS (``*_rd_data`` is the word addressed at the last cycle
  with the enable high, and holds while it is low) and OUTPUTS word writes with random byte
  enables, read back by the host afterwards.

Parameters (``tb.params``): ``sizes`` and ``words`` (``{buffer name: bytes}``).
"""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from qaccel.sim.tbkit import TB
from qaccel.sw.protocol import BufferId

ENGINE_READ = (BufferId.WEIGHTS, BufferId.ACTIVATIONS, BufferId.PARAMS)


class BufferTB(TB):
    def __init__(self, dut):
        super().__init__(dut, reset=None)
        self.sizes = {BufferId[name]: size for name, size in self.params["sizes"].items()}
        self.words = {BufferId[name]: size for name, size in self.params["words"].items()}
        self.model = {buffer: bytearray(self.sizes[buffer]) for buffer in BufferId}
        self.pending = []      # host reads in flight: (cycle due, buffer, address, byte)
        self.engine_words = {}  # buffer -> expected engine read word (None: not read yet)
        self.cycle = 0
        self.checked = 0

    def word(self, buffer, index):
        size = self.words[buffer]
        return int.from_bytes(self.model[buffer][index * size:(index + 1) * size], "little")

    def idle(self):
        dut = self.dut
        dut.host_wr_en.value = 0
        for buffer in ENGINE_READ:
            getattr(dut, f"{buffer.name.lower()}_rd_en").value = 0
        dut.outputs_wr_en.value = 0

    async def step(self, *, write=None, read=None, engine=None, outputs=None):
        """One cycle. ``write``/``read``: (buffer, byte address[, byte]); ``engine``:
        {buffer: (word address, enable)}; ``outputs``: (word address, data, byte enables)."""
        dut = self.dut
        self.idle()
        if write is not None:
            buffer, address, byte = write
            dut.host_wr_buffer.value = buffer
            dut.host_wr_addr.value = address
            dut.host_wr_data.value = byte
            dut.host_wr_en.value = 1
        if read is not None:
            buffer, address = read
            dut.host_rd_buffer.value = buffer
            dut.host_rd_addr.value = address
            # the byte as of this cycle: a write in this cycle is not allowed with a read
            self.pending.append((self.cycle + 2, buffer, address,
                                 self.model[buffer][address]))
        for buffer, (index, enable) in (engine or {}).items():
            name = buffer.name.lower()
            getattr(dut, f"{name}_rd_addr").value = index
            getattr(dut, f"{name}_rd_en").value = int(enable)
            if enable:
                self.engine_words[buffer] = self.word(buffer, index)
        if outputs is not None:
            index, data, enables = outputs
            dut.outputs_wr_addr.value = index
            dut.outputs_wr_data.value = data
            dut.outputs_wr_en.value = enables
        # the model takes this cycle's writes at the edge
        if write is not None:
            buffer, address, byte = write
            self.model[buffer][address] = byte
        if outputs is not None:
            index, data, enables = outputs
            for lane in range(4):
                if enables >> lane & 1:
                    self.model[BufferId.OUTPUTS][4 * index + lane] = data >> (8 * lane) & 0xFF
        await RisingEdge(self.clock)
        await ReadOnly()
        self.cycle += 1
        while self.pending and self.pending[0][0] == self.cycle:
            _, buffer, address, byte = self.pending.pop(0)
            got = int(dut.host_rd_data.value)
            assert got == byte, (f"cycle {self.cycle}: host read of {buffer.name}[{address}] "
                                 f"gave {got:#04x}, model {byte:#04x}")
            self.checked += 1
        if int(dut.engine_owns.value):
            for buffer, want in self.engine_words.items():
                got = int(getattr(dut, f"{buffer.name.lower()}_rd_data").value)
                assert got == want, (f"cycle {self.cycle}: engine read of {buffer.name} gave "
                                     f"{got:#x}, model {want:#x}")
                self.checked += 1
        await FallingEdge(self.clock)

    async def start(self):
        self.idle()
        self.dut.engine_owns.value = 0
        await FallingEdge(self.clock)

    async def drain(self):
        for _ in range(3):
            await self.step()
        assert not self.pending

    def random_address(self, buffer):
        return int(self.rng.integers(0, self.sizes[buffer]))

    def random_buffer(self):
        return BufferId(int(self.rng.integers(0, len(BufferId))))

    async def host_phase(self, cycles):
        for _ in range(cycles):
            choice = self.rng.random()
            buffer = self.random_buffer()
            address = self.random_address(buffer)
            if choice < 0.4:
                await self.step(write=(buffer, address, int(self.rng.integers(0, 256))))
            elif choice < 0.8:
                await self.step(read=(buffer, address))
            elif choice < 0.9:
                # write then read the same byte, back to back, and read then write
                await self.step(write=(buffer, address, int(self.rng.integers(0, 256))))
                await self.step(read=(buffer, address))
                await self.step(write=(buffer, address, int(self.rng.integers(0, 256))))
                await self.step(read=(buffer, address))
            else:
                await self.step()
        await self.drain()


@cocotb.test()
async def host_writes_and_reads(dut):
    """Corners first (every buffer's first and last byte, 0x00 and 0xFF), then random host
    writes and reads of every buffer, back to back and interleaved."""
    tb = BufferTB(dut)
    await tb.start()
    for buffer in BufferId:
        for address in (0, tb.sizes[buffer] - 1):
            for byte in (0xFF, 0x00, 0xA5):
                await tb.step(write=(buffer, address, byte))
                await tb.step(read=(buffer, address))
    await tb.drain()
    await tb.host_phase(3000)
    assert tb.checked > 1000


@cocotb.test()
async def engine_ports(dut):
    """The host fills the buffers; the engine reads words with random enables (data holds
    while the enable is low) and writes OUTPUTS with random byte enables; the host reads
    OUTPUTS back."""
    tb = BufferTB(dut)
    await tb.start()
    for buffer in BufferId:
        for address in range(tb.sizes[buffer]):
            await tb.step(write=(buffer, address, int(tb.rng.integers(0, 256))))
    for _round in range(3):
        dut.engine_owns.value = 1
        tb.engine_words.clear()
        for _ in range(600):
            engine = {buffer: (int(tb.rng.integers(0, tb.sizes[buffer] // tb.words[buffer])),
                               tb.rng.random() < 0.7) for buffer in ENGINE_READ}
            outputs = None
            if tb.rng.random() < 0.5:
                outputs = (int(tb.rng.integers(0, tb.sizes[BufferId.OUTPUTS] // 4)),
                           int.from_bytes(tb.rng.bytes(4), "little"),
                           int(tb.rng.integers(0, 16)))
            await tb.step(engine=engine, outputs=outputs)
        await tb.step()
        dut.engine_owns.value = 0
        tb.engine_words.clear()
        for address in range(tb.sizes[BufferId.OUTPUTS]):
            await tb.step(read=(BufferId.OUTPUTS, address))
        await tb.drain()
        await tb.host_phase(300)
    assert tb.checked > 3000
