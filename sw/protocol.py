"""The qaccel wire protocol: one definition, imported by the gateware and the host driver.

Pure Python (standard library only). docs/PROTOCOL.md shows every command byte by byte.

Framing
-------
A frame is ``seq, opcode, [status,] body..., crc32`` where ``crc32`` is the CRC-32 of
everything before it (``zlib.crc32``: reflected polynomial 0x04C11DB7, init and final XOR
0xFFFFFFFF), little-endian. Commands (host to device) have no status byte; replies (device to
host) carry ``opcode | REPLY_FLAG`` and a :class:`Status`. On the wire each frame is COBS
encoded, so it holds no zero byte, and followed by the delimiter ``0x00``. A receiver that
sees garbage, a truncated frame or a bad CRC drops everything up to the next delimiter:
the scheme resynchronizes by itself.

Sequence numbers
----------------
The host numbers each new command (``seq`` 0-255, wrapping) and repeats the number when it
retries. The device executes a command that changes state (WRITE, RUN, RESET) at most once
per sequence number: a repeated one gets the cached status again without being executed.
Commands that only read (INFO, READ, STATUS, COUNTERS) are executed every time.

All multi-byte integers are little-endian.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "PROTOCOL_VERSION", "DELIMITER", "REPLY_FLAG", "MAX_PAYLOAD", "CRC_BYTES",
    "MAX_COMMAND_BODY", "MAX_REPLY_BODY", "MAX_FRAME", "MAX_ENCODED_FRAME",
    "Opcode", "Status", "BufferId", "Engine", "OutputMode", "Counter", "RunState",
    "FrameError", "Frame", "Capabilities", "RunDescriptor", "DeviceStatus",
    "crc32", "cobs_encode", "cobs_decode", "encode_frame", "decode_frame", "FrameReader",
    "write_body", "read_body", "parse_counters", "IDEMPOTENT_OPCODES",
]

PROTOCOL_VERSION = 2
DELIMITER = 0x00
REPLY_FLAG = 0x80
#: Most data bytes in one WRITE or one READ reply.
MAX_PAYLOAD = 256
CRC_BYTES = 4


class Opcode(enum.IntEnum):
    """Command opcodes (host to device). A reply carries ``opcode | REPLY_FLAG``."""
    INFO = 0x01       #: body: empty. Reply body: :class:`Capabilities`.
    WRITE = 0x02      #: body: buffer u8, offset u32, data (1..MAX_PAYLOAD bytes).
    READ = 0x03       #: body: buffer u8, offset u32, length u16. Reply body: data.
    RUN = 0x04        #: body: :class:`RunDescriptor`. Starts a layer; reply when accepted.
    STATUS = 0x05     #: body: empty. Reply body: :class:`DeviceStatus`.
    COUNTERS = 0x06   #: body: empty. Reply body: one u64 per :class:`Counter`.
    RESET = 0x07      #: body: empty. Stops a run, clears counters and status (not buffers).
    NAK = 0x7F        #: reply only: a frame arrived with a bad CRC or length (status says).


#: Commands that only read state: the device executes them again when retried.
IDEMPOTENT_OPCODES = frozenset({Opcode.INFO, Opcode.READ, Opcode.STATUS, Opcode.COUNTERS})


class Status(enum.IntEnum):
    """Status byte of every reply."""
    OK = 0
    CRC_ERROR = 1        #: the command frame failed its CRC (sent with opcode NAK)
    BAD_COMMAND = 2      #: unknown opcode
    BAD_LENGTH = 3       #: body length wrong for the opcode
    OUT_OF_RANGE = 4     #: buffer id, offset or length outside the device's buffers
    BUSY = 5             #: a run is in progress (WRITE, READ and RUN are refused)
    BAD_DESCRIPTOR = 6   #: RUN descriptor inconsistent with the hardware (shapes, engine)
    NO_ENGINE = 7        #: the engine is not present in this configuration


class BufferId(enum.IntEnum):
    """On-chip buffers addressed by WRITE and READ."""
    WEIGHTS = 0
    ACTIVATIONS = 1
    PARAMS = 2
    OUTPUTS = 3


class Engine(enum.IntEnum):
    INT8 = 0
    BINARY = 1


class OutputMode(enum.IntEnum):
    RAW_INT32 = 0     #: int32 accumulators (INT8 engine) or dot products (binary engine)
    REQUANT_INT8 = 1  #: INT8 engine: requantized int8 outputs
    THRESHOLDS = 2    #: binary engine: threshold counts (packed bits for one threshold)


class RunState(enum.IntEnum):
    IDLE = 0
    BUSY = 1
    DONE = 2
    ERROR = 3


class Counter(enum.IntEnum):
    """Performance counters, in the order COUNTERS returns them (u64 each)."""
    CYCLES = 0             #: cycles since reset
    INT8_BUSY = 1          #: cycles the INT8 engine was running
    BINARY_BUSY = 2        #: cycles the binary engine was running
    MACS = 3               #: int8 multiply-accumulates done (M*K*N per layer)
    BINARY_OPS = 4         #: binary multiply-accumulates (XNOR+popcount bits) done
    STALL_INPUT = 5        #: engine cycles waiting for input data
    STALL_OUTPUT = 6       #: engine cycles waiting for the output to drain
    FRAMES_RX = 7          #: well-formed frames received
    CRC_ERRORS = 8         #: frames dropped for a bad CRC or length
    COMMAND_ERRORS = 9     #: commands refused (bad command, out of range, busy, ...)


class FrameError(ValueError):
    """A frame that cannot be decoded (bad COBS, too short, bad CRC)."""


# ---------------------------------------------------------------------------------------------
# CRC and COBS

def crc32(data):
    """CRC-32 (ISO-HDLC, as ``zlib.crc32``) of ``data``."""
    return zlib.crc32(bytes(data)) & 0xFFFFFFFF


def cobs_encode(data):
    """Consistent Overhead Byte Stuffing: ``data`` without zero bytes, at most
    ``len(data) // 254 + 1`` bytes longer. The delimiter is not added."""
    data = bytes(data)
    out = bytearray()
    start = 0
    while True:
        zero = data.find(b"\x00", start, start + 254)
        if zero < 0:
            chunk = data[start:start + 254]
            if len(chunk) == 254:
                out.append(255)
                out += chunk
                start += 254
                continue
            out.append(len(chunk) + 1)
            out += chunk
            return bytes(out)
        out.append(zero - start + 1)
        out += data[start:zero]
        start = zero + 1


def cobs_decode(encoded):
    """Inverse of :func:`cobs_encode`; raises :class:`FrameError` on malformed input."""
    encoded = bytes(encoded)
    out = bytearray()
    index = 0
    while index < len(encoded):
        code = encoded[index]
        if code == 0:
            raise FrameError(f"zero byte inside a COBS frame at {index}")
        end = index + code
        if end > len(encoded):
            raise FrameError(f"COBS block of {code - 1} bytes runs past the frame end")
        block = encoded[index + 1:end]
        if 0 in block:
            raise FrameError("zero byte inside a COBS block")
        out += block
        index = end
        if code != 255 and index < len(encoded):
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Frames

@dataclass(frozen=True)
class Frame:
    """A decoded frame. ``status`` is ``None`` for commands."""
    seq: int
    opcode: int
    status: int | None
    body: bytes

    @property
    def is_reply(self):
        return self.status is not None


def encode_frame(seq, opcode, body=b"", status=None):
    """Build a wire frame: COBS(seq, opcode, [status,] body, crc32) + delimiter.

    ``status`` given makes a reply (``opcode`` then gets :data:`REPLY_FLAG`)."""
    if not 0 <= seq <= 255:
        raise ValueError(f"sequence number must be in 0..255, not {seq}")
    if status is None:
        head = bytes([seq, int(opcode)])
    else:
        head = bytes([seq, int(opcode) | REPLY_FLAG, int(status)])
    raw = head + bytes(body)
    raw += crc32(raw).to_bytes(CRC_BYTES, "little")
    return cobs_encode(raw) + bytes([DELIMITER])


def decode_frame(encoded, reply):
    """Decode one COBS frame (without its delimiter).

    Parameters
    ----------
    encoded : bytes
    reply : bool
        Whether a reply (with a status byte) is expected.

    Raises
    ------
    FrameError
        Malformed COBS, a frame too short, a CRC mismatch, or a reply flag that does not
        match ``reply``.
    """
    raw = cobs_decode(encoded)
    head = 3 if reply else 2
    if len(raw) < head + CRC_BYTES:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than {head + CRC_BYTES}")
    received = int.from_bytes(raw[-CRC_BYTES:], "little")
    computed = crc32(raw[:-CRC_BYTES])
    if received != computed:
        raise FrameError(f"CRC mismatch: frame says {received:#010x}, data gives "
                         f"{computed:#010x}")
    seq, opcode = raw[0], raw[1]
    if bool(opcode & REPLY_FLAG) != reply:
        raise FrameError(f"opcode {opcode:#04x} is not a {'reply' if reply else 'command'}")
    if reply:
        return Frame(seq, opcode & ~REPLY_FLAG, raw[2], raw[3:-CRC_BYTES])
    return Frame(seq, opcode, None, raw[2:-CRC_BYTES])


class FrameReader:
    """Splits a byte stream into frames on the delimiter; a bad frame is reported and the
    reader carries on with the next one.

    ``feed(data)`` returns a list of :class:`Frame` or :class:`FrameError` items, in order.
    Bytes after the last delimiter wait for the next call. A frame longer than ``max_encoded``
    is dropped as an error when its delimiter arrives (the buffer does not grow without bound).
    """

    def __init__(self, reply, max_encoded=None):
        self.reply = reply
        self.max_encoded = max_encoded or MAX_ENCODED_FRAME
        self._pending = bytearray()
        self._overflow = False

    def feed(self, data):
        items = []
        for chunk_end in _split_keep(bytes(data)):
            chunk, ended = chunk_end
            if not self._overflow:
                self._pending += chunk
                if len(self._pending) > self.max_encoded:
                    self._overflow = True
                    self._pending.clear()
            if ended:
                if self._overflow:
                    items.append(FrameError(f"frame longer than {self.max_encoded} bytes"))
                elif self._pending:
                    try:
                        items.append(decode_frame(self._pending, self.reply))
                    except FrameError as exc:
                        items.append(exc)
                self._pending.clear()
                self._overflow = False
        return items

    def clear(self):
        """Drop a partly received frame."""
        self._pending.clear()
        self._overflow = False


def _split_keep(data):
    """(chunk, ended_by_delimiter) pieces of ``data``."""
    start = 0
    while True:
        end = data.find(bytes([DELIMITER]), start)
        if end < 0:
            if start < len(data):
                yield data[start:], False
            return
        yield data[start:end], True
        start = end + 1


# ---------------------------------------------------------------------------------------------
# Bodies

class _Struct:
    """A little-endian fixed layout described by ``_FIELDS = ((name, struct code), ...)``.

    The gateware derives byte offsets from the same table (:meth:`offsets`)."""

    _FIELDS: tuple = ()

    @classmethod
    def format(cls):
        return "<" + "".join(code for _, code in cls._FIELDS)

    @classmethod
    def size(cls):
        return struct.calcsize(cls.format())

    @classmethod
    def offsets(cls):
        """``{field: (byte offset, size in bytes, signed)}``."""
        result, offset = {}, 0
        for name, code in cls._FIELDS:
            size = struct.calcsize("<" + code)
            result[name] = (offset, size, code.islower())
            offset += size
        return result

    def pack(self):
        return struct.pack(self.format(), *(int(getattr(self, name)) for name, _ in
                                            self._FIELDS))

    @classmethod
    def unpack(cls, body):
        if len(body) != cls.size():
            raise FrameError(f"{cls.__name__} body has {len(body)} bytes, expected "
                             f"{cls.size()}")
        return cls(*struct.unpack(cls.format(), body))


@dataclass(frozen=True)
class Capabilities(_Struct):
    """What the device reports for INFO: its configuration, never assumed by the host."""
    protocol_version: int
    engines: int            #: bit 0: INT8 engine present, bit 1: binary engine present
    rows: int               #: INT8 array rows
    cols: int               #: INT8 array columns
    pe: int                 #: binary engine output channels per cycle
    simd: int               #: binary engine input bits per cycle
    dsp_backend: int        #: see ``DSP_BACKENDS``
    max_payload: int        #: data bytes per WRITE/READ
    weights_bytes: int
    activations_bytes: int
    params_bytes: int
    outputs_bytes: int
    clock_hz: int
    baud: int               #: 0 when the link is the co-simulation byte stream
    binary_max_k: int       #: longest binary reduction (bits) the binary engine holds
    binary_max_n: int       #: most binary output channels the binary engine holds
    max_thresholds: int     #: most thresholds per binary output channel
    counter_width: int      #: bits per performance counter: they wrap at 2**counter_width

    _FIELDS = (("protocol_version", "B"), ("engines", "B"), ("rows", "B"), ("cols", "B"),
               ("pe", "B"), ("simd", "H"), ("dsp_backend", "B"), ("max_payload", "H"),
               ("weights_bytes", "I"), ("activations_bytes", "I"), ("params_bytes", "I"),
               ("outputs_bytes", "I"), ("clock_hz", "I"), ("baud", "I"),
               ("binary_max_k", "H"), ("binary_max_n", "H"), ("max_thresholds", "B"),
               ("counter_width", "B"))

    DSP_BACKENDS = ("generic", "ice40", "ecp5", "dsp48e2")

    @property
    def has_int8(self):
        return bool(self.engines & 1)

    @property
    def has_binary(self):
        return bool(self.engines & 2)

    def buffer_bytes(self, buffer):
        return (self.weights_bytes, self.activations_bytes, self.params_bytes,
                self.outputs_bytes)[BufferId(buffer)]


@dataclass(frozen=True)
class RunDescriptor(_Struct):
    """Body of RUN: one layer (or tile) for one engine.

    Offsets are byte offsets into the buffers. INT8 engine: ``a`` (m, k) int8 row-major at
    ``a_offset`` in ACTIVATIONS, ``w`` (k, n) at ``w_offset`` in WEIGHTS, per-channel
    parameters at ``p_offset`` in PARAMS, results at ``out_offset`` in OUTPUTS. Binary engine:
    packed bits; ``thresholds`` per channel in PARAMS. docs/PROTOCOL.md gives the layouts.
    """
    engine: int
    mode: int
    m: int
    k: int
    n: int
    a_offset: int
    w_offset: int
    p_offset: int
    out_offset: int
    zp_out: int
    act_min: int
    act_max: int
    thresholds: int

    _FIELDS = (("engine", "B"), ("mode", "B"), ("m", "H"), ("k", "H"), ("n", "H"),
               ("a_offset", "I"), ("w_offset", "I"), ("p_offset", "I"), ("out_offset", "I"),
               ("zp_out", "b"), ("act_min", "b"), ("act_max", "b"), ("thresholds", "B"))


@dataclass(frozen=True)
class DeviceStatus(_Struct):
    """Reply body of STATUS."""
    state: int          #: :class:`RunState`
    last_status: int    #: :class:`Status` of the last run
    run_cycles: int     #: cycles the last (or current) run has taken

    _FIELDS = (("state", "B"), ("last_status", "B"), ("run_cycles", "I"))


_ADDRESS = struct.Struct("<BI")
_READ = struct.Struct("<BIH")

#: Longest command body (WRITE with MAX_PAYLOAD data bytes).
MAX_COMMAND_BODY = _ADDRESS.size + MAX_PAYLOAD
#: Longest reply body (READ of MAX_PAYLOAD bytes, or COUNTERS).
MAX_REPLY_BODY = max(MAX_PAYLOAD, 8 * len(Counter), Capabilities.size())
#: Longest decoded frame (reply header + body + CRC).
MAX_FRAME = 3 + max(MAX_COMMAND_BODY, MAX_REPLY_BODY) + CRC_BYTES
#: Longest COBS-encoded frame, without the delimiter.
MAX_ENCODED_FRAME = MAX_FRAME + MAX_FRAME // 254 + 1


def write_body(buffer, offset, data):
    """Body of WRITE."""
    data = bytes(data)
    if not 1 <= len(data) <= MAX_PAYLOAD:
        raise ValueError(f"WRITE carries 1..{MAX_PAYLOAD} bytes, not {len(data)}")
    return _ADDRESS.pack(int(BufferId(buffer)), offset) + data


def read_body(buffer, offset, length):
    """Body of READ."""
    if not 1 <= length <= MAX_PAYLOAD:
        raise ValueError(f"READ returns 1..{MAX_PAYLOAD} bytes, not {length}")
    return _READ.pack(int(BufferId(buffer)), offset, length)


def parse_counters(body):
    """``{Counter: value}`` from a COUNTERS reply body."""
    if len(body) != 8 * len(Counter):
        raise FrameError(f"COUNTERS body has {len(body)} bytes, expected {8 * len(Counter)}")
    values = struct.unpack(f"<{len(Counter)}Q", body)
    return {counter: values[counter] for counter in Counter}
