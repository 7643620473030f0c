"""System testbench of :class:`qaccel.hw.top.AcceleratorTop` (and the UART variant).

The whole top is driven through its byte stream with the protocol module, and every byte
sent also goes to :class:`qaccel.sim.refdevice.ReferenceDevice`: each reply frame of the RTL
must equal the model's reply frame for the same bytes (the scoreboard), apart from the
documented differences:

- STATUS: the RTL says ``BUSY`` until a run finishes (the model finishes at once) and
  ``run_cycles`` is measured;
- COUNTERS: the cycle counters (CYCLES, INT8_BUSY, BINARY_BUSY, STALL_INPUT, STALL_OUTPUT)
  are measured, and MACS / BINARY_OPS count a run when it finishes;
- WRITE, READ and RUN during a run get ``Status.BUSY`` (those are sent to the RTL only, and
  the model's frame and error counters are advanced by hand).

Results are also compared with the golden model directly. ``rx`` and ``tx`` run with random
idle cycles and backpressure, and every wait has a cycle budget.

``params``: ``config`` (the :class:`~qaccel.hw.top.TopConfig` fields), ``faults`` (number of
corruptions per fault test), ``uart`` (the design is :class:`UARTAcceleratorTop`);
``frames`` and ``result_path`` (``speed``: how many bulk WRITE frames, and where to write
``{"cycles", "seconds", ...}`` as JSON for ``bench/cosim.py``).
"""

import json
import time
from collections import deque

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, Event, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from qaccel.hw.top import TopConfig
from qaccel.sim.refdevice import DeviceConfig, ReferenceDevice
from qaccel.sim.streams import StreamSink, StreamSource, random_pause
from qaccel.sim.traffic import bulk_write_frames
from qaccel.sim.tbkit import TB, params
from qaccel.sw import golden, layout
from qaccel.sw import protocol as proto

Opcode, Status, BufferId, Counter = proto.Opcode, proto.Status, proto.BufferId, proto.Counter
#: Counters the RTL measures in cycles (the model has no clock).
CYCLE_COUNTERS = frozenset({Counter.CYCLES, Counter.INT8_BUSY, Counter.BINARY_BUSY,
                            Counter.STALL_INPUT, Counter.STALL_OUTPUT})
CORNERS = np.array([-128, -127, -1, 0, 1, 127], dtype=np.int8)


def device_config(config):
    """The reference model's configuration for a :class:`TopConfig`."""
    return DeviceConfig(
        rows=config.rows, cols=config.cols, pe=config.pe, simd=config.simd, int8=config.int8,
        binary=config.binary, dsp_backend=config.backend, weights_bytes=config.weights_bytes,
        activations_bytes=config.activations_bytes, params_bytes=config.params_bytes,
        outputs_bytes=config.outputs_bytes, clock_hz=config.clock_hz, baud=config.baud,
        binary_max_k=config.binary_max_k, binary_max_n=config.binary_max_n,
        max_thresholds=config.max_thresholds, counter_width=config.counter_width)


class Mismatch(AssertionError):
    """The RTL's reply differs from the reference model's."""


class ByteLink:
    """``rx`` source and ``tx`` sink in one coroutine: two scheduler wake-ups per cycle
    instead of the five of a :class:`StreamSource` plus a :class:`StreamSink`, for the long
    fault campaigns. Same rules: pause generators on both sides, ``tx`` checked for a dropped
    ``valid`` or a changed payload before its transfer.

    ``await wait(predicate, budget, what)`` is checked once per cycle by the link itself."""

    def __init__(self, dut, clock, *, rx_pause, tx_pause, on_byte):
        self.clock = clock
        self.queue = deque()
        self.rx_valid, self.rx_ready, self.rx_payload = dut.rx__valid, dut.rx__ready, \
            dut.rx__payload
        self.tx_valid, self.tx_ready, self.tx_payload = dut.tx__valid, dut.tx__ready, \
            dut.tx__payload
        self.rx_pause = iter(rx_pause) if rx_pause is not None else None
        self.tx_pause = iter(tx_pause) if tx_pause is not None else None
        self.on_byte = on_byte
        self.cycle = 0
        self.errors = []
        self._waiter = None
        self.rx_valid.value = 0
        self.tx_ready.value = 0
        cocotb.start_soon(self._run())

    def send_nowait(self, *data):
        self.queue.extend(data)

    async def wait(self, predicate, budget, what):
        if predicate():
            return
        event = Event()
        self._waiter = (predicate, self.cycle + budget, event, what)
        await event.wait()
        self._waiter = None
        if self.errors:
            raise AssertionError("; ".join(self.errors[:3]))

    async def _run(self):
        offering = False
        tx_ready = False
        held = None
        while True:
            await ReadOnly()
            rx_fire = offering and bool(self.rx_ready.value)
            tx_fire = False
            if self.tx_valid.value:
                payload = self.tx_payload.value.to_unsigned()
                if held is not None and payload != held:
                    self.errors.append(f"tx payload changed from {held:#x} to {payload:#x}")
                tx_fire = tx_ready
                held = None if tx_fire else payload
            elif held is not None:
                self.errors.append("tx valid dropped before the transfer")
                held = None
            await RisingEdge(self.clock)
            self.cycle += 1
            if rx_fire:
                offering = False
            if tx_fire:
                self.on_byte(payload)
            if not offering:
                paused = next(self.rx_pause) if self.rx_pause is not None else False
                if self.queue and not paused:
                    self.rx_payload.value = self.queue.popleft()
                    self.rx_valid.value = 1
                    offering = True
                else:
                    self.rx_valid.value = 0
            tx_ready = not (next(self.tx_pause) if self.tx_pause is not None else False)
            self.tx_ready.value = int(tx_ready)
            if self._waiter is not None:
                predicate, deadline, event, what = self._waiter
                if predicate() or self.errors:
                    event.set()
                elif self.cycle > deadline:
                    self.errors.append(f"waited too long for {what}")
                    event.set()


class TopTB(TB):
    """Scoreboarded command exchange with the top over the ``rx``/``tx`` byte streams."""

    def __init__(self, dut, *, pause=0.2, fast=False):
        super().__init__(dut)
        self.config = TopConfig(**self.params["config"])
        self.caps = self.config.capabilities()
        self.model = ReferenceDevice(device_config(self.config))
        self.reader = proto.FrameReader(reply=True)
        self.frames = deque()
        self.seq = 0
        self.run_pending = None      # (counter, work) of a run the RTL may still be doing
        self.last_changing = None    # (seq, opcode) of the last state-changing command sent
        self.commands = 0
        self.wire_bytes = 0
        self.pause = pause
        self.link = None
        self.source = self.sink = None
        self.uart_source = None
        self.cycles_per_byte = 1
        if fast:
            self.link = ByteLink(dut, self.clock, on_byte=self._on_byte,
                                 rx_pause=random_pause(self.rng, pause) if pause else None,
                                 tx_pause=random_pause(self.rng, pause) if pause else None)
        elif self.params.get("uart"):
            from cocotbext.uart import UartSink, UartSource

            # the UART divides the nominal clock; the testbench clock is 10 ns
            clocks_per_bit = round(self.config.clock_hz / self.config.baud)
            baud = 1e9 / (10 * clocks_per_bit)
            self.cycles_per_byte = 10 * clocks_per_bit
            self.uart_source = UartSource(dut.uart_rx, baud=baud, bits=8, stop_bits=1)
            self.uart_sink = UartSink(dut.uart_tx, baud=baud, bits=8, stop_bits=1)
            cocotb.start_soon(self._uart_pump())
        else:
            self.source = StreamSource(dut, "rx", self.clock,
                                       pause=random_pause(self.rng, pause) if pause else None)
            self.sink = StreamSink(dut, "tx", self.clock, callback=self._on_byte,
                                   pause=random_pause(self.rng, pause) if pause else None)

    async def _uart_pump(self):
        while True:
            data = await self.uart_sink.read()
            for byte in data:
                self._on_byte(byte)

    @property
    def cycle(self):
        return int(get_sim_time("ns")) // 10

    def _on_byte(self, byte):
        self.frames.extend(self.reader.feed(bytes([byte])))

    def send_bytes(self, data):
        if self.uart_source is not None:
            self.uart_source.write_nowait(bytes(data))
        else:
            (self.link or self.source).send_nowait(*data)

    async def start(self, fill=True):
        """Reset, then fill every buffer with random bytes through the scoreboard: the RTL's
        memories keep their contents across tests (and resets) while each test starts a fresh
        model, and random contents show a stray write where zeros might not."""
        await self.reset()
        if fill:
            for buffer in BufferId:
                size = self.caps.buffer_bytes(buffer)
                await self.write(buffer, 0, self.rng.integers(0, 256, size,
                                                              dtype=np.uint8).tobytes())

    # -- sequence numbers ------------------------------------------------------------------

    def next_seq(self, opcode=None):
        """A fresh sequence number; never the last state-changing command's (so a new
        command is not taken for a retry)."""
        while True:
            self.seq = (self.seq + 1) % 256
            if self.last_changing is None or opcode is None or \
                    self.last_changing != (self.seq, int(opcode)):
                return self.seq

    def note_sent(self, seq, opcode):
        if opcode in (Opcode.WRITE, Opcode.RUN, Opcode.RESET):
            self.last_changing = (seq, int(opcode))

    # -- scoreboard ------------------------------------------------------------------------

    def compare(self, got, expected, context):
        if isinstance(got, proto.FrameError):
            raise Mismatch(f"{context}: the RTL sent a malformed frame ({got})")
        if isinstance(expected, proto.FrameError):
            raise AssertionError(f"{context}: the model sent a malformed frame ({expected})")
        head = (got.seq, got.opcode, got.status)
        if head != (expected.seq, expected.opcode, expected.status):
            raise Mismatch(f"{context}: reply (seq, opcode, status) {head}, model "
                           f"{(expected.seq, expected.opcode, expected.status)}")
        if expected.opcode == Opcode.STATUS and expected.status == Status.OK:
            got_s = proto.DeviceStatus.unpack(got.body)
            exp_s = proto.DeviceStatus.unpack(expected.body)
            if got_s.state != exp_s.state and not (
                    self.run_pending and exp_s.state == proto.RunState.DONE
                    and got_s.state == proto.RunState.BUSY):
                raise Mismatch(f"{context}: STATUS {got_s}, model {exp_s}")
            if got_s.last_status != exp_s.last_status:
                raise Mismatch(f"{context}: STATUS {got_s}, model {exp_s}")
            if got_s.state != proto.RunState.BUSY:
                self.run_pending = None
            return
        if expected.opcode == Opcode.COUNTERS and expected.status == Status.OK:
            got_c = proto.parse_counters(got.body)
            exp_c = proto.parse_counters(expected.body)
            for counter in Counter:
                if counter in CYCLE_COUNTERS:
                    continue
                allowed = {exp_c[counter]}
                if self.run_pending and self.run_pending[0] == counter:
                    allowed.add(exp_c[counter] - self.run_pending[1])
                if got_c[counter] not in allowed:
                    raise Mismatch(f"{context}: counter {counter.name} is {got_c[counter]}, "
                                   f"model {exp_c[counter]}")
            return
        if got != expected:
            raise Mismatch(f"{context}: reply {got}, model {expected}")

    def budget_for(self, wire, reply_bytes, extra=0):
        slow = 1 / (1 - self.pause) ** 2
        return int(400 + extra + 6 * slow * self.cycles_per_byte * (len(wire) + reply_bytes))

    async def wait_frames(self, count, budget, what):
        if self.link is not None:
            await self.link.wait(lambda: len(self.frames) >= count, budget, what)
        elif self.uart_source is not None:
            # poll on a timer: nothing in Python runs per clock cycle
            deadline = self.cycle + budget
            while len(self.frames) < count:
                if self.cycle > deadline:
                    raise AssertionError(f"waited {budget} cycles for {what}")
                await Timer(10 * self.cycles_per_byte, "ns")
        else:
            await self.wait_until(lambda: len(self.frames) >= count, budget, what)
            await RisingEdge(self.clock)

    async def exchange(self, wire, *, extra_budget=0, what="exchange"):
        """Send ``wire`` to the RTL and the model, wait for as many reply frames as the model
        gives and compare them; returns the RTL's frames."""
        wire = bytes(wire)
        expected_bytes = self.model.feed(wire)
        expected = proto.FrameReader(reply=True).feed(expected_bytes)
        self.wire_bytes += len(wire)
        self.send_bytes(wire)
        await self.wait_frames(len(expected),
                               self.budget_for(wire, len(expected_bytes), extra_budget),
                               f"{len(expected)} reply frames to {what}")
        got = [self.frames.popleft() for _ in expected]
        for index, (g, e) in enumerate(zip(got, expected)):
            self.compare(g, e, f"{what}, reply {index}")
        return got

    async def command(self, opcode, body=b"", *, seq=None, expect=Status.OK, extra_budget=0):
        """One command through the scoreboard; returns its reply frame."""
        seq = self.next_seq(opcode) if seq is None else seq
        wire = proto.encode_frame(seq, opcode, body)
        self.commands += 1
        name = Opcode(opcode).name if opcode in set(Opcode) else f"opcode {opcode:#04x}"
        frames = await self.exchange(wire, extra_budget=extra_budget, what=f"{name} seq {seq}")
        self.note_sent(seq, opcode)
        assert len(frames) == 1, f"{len(frames)} replies to one command"
        reply = frames[0]
        if expect is not None:
            assert reply.status == expect, \
                f"{opcode!r}: status {Status(reply.status).name}, expected {Status(expect).name}"
        return reply

    async def rtl_only(self, opcode, body=b"", *, seq=None, expect):
        """A command the model must not see (refused as BUSY by the RTL, or a read of what an
        aborted run left); the model's frame and error counters are advanced as the RTL's
        are. Returns the reply frame."""
        seq = self.next_seq(opcode) if seq is None else seq
        wire = proto.encode_frame(seq, opcode, body)
        self.send_bytes(wire)
        await self.wait_frames(1, self.budget_for(wire, 300), f"RTL-only {opcode!r}")
        reply = self.frames.popleft()
        assert isinstance(reply, proto.Frame), reply
        assert (reply.seq, reply.opcode, reply.status) == (seq, opcode, expect), \
            f"RTL-only {opcode!r}: {reply}"
        assert expect == Status.OK or reply.body == b"", reply
        self.model.counters[Counter.FRAMES_RX] += 1
        if expect != Status.OK:
            self.model.counters[Counter.COMMAND_ERRORS] += 1
        return reply

    # -- commands ------------------------------------------------------------------------------

    async def info(self):
        reply = await self.command(Opcode.INFO)
        return proto.Capabilities.unpack(reply.body)

    async def write(self, buffer, offset, data):
        data = bytes(data)
        for start in range(0, len(data), proto.MAX_PAYLOAD):
            await self.command(Opcode.WRITE, proto.write_body(
                buffer, offset + start, data[start:start + proto.MAX_PAYLOAD]))

    async def read(self, buffer, offset, length):
        out = bytearray()
        for start in range(0, length, proto.MAX_PAYLOAD):
            count = min(proto.MAX_PAYLOAD, length - start)
            reply = await self.command(Opcode.READ, proto.read_body(buffer, offset + start,
                                                                    count))
            out += reply.body
        return bytes(out)

    async def status(self):
        reply = await self.command(Opcode.STATUS)
        return proto.DeviceStatus.unpack(reply.body)

    async def counters(self):
        reply = await self.command(Opcode.COUNTERS)
        return proto.parse_counters(reply.body)

    async def start_run(self, descriptor, expect=Status.OK):
        reply = await self.command(Opcode.RUN, descriptor.pack(), expect=expect,
                                   extra_budget=200 + 4 * descriptor.n)
        if reply.status == Status.OK:
            counter = Counter.MACS if descriptor.engine == proto.Engine.INT8 \
                else Counter.BINARY_OPS
            self.run_pending = (counter, descriptor.m * descriptor.k * descriptor.n)
        return reply

    async def wait_run(self, budget, poll=64):
        """Poll STATUS until the run is done; returns the final DeviceStatus."""
        start = self.cycle
        while True:
            state = await self.status()
            if state.state != proto.RunState.BUSY:
                assert state.state == proto.RunState.DONE, state
                return state
            if self.cycle - start > budget:
                raise AssertionError(f"run not finished after {budget} cycles: {state}")
            await ClockCycles(self.clock, poll)

    async def run(self, descriptor, budget):
        await self.start_run(descriptor)
        return await self.wait_run(budget)

    async def check_buffers(self):
        """Read every buffer back whole and compare with the model (the scoreboard does)."""
        for buffer in BufferId:
            size = self.caps.buffer_bytes(buffer)
            data = await self.read(buffer, 0, size)
            assert data == bytes(self.model.buffers[buffer]), f"{buffer.name} differs"

    async def check_quiet(self, cycles=300):
        """No reply frame nobody asked for, and ``busy`` low once the device is idle."""
        await ClockCycles(self.clock, cycles)
        await ReadOnly()
        assert not self.frames, f"unexpected reply frames: {list(self.frames)}"
        assert not self.reader._pending, "a partial reply frame is left on tx"
        assert int(self.dut.busy.value) == 0, "busy is still high on an idle device"
        await RisingEdge(self.clock)

    # -- data -----------------------------------------------------------------------------------

    def int8_matrix(self, shape):
        values = self.rng.integers(-128, 128, shape, dtype=np.int8)
        corners = self.rng.random(shape) < 0.2
        values[corners] = self.rng.choice(CORNERS, corners.sum())
        return values

    def pm1(self, shape):
        return self.rng.choice(np.array([-1, 1], np.int8), shape)


# ---------------------------------------------------------------------------------------------
# layers

async def int8_layer(tb, m, k, n, *, requant, offsets=(0, 0, 0, 0), budget=None):
    """Write a random INT8 layer, RUN it, read the outputs and compare with golden."""
    a_off, w_off, p_off, o_off = offsets
    a = tb.int8_matrix((m, k))
    w = tb.int8_matrix((k, n))
    bias = tb.rng.integers(-2**31, 2**31, n, dtype=np.int64)
    small = tb.rng.random(n) < 0.7
    bias[small] >>= 16
    m0, shift = golden.quantize_multiplier(np.exp(tb.rng.uniform(np.log(1e-5), 0, n)))
    m0 = np.asarray(m0, np.int64).reshape(n)
    shift = np.asarray(shift, np.int64).reshape(n)
    await tb.write(BufferId.ACTIVATIONS, a_off, layout.int8_activation_bytes(a, tb.config.rows))
    await tb.write(BufferId.WEIGHTS, w_off, layout.int8_weight_bytes(w, tb.config.cols))
    await tb.write(BufferId.PARAMS, p_off, layout.int8_params_bytes(bias, m0, shift))
    zp_out = int(tb.rng.integers(-20, 21))
    act_min, act_max = sorted(int(v) for v in tb.rng.integers(-128, 128, 2))
    if tb.rng.random() < 0.5:
        act_min, act_max = -128, 127
    mode = proto.OutputMode.REQUANT_INT8 if requant else proto.OutputMode.RAW_INT32
    descriptor = proto.RunDescriptor(
        engine=proto.Engine.INT8, mode=mode, m=m, k=k, n=n, a_offset=a_off, w_offset=w_off,
        p_offset=p_off, out_offset=o_off, zp_out=zp_out, act_min=act_min, act_max=act_max,
        thresholds=0)
    rows, cols = tb.config.rows, tb.config.cols
    tiles = -(-m // rows) * -(-n // cols)
    budget = budget or tiles * (k + 40) * (1 + requant * cols * tb.config.requant_cycles[1]) + 2000
    status = await tb.run(descriptor, budget)
    out_bytes = m * n * (1 if requant else 4)
    data = await tb.read(BufferId.OUTPUTS, o_off, out_bytes)
    acc = golden.gemm_int8(a, w).astype(np.int64) + bias
    acc = ((acc + 2**31) % 2**32 - 2**31).astype(np.int32)
    if requant:
        expected = golden.requantize(acc, m0.astype(np.int32), shift.astype(np.int32), zp_out,
                                     act_min, act_max)
    else:
        expected = acc
    got = layout.unpack_int8_outputs(data, m, n, requant)
    np.testing.assert_array_equal(got, expected, err_msg=f"INT8 layer {m}x{k}x{n} "
                                                         f"requant={requant}")
    return status


async def binary_layer(tb, m, k, n, t_count, *, offsets=(0, 0, 0, 0)):
    """Write a random binary layer, RUN it, read the outputs and compare with golden."""
    a_off, w_off, p_off, o_off = offsets
    simd = tb.config.simd
    a = tb.pm1((m, k))
    w = tb.pm1((n, k))
    await tb.write(BufferId.ACTIVATIONS, a_off, layout.pack_binary_rows(a, simd))
    await tb.write(BufferId.WEIGHTS, w_off, layout.pack_binary_rows(w, simd))
    dot = golden.binary_gemm(golden.pack_bits(a), golden.pack_bits(w), k)
    thresholds = None
    if t_count:
        thresholds = np.sort(tb.rng.integers(-k - 1, k + 2, (n, t_count)), axis=1)
        thresholds = thresholds.astype(np.int32)
        if tb.rng.random() < 0.3:
            thresholds[0, 0] = -2**31  # beyond the accumulator range: clamped, same result
        await tb.write(BufferId.PARAMS, p_off, thresholds.astype("<i4").tobytes())
    mode = proto.OutputMode.THRESHOLDS if t_count else proto.OutputMode.RAW_INT32
    descriptor = proto.RunDescriptor(
        engine=proto.Engine.BINARY, mode=mode, m=m, k=k, n=n, a_offset=a_off, w_offset=w_off,
        p_offset=p_off, out_offset=o_off, zp_out=0, act_min=0, act_max=0, thresholds=t_count)
    folds = m * -(-n // tb.config.pe) * -(-k // simd)
    status = await tb.run(descriptor, 4 * folds + 40 * m * n + 2000)
    if t_count == 0:
        data = await tb.read(BufferId.OUTPUTS, o_off, m * n * 4)
        got = np.frombuffer(data, "<i4").reshape(m, n)
        expected = dot
    elif t_count == 1:
        data = await tb.read(BufferId.OUTPUTS, o_off, m * layout.binary_row_bytes(n, simd))
        got = (layout.unpack_binary_rows(data, m, n, simd) > 0).astype(np.int32)
        expected = golden.thresholds(dot, thresholds)
    else:
        data = await tb.read(BufferId.OUTPUTS, o_off, m * n)
        got = np.frombuffer(data, np.uint8).reshape(m, n)
        expected = golden.thresholds(dot, thresholds)
    np.testing.assert_array_equal(got, expected,
                                  err_msg=f"binary layer {m}x{k}x{n} t={t_count}")
    return status


# ---------------------------------------------------------------------------------------------
# tests

@cocotb.test()
async def info_write_read(dut):
    """INFO equals TopConfig.capabilities(); WRITE/READ round trips at buffer edges and random
    places, every buffer, payloads of 1..256 bytes; refused accesses change nothing."""
    tb = TopTB(dut)
    await tb.start()
    info = await tb.info()
    assert info == tb.caps, f"INFO {info}, config {tb.caps}"
    for buffer in BufferId:
        size = tb.caps.buffer_bytes(buffer)
        cases = [(0, 1), (0, proto.MAX_PAYLOAD), (size - 1, 1), (size - proto.MAX_PAYLOAD,
                                                                   proto.MAX_PAYLOAD)]
        for _ in range(4):
            length = int(tb.rng.integers(1, proto.MAX_PAYLOAD + 1))
            cases.append((int(tb.rng.integers(0, size - length + 1)), length))
        for offset, length in cases:
            data = tb.rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            await tb.write(buffer, offset, data)
            back = await tb.read(buffer, offset, length)
            assert back == data, f"{buffer.name}[{offset}:{offset + length}] read back differs"
        # refused: one byte past the end, huge offsets, bad buffer ids
        for offset, length in ((size, 1), (size - 3, 4), (2**32 - 1, 2), (2**31, 256)):
            await tb.command(Opcode.WRITE, proto.write_body(buffer, offset, bytes(length)),
                             expect=Status.OUT_OF_RANGE)
            await tb.command(Opcode.READ, proto.read_body(buffer, offset, length),
                             expect=Status.OUT_OF_RANGE)
    for bad_id in (4, 5, 255):
        body = bytes([bad_id]) + (0).to_bytes(4, "little") + b"\x01"
        await tb.command(Opcode.WRITE, body, expect=Status.OUT_OF_RANGE)
        await tb.command(Opcode.READ, bytes([bad_id]) + bytes(4) + b"\x01\x00",
                         expect=Status.OUT_OF_RANGE)
    await tb.check_buffers()
    await tb.counters()
    await tb.check_quiet()


@cocotb.test()
async def protocol_corners(dut):
    """Unknown opcodes, wrong body lengths, NAKs for bad frames (seq 0), duplicate
    suppression of WRITE/RUN/RESET by sequence number, re-execution of read-only retries,
    RESET clearing counters and status; counters compared with the model throughout."""
    tb = TopTB(dut)
    await tb.start()
    for opcode in (0x00, 0x08, 0x10, 0x7E, Opcode.NAK):
        await tb.command(opcode, b"", expect=Status.BAD_COMMAND)
    await tb.command(0x7F, b"\x01\x02", expect=Status.BAD_COMMAND)
    for opcode in (Opcode.INFO, Opcode.STATUS, Opcode.COUNTERS, Opcode.RESET):
        await tb.command(opcode, b"\x00", expect=Status.BAD_LENGTH)
    await tb.command(Opcode.WRITE, bytes(5), expect=Status.BAD_LENGTH)
    await tb.command(Opcode.WRITE, bytes(5 + proto.MAX_PAYLOAD + 1), expect=Status.BAD_LENGTH)
    await tb.command(Opcode.READ, bytes(6), expect=Status.BAD_LENGTH)
    await tb.command(Opcode.READ, bytes(8), expect=Status.BAD_LENGTH)
    await tb.command(Opcode.READ, proto.read_body(0, 0, 1)[:5] + b"\x00\x00",
                     expect=Status.BAD_LENGTH)
    await tb.command(Opcode.READ, bytes([0]) + bytes(4) + (257).to_bytes(2, "little"),
                     expect=Status.BAD_LENGTH)
    await tb.command(Opcode.RUN, bytes(proto.RunDescriptor.size() - 1), expect=Status.BAD_LENGTH)
    await tb.command(Opcode.RUN, bytes(proto.RunDescriptor.size() + 1), expect=Status.BAD_LENGTH)
    # bad frames: CRC, too short, a reply, bad COBS, over-long; each answered by a NAK
    good = proto.encode_frame(9, Opcode.INFO)
    bad_crc = bytearray(proto.cobs_decode(good[:-1]))
    bad_crc[-1] ^= 0x40
    await tb.exchange(proto.cobs_encode(bytes(bad_crc)) + b"\x00", what="bad CRC")
    await tb.exchange(proto.cobs_encode(b"\x01\x01\x02") + b"\x00", what="short frame")
    await tb.exchange(proto.encode_frame(3, Opcode.INFO, status=Status.OK), what="a reply")
    await tb.exchange(good[:-3] + b"\x00", what="truncated COBS")
    await tb.exchange(b"\x00\x00\x00", what="empty frames")
    await tb.exchange(proto.encode_frame(4, Opcode.WRITE, proto.write_body(0, 0, bytes(256))
                                         + bytes(2)), what="over-long frame")
    await tb.exchange(proto.encode_frame(4, Opcode.WRITE, proto.write_body(0, 0, bytes(256))
                                         + bytes(1)), what="longest frame")
    # a burst of bad frames: NAKs queue up while replies are sent
    await tb.exchange(b"\x05\x00" * 40 + good, what="NAK burst")
    # duplicates
    seq = tb.next_seq(Opcode.WRITE)
    body = proto.write_body(BufferId.PARAMS, 8, b"\x11\x22")
    await tb.command(Opcode.WRITE, body, seq=seq)
    await tb.command(Opcode.WRITE, proto.write_body(BufferId.PARAMS, 8, b"\x33"), seq=seq)
    assert (await tb.read(BufferId.PARAMS, 8, 2)) == b"\x11\x22", "a retried WRITE was executed"
    await tb.command(Opcode.READ, proto.read_body(BufferId.PARAMS, 8, 2), seq=seq)
    await tb.command(Opcode.READ, proto.read_body(BufferId.PARAMS, 8, 2), seq=seq)
    bad_run = proto.RunDescriptor(engine=7, mode=0, m=1, k=1, n=1, a_offset=0, w_offset=0,
                                  p_offset=0, out_offset=0, zp_out=0, act_min=0, act_max=0,
                                  thresholds=0).pack()
    seq = tb.next_seq(Opcode.RUN)
    await tb.command(Opcode.RUN, bad_run, seq=seq, expect=Status.BAD_DESCRIPTOR)
    await tb.command(Opcode.RUN, bad_run, seq=seq, expect=Status.BAD_DESCRIPTOR)
    await tb.counters()
    seq = tb.next_seq(Opcode.RESET)
    await tb.command(Opcode.RESET, seq=seq)
    counters = await tb.counters()
    assert counters[Counter.FRAMES_RX] == 1 and counters[Counter.CRC_ERRORS] == 0, counters
    await tb.command(Opcode.INFO)
    await tb.command(Opcode.RESET, seq=seq)   # a retry: not executed again
    counters = await tb.counters()
    assert counters[Counter.FRAMES_RX] == 4, counters
    assert (await tb.status()) == proto.DeviceStatus(proto.RunState.IDLE, Status.OK, 0)
    await tb.check_quiet()


@cocotb.test()
async def int8_layers(dut):
    """INT8 layers, raw and requantized, one tile to many, partial tiles, offsets; results
    equal golden; MACS adds up; a large-K tile reaches about one MAC per PE per cycle."""
    tb = TopTB(dut)
    await tb.start()
    rows, cols = tb.config.rows, tb.config.cols
    macs = 0
    shapes = [(1, 1, 1), (rows, 5, cols), (rows + 1, 7, cols + 1), (3 * rows - 1, 9, 2 * cols + 3),
              (2, 40, 3)]
    for index, (m, k, n) in enumerate(shapes):
        for requant in (False, True):
            offsets = (0, 0, 0, 0)
            if index % 2:
                offsets = (rows * 3, cols * 5, 4 * 3, 4 * 7 + (1 if requant else 0))
            await int8_layer(tb, m, k, n, requant=requant, offsets=offsets)
            macs += m * k * n
            counters = await tb.counters()
            assert counters[Counter.MACS] == macs, (counters[Counter.MACS], macs)
    # throughput: one tile with the longest K that fits
    k = min(tb.caps.activations_bytes // rows, tb.caps.weights_bytes // cols, 4096)
    await tb.command(Opcode.RESET)
    await int8_layer(tb, rows, k, cols, requant=False)
    counters = await tb.counters()
    busy = counters[Counter.INT8_BUSY]
    per_cycle = counters[Counter.MACS] / busy
    tb.log.info("K=%d tile: %d MACs in %d busy cycles: %.2f MACs/cycle of %d PEs", k,
                counters[Counter.MACS], busy, per_cycle, rows * cols)
    assert counters[Counter.MACS] == rows * k * cols
    assert per_cycle >= 0.9 * rows * cols, f"{per_cycle:.2f} MACs/cycle"
    assert counters[Counter.STALL_OUTPUT] <= rows, counters[Counter.STALL_OUTPUT]
    assert counters[Counter.CYCLES] > busy
    await tb.check_quiet()


@cocotb.test()
async def binary_layers(dut):
    """Binary layers: raw dot products, threshold counts, packed binary outputs; K and N at
    the engine's maxima; offsets; BINARY_OPS adds up."""
    tb = TopTB(dut)
    await tb.start()
    cfg = tb.config
    word = cfg.simd // 8
    ops = 0
    cases = [(1, 1, 1, 0), (3, cfg.simd, cfg.pe, 1), (2, cfg.simd + 5, cfg.pe + 1, 2),
             (4, 70, 9, 0), (2, cfg.binary_max_k, 3, 1), (2, 17, cfg.binary_max_n, 1),
             (3, 33, 5, cfg.max_thresholds)]
    for index, (m, k, n, t_count) in enumerate(cases):
        offsets = (0, 0, 0, 0)
        if index % 2:
            offsets = (word * 3, word, 8, 4 * 5 + (3 if t_count else 0))
        await binary_layer(tb, m, k, n, t_count, offsets=offsets)
        ops += m * k * n
        counters = await tb.counters()
        assert counters[Counter.BINARY_OPS] == ops
        assert counters[Counter.BINARY_BUSY] > 0
    await tb.check_buffers()
    await tb.check_quiet()


@cocotb.test()
async def bad_descriptors(dut):
    """RUN validation: every check refuses with the model's status and changes nothing
    (buffers, counters, run state), then a good RUN still works."""
    tb = TopTB(dut)
    await tb.start()
    await int8_layer(tb, 2, 3, 2, requant=True)
    base = dict(engine=0, mode=0, m=2, k=3, n=2, a_offset=0, w_offset=0, p_offset=0,
                out_offset=0, zp_out=0, act_min=-128, act_max=127, thresholds=0)
    cfg = tb.config
    sizes = {b: tb.caps.buffer_bytes(b) for b in BufferId}
    cases = [
        dict(engine=2), dict(engine=255), dict(mode=2), dict(mode=9), dict(m=0), dict(k=0),
        dict(n=0), dict(act_min=5, act_max=4), dict(a_offset=1), dict(w_offset=2),
        dict(p_offset=2), dict(out_offset=2), dict(a_offset=sizes[BufferId.ACTIVATIONS]),
        dict(a_offset=2**32 - cfg.rows), dict(k=0xFFFF), dict(m=0xFFFF, n=0xFFFF),
        dict(out_offset=sizes[BufferId.OUTPUTS] - 12), dict(n=sizes[BufferId.PARAMS] // 12 + 1),
        dict(p_offset=sizes[BufferId.PARAMS] - 12), dict(w_offset=2**31),
        dict(engine=1, mode=1), dict(engine=1, k=cfg.binary_max_k + 1),
        dict(engine=1, n=cfg.binary_max_n + 1), dict(engine=1, mode=2, thresholds=0),
        dict(engine=1, mode=0, thresholds=1), dict(engine=1, mode=2,
                                                   thresholds=cfg.max_thresholds + 1),
        dict(engine=1, a_offset=cfg.simd // 8 // 2 or 1), dict(engine=1, mode=2, thresholds=1,
                                                             p_offset=2),
        dict(engine=1, out_offset=2), dict(engine=1, mode=2, thresholds=2,
                                           p_offset=sizes[BufferId.PARAMS] - 8),
        dict(engine=1, m=sizes[BufferId.ACTIVATIONS]), dict(engine=1, w_offset=2**32 - 8),
    ]
    for change in cases:
        descriptor = proto.RunDescriptor(**{**base, **change})
        reply = await tb.command(Opcode.RUN, descriptor.pack(), expect=None, extra_budget=500)
        assert reply.status != Status.OK, f"{change} was accepted"
    # requantization parameters out of range: m0 < 0 or shift outside [-31, 30]
    for record in (layout.int8_params_bytes([0], [-5], [0]), layout.int8_params_bytes(
            [0], [1 << 30], [31]), layout.int8_params_bytes([0], [1 << 30], [-32])):
        await tb.write(BufferId.PARAMS, 12, record)
        descriptor = proto.RunDescriptor(**{**base, "mode": 1})
        await tb.command(Opcode.RUN, descriptor.pack(), expect=Status.BAD_DESCRIPTOR,
                         extra_budget=500)
        # raw mode does not use m0 and shift
        descriptor = proto.RunDescriptor(**base)
        await tb.run(descriptor, 2000)
    assert (await tb.status()).state == proto.RunState.DONE
    await tb.counters()
    await tb.check_buffers()
    await tb.check_quiet()


@cocotb.test()
async def busy_and_reset(dut):
    """During a run: STATUS says BUSY, INFO/COUNTERS answer, WRITE/READ/RUN get BUSY, a retried
    RUN gets its cached OK; RESET stops a run (outputs partly written, nothing else touched)
    and clears counters and status."""
    tb = TopTB(dut, pause=0.05)
    await tb.start()
    cfg = tb.config
    # A long run: many requantized outputs, each costing cycles in the requantizer.
    fewest, most = cfg.requant_cycles
    n = cfg.cols * max(1, min(tb.caps.params_bytes // 12, tb.caps.outputs_bytes // 8,
                              tb.caps.weights_bytes // 8) // cfg.cols)
    m = cfg.rows * max(1, min(tb.caps.outputs_bytes // n, tb.caps.activations_bytes // 8)
                       // cfg.rows)
    k = min(tb.caps.activations_bytes // m, tb.caps.weights_bytes // n, 64)
    tb.log.info("busy run: m=%d k=%d n=%d", m, k, n)

    async def load():
        a = tb.int8_matrix((m, k))
        w = tb.int8_matrix((k, n))
        await tb.write(BufferId.ACTIVATIONS, 0, layout.int8_activation_bytes(a, cfg.rows))
        await tb.write(BufferId.WEIGHTS, 0, layout.int8_weight_bytes(w, cfg.cols))
        return a, w

    bias = np.arange(n) * 7 - 50
    m0 = np.full(n, 1 << 30)
    shift = np.full(n, -6)
    await tb.write(BufferId.PARAMS, 0, layout.int8_params_bytes(bias, m0, shift))
    a, w = await load()
    descriptor = proto.RunDescriptor(
        engine=0, mode=proto.OutputMode.REQUANT_INT8, m=m, k=k, n=n, a_offset=0, w_offset=0,
        p_offset=0, out_offset=0, zp_out=3, act_min=-100, act_max=100, thresholds=0)

    def expected(a, w):
        acc = golden.gemm_int8(a, w).astype(np.int64) + bias
        return golden.requantize(acc.astype(np.int32), m0.astype(np.int32),
                                 shift.astype(np.int32), 3, -100, 100)

    seq = tb.next_seq(Opcode.RUN)
    await tb.command(Opcode.RUN, descriptor.pack(), seq=seq, extra_budget=200 + 4 * n)
    tb.note_sent(seq, Opcode.RUN)
    tb.run_pending = (Counter.MACS, m * k * n)
    state = await tb.status()
    assert state.state == proto.RunState.BUSY, state
    assert int(dut.busy.value) == 1
    await tb.info()
    await tb.counters()
    await tb.rtl_only(Opcode.WRITE, proto.write_body(0, 0, b"\x01"), expect=Status.BUSY)
    await tb.rtl_only(Opcode.READ, proto.read_body(0, 0, 1), expect=Status.BUSY)
    await tb.rtl_only(Opcode.RUN, descriptor.pack(), expect=Status.BUSY)
    await tb.command(Opcode.RUN, descriptor.pack(), seq=seq)      # a retry: cached OK
    state = await tb.status()
    assert state.state == proto.RunState.BUSY, \
        f"the run ended before the BUSY checks were done: {state}"
    final = await tb.wait_run(20 * m * n * most + 20 * m * k)
    assert final.run_cycles >= m * n * fewest, final
    got = layout.unpack_int8_outputs(await tb.read(BufferId.OUTPUTS, 0, m * n), m, n, True)
    np.testing.assert_array_equal(got, expected(a, w))

    # RESET in the middle of a run that overwrites the outputs with other values
    old = bytes(tb.model.buffers[BufferId.OUTPUTS])
    a2, w2 = await load()
    await tb.start_run(descriptor)
    await ClockCycles(tb.clock, m * n * fewest // 3)
    await tb.command(Opcode.RESET)
    assert (await tb.status()) == proto.DeviceStatus(proto.RunState.IDLE, Status.OK, 0)
    counters = await tb.counters()
    assert counters[Counter.MACS] == 0 and counters[Counter.INT8_BUSY] == 0, counters
    # Each output is untouched or the new result, and some of each; the model takes the
    # RTL's outputs (it finished the run at once).
    region = m * n
    data = b""
    for start in range(0, region, proto.MAX_PAYLOAD):
        count = min(proto.MAX_PAYLOAD, region - start)
        reply = await tb.rtl_only(Opcode.READ, proto.read_body(BufferId.OUTPUTS, start, count),
                                  expect=Status.OK)
        data += reply.body
    new = layout.unpack_int8_outputs(data, m, n, True)
    before = layout.unpack_int8_outputs(old, m, n, True)
    after = expected(a2, w2)
    assert ((new == before) | (new == after)).all(), "an output is neither old nor new"
    assert (new != before).any() and (new != after).any(), "the RESET did not stop the run"
    tb.model.buffers[BufferId.OUTPUTS][:region] = data
    tb.run_pending = None
    await tb.check_buffers()
    await tb.counters()
    # after the RESET a run works again
    await tb.run(descriptor, 20 * m * n * most + 20 * m * k)
    got = layout.unpack_int8_outputs(await tb.read(BufferId.OUTPUTS, 0, m * n), m, n, True)
    np.testing.assert_array_equal(got, expected(a2, w2))
    await tb.check_quiet()


# ---------------------------------------------------------------------------------------------
# faults

FAULT_KINDS = ("flip", "drop", "insert", "truncate", "garbage", "bad_crc", "opcode", "range",
               "length", "descriptor")


class FaultMaker:
    """Random link faults and refused commands, each with the region a follow-up READ checks."""

    def __init__(self, tb):
        self.tb = tb
        self.rng = tb.rng
        self.caps = tb.caps
        self.counts = dict.fromkeys(FAULT_KINDS, 0)

    def region(self):
        buffer = BufferId(int(self.rng.integers(4)))
        size = self.caps.buffer_bytes(buffer)
        length = int(self.rng.integers(1, 65))
        offset = int(self.rng.integers(0, size - length + 1))
        return buffer, offset, length

    def valid_frame(self):
        """A command frame that would change a buffer if it arrived intact."""
        buffer, offset, length = self.region()
        if self.rng.random() < 0.15:
            length = proto.MAX_PAYLOAD
            offset = int(self.rng.integers(0, self.caps.buffer_bytes(buffer) - length + 1))
        data = self.rng.integers(0, 256, length, dtype=np.uint8)
        data[self.rng.random(length) < 0.1] = 0
        seq = self.tb.next_seq(Opcode.WRITE)
        return proto.encode_frame(seq, Opcode.WRITE, proto.write_body(buffer, offset,
                                                                      data.tobytes())), \
            (buffer, offset, length)

    def make(self):
        kind = FAULT_KINDS[int(self.rng.integers(len(FAULT_KINDS)))]
        self.counts[kind] += 1
        rng = self.rng
        target = self.region()
        if kind in ("flip", "drop", "insert", "truncate"):
            frame, target = self.valid_frame()
            frame = bytearray(frame)
            hits = int(rng.integers(1, 4))
            if kind == "flip":
                for _ in range(hits):
                    index = int(rng.integers(len(frame)))
                    frame[index] ^= int(rng.integers(1, 256))
            elif kind == "drop":
                for _ in range(hits):
                    del frame[int(rng.integers(len(frame)))]
            elif kind == "insert":
                for _ in range(hits):
                    frame.insert(int(rng.integers(len(frame) + 1)), int(rng.integers(256)))
            else:
                cut = int(rng.integers(1, len(frame) - 1))
                frame = frame[:cut] + (b"\x00" if rng.random() < 0.7 else b"")
            return kind, bytes(frame), target
        if kind == "garbage":
            data = rng.integers(0, 256, int(rng.integers(1, 80)), dtype=np.uint8)
            data[rng.random(len(data)) < 0.1] = 0
            return kind, data.tobytes(), target
        if kind == "bad_crc":
            frame, target = self.valid_frame()
            raw = bytearray(proto.cobs_decode(frame[:-1]))
            raw[-1 - int(rng.integers(4))] ^= 1 << int(rng.integers(8))
            return kind, proto.cobs_encode(bytes(raw)) + b"\x00", target
        if kind == "opcode":
            opcode = int(rng.choice([0x00, *range(0x08, 0x80), *range(0x80, 0x100)]))
            body = rng.integers(0, 256, int(rng.integers(0, 12)), dtype=np.uint8).tobytes()
            raw = bytes([self.tb.next_seq(), opcode]) + body
            raw += proto.crc32(raw).to_bytes(4, "little")
            return kind, proto.cobs_encode(raw) + b"\x00", target
        if kind == "range":
            buffer, offset, length = target
            size = self.caps.buffer_bytes(buffer)
            choice = int(rng.integers(5))
            if choice == 0:
                offset = size - length + int(rng.integers(1, length + 1))
            elif choice == 1:
                offset = int(rng.integers(size, 2**32))
            elif choice == 2:
                offset = 2**32 - int(rng.integers(1, 300))
            elif choice == 3:
                buffer = int(rng.integers(4, 256))
            else:
                offset = size - 1
                length = int(rng.integers(2, 257))
            check = (BufferId(buffer) if buffer < 4 else BufferId.WEIGHTS,
                     max(0, min(offset, size) - 32), 64)
            if rng.random() < 0.5:
                body = bytes([buffer]) + offset.to_bytes(4, "little") + \
                    rng.integers(0, 256, length, dtype=np.uint8).tobytes()
                opcode = Opcode.WRITE
            else:
                body = bytes([buffer]) + offset.to_bytes(4, "little") + \
                    int(rng.choice([length, 0, 257, 0xFFFF])).to_bytes(2, "little")
                opcode = Opcode.READ
            seq = self.tb.next_seq(opcode)
            self.tb.note_sent(seq, opcode)
            return kind, proto.encode_frame(seq, opcode, body), check
        if kind == "length":
            opcode = int(rng.choice([Opcode.INFO, Opcode.WRITE, Opcode.READ, Opcode.RUN,
                                     Opcode.STATUS, Opcode.COUNTERS, Opcode.RESET]))
            good = {Opcode.INFO: 0, Opcode.STATUS: 0, Opcode.COUNTERS: 0, Opcode.RESET: 0,
                    Opcode.READ: 7, Opcode.RUN: proto.RunDescriptor.size()}
            if opcode == Opcode.WRITE:
                length = int(rng.choice([0, 1, 5, 5 + proto.MAX_PAYLOAD + 1]))
            else:
                length = good[opcode] + int(rng.choice([-1, 1, 2, 20])) if good[opcode] else \
                    int(rng.integers(1, 30))
                length = max(length, 0)
            body = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            seq = self.tb.next_seq(opcode)
            self.tb.note_sent(seq, opcode)
            return kind, proto.encode_frame(seq, opcode, body), target
        # descriptor: random fields, mostly bad
        fields = {name: int(rng.integers(0, 1 << (8 * size)))
                  for name, (_, size, _) in proto.RunDescriptor.offsets().items()}
        for name in ("zp_out", "act_min", "act_max"):
            fields[name] -= 128
        fields["engine"] = int(rng.choice([0, 1, 2, fields["engine"]]))
        fields["mode"] = int(rng.choice([0, 1, 2, fields["mode"]]))
        for name in ("m", "k", "n"):
            if rng.random() < 0.6:
                fields[name] = int(rng.integers(0, 40))
        for name in ("a_offset", "w_offset", "p_offset", "out_offset"):
            if rng.random() < 0.6:
                fields[name] = int(rng.integers(0, 1200))
        fields["thresholds"] = int(rng.choice([0, 1, 2, fields["thresholds"]]))
        body = proto.RunDescriptor(**fields).pack()
        seq = self.tb.next_seq(Opcode.RUN)
        self.tb.note_sent(seq, Opcode.RUN)
        return kind, proto.encode_frame(seq, Opcode.RUN, body), target


async def fault_campaign(dut, count):
    tb = TopTB(dut, fast=True)
    await tb.start()
    maker = FaultMaker(tb)
    runs = 0
    for index in range(count):
        kind, wire, (buffer, offset, length) = maker.make()
        frames = await tb.exchange(wire, extra_budget=600, what=f"fault {index} ({kind})")
        if any(isinstance(f, proto.Frame) and f.opcode == Opcode.RUN and f.status == Status.OK
               for f in frames):
            # a random descriptor that happened to be valid: let it finish
            runs += 1
            desc = proto.RunDescriptor.unpack(wire and proto.cobs_decode(wire[:-1])[2:-4])
            counter = Counter.MACS if desc.engine == 0 else Counter.BINARY_OPS
            tb.run_pending = (counter, desc.m * desc.k * desc.n)
            await tb.wait_run(200_000)
        # the next well-formed command succeeds (after a delimiter that ends any partial
        # frame), and the buffer around the target equals the model's
        size = tb.caps.buffer_bytes(buffer)
        lo = max(0, offset - 16)
        hi = min(size, offset + length + 16, lo + proto.MAX_PAYLOAD)
        seq = tb.next_seq()
        follow = b"\x00" + proto.encode_frame(seq, Opcode.READ, proto.read_body(buffer, lo,
                                                                               hi - lo))
        frames = await tb.exchange(follow, what=f"READ after fault {index} ({kind})")
        assert frames and frames[-1].status == Status.OK and frames[-1].seq == seq, frames
        if index % 8 == 0:
            data = tb.rng.integers(0, 256, int(tb.rng.integers(1, 9)), dtype=np.uint8)
            await tb.write(buffer, lo, data.tobytes())
    await tb.check_buffers()
    counters = await tb.counters()
    tb.log.info("%d faults %s, %d accidental valid runs; %d bytes sent; counters %s", count,
                maker.counts, runs, tb.wire_bytes,
                {c.name: v for c, v in counters.items()})
    assert counters[Counter.CRC_ERRORS] > count // 4
    await tb.check_quiet()


async def faults(dut):
    """Random link faults and refused commands, ``params["faults"]`` in each of the four
    tests ``faults_0`` .. ``faults_3`` (each starts from a reset device, with its own random
    stream): flipped, dropped and inserted bytes, truncated frames, garbage bursts, wrong
    CRCs, unknown opcodes, out-of-range offsets and lengths, bad body lengths, bad
    descriptors. After each, a well-formed READ succeeds and the buffer around the target
    equals the model's; all buffers are compared at the end of a test; nothing hangs."""
    await fault_campaign(dut, int(params().get("faults", 100)))


faults_0 = cocotb.test(name="faults_0")(faults)
faults_1 = cocotb.test(name="faults_1")(faults)
faults_2 = cocotb.test(name="faults_2")(faults)
faults_3 = cocotb.test(name="faults_3")(faults)


@cocotb.test()
async def uart_session(dut):
    """:class:`UARTAcceleratorTop` through its pins (a UART model on each side): INFO, WRITE/
    READ round trips, INT8 layers (on the iCE40 SB_MAC16 backend) and binary layers, all
    scoreboarded against the model; ``busy`` falls once the last reply has left."""
    tb = TopTB(dut, pause=0)
    await tb.start(fill=False)   # a fresh simulation: the memories start at zero like the model
    info = await tb.info()
    assert info == tb.caps and info.baud == tb.config.baud, info
    for buffer in BufferId:
        data = tb.rng.integers(0, 256, 24, dtype=np.uint8).tobytes()
        offset = tb.caps.buffer_bytes(buffer) - len(data)
        await tb.write(buffer, offset, data)
        assert await tb.read(buffer, offset, len(data)) == data
    await tb.command(Opcode.READ, proto.read_body(BufferId.OUTPUTS, tb.caps.outputs_bytes, 1),
                     expect=Status.OUT_OF_RANGE)
    await tb.exchange(b"\x11\x22\x00", what="garbage")
    cfg = tb.config
    await int8_layer(tb, cfg.rows + 1, 6, cfg.cols + 2, requant=False, budget=20_000)
    await int8_layer(tb, cfg.rows, 9, cfg.cols, requant=True, budget=20_000)
    await binary_layer(tb, 2, cfg.simd + 3, cfg.pe + 1, 1)
    await binary_layer(tb, 2, 20, 3, 0)
    counters = await tb.counters()
    assert counters[Counter.CRC_ERRORS] == 1
    await tb.check_quiet(cycles=4 * tb.cycles_per_byte)


@cocotb.test()
async def speed(dut):
    """Simulation speed under bulk WRITE traffic, for ``bench/cosim.py``: ``frames`` WRITE
    frames of a full payload, sent back to back through :class:`ByteLink` (the quickest
    driver here: one coroutine, no pauses) and not scoreboarded; every reply must be OK.
    Writes cycles, wall seconds and byte counts to ``result_path``."""
    tb = TopTB(dut, pause=0, fast=True)
    await tb.reset()
    count = int(tb.params.get("frames", 200))
    wire, payload = bulk_write_frames(tb.caps, count, tb.rng)
    first = tb.link.cycle
    started = time.perf_counter()
    tb.send_bytes(wire)
    await tb.wait_frames(count, 1000 + 4 * len(wire), f"{count} WRITE replies")
    seconds = time.perf_counter() - started
    cycles = tb.link.cycle - first
    replies = [tb.frames.popleft() for _ in range(count)]
    for index, reply in enumerate(replies):
        assert isinstance(reply, proto.Frame), reply
        assert (reply.seq, reply.opcode & ~proto.REPLY_FLAG, reply.status) == \
            ((index + 1) & 0xFF, Opcode.WRITE, Status.OK), reply
    tb.log.info("%d cycles in %.3f s: %.0f cycles/s", cycles, seconds, cycles / seconds)
    if tb.params.get("result_path"):
        with open(tb.params["result_path"], "w") as result:
            json.dump({"cycles": cycles, "seconds": seconds, "frames": count,
                       "payload_bytes": payload, "wire_bytes": len(wire)}, result)
