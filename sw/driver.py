"""The qaccel host driver: streams quantized tensors to the accelerator and reads results.

Needs only NumPy and pyserial. The same :class:`Accelerator` drives a board over its UART, a
co-simulation of the RTL (embedded, over a socket pair, or over TCP), or a co-simulation's
pseudo-terminal through the serial code path.

>>> from qaccel.sw import Accelerator
>>> with Accelerator.open("sim") as acc:            # doctest: +SKIP
...     y = acc.gemm(a, w, bias=b, m0=m0, shift=shift)

URLs
----
``sim``
    The embedded co-simulation of the default configuration (built on first use).
``sim:<config>``
    Another configuration (see :mod:`qaccel.sim.configs`).
``serial:/dev/ttyUSB1?baud=3000000``
    A board (or a co-simulation's pseudo-terminal).
``tcp://host:port``
    A co-simulation or bridge running elsewhere.

Link robustness: every command carries a sequence number and a CRC-32; a reply that does not
arrive within ``timeout`` seconds, arrives corrupted, or is a NAK makes the driver send the
same command again (same sequence number, so the device does not execute a state change twice
in a row),
up to ``retries`` times; then :class:`QaccelLinkError` (or :class:`QaccelTimeoutError` when
nothing came back at all). Bulk writes send ``window`` WRITE frames back to back before
collecting their replies; after a fault among them the driver sends those without a good
reply again, together. The device may then execute one of those WRITEs twice, which changes
nothing: the WRITEs of one :meth:`Accelerator.write_buffer` call put the same bytes into
disjoint ranges. Frames are logged as hex at DEBUG level on the ``qaccel.driver``
logger.
"""

from __future__ import annotations

import collections
import logging
import time
import urllib.parse
from dataclasses import dataclass

import numpy as np

from . import layout
from . import protocol as proto
from .errors import QaccelDeviceError, QaccelLinkError, QaccelTimeoutError
from .transport import SerialTransport, TcpTransport

__all__ = ["Accelerator", "LinkStats"]

logger = logging.getLogger("qaccel.driver")

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


@dataclass
class LinkStats:
    """What the link has cost so far."""
    commands: int = 0
    retries: int = 0
    bad_frames: int = 0      #: replies dropped for bad COBS/CRC
    naks: int = 0            #: commands the device reported as corrupted
    timeouts: int = 0        #: attempts that got no reply in time
    bytes_out: int = 0
    bytes_in: int = 0
    payload_out: int = 0     #: WRITE data bytes
    payload_in: int = 0      #: READ data bytes


def _check_int_array(name, value, dtype, ndim):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array of {np.dtype(dtype).name}, "
                        f"not {type(value).__name__}")
    if value.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, not {value.dtype}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, not of shape {value.shape}")


def _check_range(name, value, low, high):
    value = np.asarray(value)
    if value.size and (value.min() < low or value.max() > high):
        bad = value[(value < low) | (value > high)].ravel()[0]
        raise ValueError(f"{name} must be in [{low}, {high}]; found {bad}")


def _per_channel(name, value, n, low, high):
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, not {array.dtype}")
    if array.ndim == 0:
        array = np.full(n, array)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one per output column), "
                         f"not {array.shape}")
    _check_range(name, array, low, high)
    return array.astype(np.int64)


class Accelerator:
    """A connection to one qaccel device.

    Parameters
    ----------
    transport : Transport
        Byte transport (see :mod:`qaccel.sw.transport`); closed with the accelerator.
    timeout : float
        Seconds to wait for each reply.
    retries : int
        Extra attempts per command after a lost, corrupted or refused-as-corrupted frame.
    run_timeout : float
        Seconds a RUN may take before :class:`QaccelTimeoutError`.
    window : int
        WRITE frames :meth:`write_buffer` sends back to back before it collects their
        replies (1: wait for each reply). The device takes WRITE frames as fast as the link
        brings them and answers each with a short reply, so a window does not overrun a
        board's UART; it hides the round trips (USB latency on a board, the harness's
        turnaround in a co-simulation).
    """

    def __init__(self, transport, *, timeout=2.0, retries=8, run_timeout=600.0, window=8):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, not {window!r}")
        self._transport = transport
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.run_timeout = float(run_timeout)
        self.window = window
        self.stats = LinkStats()
        self._reader = proto.FrameReader(reply=True)
        self._backlog = collections.deque()  # reply items read but not yet looked at
        self._seq = int(time.monotonic_ns()) & 0xFF
        self._closed = False
        try:
            self.info = self._read_info()
        except BaseException:
            self.close()
            raise

    # -- opening and closing -----------------------------------------------------------------

    @classmethod
    def open(cls, url="sim", **kwargs):
        """Open ``url`` (see the module docstring) and read the device's capabilities."""
        transport = cls._transport_for(url)
        return cls(transport, **kwargs)

    @staticmethod
    def _transport_for(url):
        if url == "sim" or url.startswith("sim:"):
            from qaccel.sim.embedded import open_embedded  # needs the sim extra

            return open_embedded(url.partition(":")[2] or "default")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "serial":
            query = urllib.parse.parse_qs(parsed.query)
            baud = int(query.get("baud", ["3000000"])[0])
            return SerialTransport(parsed.path, baud)
        if parsed.scheme == "tcp":
            if not parsed.hostname or not parsed.port:
                raise ValueError(f"tcp URL needs a host and a port: {url!r}")
            return TcpTransport(parsed.hostname, parsed.port)
        raise ValueError(f"unknown accelerator URL {url!r}; use 'sim', 'sim:<config>', "
                         f"'serial:/dev/ttyUSB1?baud=3000000' or 'tcp://host:port'")

    def close(self):
        if not self._closed:
            self._closed = True
            self._transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def transport(self):
        return self._transport

    # -- frames --------------------------------------------------------------------------------

    def _next_seq(self):
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _check_open(self):
        if self._closed:
            raise QaccelLinkError("the accelerator connection is closed")

    def _frame(self, opcode, body=b""):
        """A new command: ``(seq, wire)``, counted in :attr:`stats`."""
        seq = self._next_seq()
        self.stats.commands += 1
        return seq, proto.encode_frame(seq, opcode, body)

    def _transact(self, opcode, body=b""):
        """Send one command and return its reply frame, retrying on link faults."""
        self._check_open()
        seq, wire = self._frame(opcode, body)
        return self._exchange(opcode, [(seq, wire)])[seq]

    def _send(self, wire):
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("tx %s", wire.hex(" "))
        self._transport.write(wire)
        self.stats.bytes_out += len(wire)

    def _exchange(self, opcode, frames):
        """Send ``frames`` (``(seq, wire)`` of ``opcode`` commands) back to back and collect
        their replies; those without a reply go again, together, up to :attr:`retries`
        times. Returns ``{seq: reply frame}``."""
        pending = dict(frames)
        replies = {}
        heard_anything = False
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += len(pending)
                logger.info("retrying %s seq %s (attempt %d)", proto.Opcode(opcode).name,
                            ", ".join(map(str, pending)), attempt + 1)
            for wire in pending.values():
                self._send(wire)
            bytes_before = self.stats.bytes_in
            got, responses = self._collect(opcode, pending)
            heard_anything |= responses > 0 or self.stats.bytes_in != bytes_before
            replies.update(got)
            for seq in got:
                del pending[seq]
            if not pending:
                return replies
        raise self._gave_up(f"{proto.Opcode(opcode).name} (seq {', '.join(map(str, pending))})",
                            heard_anything)

    def _gave_up(self, what, heard_anything):
        """The error for a command that got no good reply in :attr:`retries` + 1 attempts:
        :class:`QaccelTimeoutError` when nothing came back at all."""
        if not heard_anything:
            return QaccelTimeoutError(
                f"no reply to {what} from {self._transport.description} after "
                f"{self.retries + 1} attempts of {self.timeout} s")
        return QaccelLinkError(
            f"no valid reply to {what} from {self._transport.description} after "
            f"{self.retries + 1} attempts: {self.stats.bad_frames} bad frames, "
            f"{self.stats.naks} NAKs so far")

    def _next_item(self, deadline):
        """The next reply frame or :class:`~protocol.FrameError` from the device, or None once
        ``deadline`` (``time.monotonic()``) has passed."""
        while not self._backlog:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            data = self._transport.read(remaining)
            if not data:
                continue
            self.stats.bytes_in += len(data)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("rx %s", data.hex(" "))
            self._backlog.extend(self._reader.feed(data))
        return self._backlog.popleft()

    def _fault(self, item):
        """Count a timeout (``item`` None), a bad reply frame or a NAK; returns whether
        ``item`` is one of them."""
        if item is None:
            self.stats.timeouts += 1
            self._reader.clear()
        elif isinstance(item, proto.FrameError):
            # A corrupted reply: the device dedupes state changes, so ask again.
            self.stats.bad_frames += 1
            logger.info("dropped a bad reply frame: %s", item)
        elif item.opcode == proto.Opcode.NAK:
            self.stats.naks += 1
        else:
            return False
        return True

    def _collect(self, opcode, pending):
        """Replies to the ``opcode`` commands whose sequence numbers are in ``pending``, sent
        back to back: ``({seq: frame}, responses)``. Stops when each has its reply, when as
        many responses (replies, NAKs, bad frames) as commands have come (the device answers
        every frame once, in arrival order), or when ``timeout`` passes."""
        deadline = time.monotonic() + self.timeout
        replies = {}
        responses = 0
        while len(replies) < len(pending) and responses < len(pending):
            item = self._next_item(deadline)
            if self._fault(item):
                if item is None:
                    break
                responses += 1
            elif item.opcode == opcode and item.seq in pending and item.seq not in replies:
                replies[item.seq] = item
                responses += 1
            # anything else is a late reply to an earlier attempt or command
        return replies, responses

    def _command(self, opcode, body=b""):
        """Transact and raise :class:`QaccelDeviceError` for a refusal; returns the body."""
        return self._accepted(opcode, self._transact(opcode, body))

    @staticmethod
    def _accepted(opcode, reply):
        """``reply.body``, or :class:`QaccelDeviceError` when the device refused."""
        if reply.status != proto.Status.OK:
            try:
                status = proto.Status(reply.status)
                name = status.name
            except ValueError:
                status, name = reply.status, f"status {reply.status}"
            raise QaccelDeviceError(f"device refused {proto.Opcode(opcode).name}: {name}",
                                    status)
        return reply.body

    # -- device commands -------------------------------------------------------------------

    def _read_info(self):
        info = proto.Capabilities.unpack(self._command(proto.Opcode.INFO))
        if info.protocol_version != proto.PROTOCOL_VERSION:
            raise QaccelLinkError(f"device speaks protocol version {info.protocol_version}, "
                                  f"this driver {proto.PROTOCOL_VERSION}")
        return info

    def _check_span(self, buffer, offset, length):
        size = self.info.buffer_bytes(buffer)
        if offset < 0 or length < 0 or offset + length > size:
            raise ValueError(f"{proto.BufferId(buffer).name} buffer holds {size} bytes; "
                             f"[{offset}, {offset + length}) does not fit")

    def write_buffer(self, buffer, offset, data):
        """Write ``data`` (bytes) into a device buffer at byte ``offset``.

        The WRITE frames go in batches of :attr:`window`, back to back. When the device
        refuses one (:class:`QaccelDeviceError`, raised once its batch has all its replies),
        the WRITEs before it are done and some after it may be.
        """
        data = bytes(data)
        self._check_span(buffer, offset, len(data))
        self._check_open()
        step = self.info.max_payload
        starts = range(0, len(data), step)
        for first in range(0, len(starts), self.window):
            batch = starts[first:first + self.window]
            frames = [self._frame(proto.Opcode.WRITE, proto.write_body(
                buffer, offset + start, data[start:start + step])) for start in batch]
            replies = self._exchange(proto.Opcode.WRITE, frames)
            for (seq, _), start in zip(frames, batch):   # in order: the first refusal raises
                self._accepted(proto.Opcode.WRITE, replies[seq])
                self.stats.payload_out += min(step, len(data) - start)

    def read_buffer(self, buffer, offset, length):
        """Read ``length`` bytes of a device buffer from byte ``offset``."""
        # One READ at a time: while the device sends a long reply it takes no command, and a
        # board's UART receive FIFO (16 bytes) would overflow with READ frames queued behind.
        self._check_span(buffer, offset, length)
        out = bytearray()
        step = self.info.max_payload
        for start in range(0, length, step):
            count = min(step, length - start)
            body = self._command(proto.Opcode.READ,
                                 proto.read_body(buffer, offset + start, count))
            if len(body) != count:
                raise QaccelLinkError(f"READ returned {len(body)} bytes, asked for {count}")
            out += body
            self.stats.payload_in += count
        return bytes(out)

    def status(self):
        return proto.DeviceStatus.unpack(self._command(proto.Opcode.STATUS))

    def counters(self):
        """Performance counters as ``{name: value}`` (see :class:`protocol.Counter`)."""
        values = proto.parse_counters(self._command(proto.Opcode.COUNTERS))
        return {counter.name.lower(): value for counter, value in values.items()}

    def reset(self):
        """Stop any run and clear the counters and status (buffer contents stay)."""
        self._command(proto.Opcode.RESET)

    def run(self, descriptor):
        """Start one RUN and wait for it; returns the final :class:`protocol.DeviceStatus`."""
        self._command(proto.Opcode.RUN, descriptor.pack())
        deadline = time.monotonic() + self.run_timeout
        poll = 0.0005
        while True:
            state = self.status()
            if state.state == proto.RunState.DONE:
                return state
            if state.state == proto.RunState.ERROR:
                raise QaccelDeviceError(
                    f"run failed on the device: {proto.Status(state.last_status).name}",
                    state.last_status)
            if time.monotonic() > deadline:
                raise QaccelTimeoutError(f"run did not finish within {self.run_timeout} s "
                                         f"({state.run_cycles} cycles so far)")
            time.sleep(poll)
            poll = min(poll * 2, 0.05)

    # -- INT8 GEMM -------------------------------------------------------------------------

    def gemm(self, a, w, *, bias=None, m0=None, shift=None, zp_out=0, act_min=-128,
             act_max=127):
        """``a @ w`` on the INT8 engine, tiled to fit the device.

        Parameters
        ----------
        a : ndarray, int8, shape (M, K)
        w : ndarray, int8, shape (K, N)
        bias : array_like of int32, shape (N,), optional
            Added to the accumulators (int32 two's complement wrap).
        m0, shift : array_like, shape (N,) or scalar, optional
            Per-channel requantization multiplier and shift (from
            :func:`qaccel.sw.golden.quantize_multiplier`). Both or neither.
        zp_out, act_min, act_max : int
            Output zero point and clamp (int8 range), used with ``m0``/``shift``.

        Returns
        -------
        ndarray
            int32 (M, N) accumulators without ``m0``/``shift``; int8 (M, N) requantized with
            them. Bit-exact with :mod:`qaccel.sw.golden`.

        Notes
        -----
        Schedule: the output columns are split into blocks of whole array columns that fit the
        weight, parameter and output buffers; for each block the weights are written once and
        stay resident while the row blocks of ``a`` stream through (``a`` is written once when
        it fits the activation buffer whole). When one column of the array times ``K`` does
        not fit a buffer, ``K`` is split, the device returns raw int32 partial sums, and the
        host adds them and requantizes with the golden model (the arithmetic is the same).
        """
        if not self.info.has_int8:
            raise QaccelDeviceError("this device has no INT8 engine", proto.Status.NO_ENGINE)
        _check_int_array("a", a, np.int8, 2)
        _check_int_array("w", w, np.int8, 2)
        m, k = a.shape
        if w.shape[0] != k:
            raise ValueError(f"a is {a.shape} and w is {w.shape}: inner dimensions differ")
        n = w.shape[1]
        if 0 in (m, k, n):
            raise ValueError(f"empty GEMM: a {a.shape}, w {w.shape}")
        if (m0 is None) != (shift is None):
            raise ValueError("give both m0 and shift (requantized output) or neither (int32)")
        bias = _per_channel("bias", bias, n, _INT32_MIN, _INT32_MAX)
        m0 = _per_channel("m0", m0, n, 0, _INT32_MAX)
        shift = _per_channel("shift", shift, n, -31, 30)
        requant = m0 is not None
        if requant:
            for name, value in (("zp_out", zp_out), ("act_min", act_min),
                                ("act_max", act_max)):
                if not isinstance(value, (int, np.integer)) or not -128 <= value <= 127:
                    raise ValueError(f"{name} must be an int in [-128, 127], not {value!r}")
            if act_min > act_max:
                raise ValueError(f"act_min {act_min} is above act_max {act_max}")
        if bias is None:
            bias = np.zeros(n, dtype=np.int64)

        info = self.info
        rows, cols = info.rows, info.cols
        k_step = min(k, info.activations_bytes // rows, info.weights_bytes // cols,
                     0xFFFF)
        if k_step < 1:
            raise QaccelDeviceError("device buffers are smaller than one array column",
                                    proto.Status.OUT_OF_RANGE)
        if k_step < k:
            acc = np.zeros((m, n), dtype=np.int64)
            for k0 in range(0, k, k_step):
                part = self._gemm_device(a[:, k0:k0 + k_step], w[k0:k0 + k_step],
                                         np.zeros(n, dtype=np.int64), None, None, 0, -128, 127)
                acc += part
            acc = (acc + bias + 2**31) % 2**32 - 2**31  # int32 wrap, like the device
            acc = acc.astype(np.int32)
            if not requant:
                return acc
            from . import golden

            return golden.requantize(acc, m0.astype(np.int32), shift.astype(np.int32),
                                     zp_out, act_min, act_max)
        return self._gemm_device(a, w, bias, m0, shift, zp_out, act_min, act_max)

    def _gemm_device(self, a, w, bias, m0, shift, zp_out, act_min, act_max):
        info = self.info
        rows, cols = info.rows, info.cols
        m, k = a.shape
        n = w.shape[1]
        requant = m0 is not None
        out_bytes = 1 if requant else 4
        m_pad = -(-m // rows) * rows
        n_pad = -(-n // cols) * cols
        col_block = min(n_pad, info.weights_bytes // (k * cols) * cols,
                        info.params_bytes // layout.PARAM_RECORD_BYTES // cols * cols,
                        info.outputs_bytes // (rows * out_bytes) // cols * cols)
        if col_block < cols:
            raise QaccelDeviceError(
                f"a {cols}-column block with K={k} does not fit the device buffers",
                proto.Status.OUT_OF_RANGE)
        row_block = min(m_pad, info.activations_bytes // (k * rows) * rows,
                        info.outputs_bytes // (col_block * out_bytes) // rows * rows)
        zeros = np.zeros(n, dtype=np.int64)
        result = np.empty((m, n), dtype=np.int8 if requant else np.int32)
        resident_rows = None
        for j0 in range(0, n, col_block):
            j1 = min(n, j0 + col_block)
            self.write_buffer(proto.BufferId.WEIGHTS, 0,
                              layout.int8_weight_bytes(w[:, j0:j1], cols))
            params = layout.int8_params_bytes(bias[j0:j1],
                                              (m0 if requant else zeros)[j0:j1],
                                              (shift if requant else zeros)[j0:j1])
            self.write_buffer(proto.BufferId.PARAMS, 0, params)
            for i0 in range(0, m, row_block):
                i1 = min(m, i0 + row_block)
                if resident_rows != (i0, i1):
                    self.write_buffer(proto.BufferId.ACTIVATIONS, 0,
                                      layout.int8_activation_bytes(a[i0:i1], rows))
                    resident_rows = (i0, i1)
                mode = proto.OutputMode.REQUANT_INT8 if requant else proto.OutputMode.RAW_INT32
                self.run(proto.RunDescriptor(
                    engine=proto.Engine.INT8, mode=mode, m=i1 - i0, k=k, n=j1 - j0,
                    a_offset=0, w_offset=0, p_offset=0, out_offset=0,
                    zp_out=int(zp_out), act_min=int(act_min), act_max=int(act_max),
                    thresholds=0))
                data = self.read_buffer(proto.BufferId.OUTPUTS, 0,
                                        (i1 - i0) * (j1 - j0) * out_bytes)
                result[i0:i1, j0:j1] = layout.unpack_int8_outputs(data, i1 - i0, j1 - j0,
                                                                  requant)
        return result

    # -- binary layers -----------------------------------------------------------------------

    def binary_layer(self, a, w, *, thresholds=None):
        """A binarized layer on the binary engine.

        Parameters
        ----------
        a : ndarray, int8 in {-1, +1}, shape (M, K)
            Input vectors.
        w : ndarray, int8 in {-1, +1}, shape (N, K)
            One row of weights per output channel.
        thresholds : ndarray of int32, shape (N, T), optional
            Per-channel thresholds (batch-norm and sign folded).

        Returns
        -------
        ndarray, int32, shape (M, N)
            The dot products (``golden.binary_gemm``) without thresholds; with them, how many
            thresholds each dot product reaches (``golden.thresholds``). With one threshold
            this is a binary activation: ``2 * out - 1`` is the ±1 input of the next layer.
        """
        if not self.info.has_binary:
            raise QaccelDeviceError("this device has no binary engine", proto.Status.NO_ENGINE)
        _check_int_array("a", a, np.int8, 2)
        _check_int_array("w", w, np.int8, 2)
        for name, value in (("a", a), ("w", w)):
            bad = value[(value != 1) & (value != -1)]
            if bad.size:
                raise ValueError(f"{name} must hold only -1 and +1; found {bad[0]}")
        m, k = a.shape
        n, k_w = w.shape
        if k_w != k:
            raise ValueError(f"a is {a.shape} and w is {w.shape}: both need K columns")
        if 0 in (m, k, n):
            raise ValueError(f"empty layer: a {a.shape}, w {w.shape}")
        t_count = 0
        if thresholds is not None:
            thresholds = np.asarray(thresholds)
            if thresholds.dtype.kind not in "iu":
                raise TypeError(f"thresholds must be integers, not {thresholds.dtype}")
            if thresholds.ndim != 2 or thresholds.shape[0] != n:
                raise ValueError(f"thresholds must have shape ({n}, T), not "
                                 f"{thresholds.shape}")
            _check_range("thresholds", thresholds, _INT32_MIN, _INT32_MAX)
            t_count = thresholds.shape[1]
            if not 1 <= t_count <= self.info.max_thresholds:
                raise ValueError(f"the device takes 1..{self.info.max_thresholds} thresholds "
                                 f"per channel, not {t_count}")
        info = self.info
        k_step = min(k, info.binary_max_k)
        if k_step < k:
            # Dot products add across K chunks; thresholds then apply on the host.
            dot = np.zeros((m, n), dtype=np.int64)
            for k0 in range(0, k, k_step):
                dot += self._binary_device(a[:, k0:k0 + k_step], w[:, k0:k0 + k_step], None)
            dot = dot.astype(np.int32)
            if thresholds is None:
                return dot
            from . import golden

            return golden.thresholds(dot, thresholds)
        return self._binary_device(a, w, thresholds)

    def _binary_device(self, a, w, thresholds):
        info = self.info
        simd = info.simd
        m, k = a.shape
        n = w.shape[0]
        row_bytes = layout.binary_row_bytes(k, simd)
        t_count = 0 if thresholds is None else thresholds.shape[1]
        packed_out = t_count == 1

        def out_bytes(rows, chans):
            if packed_out:
                return rows * layout.binary_row_bytes(chans, simd)
            return rows * chans * (4 if t_count == 0 else 1)

        chan_block = min(n, info.binary_max_n, info.weights_bytes // row_bytes,
                         info.params_bytes // (4 * max(t_count, 1)))
        while chan_block > 1 and out_bytes(1, chan_block) > info.outputs_bytes:
            chan_block -= 1
        row_block = min(m, info.activations_bytes // row_bytes)
        while row_block > 1 and out_bytes(row_block, chan_block) > info.outputs_bytes:
            row_block -= 1
        if chan_block < 1 or row_block < 1 or out_bytes(1, 1) > info.outputs_bytes:
            raise QaccelDeviceError(f"a binary layer with K={k} does not fit the device",
                                    proto.Status.OUT_OF_RANGE)
        result = np.empty((m, n), dtype=np.int32)
        resident_rows = None
        for j0 in range(0, n, chan_block):
            j1 = min(n, j0 + chan_block)
            self.write_buffer(proto.BufferId.WEIGHTS, 0,
                              layout.pack_binary_rows(w[j0:j1], simd))
            if t_count:
                self.write_buffer(proto.BufferId.PARAMS, 0,
                                  thresholds[j0:j1].astype("<i4").tobytes())
            for i0 in range(0, m, row_block):
                i1 = min(m, i0 + row_block)
                if resident_rows != (i0, i1):
                    self.write_buffer(proto.BufferId.ACTIVATIONS, 0,
                                      layout.pack_binary_rows(a[i0:i1], simd))
                    resident_rows = (i0, i1)
                mode = proto.OutputMode.THRESHOLDS if t_count else proto.OutputMode.RAW_INT32
                self.run(proto.RunDescriptor(
                    engine=proto.Engine.BINARY, mode=mode, m=i1 - i0, k=k, n=j1 - j0,
                    a_offset=0, w_offset=0, p_offset=0, out_offset=0, zp_out=0, act_min=0,
                    act_max=0, thresholds=t_count))
                rows, chans = i1 - i0, j1 - j0
                data = self.read_buffer(proto.BufferId.OUTPUTS, 0, out_bytes(rows, chans))
                if packed_out:
                    bits = layout.unpack_binary_rows(data, rows, chans, simd)
                    block = (bits > 0).astype(np.int32)
                elif t_count:
                    block = np.frombuffer(data, dtype=np.uint8).reshape(rows, chans)
                else:
                    block = np.frombuffer(data, dtype="<i4").reshape(rows, chans)
                result[i0:i1, j0:j1] = block
        return result
