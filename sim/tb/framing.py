"""Testbench of :mod:`qaccel.hw.framing` (the ``FramingTestTop`` of tests/test_framing.py).

The reference is :mod:`qaccel.sw.protocol`: the decoder must accept exactly the frames
:func:`~qaccel.sw.protocol.decode_frame` accepts as commands (up to ``max_frame`` decoded
bytes) and drop and count everything else; the encoder must produce exactly the bytes of
:func:`~qaccel.sw.protocol.encode_frame`.

Every decoder outcome is recorded as an event, in order: ``("good", decoded bytes incl. CRC)``
read back through the frame buffer's read port, ``("crc", seq)`` from ``bad_frame``,
``("format", None)`` and ``("cobs", None)`` from the other strobes. The test compares that list
with the one the reference model predicts for the same wire bytes.

Parameters (``tb.params``): ``max_frame``, and ``crc_bits`` (8 unless given: the CRC's bits
per cycle; the throughput bounds scale with ``8 / crc_bits`` cycles per byte).
"""

import cocotb
from amaranth.lib import data
from cocotb.triggers import ReadOnly, RisingEdge

from qaccel.hw.framing import COBS_MAX_BLOCK, FrameByte
from qaccel.sim.streams import StreamSink, StreamSource, random_pause
from qaccel.sim.tbkit import TB
from qaccel.sw import protocol
from qaccel.sw.protocol import CRC_BYTES, DELIMITER, MAX_COMMAND_BODY, MAX_REPLY_BODY

_LAST_BIT = data.Layout.cast(FrameByte)["last"].offset

#: Cycles the decoder refuses input per frame when the sequencer (here the testbench) pulses
#: ``frame_done`` in the cycle after it sees ``frame_valid``.
HOLD_CYCLES = 2
#: Most cycles from the first input byte to the first wire byte: the first COBS block must be
#: closed (254 data bytes and its code) before its code byte can leave.
ENCODER_FIRST_BYTE_LATENCY = 258


# ---------------------------------------------------------------------------------------------
# Reference model

def classify(chunk, max_frame):
    """Decoder outcome for one non-empty frame ``chunk`` (wire bytes between delimiters).

    Returns ``(kind, value)``. The acceptance decision is :func:`protocol.decode_frame`'s; the
    hardware's order of checks only decides which counter a rejected frame lands in.
    """
    try:
        raw = protocol.cobs_decode(chunk)
    except protocol.FrameError:
        # The decoder emits at most one byte per wire byte after the first: a malformed frame
        # that long may have overflowed the buffer first.
        return ("cobs", None) if len(chunk) - 1 <= max_frame else ("cobs|format", None)
    if len(raw) > max_frame:
        return "format", None
    try:
        protocol.decode_frame(chunk, reply=False)
    except protocol.FrameError:
        if len(raw) < 2 + CRC_BYTES:
            return "format", None
        if protocol.crc32(raw[:-CRC_BYTES]) != int.from_bytes(raw[-CRC_BYTES:], "little"):
            return "crc", raw[0]
        assert raw[1] & protocol.REPLY_FLAG, "decode_frame refused a frame for another reason"
        return "format", None
    return "good", raw


def expected_events(wire, max_frame):
    """Events for the frames of ``wire`` that end with a delimiter; empty frames give none."""
    chunks = bytes(wire).split(bytes([DELIMITER]))[:-1]
    return [classify(chunk, max_frame) for chunk in chunks if chunk]


def events_match(got, expected):
    if len(got) != len(expected):
        return False
    for (kind, value), (want_kind, want_value) in zip(got, expected):
        if kind not in want_kind.split("|") or value != want_value:
            return False
    return True


def describe(events):
    return [(kind, value if not isinstance(value, bytes) else f"{len(value)} bytes")
            for kind, value in events]


# ---------------------------------------------------------------------------------------------
# Stimulus

def random_body(rng, length, style=None):
    """A body of ``length`` bytes: random, all zero, all 0xFF, or runs of zero and non-zero."""
    style = style or rng.choice(["random", "zeros", "ones", "runs"])
    if style == "random":
        return bytes(rng.integers(0, 256, length, dtype=int).tolist())
    if style == "zeros":
        return bytes(length)
    if style == "ones":
        return b"\xff" * length
    body = bytearray()
    while len(body) < length:
        run = int(rng.integers(1, 300))
        if rng.random() < 0.5:
            body += bytes(run)
        else:
            body += bytes(rng.integers(1, 256, run, dtype=int).tolist())
    return bytes(body[:length])


def warm_up_command(rng):
    """A command whose first COBS block is full (seq, opcode and 252 body bytes, none zero):
    the encoder then starts one block ahead and never waits for a block to close again."""
    seq, opcode = int(rng.integers(1, 256)), int(rng.integers(1, protocol.REPLY_FLAG))
    return seq, opcode, random_body(rng, COBS_MAX_BLOCK - 2, "ones") + random_body(rng, 5)


def random_command(rng, length=None, style=None):
    """(seq, opcode, body) of a random command; opcodes without the reply flag."""
    if length is None:
        length = int(rng.integers(0, MAX_COMMAND_BODY + 1))
    seq = int(rng.choice([0, 255, int(rng.integers(0, 256))]))
    opcode = int(rng.choice([0, int(rng.integers(0, protocol.REPLY_FLAG))]))
    return seq, opcode, random_body(rng, length, style)


def corner_command_lengths():
    """Body lengths around the COBS block boundaries: the decoded frame is 2 + body + CRC
    bytes, so these put 253, 254 and 255 non-zero bytes (and twice that) into one frame."""
    return [0, 1, 2, 246, 247, 248, 249, 250, MAX_COMMAND_BODY - 1, MAX_COMMAND_BODY]


def with_crc(raw):
    return raw + protocol.crc32(raw).to_bytes(CRC_BYTES, "little")


def wire_of(raw):
    """COBS-encoded ``raw`` plus the delimiter (``raw`` already carries its CRC)."""
    return protocol.cobs_encode(raw) + bytes([DELIMITER])


class Corruptor:
    """Ways to damage traffic; each returns wire bytes (usually ending with a delimiter)."""

    def __init__(self, rng, max_frame):
        self.rng = rng
        self.max_frame = max_frame

    def _good(self):
        return protocol.encode_frame(*random_command(self.rng, int(self.rng.integers(0, 80))))

    def _index(self, frame):
        return int(self.rng.integers(0, len(frame) - 1))  # never the delimiter itself

    def flip(self):
        frame = bytearray(self._good())
        frame[self._index(frame)] ^= int(self.rng.integers(1, 256))
        return bytes(frame)

    def drop(self):
        frame = bytearray(self._good())
        del frame[self._index(frame)]
        return bytes(frame)

    def insert(self):
        frame = bytearray(self._good())
        frame.insert(self._index(frame), int(self.rng.integers(0, 256)))
        return bytes(frame)

    def truncate(self):
        frame = self._good()
        return frame[:int(self.rng.integers(1, len(frame) - 1))] + bytes([DELIMITER])

    def truncate_into_next(self):
        """A frame cut short with no delimiter: it runs into the next frame."""
        frame = self._good()
        return frame[:int(self.rng.integers(1, len(frame) - 1))] + self._good()

    def garbage(self):
        length = int(self.rng.integers(1, 80))
        return bytes(self.rng.integers(0, 256, length, dtype=int).tolist()) + bytes([DELIMITER])

    def long_garbage(self):
        """Non-zero bytes well past the buffer size, then a delimiter."""
        length = int(self.rng.integers(self.max_frame + 2, self.max_frame + 120))
        return bytes(self.rng.integers(1, 256, length, dtype=int).tolist()) + bytes([DELIMITER])

    def overlong(self):
        """A well-formed frame with a valid CRC, just too long for the buffer."""
        seq, opcode, _ = random_command(self.rng, 0)
        extra = int(self.rng.choice([1, 2, int(self.rng.integers(3, 60))]))
        body = random_body(self.rng, self.max_frame - 2 - CRC_BYTES + extra)
        return wire_of(with_crc(bytes([seq, opcode]) + body))

    def wrong_crc(self):
        seq, opcode, body = random_command(self.rng, int(self.rng.integers(0, 80)))
        raw = bytearray(with_crc(bytes([seq, opcode]) + body))
        raw[-1 - int(self.rng.integers(0, CRC_BYTES))] ^= int(self.rng.integers(1, 256))
        return wire_of(bytes(raw))

    def reply(self):
        seq, opcode, body = random_command(self.rng, int(self.rng.integers(0, 40)))
        return protocol.encode_frame(seq, opcode, body, status=int(self.rng.integers(0, 8)))

    def short(self):
        length = int(self.rng.integers(1, 2 + CRC_BYTES))
        return wire_of(bytes(self.rng.integers(0, 256, length, dtype=int).tolist()))

    def empty(self):
        return bytes([DELIMITER] * int(self.rng.integers(1, 4)))

    KINDS = ("flip", "drop", "insert", "truncate", "truncate_into_next", "garbage",
             "long_garbage", "overlong", "wrong_crc", "reply", "short", "empty")


# ---------------------------------------------------------------------------------------------
# Testbench

class FramingTB(TB):
    def __init__(self, dut):
        super().__init__(dut)
        self.max_frame = self.params["max_frame"]
        #: Cycles per byte through a CRC of ``crc_bits`` bits per cycle.
        self.per_byte = 8 // self.params.get("crc_bits", 8)
        self.wire_in = StreamSource(dut, "wire_in", self.clock)
        self.reply = StreamSource(dut, "reply", self.clock)
        self.wire_out = StreamSink(dut, "wire_out", self.clock)
        dut.loopback.value = 0
        dut.frame_done.value = 0
        dut.rd_addr.value = 0
        #: Decoder outcomes in order (see the module docstring).
        self.events = []
        #: Cycle numbers at which good frames were seen (for throughput).
        self.frame_cycles = []
        #: Read each good frame back through the read port (else release it at once).
        self.read_back = True
        self.cycle = 0
        cocotb.start_soon(self._watch_strobes())
        cocotb.start_soon(self._serve_frames())

    async def _watch_strobes(self):
        dut = self.dut
        while True:
            await ReadOnly()
            self.cycle += 1
            if dut.bad_frame.value:
                self.events.append(("crc", dut.seq.value.to_unsigned()))
            if dut.format_error.value:
                self.events.append(("format", None))
            if dut.cobs_error.value:
                self.events.append(("cobs", None))
            await RisingEdge(self.clock)

    async def _serve_frames(self):
        """Plays the command sequencer: reads each good frame, then pulses ``frame_done``."""
        dut = self.dut
        while True:
            await ReadOnly()
            if not dut.frame_valid.value:
                await RisingEdge(self.clock)
                continue
            self.frame_cycles.append(self.cycle)
            length = dut.length.value.to_unsigned()
            header = (dut.seq.value.to_unsigned(), dut.opcode.value.to_unsigned())
            await RisingEdge(self.clock)
            if self.read_back:
                raw = await self._read_buffer(length + CRC_BYTES)
                assert tuple(raw[:2]) == header, f"seq/opcode ports {header} != buffer {raw[:2]}"
            else:
                raw = None
            dut.frame_done.value = 1
            await RisingEdge(self.clock)
            dut.frame_done.value = 0
            self.events.append(("good", raw if raw is not None else (length, header)))

    async def _read_buffer(self, count):
        """Read ``count`` bytes from address 0, one per cycle (read latency 1). Called right
        after a rising edge; returns right after one."""
        dut = self.dut
        result = bytearray()
        dut.rd_addr.value = 0
        for address in range(count):
            await RisingEdge(self.clock)  # the buffer samples `address`
            dut.rd_addr.value = min(address + 1, self.max_frame - 1)
            await ReadOnly()
            result += bytes([dut.rd_data.value.to_unsigned()])
        await RisingEdge(self.clock)
        return bytes(result)

    async def wait_events(self, count, budget, what):
        await self.wait_until(lambda: len(self.events) >= count, budget,
                              f"{what}: {count} decoder events (have {len(self.events)})")

    def counters(self):
        return {name: getattr(self.dut, name).value.to_unsigned()
                for name in ("crc_errors", "format_errors", "cobs_errors")}

    async def check_decoder(self, wire, what):
        """Feed ``wire`` to the decoder and compare its outcomes with the reference."""
        expected = expected_events(wire, self.max_frame)
        start = len(self.events)
        before = self.counters()
        self.wire_in.send_nowait(*wire)
        goods = sum(kind == "good" for kind, _ in expected)
        budget = 4 * self.per_byte * len(wire) + goods * (self.max_frame + 20) + 2000
        await self.wire_in.wait_idle(budget)
        await RisingEdge(self.clock)  # wait_until returns in the read-only phase
        await self.wait_events(start + len(expected), budget, what)
        await self.cycles(5)
        got = self.events[start:]
        assert events_match(got, expected), (
            f"{what}: decoder events differ\n got      {describe(got)}\n expected "
            f"{describe(expected)}")
        after = self.counters()
        kinds = [kind for kind, _ in got]
        for name, kind in (("crc_errors", "crc"), ("format_errors", "format"),
                           ("cobs_errors", "cobs")):
            assert after[name] - before[name] == kinds.count(kind), (
                f"{what}: {name} went {before[name]} -> {after[name]}, "
                f"{kinds.count(kind)} strobes")
        return got


def reply_payloads(raw):
    """Encoder input payloads (data | last) for one frame's bytes."""
    return [byte | ((index == len(raw) - 1) << _LAST_BIT) for index, byte in enumerate(raw)]


@cocotb.test()
async def decoder_good_frames(dut):
    """Commands of every length class and COBS shape arrive intact, with idle input cycles;
    empty frames between them are ignored."""
    tb = FramingTB(dut)
    tb.wire_in.set_pause(random_pause(tb.rng, 0.3))
    await tb.reset()
    commands = [random_command(tb.rng, length, style) for length in corner_command_lengths()
                for style in ("ones", "zeros")]
    commands += [random_command(tb.rng) for _ in range(12)]
    commands += [random_command(tb.rng, int(tb.rng.integers(0, 16))) for _ in range(10)]
    wire = bytearray([DELIMITER])  # a leading delimiter is an empty frame
    for command in commands:
        wire += protocol.encode_frame(*command)
        if tb.rng.random() < 0.2:
            wire += bytes([DELIMITER])
    got = await tb.check_decoder(wire, "good frames")
    assert [kind for kind, _ in got] == ["good"] * len(commands)
    for (_, raw), (seq, opcode, body) in zip(got, commands):
        assert protocol.decode_frame(protocol.cobs_encode(raw), reply=False) == \
            protocol.Frame(seq, opcode, None, body)
    assert tb.counters() == {"crc_errors": 0, "format_errors": 0, "cobs_errors": 0}


@cocotb.test()
async def decoder_corrupted_traffic(dut):
    """Damaged frames are dropped and counted in the right counter, bad CRCs are reported with
    their seq, and the next good frame is received (resynchronization)."""
    tb = FramingTB(dut)
    tb.wire_in.set_pause(random_pause(tb.rng, 0.2))
    await tb.reset()
    corruptor = Corruptor(tb.rng, tb.max_frame)
    kinds = list(Corruptor.KINDS) * 4
    tb.rng.shuffle(kinds)
    wire = bytearray()
    resync_frames = 0
    for kind in kinds:
        wire += getattr(corruptor, kind)()
        if tb.rng.random() < 0.6:
            wire += protocol.encode_frame(*random_command(tb.rng, int(tb.rng.integers(0, 40))))
            resync_frames += 1
    wire += protocol.encode_frame(*random_command(tb.rng, 8))
    got = await tb.check_decoder(wire, "corrupted traffic")
    counts = {kind: sum(k == kind for k, _ in got) for kind in ("good", "crc", "format", "cobs")}
    tb.log.info("corrupted traffic: %d wire bytes, outcomes %s", len(wire), counts)
    # the stimulus must have exercised every path, or this test proves little
    assert all(counts[kind] >= 3 for kind in counts), counts
    assert counts["good"] >= resync_frames + 1
    assert got[-1][0] == "good", "the final frame after all the damage was not received"


@cocotb.test()
async def encoder_replies(dut):
    """Replies encode exactly to protocol.encode_frame, with input pauses and output
    backpressure; then, with neither, the encoder's throughput is measured."""
    tb = FramingTB(dut)
    tb.reply.set_pause(random_pause(tb.rng, 0.3))
    tb.wire_out.set_pause(random_pause(tb.rng, 0.4))
    await tb.reset()

    def replies(count):
        result = []
        for length in [0, 1, 245, 246, 247, 248, 249, 250, 251, 500, MAX_REPLY_BODY]:
            for style in ("ones", "zeros"):
                result.append((*random_command(tb.rng, length, style),
                               int(tb.rng.integers(0, 8))))
        for _ in range(count):
            length = int(tb.rng.integers(0, MAX_REPLY_BODY + 1))
            result.append((*random_command(tb.rng, length), int(tb.rng.integers(0, 8))))
        return result

    async def run(batch, budget_per_byte):
        expected = b"".join(protocol.encode_frame(seq, opcode, body, status=status)
                            for seq, opcode, body, status in batch)
        start = tb.wire_out.transfers
        for seq, opcode, body, status in batch:
            raw = bytes([seq, opcode | protocol.REPLY_FLAG, status]) + body
            tb.reply.send_nowait(*reply_payloads(raw))
        cycles = await tb.wait_until(lambda: tb.wire_out.transfers >= start + len(expected),
                                     tb.per_byte * budget_per_byte * len(expected) + 1000,
                                     f"{len(expected)} encoded bytes")
        await tb.cycles(20)
        got = bytes(tb.wire_out.received)
        tb.wire_out.received.clear()
        assert got == expected, first_difference(got, expected)
        tb.wire_out.check()
        return cycles, len(expected)

    await run(replies(10), budget_per_byte=6)

    # Throughput: no pauses; the first reply's first block is full (the worst latency).
    tb.reply.set_pause(None)
    tb.wire_out.set_pause(None)
    batch = [(*warm_up_command(tb.rng), protocol.Status.BUSY)]
    batch += [(*random_command(tb.rng), int(tb.rng.integers(0, 8))) for _ in range(15)]
    cycles, count = await run(batch, budget_per_byte=2)
    # a narrow CRC takes each frame byte in `per_byte` cycles, the first block's too
    bound = tb.per_byte * (count + ENCODER_FIRST_BYTE_LATENCY)
    tb.log.info("encoder: %d wire bytes in %d cycles (bound %d): first byte after at most %d "
                "cycles, then %.4f cycles per byte", count, cycles, bound,
                tb.per_byte * ENCODER_FIRST_BYTE_LATENCY,
                (cycles - tb.per_byte * ENCODER_FIRST_BYTE_LATENCY) / count)
    assert cycles <= bound, f"encoder: {count} wire bytes took {cycles} cycles"


@cocotb.test()
async def loopback_throughput(dut):
    """Encoder output into the decoder: frames survive the round trip (read back in full, with
    input pauses), and with frames released at once the link moves one byte per cycle."""
    tb = FramingTB(dut)
    dut.loopback.value = 1
    tb.reply.set_pause(random_pause(tb.rng, 0.3))
    await tb.reset()

    commands = [random_command(tb.rng, length) for length in corner_command_lengths()]
    commands += [random_command(tb.rng) for _ in range(6)]
    for seq, opcode, body in commands:
        tb.reply.send_nowait(*reply_payloads(bytes([seq, opcode]) + body))
    wire_bytes = sum(len(protocol.encode_frame(*command)) for command in commands)
    await tb.wait_events(len(commands), 4 * tb.per_byte * wire_bytes + len(commands) * 600,
                         "loopback")
    for (kind, raw), (seq, opcode, body) in zip(tb.events, commands):
        assert kind == "good"
        assert raw == with_crc(bytes([seq, opcode]) + body)
    assert len(tb.events) == len(commands)

    # Throughput: no pauses, each frame released as soon as it is seen.
    tb.reply.set_pause(None)
    await RisingEdge(tb.clock)  # wait_until returns in the read-only phase
    await tb.reply.wait_idle(100)
    await RisingEdge(tb.clock)
    tb.read_back = False
    start_events = len(tb.events)
    start_frames = len(tb.frame_cycles)
    commands = [warm_up_command(tb.rng)]
    commands += [random_command(tb.rng) for _ in range(24)]
    for seq, opcode, body in commands:
        tb.reply.send_nowait(*reply_payloads(bytes([seq, opcode]) + body))
    wires = [len(protocol.encode_frame(*command)) for command in commands]
    await tb.wait_events(start_events + len(commands), 3 * tb.per_byte * sum(wires) + 2000,
                         "throughput")
    got = tb.events[start_events:]
    assert [kind for kind, _ in got] == ["good"] * len(commands), describe(got)
    for (_, (length, header)), (seq, opcode, body) in zip(got, commands):
        assert length == 2 + len(body) and header == (seq, opcode)
    # Steady state, from the first frame's arrival to the last one's: frames 2..N cost one
    # cycle per wire byte (per_byte with a narrow CRC) plus the cycles each frame is held.
    seen = tb.frame_cycles[start_frames:]
    cycles = seen[-1] - seen[0]
    count = sum(wires[1:])
    bound = tb.per_byte * count + HOLD_CYCLES * (len(wires) - 1)
    tb.log.info("loopback: %d wire bytes in %d cycles (bound %d): %.4f cycles per byte, "
                "frames of %d..%d wire bytes", count, cycles, bound, cycles / count,
                min(wires), max(wires))
    assert cycles <= bound, f"loopback: {count} wire bytes took {cycles} cycles, not {bound}"


def first_difference(got, expected):
    index = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
                 min(len(got), len(expected)))
    return (f"encoded bytes differ at {index} (got {len(got)}, expected {len(expected)} "
            f"bytes): got {got[max(0, index - 4):index + 8].hex()} expected "
            f"{expected[max(0, index - 4):index + 8].hex()}")
