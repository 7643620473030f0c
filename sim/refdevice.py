"""Reference model of the accelerator top at the protocol level.

It answers the wire protocol exactly as the RTL top must (statuses, bounds checks, duplicate
suppression by sequence number, NAKs for bad frames, counters) and computes results with the
golden model. Two uses:

- the scoreboard of the top's system tests: the same bytes go to the RTL and to this model,
  and the replies must agree;
- a fast stand-in device for the driver's own logic (tiling, retries, validation), through
  :class:`ReferenceTransport`. The driver's tests also run against the RTL co-simulation.

NumPy only, like the golden model it uses.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from qaccel.sw import golden, layout
from qaccel.sw import protocol as proto
from qaccel.sw.transport import Transport

__all__ = ["DeviceConfig", "ReferenceDevice", "ReferenceTransport"]


@dataclass(frozen=True)
class DeviceConfig:
    """The configuration a device reports through INFO."""
    rows: int = 4
    cols: int = 4
    pe: int = 4
    simd: int = 32
    int8: bool = True
    binary: bool = True
    dsp_backend: str = "generic"
    weights_bytes: int = 4096
    activations_bytes: int = 4096
    params_bytes: int = 1024
    outputs_bytes: int = 4096
    clock_hz: int = 12_000_000
    baud: int = 0
    binary_max_k: int = 1024
    binary_max_n: int = 64
    max_thresholds: int = 4
    counter_width: int = 40

    def capabilities(self):
        return proto.Capabilities(
            protocol_version=proto.PROTOCOL_VERSION,
            engines=int(self.int8) | (int(self.binary) << 1),
            rows=self.rows, cols=self.cols, pe=self.pe, simd=self.simd,
            dsp_backend=proto.Capabilities.DSP_BACKENDS.index(self.dsp_backend),
            max_payload=proto.MAX_PAYLOAD,
            weights_bytes=self.weights_bytes, activations_bytes=self.activations_bytes,
            params_bytes=self.params_bytes, outputs_bytes=self.outputs_bytes,
            clock_hz=self.clock_hz, baud=self.baud, binary_max_k=self.binary_max_k,
            binary_max_n=self.binary_max_n, max_thresholds=self.max_thresholds,
            counter_width=self.counter_width)


_STATE_CHANGING = frozenset({proto.Opcode.WRITE, proto.Opcode.RUN, proto.Opcode.RESET})


class _Refused(Exception):
    def __init__(self, status):
        self.status = status


class ReferenceDevice:
    """Bytes in, reply bytes out: :meth:`feed`."""

    def __init__(self, config=DeviceConfig()):
        self.config = config
        self.capabilities = config.capabilities()
        self.buffers = {buffer: bytearray(config.capabilities().buffer_bytes(buffer))
                        for buffer in proto.BufferId}
        self.counters = dict.fromkeys(proto.Counter, 0)
        self._reader = proto.FrameReader(reply=False)
        self._last = None  # (seq, opcode, status) of the last state-changing command
        self.state = proto.RunState.IDLE
        self.last_status = proto.Status.OK
        self.run_cycles = 0

    # -- link ----------------------------------------------------------------------------

    def feed(self, data):
        """Process received wire bytes; returns the reply bytes."""
        out = bytearray()
        for item in self._reader.feed(data):
            if isinstance(item, proto.Frame) and \
                    2 + len(item.body) + proto.CRC_BYTES > proto.MAX_FRAME:
                # The device's frame buffer holds MAX_FRAME decoded bytes; the reader limits
                # the encoded length only, which lets a few longer frames through.
                item = proto.FrameError(f"frame longer than {proto.MAX_FRAME} decoded bytes")
            if isinstance(item, proto.FrameError):
                self.counters[proto.Counter.CRC_ERRORS] += 1
                out += proto.encode_frame(0, proto.Opcode.NAK, status=proto.Status.CRC_ERROR)
                continue
            self.counters[proto.Counter.FRAMES_RX] += 1
            status, body = self._execute(item)
            if status != proto.Status.OK:
                self.counters[proto.Counter.COMMAND_ERRORS] += 1
            out += proto.encode_frame(item.seq, item.opcode, body, status=status)
        return bytes(out)

    def _execute(self, frame):
        try:
            opcode = proto.Opcode(frame.opcode)
        except ValueError:
            return proto.Status.BAD_COMMAND, b""
        if opcode == proto.Opcode.NAK:
            return proto.Status.BAD_COMMAND, b""
        if opcode in _STATE_CHANGING and self._last is not None \
                and self._last[:2] == (frame.seq, opcode):
            return self._last[2], b""  # a retry of a command already executed
        try:
            body = getattr(self, f"_do_{opcode.name.lower()}")(frame.body)
            status = proto.Status.OK
        except _Refused as refusal:
            body, status = b"", refusal.status
        if opcode in _STATE_CHANGING:
            self._last = (frame.seq, opcode, status)
        return status, body

    # -- commands --------------------------------------------------------------------------

    @staticmethod
    def _expect_length(body, size):
        if len(body) != size:
            raise _Refused(proto.Status.BAD_LENGTH)

    def _span(self, buffer_id, offset, length):
        try:
            buffer = self.buffers[proto.BufferId(buffer_id)]
        except ValueError:
            raise _Refused(proto.Status.OUT_OF_RANGE) from None
        if offset + length > len(buffer):
            raise _Refused(proto.Status.OUT_OF_RANGE)
        return buffer

    def _do_info(self, body):
        self._expect_length(body, 0)
        return self.capabilities.pack()

    def _do_write(self, body):
        if not 5 + 1 <= len(body) <= 5 + proto.MAX_PAYLOAD:
            raise _Refused(proto.Status.BAD_LENGTH)
        buffer_id, offset = body[0], int.from_bytes(body[1:5], "little")
        data = body[5:]
        buffer = self._span(buffer_id, offset, len(data))
        buffer[offset:offset + len(data)] = data
        return b""

    def _do_read(self, body):
        self._expect_length(body, 7)
        buffer_id, offset = body[0], int.from_bytes(body[1:5], "little")
        length = int.from_bytes(body[5:7], "little")
        if not 1 <= length <= proto.MAX_PAYLOAD:
            raise _Refused(proto.Status.BAD_LENGTH)
        buffer = self._span(buffer_id, offset, length)
        return bytes(buffer[offset:offset + length])

    def _do_status(self, body):
        self._expect_length(body, 0)
        return proto.DeviceStatus(self.state, self.last_status, self.run_cycles).pack()

    def _do_counters(self, body):
        self._expect_length(body, 0)
        mask = (1 << self.config.counter_width) - 1   # the device's counters wrap
        return b"".join((self.counters[c] & mask).to_bytes(8, "little") for c in proto.Counter)

    def _do_reset(self, body):
        self._expect_length(body, 0)
        self.counters = dict.fromkeys(proto.Counter, 0)
        self.state, self.last_status, self.run_cycles = proto.RunState.IDLE, proto.Status.OK, 0
        return b""

    def _do_run(self, body):
        self._expect_length(body, proto.RunDescriptor.size())
        d = proto.RunDescriptor.unpack(body)
        if d.engine == proto.Engine.INT8 and self.config.int8:
            self._run_int8(d)
        elif d.engine == proto.Engine.BINARY and self.config.binary:
            self._run_binary(d)
        elif d.engine in (proto.Engine.INT8, proto.Engine.BINARY):
            raise _Refused(proto.Status.NO_ENGINE)
        else:
            raise _Refused(proto.Status.BAD_DESCRIPTOR)
        self.state, self.last_status = proto.RunState.DONE, proto.Status.OK
        return b""

    def _region(self, buffer_id, offset, length):
        buffer = self.buffers[buffer_id]
        if offset + length > len(buffer):
            raise _Refused(proto.Status.OUT_OF_RANGE)
        return bytes(buffer[offset:offset + length])

    def _run_int8(self, d):
        rows, cols = self.config.rows, self.config.cols
        if d.mode not in (proto.OutputMode.RAW_INT32, proto.OutputMode.REQUANT_INT8) \
                or min(d.m, d.k, d.n) < 1 or d.act_min > d.act_max:
            raise _Refused(proto.Status.BAD_DESCRIPTOR)
        # Word alignment the hardware needs (docs/PROTOCOL.md, "Restrictions").
        if d.a_offset % rows or d.w_offset % cols or d.p_offset % 4 \
                or (d.mode == proto.OutputMode.RAW_INT32 and d.out_offset % 4):
            raise _Refused(proto.Status.BAD_DESCRIPTOR)
        row_tiles, col_tiles = -(-d.m // rows), -(-d.n // cols)
        a_raw = self._region(proto.BufferId.ACTIVATIONS, d.a_offset, row_tiles * d.k * rows)
        w_raw = self._region(proto.BufferId.WEIGHTS, d.w_offset, col_tiles * d.k * cols)
        p_raw = self._region(proto.BufferId.PARAMS, d.p_offset,
                             d.n * layout.PARAM_RECORD_BYTES)
        requant = d.mode == proto.OutputMode.REQUANT_INT8
        out_len = d.m * d.n * (1 if requant else 4)
        self._region(proto.BufferId.OUTPUTS, d.out_offset, out_len)
        a = np.frombuffer(a_raw, np.int8).reshape(row_tiles, d.k, rows).transpose(0, 2, 1)
        a = a.reshape(row_tiles * rows, d.k)[:d.m]
        w = np.frombuffer(w_raw, np.int8).reshape(col_tiles, d.k, cols).transpose(1, 0, 2)
        w = w.reshape(d.k, col_tiles * cols)[:, :d.n]
        params = np.frombuffer(p_raw, dtype=layout._PARAM_DTYPE)
        acc = golden.gemm_int8(np.ascontiguousarray(a), np.ascontiguousarray(w))
        acc = ((acc.astype(np.int64) + params["bias"] + 2**31) % 2**32 - 2**31).astype(np.int32)
        if requant:
            if (params["m0"] < 0).any() or (params["shift"] < golden.SHIFT_MIN).any() \
                    or (params["shift"] > golden.SHIFT_MAX).any():
                raise _Refused(proto.Status.BAD_DESCRIPTOR)
            out = golden.requantize(acc, params["m0"].astype(np.int32),
                                    params["shift"].astype(np.int32), d.zp_out, d.act_min,
                                    d.act_max).tobytes()
        else:
            out = acc.astype("<i4").tobytes()
        self.buffers[proto.BufferId.OUTPUTS][d.out_offset:d.out_offset + out_len] = out
        self.counters[proto.Counter.MACS] += d.m * d.k * d.n
        self.run_cycles = row_tiles * col_tiles * (d.k + rows + cols)

    def _run_binary(self, d):
        config = self.config
        t_count = d.thresholds
        if d.mode not in (proto.OutputMode.RAW_INT32, proto.OutputMode.THRESHOLDS) \
                or min(d.m, d.k, d.n) < 1 or d.k > config.binary_max_k \
                or d.n > config.binary_max_n \
                or (d.mode == proto.OutputMode.THRESHOLDS) != (t_count > 0) \
                or t_count > config.max_thresholds:
            raise _Refused(proto.Status.BAD_DESCRIPTOR)
        # Word alignment the hardware needs (docs/PROTOCOL.md, "Restrictions").
        word = config.simd // 8
        if d.a_offset % word or d.w_offset % word or (t_count > 0 and d.p_offset % 4) \
                or (t_count == 0 and d.out_offset % 4):
            raise _Refused(proto.Status.BAD_DESCRIPTOR)
        row_bytes = layout.binary_row_bytes(d.k, config.simd)
        a_raw = self._region(proto.BufferId.ACTIVATIONS, d.a_offset, d.m * row_bytes)
        w_raw = self._region(proto.BufferId.WEIGHTS, d.w_offset, d.n * row_bytes)
        a = layout.unpack_binary_rows(a_raw, d.m, d.k, config.simd)
        w = layout.unpack_binary_rows(w_raw, d.n, d.k, config.simd)
        dot = golden.binary_gemm(golden.pack_bits(a), golden.pack_bits(w), d.k)
        if t_count == 0:
            out = dot.astype("<i4").tobytes()
        else:
            t_raw = self._region(proto.BufferId.PARAMS, d.p_offset, d.n * t_count * 4)
            t = np.frombuffer(t_raw, dtype="<i4").reshape(d.n, t_count)
            counts = golden.thresholds(dot, t)
            if t_count == 1:
                out = layout.pack_binary_rows(2 * counts - 1, config.simd)
            else:
                out = counts.astype(np.uint8).tobytes()
        self._region(proto.BufferId.OUTPUTS, d.out_offset, len(out))
        self.buffers[proto.BufferId.OUTPUTS][d.out_offset:d.out_offset + len(out)] = out
        self.counters[proto.Counter.BINARY_OPS] += d.m * d.k * d.n
        self.run_cycles = d.m * -(-d.n // config.pe) * -(-d.k // config.simd)


class ReferenceTransport(Transport):
    """A transport whose far end is a :class:`ReferenceDevice` (no simulator)."""

    def __init__(self, device=None):
        self.device = device or ReferenceDevice()
        self._pending = deque()
        self.description = "reference-model"

    def write(self, data):
        reply = self.device.feed(data)
        if reply:
            self._pending.append(reply)

    def read(self, timeout):
        if self._pending:
            return self._pending.popleft()
        time.sleep(timeout)  # nothing will arrive: behave like a quiet line
        return b""
