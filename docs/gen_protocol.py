"""Generate docs/PROTOCOL.md from the protocol module's values.

Every frame shown is built by :mod:`qaccel.sw.protocol` and every reply is what the
reference device (:class:`qaccel.sim.refdevice.ReferenceDevice`, the specification of the RTL
top) answers, so the document cannot drift from the code: ``tests/test_top.py`` checks that
the committed file equals this script's output.

Usage: ``python docs/gen_protocol.py > docs/PROTOCOL.md``
"""

from __future__ import annotations

import textwrap

import numpy as np

from qaccel.hw.top import TopConfig
from qaccel.sim.refdevice import DeviceConfig, ReferenceDevice
from qaccel.sw import layout
from qaccel.sw import protocol as proto

_WIDTH = 16


def _hex(data):
    data = bytes(data)
    lines = [data[i:i + _WIDTH].hex(" ") for i in range(0, len(data), _WIDTH)]
    return "\n".join(lines) if lines else "(none)"


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(out)


def _enum_table(enum_cls, doc=None):
    rows = []
    for member in enum_cls:
        rows.append((member.name, f"`{int(member):#04x}`" if enum_cls is proto.Opcode
                     else int(member), (doc or {}).get(member, "")))
    return _table(("name", "value", "meaning"), rows)


def _layout_table(struct_cls):
    rows = []
    for name, (offset, size, is_signed) in struct_cls.offsets().items():
        kind = f"{'s' if is_signed else 'u'}{8 * size}"
        rows.append((f"`{name}`", offset, size, kind))
    return _table(("field", "byte offset", "bytes", "type"), rows)


class _Session:
    """Commands to a reference device, rendered as documentation."""

    def __init__(self):
        self.device = ReferenceDevice(DeviceConfig())
        self.seq = 0

    def show(self, title, opcode, body=b"", *, note="", seq=None, wire=None):
        if seq is None:
            self.seq += 1
            seq = self.seq
        if wire is None:
            wire = proto.encode_frame(seq, opcode, body)
            raw = bytes([seq, int(opcode)]) + bytes(body)
            raw += proto.crc32(raw).to_bytes(4, "little")
        else:
            raw = None
        reply_wire = self.device.feed(wire)
        replies = proto.FrameReader(reply=True).feed(reply_wire)
        out = [f"#### {title}", ""]
        if note:
            out += [textwrap.fill(note, 95), ""]
        if raw is not None:
            out += ["Command frame (seq, opcode, body, CRC-32):", "", "```", _hex(raw), "```",
                    ""]
        out += ["On the wire (COBS + delimiter):", "", "```", _hex(wire), "```", ""]
        for reply in replies:
            rraw = bytes([reply.seq, reply.opcode | proto.REPLY_FLAG, reply.status]) + \
                reply.body
            rraw += proto.crc32(rraw).to_bytes(4, "little")
            status = proto.Status(reply.status).name
            out += [f"Reply: seq {reply.seq}, opcode {reply.opcode | proto.REPLY_FLAG:#04x}, "
                    f"status {status}, {len(reply.body)} body bytes:", "",
                    "```", _hex(rraw), "```", "", "On the wire:", "", "```",
                    _hex(proto.encode_frame(reply.seq, reply.opcode, reply.body,
                                            status=reply.status)), "```", ""]
        return "\n".join(out), replies


def render():
    """The text of docs/PROTOCOL.md."""
    caps = DeviceConfig().capabilities()
    assert caps == TopConfig().capabilities()
    session = _Session()
    parts = [HEADER.strip(), ""]

    parts += ["## Constants", "", "### Opcodes", "", _enum_table(proto.Opcode, {
        proto.Opcode.INFO: "capabilities",
        proto.Opcode.WRITE: "write bytes into a buffer",
        proto.Opcode.READ: "read bytes from a buffer",
        proto.Opcode.RUN: "start a layer",
        proto.Opcode.STATUS: "run state",
        proto.Opcode.COUNTERS: "performance counters",
        proto.Opcode.RESET: "stop a run, clear counters and status",
        proto.Opcode.NAK: "reply only: a bad frame arrived",
    }), "", f"A reply's opcode is the command's with `REPLY_FLAG` = `{proto.REPLY_FLAG:#04x}`."
        f" Read-only commands (re-executed on a retry): "
        f"{', '.join(sorted(op.name for op in proto.IDEMPOTENT_OPCODES))}.", ""]
    parts += ["### Statuses", "", _enum_table(proto.Status, {
        proto.Status.OK: "done",
        proto.Status.CRC_ERROR: "the command frame was bad (with opcode NAK, seq 0)",
        proto.Status.BAD_COMMAND: "unknown opcode",
        proto.Status.BAD_LENGTH: "body length wrong for the opcode",
        proto.Status.OUT_OF_RANGE: "buffer id, offset or length outside the buffers",
        proto.Status.BUSY: "a run is in progress (WRITE, READ, RUN)",
        proto.Status.BAD_DESCRIPTOR: "RUN descriptor inconsistent with the hardware",
        proto.Status.NO_ENGINE: "the engine is not built",
    }), ""]
    parts += ["### Buffers, engines, output modes, run states", "",
              _enum_table(proto.BufferId), "", _enum_table(proto.Engine), "",
              _enum_table(proto.OutputMode, {
                  proto.OutputMode.RAW_INT32: "INT8 engine: int32 accumulators",
                  proto.OutputMode.REQUANT_INT8: "INT8 engine: requantized int8 outputs",
                  proto.OutputMode.THRESHOLDS: "binary engine: threshold counts",
              }), "", _enum_table(proto.RunState, {
                  proto.RunState.IDLE: "no run since reset",
                  proto.RunState.BUSY: "a run is in progress",
                  proto.RunState.DONE: "the last run finished; its results are in OUTPUTS",
                  proto.RunState.ERROR: "reserved: a RUN is checked before it starts (a bad "
                                        "one is refused with its status), so no device "
                                        "built here reports it",
              }), ""]
    parts += ["### Counters (COUNTERS reply order, u64 each)", "", _enum_table(proto.Counter, {
        proto.Counter.CYCLES: "cycles since reset",
        proto.Counter.INT8_BUSY: "cycles the INT8 engine was running",
        proto.Counter.BINARY_BUSY: "cycles the binary engine was running",
        proto.Counter.MACS: "int8 multiply-accumulates (m * k * n per layer)",
        proto.Counter.BINARY_OPS: "binary multiply-accumulates (m * k * n per layer)",
        proto.Counter.STALL_INPUT: "engine cycles waiting for input data",
        proto.Counter.STALL_OUTPUT: "engine cycles waiting for the output to drain",
        proto.Counter.FRAMES_RX: "well-formed frames received",
        proto.Counter.CRC_ERRORS: "bad frames (each answered by a NAK)",
        proto.Counter.COMMAND_ERRORS: "replies with a status other than OK",
    }), "",
        COUNTER_NOTES.strip(), ""]
    parts += ["## Body layouts (little-endian)", "", "### Capabilities (INFO reply, "
              f"{proto.Capabilities.size()} bytes)", "", _layout_table(proto.Capabilities), "",
              "`engines`: bit 0 INT8, bit 1 binary. `dsp_backend`: index into "
              f"{', '.join(proto.Capabilities.DSP_BACKENDS)}.", "",
              f"### RunDescriptor (RUN body, {proto.RunDescriptor.size()} bytes)", "",
              _layout_table(proto.RunDescriptor), "",
              f"### DeviceStatus (STATUS reply, {proto.DeviceStatus.size()} bytes)", "",
              _layout_table(proto.DeviceStatus), "",
              "### WRITE and READ", "",
              "WRITE: `buffer u8, offset u32, data` (1 to "
              f"{proto.MAX_PAYLOAD} bytes). READ: `buffer u8, offset u32, length u16` "
              f"(1 to {proto.MAX_PAYLOAD}); the reply body is the data.", ""]

    parts += ["## Every command, byte by byte", "",
              "The device is the default configuration (`TopConfig()`, the same as the "
              "reference device's `DeviceConfig()`); frames start from a fresh device.", ""]
    text, _ = session.show("INFO", proto.Opcode.INFO)
    parts.append(text)
    text, _ = session.show("WRITE", proto.Opcode.WRITE, proto.write_body(
        proto.BufferId.PARAMS, 0x10, bytes([0x01, 0x00, 0x02, 0x03])),
        note="Four bytes (one of them zero, which COBS removes from the wire) to PARAMS at "
             "byte 0x10.")
    parts.append(text)
    text, _ = session.show("READ", proto.Opcode.READ, proto.read_body(proto.BufferId.PARAMS,
                                                                      0x10, 4))
    parts.append(text)
    # an INT8 layer: 2x3 by 3x2, raw outputs
    a = np.array([[1, -2, 3], [4, 5, -6]], np.int8)
    w = np.array([[1, 2], [3, 4], [5, -6]], np.int8)
    for buffer, data in ((proto.BufferId.ACTIVATIONS, layout.int8_activation_bytes(a, 4)),
                         (proto.BufferId.WEIGHTS, layout.int8_weight_bytes(w, 4)),
                         (proto.BufferId.PARAMS, layout.int8_params_bytes([100, -100], 0, 0))):
        session.device.feed(proto.encode_frame(99, proto.Opcode.WRITE,
                                               proto.write_body(buffer, 0, data)))
    descriptor = proto.RunDescriptor(
        engine=proto.Engine.INT8, mode=proto.OutputMode.RAW_INT32, m=2, k=3, n=2,
        a_offset=0, w_offset=0, p_offset=0, out_offset=0, zp_out=0, act_min=-128,
        act_max=127, thresholds=0)
    text, _ = session.show("RUN", proto.Opcode.RUN, descriptor.pack(), note=(
        "An INT8 layer a (2x3) @ w (3x2) + bias (100, -100), raw int32 outputs, after WRITEs "
        "of the activations, weights and parameters in their layouts (not shown). The device "
        "replies once the run is accepted; STATUS then says BUSY until it is done."))
    parts.append(text)
    text, _ = session.show("STATUS", proto.Opcode.STATUS, note=(
        "After the run (the RTL measures run_cycles; the reference device reports its own "
        "estimate)."))
    parts.append(text)
    text, _ = session.show("READ of the outputs", proto.Opcode.READ, proto.read_body(
        proto.BufferId.OUTPUTS, 0, 16), note="(m, n) int32 row-major: "
        f"{(a.astype(int) @ w.astype(int) + [100, -100]).tolist()}.")
    parts.append(text)
    text, _ = session.show("COUNTERS", proto.Opcode.COUNTERS, note=(
        "The reference device has no clock: its cycle counters read 0; the RTL's count."))
    parts.append(text)
    text, _ = session.show("RESET", proto.Opcode.RESET)
    parts.append(text)
    session.seq += 1
    bad = bytearray(proto.cobs_decode(proto.encode_frame(session.seq, proto.Opcode.INFO)[:-1]))
    bad[-1] ^= 0x01
    text, _ = session.show("A frame with a bad CRC: NAK", proto.Opcode.INFO,
                           wire=proto.cobs_encode(bytes(bad)) + b"\x00", note=(
                               "The last CRC byte is wrong. Every bad frame (CRC, COBS, too "
                               "short, too long, a reply) gets a NAK with seq 0 and status "
                               "CRC_ERROR, in arrival order with the other replies."))
    parts.append(text)
    text, _ = session.show("An unknown opcode", 0x09)
    parts.append(text)
    text, _ = session.show("A refused READ", proto.Opcode.READ, proto.read_body(
        proto.BufferId.OUTPUTS, caps.outputs_bytes - 2, 4),
        note="Two bytes past the end of OUTPUTS: nothing is read.")
    parts.append(text)
    session.seq += 1
    seq = session.seq
    body = proto.write_body(proto.BufferId.WEIGHTS, 0, b"\x2a")
    text, _ = session.show("A retried WRITE (same seq)", proto.Opcode.WRITE, body, seq=seq)
    parts.append(text)
    text, _ = session.show("... sent again with the same seq", proto.Opcode.WRITE, body,
                           seq=seq, note="The cached status is returned and the data is not "
                                         "written again.")
    parts.append(text)

    parts += [LAYOUTS.strip(), "", RESTRICTIONS.strip(), "", HARDWARE.strip(), ""]
    config = TopConfig()
    bits = config.memory_bits()
    parts += ["### Memory of the default configuration", "",
              _table(("memory", "bits", "bytes"),
                     [(name, value, value // 8) for name, value in bits.items()]
                     + [("total", sum(bits.values()), sum(bits.values()) // 8)]), "",
              SIZING.strip(), ""]
    return "\n".join(parts).rstrip() + "\n"


HEADER = f"""
# The qaccel wire protocol

<!-- Generated by docs/gen_protocol.py from qaccel.sw.protocol and the reference device;
     do not edit by hand (tests/test_top.py checks it is up to date). -->

One definition, `sw/protocol.py`, is imported by the gateware (`hw/sequencer.py`,
`hw/framing.py`) and by the host driver (`sw/driver.py`). The behaviour of the device is
specified by the reference device `sim/refdevice.py`; the RTL top (`hw/top.py`) answers every
command byte for byte like it, with the differences listed under "Restrictions and
differences".

## Framing

A frame is `seq, opcode, [status,] body..., crc32`: commands (host to device) have no status
byte, replies carry `opcode | {proto.REPLY_FLAG:#04x}` and a status. `crc32` is the CRC-32 of
everything before it (`zlib.crc32`: reflected polynomial 0x04C11DB7, init and final XOR
0xFFFFFFFF), little-endian. On the wire every frame is COBS-encoded (so it holds no zero byte)
and followed by the delimiter `0x00`. A receiver drops a frame with bad COBS, fewer than
{2 + proto.CRC_BYTES} decoded bytes, more than {proto.MAX_FRAME} decoded bytes (the device's frame
buffer; the protocol module's `FrameReader` limits the encoded length to
{proto.MAX_ENCODED_FRAME}), a bad CRC, or (for a command) the reply flag, and starts afresh
after the next delimiter. Two delimiters in a row are an empty frame: ignored.

The host numbers each new command (`seq` 0-255, wrapping) and repeats the number when it
retries. The device does not execute a WRITE, RUN or RESET twice in a row: when one
arrives with the `seq` and opcode of the last state-changing command executed, the cached status
is returned and nothing is done. INFO, READ, STATUS and COUNTERS are executed every time. All
multi-byte integers are little-endian.

The device answers every good frame with exactly one reply and every bad frame with one NAK
(`seq` 0, opcode NAK, status CRC_ERROR), in arrival order. A refused command changes nothing.

The host driver sends the WRITEs of a bulk write in batches (`window`, 8 by default) back to
back and then collects their replies; after a fault it sends the ones without a good reply
again, together. A WRITE that is repeated after another one may run twice, which is
harmless: the batch's WRITEs put fixed bytes into disjoint ranges. Every other command waits
for its reply before the next one is sent.
"""

COUNTER_NOTES = """
CYCLES counts clock cycles since the last reset (power-on or RESET); INT8_BUSY and
BINARY_BUSY the cycles an engine controller was running; MACS and BINARY_OPS the useful work
(`m * k * n` per layer, added when the run finishes); STALL_INPUT the cycles an engine had
work but no operand; STALL_OUTPUT the cycles an engine held a result its output path could not
take; FRAMES_RX the good frames; CRC_ERRORS the bad frames (each answered by a NAK);
COMMAND_ERRORS the replies with a status other than OK (BUSY included). Every counter is
`counter_width` bits (INFO; `TopConfig.counter_width` in the RTL, default 40), read
zero-extended, and wraps at `2**counter_width`: a 16-bit CYCLES counter of a 24 MHz device
wraps every 2.7 ms, so the host can only take differences over short spans from it. The
reference device wraps its counters the same way.
"""

LAYOUTS = """
## Tensor layouts in the buffers (`sw/layout.py`)

INT8 engine (`rows x cols` array):

- activations `a (m, k)`: row tiles of `rows` rows; in a tile one `rows`-byte word per
  reduction step: byte `(t * k + kk) * rows + r` holds `a[t * rows + r, kk]` (rows past `m`
  are 0). Region: `ceil(m / rows) * rows * k` bytes at `a_offset`.
- weights `w (k, n)`: column tiles of `cols` columns: byte `(t * k + kk) * cols + c` holds
  `w[kk, t * cols + c]`. Region: `ceil(n / cols) * cols * k` bytes at `w_offset`.
- parameters: 12 bytes per output channel: bias i32, m0 i32, shift i8, 3 bytes of padding.
  Region: `12 * n` bytes at `p_offset` (the bias is used in both output modes).
- outputs `(m, n)` row-major: int32 (`RAW_INT32`: accumulator + bias, wrapping) or int8
  (`REQUANT_INT8`: gemmlowp requantization with `zp_out`, `act_min`, `act_max`).

Binary engine (`pe` channels x `simd` bits per cycle):

- activations `(m, k)` in {-1, +1}: one row per input vector, `ceil(k / simd)` words of
  `simd` bits, bit `i` of the row is element `i` (1 = +1), padding bits 0.
- weights `(n, k)`: one row per output channel, same packing.
- parameters: thresholds `n x T` int32, channel-major (mode THRESHOLDS, `thresholds` = T).
- outputs: raw dot products `(m, n)` int32 (mode RAW_INT32, T = 0); with T = 1 packed bits
  in the activation layout (the next binary layer's input as is); with T > 1 `(m, n)` uint8
  counts of the thresholds reached.
"""

RESTRICTIONS = f"""
## Restrictions and differences

### RUN validation (in this order; the first failure is the status, nothing changes)

1. body of {proto.RunDescriptor.size()} bytes, else BAD_LENGTH;
2. `engine` 0 or 1, else BAD_DESCRIPTOR; the engine built, else NO_ENGINE;
3. INT8: `mode` RAW_INT32 or REQUANT_INT8, `m, k, n >= 1`, `act_min <= act_max`;
   binary: `mode` RAW_INT32 or THRESHOLDS, `m, k, n >= 1`, `k <= binary_max_k`,
   `n <= binary_max_n`, THRESHOLDS exactly when `thresholds > 0`,
   `thresholds <= max_thresholds`; and the **alignment** below; else BAD_DESCRIPTOR;
4. every region (activations, weights, parameters when used, outputs) inside its buffer,
   else OUT_OF_RANGE;
5. INT8 REQUANT_INT8: every channel's `m0 >= 0` and `shift` in [-31, 30], else
   BAD_DESCRIPTOR.

### Alignment (a restriction of the hardware, also in the reference device)

The engines read a whole word per cycle, so offsets are word-aligned:

| engine | `a_offset` | `w_offset` | `p_offset` | `out_offset` |
| --- | --- | --- | --- | --- |
| INT8 | multiple of `rows` | multiple of `cols` | multiple of 4 | multiple of 4 for RAW_INT32 |
| binary | multiple of `simd / 8` | multiple of `simd / 8` | multiple of 4 when T > 0 | multiple of 4 for T = 0 |

### The RTL and the reference device

The reference device finishes a run at once; the RTL differs only where time shows:

- RUN replies OK when the run is **accepted**; STATUS then reports `BUSY` until the last
  output is written, then `DONE`.
- While a run is in progress WRITE, READ and RUN are refused with `BUSY` (and, since nothing
  was executed, not recorded for duplicate suppression: the same command sent again after the
  run is executed). A retry of the RUN itself (same seq) gets its cached OK. INFO, STATUS,
  COUNTERS and RESET are answered during a run; RESET stops it (outputs written so far stay).
- `run_cycles` and the cycle counters (CYCLES, INT8_BUSY, BINARY_BUSY, STALL_INPUT,
  STALL_OUTPUT) are measured; MACS and BINARY_OPS grow when a run finishes.
- The counters live in block RAM and are brought up to date by a sweep (one 16-bit word per
  cycle): a COUNTERS reply shows each counter as it was a few cycles (`words + 2`, 4 to 6)
  before the sweep reached it, read whole (no byte torn from a later value).
- The frame buffer holds {proto.MAX_FRAME} decoded bytes; a longer frame is a bad frame (NAK) in
  both (the reference device checks the decoded length too).
- Bad frames waiting for their NAK are counted; when 13 are waiting the device stops taking
  input bytes until some are answered (no loss on the byte stream; on a UART without flow
  control a long burst of bad frames could overrun the receive FIFO).
"""

HARDWARE = """
## Hardware notes (`hw/top.py`)

`AcceleratorTop(TopConfig)` ports: `rx` (`In(stream.Signature(8))`), `tx`
(`Out(stream.Signature(8))`), `busy`, `activity`, `error`; `UARTAcceleratorTop` has `uart_rx`,
`uart_tx`, `busy`, `activity`, `error`. Inside: `FrameDecoder` -> `CommandSequencer` ->
`FrameEncoder`; `BufferBank` (WEIGHTS, ACTIVATIONS, PARAMS, OUTPUTS memories: byte access for
the host, a word per cycle for the engines); `Int8Controller` (systolic array + requantizer)
and `BinaryController` (binary engine); `PerformanceCounters`.

- WRITE and READ move one byte per cycle. The buffers answer a host byte read two cycles
  after its address (block RAM, then each buffer's byte registered before the buffer
  multiplexer), so reply bodies (READ data, INFO, STATUS, COUNTERS) are fetched ahead into
  a 4-byte FIFO.
- The sequencer registers each check before acting on it (command decode, bounds, descriptor
  fields, each region in four steps), a few cycles per command, so that no check shares a
  clock period with the state machine. RUN validation takes about 125 cycles (six 17-cycle
  shift-add products, the region checks) plus two cycles per channel for the
  requantization parameter scan. No `*` is synthesized outside the engines.
- The INT8 controller feeds one activation word and one weight word per cycle through a
  register slice into the array, so a K step costs one cycle: a 2x4 array ran a K = 256 tile at
  7.56 MACs per cycle (95 % of its 8 PEs), measured with the MACS and INT8_BUSY counters.
  Requantized outputs cost `mult_cycles` each in the requantizer (37 to 67 cycles with
  `requantizer="serial"`).
"""

SIZING = """
On an iCE40 UP5K (5,280 logic cells, 30 EBR of 4 kbit, 4 SPRAM of 32 KiB, 8 SB_MAC16): the
four buffers of the default configuration (13 KiB) alone need 26 EBR, and the binary engine's
default weight memory (`binary_max_k = 1024`, `binary_max_n = 64`, `pe = 4`, `simd = 32`)
another 16, so an iCEBreaker build takes smaller buffers and binary maxima, and keeps
WEIGHTS and ACTIVATIONS in the SPRAM (`spram=True`: one shared port each). `bench/top.py`
synthesizes configurations with `synth_ice40 -dsp` (no placement); at the time of writing:

| configuration (4x4 array on SB_MAC16, 1 KiB buffers, 32-bit counters) | LUT4 | FF | EBR | SB_MAC16 |
| --- | --- | --- | --- | --- |
| INT8 and binary engines (binary 256 x 32, 2 thresholds) | 7,599 | 4,550 | 30 | 8 |
| INT8 engine only | 6,115 | 3,876 | 15 | 8 |

Neither fit the UP5K's logic cells: the 4x4 array's fabric accumulators and hold registers
(about 1,600 LUT4 and 1,650 FF), the requantizer (about 900 LUT4) and the command sequencer
(about 1,500 LUT4) dominated. With the small forms of the INT8 engine's parts (the serial
requantizer, no hold registers, operand skid or output buffer, broadcast operands, a
bit-serial CRC; `TopConfig` options) and the counters in block RAM, the iCEBreaker builds
the INT8 engine alone at 2x4, or at 4x4 in all 8 SB_MAC16 (5243 of 5280 logic cells;
docs/BOARDS.md); INT8 with the binary engine still does not fit (the smallest build of both
took 5331 cells).
"""


if __name__ == "__main__":
    print(render(), end="")
