"""Baud-rate tolerance of the UART receiver (qaccel.hw.uart.UARTRX).

Run with ``python bench/uart_tolerance.py``. For a few clock/baud configurations, a sender
whose bit time is off by a factor sends random bytes back to back (the hardest case: every
start edge comes right after the previous stop bit), starting at a random phase of the clock;
the script bisects for the largest sender error, slow (longer bits) and fast, at which every
byte still arrives exactly with no error counted. Uses Amaranth's own simulator (no Verilator
build); runs in about 45 s on 2 cores.

Sampling in the middle of the bit, a receiver can at best follow a sender 0.5 / 9.5 = 5.3 %
slow (the stop bit's sample must come after the stop bit's start); the fast side is limited by
how late in the bit the sample is taken, which at 4 samples per bit is 2 to 3 clocks of 4.
"""

from __future__ import annotations

import argparse
import random
import time
import warnings

from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator

from qaccel.hw.uart import UARTRX

#: (label, clk_freq, baud, oversampling)
CONFIGS = [
    ("iCEBreaker 12 MHz, 3 Mbaud", 12e6, 3e6, None),
    ("7.3728 MHz, 230400, 16x", 7.3728e6, 230400, 16),
    ("48 MHz, 3 Mbaud, 16x", 48e6, 3e6, 16),
    ("12 MHz, 1 Mbaud", 12e6, 1e6, None),
]


def receives_exactly(clk_freq, baud, oversampling, factor, count, seed):
    """True if ``count`` random back-to-back bytes sent at ``baud * factor`` all arrive."""
    rng = random.Random(seed)
    data = [rng.randrange(256) for _ in range(count)]
    dut = UARTRX(clk_freq, baud, oversampling=oversampling, fifo_depth=count + 1)
    period = 1 / clk_freq
    bit_time = 1 / (baud * factor)
    received = []

    async def sender(ctx):
        ctx.set(dut.rx, 1)
        await ctx.delay((4 + rng.random()) * period)
        for byte in data:
            for level in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
                ctx.set(dut.rx, level)
                await ctx.delay(bit_time)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        async for _, _, valid, payload, *counters in ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.framing_error_count, dut.break_count,
                dut.overrun_count):
            if valid:
                received.append(payload)
            errors[:] = counters

    errors = []
    sim = Simulator(dut)
    sim.add_clock(period)
    sim.add_testbench(sender)
    sim.add_testbench(sink, background=True)
    sim.run_until((count * 10 + 4) * bit_time + 20 * period)
    return received == data and not any(errors)


def limit(config, direction, count, seeds, resolution=0.001):
    """Largest sender error (fraction) in ``direction`` (+1 fast, -1 slow) that passes (the
    search assumes pass/fail is monotonic in the error)."""
    _, clk_freq, baud, oversampling = config
    good, bad = 0.0, 0.12
    while bad - good > resolution:
        error = (good + bad) / 2
        factor = 1 + direction * error
        if all(receives_exactly(clk_freq, baud, oversampling, factor, count, seed)
               for seed in seeds):
            good = error
        else:
            bad = error
    return good


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=16, help="bytes per trial")
    parser.add_argument("--seeds", type=int, default=2, help="trials (clock phases) per point")
    args = parser.parse_args()
    # The receivers built only to print their parameters are never elaborated.
    warnings.filterwarnings("ignore", category=UnusedElaboratable)
    seeds = range(args.seeds)
    print(f"UART receiver tolerance: {args.bytes} random bytes back to back, {args.seeds} "
          f"clock phases per point, bisection to 0.1 %")
    print(f"{'configuration':<28} {'samples/bit':>11} {'divider':>7} {'own error':>9} "
          f"{'sender slow':>11} {'sender fast':>11}")
    started = time.monotonic()
    for config in CONFIGS:
        label, clk_freq, baud, oversampling = config
        rx = UARTRX(clk_freq, baud, oversampling=oversampling)
        slow = limit(config, -1, args.bytes, seeds)
        fast = limit(config, +1, args.bytes, seeds)
        print(f"{label:<28} {rx.oversampling:>11} {rx.divider:>7} "
              f"{rx.baud_error:>+9.2%} {-slow:>+11.1%} {fast:>+11.1%}", flush=True)
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
