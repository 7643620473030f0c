"""Common pieces of every qaccel cocotb testbench: clock, reset, parameters, seeded random
numbers, and waits with a cycle budget that fail instead of hanging.

Only imported inside the simulator (it needs cocotb).
"""

from __future__ import annotations

import hashlib
import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, current_gpi_trigger

__all__ = ["CycleBudgetExceeded", "params", "TB", "wait_until", "signed"]


class CycleBudgetExceeded(AssertionError):
    """A wait in a testbench took more clock cycles than its budget."""


def params():
    """The ``params`` dict that :func:`qaccel.sim.run_cocotb` was given."""
    return json.loads(os.environ.get("QACCEL_PARAMS", "{}"))


def signed(value, width):
    """Read an unsigned ``width``-bit integer as two's complement."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


async def wait_until(clock, predicate, budget, what):
    """Wait on rising edges of ``clock`` until ``predicate()`` is true.

    Parameters
    ----------
    clock : cocotb handle
    predicate : callable returning bool
        Evaluated after each rising edge, once signals have settled.
    budget : int
        Most clock cycles to wait.
    what : str or callable
        What is being waited for, for the error message (a callable is evaluated when the
        budget runs out, so it can report the state at that moment).

    Returns
    -------
    int
        Cycles waited (0 if ``predicate()`` already holds). May be called in the read-only
        phase, e.g. right after another wait returned.
    """
    for cycle in range(budget + 1):
        # Already in the read-only phase (e.g. right after another wait): values are final.
        if not isinstance(current_gpi_trigger(), ReadOnly):
            await ReadOnly()
        if predicate():
            return cycle
        await RisingEdge(clock)
    raise CycleBudgetExceeded(f"waited {budget} cycles for {what() if callable(what) else what}")


def _current_test_name():
    # cocotb has no public accessor for the running test; without it every test of a module
    # shares one stream of random numbers, which is still reproducible.
    try:
        from cocotb import regression

        return regression._manager_inst._test.fullname
    except AttributeError:
        return ""


class TB:
    """Base class of a testbench: starts the clock, owns the seeded RNG and the parameters.

    Parameters
    ----------
    dut : cocotb handle
        The toplevel.
    clock, reset : str
        Names of the clock and (synchronous, active-high) reset ports. Amaranth calls them
        ``clk`` and ``rst``.
    period_ns : int
        Clock period.
    """

    def __init__(self, dut, *, clock="clk", reset="rst", period_ns=10):
        self.dut = dut
        self.log = dut._log
        self.params = params()
        self.clock = getattr(dut, clock)
        self.reset_port = getattr(dut, reset) if reset else None
        digest = hashlib.sha256(f"{cocotb.RANDOM_SEED}:{_current_test_name()}".encode()).digest()
        #: Per-test generator: a test's random values do not depend on which tests ran before.
        self.rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        self.log.info("seed %d (QACCEL_SEED=%d reproduces it), params %s",
                      cocotb.RANDOM_SEED, cocotb.RANDOM_SEED, self.params)
        Clock(self.clock, period_ns, unit="ns").start()

    async def reset(self, cycles=2):
        """Hold reset for ``cycles`` rising edges."""
        if self.reset_port is None:
            return
        self.reset_port.value = 1
        await ClockCycles(self.clock, cycles)
        self.reset_port.value = 0
        await RisingEdge(self.clock)

    async def cycles(self, count):
        await ClockCycles(self.clock, count)

    async def wait_until(self, predicate, budget, what):
        return await wait_until(self.clock, predicate, budget, what)
