"""Testbench of :class:`qaccel.boards.core.BoardCore` (power-on reset, UART PHY, stand-in
design, LED drivers) through its pins, with ``cocotbext-uart`` as the host's UART.

The simulated clock is 10 ns and the core is built for ``params["clock_hz"]`` = 100 MHz, so
UART bit times are exact in simulation time. LED bits follow ``qaccel.boards.base.LED_ROLES``.

Parameters (``params``): ``rows``, ``cols``, ``pe``, ``simd``, ``clock_hz``, ``baud``,
``por_cycles``, ``tick_cycles``, ``stretch_ticks``, ``heartbeat_ticks``.
"""

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotbext.uart import UartSink, UartSource

from qaccel.boards.base import LED_ROLES
from qaccel.boards.standin import HEADER_BINARY, HEADER_CLEAR_MAC, HEADER_MAC
from qaccel.sim.tbkit import TB
from qaccel.sw import golden

BIT = {role: index for index, role in enumerate(LED_ROLES)}


class CoreTB(TB):
    def __init__(self, dut):
        super().__init__(dut, reset=None, period_ns=round(1e9 / params_clock(dut)))
        p = self.params
        self.rows, self.cols, self.pe, self.simd = p["rows"], p["cols"], p["pe"], p["simd"]
        self.bit_cycles = round(p["clock_hz"] / p["baud"])
        self.stretch_cycles = p["stretch_ticks"] * p["tick_cycles"]
        dut.locked.value = 1
        self.host_tx = UartSource(dut.uart_rx, baud=p["baud"], bits=8, stop_bits=1)
        self.host_rx = UartSink(dut.uart_tx, baud=p["baud"], bits=8, stop_bits=1)
        self.led_history = []   # (cycle, leds) at every change
        self.cycle = 0
        cocotb.start_soon(self._watch_leds())

    async def _watch_leds(self):
        last = None
        while True:
            await RisingEdge(self.clock)
            await ReadOnly()
            self.cycle += 1
            value = self.dut.leds.value.to_unsigned()
            if value != last:
                self.led_history.append((self.cycle, value))
                last = value

    def led(self, role):
        return bool((self.dut.leds.value.to_unsigned() >> BIT[role]) & 1)

    async def wait_ready(self, budget):
        return await self.wait_until(lambda: self.led("ready"), budget, "power-on reset end")

    async def writable(self):
        """Leave the ReadOnly phase (where wait_until returns) before driving inputs."""
        await FallingEdge(self.clock)

    async def exchange(self, command, reply_bytes, budget=None):
        await self.writable()
        await self.host_tx.write(bytes(command))
        frame = 10 * self.bit_cycles
        budget = budget or frame * (len(command) + reply_bytes + 4) + 200
        await self.wait_until(lambda: self.host_rx.count() >= reply_bytes, budget,
                              f"{reply_bytes} reply bytes")
        return bytes(self.host_rx.read_nowait(reply_bytes))


def params_clock(dut):
    from qaccel.sim.tbkit import params

    return params()["clock_hz"]


@cocotb.test()
async def power_on_reset(dut):
    """Reset is held for por_cycles after configuration and again after the PLL loses lock;
    the design ignores the link meanwhile."""
    tb = CoreTB(dut)
    por = tb.params["por_cycles"]
    # A command sent during the power-on reset must be lost, not half-received.
    await tb.host_tx.write(bytes([HEADER_CLEAR_MAC]))
    cycles = await tb.wait_ready(por + 50)
    assert por <= cycles <= por + 4, f"ready after {cycles} cycles, expected ~{por}"
    assert tb.host_rx.count() == 0
    # losing lock restarts the count
    await tb.writable()
    dut.locked.value = 0
    await tb.wait_until(lambda: not tb.led("ready"), 5, "reset on lock loss")
    await tb.cycles(20)
    assert not tb.led("ready")
    await tb.writable()
    dut.locked.value = 1
    cycles = await tb.wait_ready(por + 50)
    assert por <= cycles <= por + 4, f"ready after {cycles} cycles after lock"
    # heartbeat: toggles every heartbeat_ticks ticks once out of reset
    half = tb.params["heartbeat_ticks"] * tb.params["tick_cycles"]
    await tb.wait_until(lambda: tb.led("heartbeat"), 2 * half + 5, "heartbeat on")
    start = tb.cycle
    await tb.wait_until(lambda: not tb.led("heartbeat"), half + 5, "heartbeat off")
    assert abs((tb.cycle - start) - half) <= 1


@cocotb.test()
async def commands_through_uart(dut):
    """INT8 and binary commands through the pins equal the golden model; activity LEDs are
    stretched pulses; the error LED stays dark."""
    tb = CoreTB(dut)
    await tb.wait_ready(tb.params["por_cycles"] + 50)
    acc = np.zeros((tb.rows, tb.cols), dtype=np.int64)
    for step in range(4):
        a = tb.rng.integers(-128, 128, tb.rows).astype(np.int8)
        w = tb.rng.integers(-128, 128, tb.cols).astype(np.int8)
        if step == 0:
            a[:] = -128
            w[:] = -128
        header = HEADER_CLEAR_MAC if step == 0 else HEADER_MAC
        acc = (0 if step == 0 else acc) + golden.gemm_int8(a[:, None], w[None, :])
        reply = await tb.exchange([header, *a.view(np.uint8), *w.view(np.uint8)],
                                  4 * tb.rows * tb.cols)
        got = np.frombuffer(reply, dtype="<i4").reshape(tb.rows, tb.cols)
        assert np.array_equal(got, acc), f"step {step}: {got} != {acc}"
    x = np.where(tb.rng.random(tb.simd) < 0.5, 1, -1).astype(np.int8)
    w_bits = np.where(tb.rng.random((tb.pe, tb.simd)) < 0.5, 1, -1).astype(np.int8)
    body = np.packbits(np.concatenate([x[None, :], w_bits]) == 1, axis=-1, bitorder="little")
    reply = await tb.exchange([HEADER_BINARY, *body.reshape(-1)], 2 * tb.pe)
    expected = golden.binary_gemm(golden.pack_bits(x[None, :]), golden.pack_bits(w_bits),
                                  tb.simd)[0]
    assert np.array_equal(np.frombuffer(reply, dtype="<i2"), expected)
    # LEDs: rx/tx/activity lit during the exchange and dark a stretch after the last byte
    stretch = tb.stretch_cycles
    for role in ("activity", "rx", "tx"):
        assert any(value >> BIT[role] & 1 for _, value in tb.led_history), f"{role} never lit"
    await tb.wait_until(lambda: not tb.led("activity"), stretch + 5 * tb.bit_cycles,
                        "activity LED off")
    assert not any(value >> BIT["error"] & 1 for _, value in tb.led_history)


@cocotb.test()
async def error_led(dut):
    """A rejected header and a line break light the error LED for a stretch each."""
    tb = CoreTB(dut)
    await tb.wait_ready(tb.params["por_cycles"] + 50)
    stretch = tb.stretch_cycles
    tick = tb.params["tick_cycles"]
    await tb.writable()
    await tb.host_tx.write(bytes([0x5A]))       # not a header: error pulse from the design
    await tb.wait_until(lambda: tb.led("error"), 20 * tb.bit_cycles, "error LED")
    lit = tb.cycle
    await tb.wait_until(lambda: not tb.led("error"), stretch + 5, "error LED off")
    # the pulse lasts stretch_ticks ticks; the first tick comes 1..tick_cycles after the event
    assert stretch - tick <= tb.cycle - lit <= stretch + 1, \
        f"error LED lit {tb.cycle - lit} cycles"
    # a break (line low for two frames) is a link error
    await tb.wait_until(tb.host_tx.idle, 20 * tb.bit_cycles, "host UART idle")
    await tb.writable()
    dut.uart_rx.value = 0
    await tb.cycles(20 * tb.bit_cycles)
    assert tb.led("error"), "break did not light the error LED"
    await tb.writable()
    dut.uart_rx.value = 1
    await tb.cycles(stretch + 20 * tb.bit_cycles)
    assert not tb.led("error")
    # the link still works after the break
    reply = await tb.exchange([HEADER_CLEAR_MAC] + [1] * (tb.rows + tb.cols),
                              4 * tb.rows * tb.cols)
    assert np.array_equal(np.frombuffer(reply, dtype="<i4"), np.ones(tb.rows * tb.cols))
