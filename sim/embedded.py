"""The driver's ``sim`` and ``sim:<config>`` URLs: the accelerator top co-simulated in C++.

:func:`open_embedded` builds the co-simulation of a named configuration on first use (cached;
it prints progress, since a build takes a minute or so) and returns a driver transport
connected to it over a socket pair. The same :class:`~qaccel.sw.Accelerator` code then runs
against the RTL exactly as against a board.

Configurations
--------------
``default``
    :class:`qaccel.hw.top.TopConfig` defaults: 4x4 INT8 array, binary engine pe=4 simd=32.
``int8``, ``binary``
    The default with one engine only.
``wide``
    8x8 INT8 array, binary engine pe=8 simd=64, larger buffers (the ULX3S-class device).
``uart``
    The default behind the UART PHY, reached through a pseudo-terminal and pyserial (the
    serial code path of the driver, unchanged).
``icebreaker``
    What ``qaccel build`` puts on the iCEBreaker: the 4x4 INT8 array alone, 2 KiB buffers
    (WEIGHTS and ACTIVATIONS single-port, as in the SPRAM), 32-bit counters, the serial
    requantizer, no hold registers, operand skid or output buffer, broadcast operands, the
    bit-serial CRC (generic multipliers in place of the SB_MAC16).
``icebreaker-binary``
    The iCEBreaker's binary build (``qaccel build --no-int8``): the binary engine alone at
    4 PE x 32, 3 thresholds per channel, the same buffers, counters and CRC.

The board configurations are taken from the board definitions (``qaccel.boards``), so they
stay what the bitstream builds; only the link (the byte stream instead of the UART) and the
multipliers differ.
"""

from __future__ import annotations

import sys

from qaccel.sw.errors import QaccelLinkError, QaccelNotFoundError
from qaccel.sw.transport import SerialTransport, Transport

__all__ = ["CONFIGS", "config", "open_embedded", "CosimTransport"]


def _board(name, **choices):
    """The top a board builds by default (with ``choices``, as ``qaccel build`` options), to
    co-simulate: keyword arguments of :class:`~qaccel.hw.top.TopConfig`, computed on use."""
    def fields():
        import dataclasses

        from qaccel.boards import get_board
        from qaccel.boards.designs import top_config

        top = top_config(get_board(name).config(**choices))
        # the byte-stream link, and Amaranth multipliers for the board's DSP blocks (a
        # Verilator build of Yosys' SB_MAC16 model is several times larger)
        return {**dataclasses.asdict(top), "baud": 0, "backend": "generic"}
    return fields


#: Configuration name -> keyword arguments of :class:`qaccel.hw.top.TopConfig` (or a function
#: that computes them, for the boards' configurations).
CONFIGS = {
    "default": {},
    "int8": {"binary": False},
    "binary": {"int8": False},
    "wide": {"rows": 8, "cols": 8, "pe": 8, "simd": 64, "weights_bytes": 16384,
             "activations_bytes": 16384, "params_bytes": 2048, "outputs_bytes": 16384},
    "uart": {"baud": 1_200_000},
    "icebreaker": _board("icebreaker"),
    "icebreaker-binary": _board("icebreaker", int8=False, binary=True),
}


def config(name):
    """The :class:`~qaccel.hw.top.TopConfig` called ``name``."""
    from qaccel.hw.top import TopConfig

    try:
        fields = CONFIGS[name]
    except KeyError:
        raise QaccelNotFoundError(
            f"no co-simulation configuration {name!r}; choose one of {sorted(CONFIGS)}") \
            from None
    return TopConfig(**(fields() if callable(fields) else fields))


class CosimTransport(Transport):
    """A driver transport over a running :class:`~qaccel.sim.cosim.CoSim` (socket pair)."""

    def __init__(self, cosim, name):
        self.cosim = cosim
        self.description = f"sim:{name}"

    def write(self, data):
        try:
            self.cosim.link.write(data)
        except (OSError, TimeoutError) as exc:
            raise QaccelLinkError(f"{self.description}: {exc}") from exc

    def read(self, timeout):
        link = self.cosim.link
        first = link.read(1, timeout)
        if not first:
            if link.at_eof:
                raise QaccelLinkError(f"{self.description}: the co-simulation exited")
            return b""
        return first + link.read(1 << 16, 0)

    @property
    def cycles(self):
        """Simulated cycles since the co-simulation started (waits until it is idle)."""
        return self.cosim.cycles

    def close(self):
        self.cosim.close(check=False)


class _PtyTransport(SerialTransport):
    """The serial transport on a co-simulation's pseudo-terminal; owns the co-simulation."""

    def __init__(self, cosim, name, baud):
        super().__init__(cosim.pty_path, baud)
        self.cosim = cosim
        self.description = f"sim:{name} (pty {cosim.pty_path})"

    def close(self):
        super().close()
        self.cosim.close(check=False)


def _build(name, top_config):
    from qaccel.hw.top import AcceleratorTop, UARTAcceleratorTop
    from qaccel.sim.cosim import build_cosim

    print(f"qaccel: preparing the co-simulation of configuration {name!r} "
          f"(the first time this builds the RTL with Verilator: about a minute)",
          file=sys.stderr, flush=True)
    module = f"qaccel_{name.replace('-', '_')}"   # a Verilog identifier
    if top_config.baud:
        return build_cosim(UARTAcceleratorTop(top_config), module, uart=True,
                           clocks_per_bit=top_config.clock_hz // top_config.baud)
    return build_cosim(AcceleratorTop(top_config), module)


def open_embedded(name="default"):
    """Start the co-simulation of configuration ``name``; returns a driver transport."""
    try:
        from qaccel.sim.cosim import CoSim
    except ImportError as exc:
        raise QaccelNotFoundError(
            f"the 'sim' URL needs the simulation extra ({exc.name} is missing): "
            f"pip install 'qaccel[sim]'") from exc
    top_config = config(name)
    build = _build(name, top_config)
    if top_config.baud:
        cosim = CoSim(build, transport="pty").start()
        return _PtyTransport(cosim, name, top_config.baud)
    cosim = CoSim(build).start()
    return CosimTransport(cosim, name)
