"""cocotb models of Amaranth ``lib.stream`` ports: source, sink and passive monitor.

A stream port named ``i`` on an Amaranth component appears in Verilog as ``i__valid``,
``i__ready`` and ``i__payload``. A transfer happens at a rising edge when ``valid`` and
``ready`` are both high. The models sample the handshake in the ``ReadOnly`` phase before each
edge, so they behave the same on Verilator and Icarus.

Pause generators decide, cycle by cycle, whether a source withholds data (idle cycles) or a
sink withholds ``ready`` (backpressure): any iterable of bools, e.g. :func:`random_pause`.

Only imported inside the simulator (it needs cocotb).
"""

from __future__ import annotations

import itertools
from collections import deque

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from .tbkit import wait_until

__all__ = ["random_pause", "periodic_pause", "StreamSource", "StreamSink", "StreamMonitor",
           "StreamProtocolError"]


class StreamProtocolError(AssertionError):
    """A source broke the stream rules (dropped ``valid`` or changed the payload before the
    transfer)."""


def random_pause(rng, probability):
    """Pause on each cycle with ``probability`` (a NumPy ``Generator`` supplies the draws)."""
    if not 0 <= probability < 1:
        raise ValueError(f"pause probability must be in [0, 1), not {probability}")
    while True:
        yield bool(rng.random() < probability)


def periodic_pause(run, pause):
    """``run`` cycles active, then ``pause`` cycles paused, repeating."""
    return itertools.cycle([False] * run + [True] * pause)


def _port(dut, prefix, name, required=True):
    try:
        return getattr(dut, f"{prefix}__{name}")
    except AttributeError:
        if required:
            raise AttributeError(f"{dut._name} has no port {prefix}__{name}") from None
        return None


class _StreamModel:
    def __init__(self, dut, prefix, clock, pause=None):
        self.dut = dut
        self.prefix = prefix
        self.clock = clock
        self.valid = _port(dut, prefix, "valid")
        self.payload = _port(dut, prefix, "payload")
        self.ready = _port(dut, prefix, "ready", required=False)
        self.set_pause(pause)
        self.transfers = 0

    def set_pause(self, pause):
        """Use ``pause`` (an iterable of bools, or ``None`` for never) from the next cycle."""
        self._pause = iter(pause) if pause is not None else None

    def _paused(self):
        return bool(next(self._pause)) if self._pause is not None else False

    def _ready_now(self):
        return self.ready is None or bool(self.ready.value)


class StreamSource(_StreamModel):
    """Drives a stream into the design: ``send_nowait`` queues payloads (unsigned ints)."""

    def __init__(self, dut, prefix, clock, *, pause=None):
        super().__init__(dut, prefix, clock, pause)
        self.queue = deque()
        self._offering = False
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send_nowait(self, *payloads):
        self.queue.extend(int(payload) for payload in payloads)

    def idle(self):
        return not self.queue and not self._offering

    async def wait_idle(self, budget):
        """Wait until everything queued has been transferred; at most ``budget`` cycles."""
        await wait_until(self.clock, self.idle, budget,
                         lambda: f"{self.prefix}: {len(self.queue)} queued payloads still to "
                                 f"be accepted")

    def clear(self):
        """Forget queued payloads and drop ``valid`` (for a reset in the middle of a stream)."""
        self.queue.clear()
        self._offering = False
        self.valid.value = 0

    async def _run(self):
        while True:
            await ReadOnly()
            transferred = self._offering and self._ready_now()
            await RisingEdge(self.clock)
            if transferred:
                self._offering = False
                self.transfers += 1
            paused = self._paused()
            if not self._offering:
                if self.queue and not paused:
                    self.payload.value = self.queue.popleft()
                    self.valid.value = 1
                    self._offering = True
                else:
                    self.valid.value = 0


class StreamMonitor(_StreamModel):
    """Records every transfer on a stream without driving it, and checks the stream rules."""

    def __init__(self, dut, prefix, clock, *, callback=None):
        super().__init__(dut, prefix, clock)
        self.received = deque()
        self.callback = callback
        self.errors = []
        self._task = cocotb.start_soon(self._watch())

    def _on_transfer(self, payload):
        self.transfers += 1
        if self.callback is not None:
            self.callback(payload)
        else:
            self.received.append(payload)

    async def _watch(self):
        held = None  # payload offered but not taken on the previous edge
        while True:
            await ReadOnly()
            valid = bool(self.valid.value)
            if held is not None:
                if not valid:
                    self.errors.append(f"{self.prefix}: valid dropped before the transfer")
                elif self.payload.value.to_unsigned() != held:
                    self.errors.append(
                        f"{self.prefix}: payload changed from {held:#x} to "
                        f"{self.payload.value.to_unsigned():#x} before the transfer")
            held = None
            if valid:
                payload = self.payload.value.to_unsigned()
                if self._ready_now():
                    self._on_transfer(payload)
                else:
                    held = payload
            await RisingEdge(self.clock)

    def check(self):
        """Raise :class:`StreamProtocolError` if the source broke the rules."""
        if self.errors:
            raise StreamProtocolError("; ".join(self.errors[:5]))

    async def wait_count(self, count, budget):
        """Wait until ``count`` payloads have been received; at most ``budget`` cycles."""
        await wait_until(self.clock, lambda: self.transfers >= count, budget,
                         lambda: f"{self.prefix}: {count} payloads (have {self.transfers})")


class StreamSink(StreamMonitor):
    """Accepts a stream from the design, with backpressure from a pause generator."""

    def __init__(self, dut, prefix, clock, *, pause=None, callback=None):
        super().__init__(dut, prefix, clock, callback=callback)
        if self.ready is None:
            raise AttributeError(f"{prefix} has no ready signal to drive")
        self.set_pause(pause)
        self.ready.value = 0
        self._driver = cocotb.start_soon(self._drive())

    async def _drive(self):
        while True:
            self.ready.value = 0 if self._paused() else 1
            await RisingEdge(self.clock)
