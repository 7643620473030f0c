"""Hard-block estimate of a configuration before synthesis, and the fit check.

Place-and-route of a design that needs more DSPs or block RAM than the FPGA has fails after
minutes (``synth_ice40 -dsp`` maps every multiplier to an ``SB_MAC16`` whatever the count).
:func:`check_fit` answers in milliseconds from the configuration alone and says what to
shrink.

DSP count of the INT8 engine (``rows x cols`` products, pairs along a row share the
activation, as :class:`qaccel.hw.dual_mac.DualMAC` pairs them):

- ``ice40`` (SB_MAC16 dual 8x8) and ``dsp48e2`` (WP486 packing): one block per pair,
  ``rows * ceil(cols / 2)``; an odd last column takes a whole block for one product.
- ``ecp5`` (MULT18X18D; nextpnr-ecp5 has no MULT9X9D) and ``generic``: one block per product,
  ``rows * cols``.

The DSP count comes from :func:`qaccel.hw.resources.estimate_multipliers` (the same rule; the
local :func:`dsp_blocks` is the fallback and the tests check both agree). The binary engine
uses no DSP. Memory: each memory of the design (its ``{name: bits}``, or the configuration's
buffers) is counted in whole block RAMs (iCE40 EBR 4 kbit, ECP5 DP16KD 18 kbit, RAMB36
36 kbit): by its shape in the block's best aspect ratio when the design gives shapes (an
iCE40 EBR is at most 16 bits wide, so a 176-bit wide memory takes 11 blocks whatever its
depth), else by its bits. A shape ``(width, depth, "spram")`` is a memory built for the
UltraPlus SPRAM (``ram_style="huge"``), counted in SPRAM blocks of :data:`SPRAM_SHAPE`.
Logic cells are known only after synthesis; a design factory may give a lower bound measured
on earlier builds (``min_logic_cells``), which rejects what is known not to fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Estimate", "DoesNotFit", "dsp_blocks", "bram_blocks", "spram_blocks", "estimate",
           "check_fit"]


class DoesNotFit(ValueError):
    """A configuration needs more hard blocks than the FPGA has (raised before synthesis)."""


def dsp_blocks(rows, cols, backend):
    """Hard multiplier blocks of a ``rows x cols`` INT8 array on ``backend``."""
    if backend in ("ice40", "dsp48e2"):
        return rows * -(-cols // 2)
    return rows * cols


def _dsp_estimate(config):
    """:func:`qaccel.hw.resources.estimate_multipliers` when present, else :func:`dsp_blocks`."""
    try:
        from ..hw.resources import estimate_multipliers
    except ImportError:
        return dsp_blocks(config.rows, config.cols, config.dsp_backend)
    return estimate_multipliers(config.rows, config.cols, config.dsp_backend).blocks


@dataclass(frozen=True)
class Estimate:
    """What a configuration needs of a board's hard blocks, and what the board has.

    Attributes
    ----------
    dsp, dsp_available : int
    bram, bram_available : int
        Block RAMs (EBR, DP16KD, RAMB36).
    spram, spram_available : int
    dsp_name : str
    detail : dict
        How each number was reached (per buffer, per engine), for the report.
    problems : list of str
        One sentence per resource that does not fit, each saying what to shrink.
    """
    dsp: int
    dsp_available: int
    bram: int
    bram_available: int
    spram: int
    spram_available: int
    dsp_name: str
    detail: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    @property
    def fits(self):
        return not self.problems

    def to_dict(self):
        return {"dsp": self.dsp, "dsp_available": self.dsp_available, "dsp_name": self.dsp_name,
                "bram": self.bram, "bram_available": self.bram_available,
                "spram": self.spram, "spram_available": self.spram_available,
                "detail": self.detail, "problems": list(self.problems)}


def _largest_fitting(rows, cols, backend, available):
    """Suggestions ``(rows, cols)`` that fit ``available`` blocks, keeping one side."""
    suggestions = []
    for r in range(rows, 0, -1):
        if dsp_blocks(r, cols, backend) <= available:
            suggestions.append((r, cols))
            break
    for c in range(cols, 0, -1):
        if dsp_blocks(rows, c, backend) <= available:
            suggestions.append((rows, c))
            break
    # the largest square
    side = max((s for s in range(1, 65) if dsp_blocks(s, s, backend) <= available), default=0)
    if side:
        suggestions.append((side, side))
    unique = []
    for item in suggestions:
        if item not in unique:
            unique.append(item)
    return unique


def bram_blocks(board, memory):
    """Block RAMs of ``board`` for one memory: ``bits``, or ``(width, depth)``.

    A shape is counted in the block's best aspect ratio (``board.bram_shapes``): e.g. a
    176-bit wide, 8-deep memory takes 11 iCE40 EBRs (16 bits wide each), not the 1 its 1408
    bits suggest. A bare bit count (or a board without ratios) is rounded up to whole blocks.
    """
    if isinstance(memory, tuple):
        width, depth = memory
        if board.bram_shapes:
            return min(-(-width // w) * -(-depth // d) for w, d in board.bram_shapes)
        memory = width * depth
    return -(-memory // board.bram_bits)


#: Width and depth of an iCE40 UltraPlus SPRAM block (SB_SPRAM256KA).
SPRAM_SHAPE = (16, 16384)


def spram_blocks(width, depth):
    """SPRAM blocks for a ``width x depth`` memory built for them."""
    return -(-width // SPRAM_SHAPE[0]) * -(-depth // SPRAM_SHAPE[1])


def _describe(memory):
    if isinstance(memory, tuple):
        return f"{memory[0]} x {memory[1]} ({memory[0] * memory[1]} bits)"
    return f"{memory} bits"


def _memory(board, memories):
    """``(bram, spram, detail)``: blocks for ``{name: bits or shape}`` on ``board``."""
    bram = spram = 0
    detail = {}
    for name, memory in memories.items():
        if isinstance(memory, tuple) and memory[2:] == ("spram",):
            blocks = spram_blocks(*memory[:2])
            spram += blocks
            detail[name] = f"{_describe(memory)} -> {blocks} SPRAM"
            continue
        if not board.bram_bits:
            detail[name] = f"{_describe(memory)} -> no block RAM on this device"
            continue
        blocks = bram_blocks(board, memory)
        bram += blocks
        detail[name] = f"{_describe(memory)} -> {blocks} BRAM"
    return bram, spram, detail


def estimate(board, config, memories=None, logic=None):
    """Estimate the hard blocks ``config`` needs on ``board`` (a :class:`~.base.Board`).

    Parameters
    ----------
    memories : dict or None
        ``{name: bits}`` or ``{name: (width, depth)}`` of every memory of the design (shapes
        count better, see :func:`bram_blocks`); default: the configuration's buffers. A design
        factory can supply it (``factory.memory_shapes(config)`` or
        ``factory.memory_bits(config)``).
    logic : tuple or None
        ``(cells, what, advice)``: a lower bound on the logic cells (LUT4 + flip-flop pairs on the
        iCE40, compared with ``device_totals["lut"]``) the design needs, from measured builds
        (``factory.min_logic_cells(config, family)``); ``None``: not known, not checked.
    """
    totals = board.device_totals
    dsp = _dsp_estimate(config) if config.int8 else 0
    if memories is None:
        memories = {name: 8 * size for name, size in config.buffers.items()}
    bram, spram, memory_detail = _memory(board, memories)
    detail = {
        "int8": (f"{config.rows}x{config.cols} array, {config.dsp_backend} backend: "
                 f"{dsp} {board.dsp_name}") if config.int8 else "absent",
        "binary": f"{config.pe} PE x {config.simd} SIMD, no DSP" if config.binary else "absent",
        "memories": memory_detail,
    }
    if logic is not None:
        detail["logic"] = f"{logic[1]}: at least {logic[0]} logic cells"
    problems = []
    dsp_available = totals.get("dsp", 0)
    if dsp > dsp_available:
        pairing = (f"{config.rows} rows x {-(-config.cols // 2)} column pairs"
                   if config.dsp_backend in ("ice40", "dsp48e2")
                   else f"one per product")
        options = ", ".join(f"--rows {r} --cols {c}" for r, c in
                            _largest_fitting(config.rows, config.cols, config.dsp_backend,
                                             dsp_available))
        problems.append(
            f"a {config.rows}x{config.cols} INT8 array needs {dsp} {board.dsp_name} "
            f"({pairing}) but the {board.device} has {dsp_available}: shrink the array "
            f"({options or 'no INT8 array fits'}) or leave the INT8 engine out (--no-int8)")
    bram_available = totals.get("bram", 0)
    spram_available = totals.get("spram", 0)
    if bram > bram_available:
        # with both engines, leaving one out frees its memories
        one_engine = (" or leave an engine out (--no-binary, --no-int8)"
                      if config.int8 and config.binary else "")
        problems.append(
            f"the memories need {bram} block RAMs of {board.bram_bits // 1024} kbit but the "
            f"{board.device} has {bram_available}: shrink the memories "
            f"({'; '.join(f'{k} {v}' for k, v in memory_detail.items() if 'SPRAM' not in v)})"
            f"{one_engine}")
    if spram > spram_available:
        problems.append(
            f"the memories built for the SPRAM need {spram} SPRAM blocks ({SPRAM_SHAPE[0]} bits "
            f"x {SPRAM_SHAPE[1]} each) but the {board.device} has {spram_available}: narrow "
            f"their words (for the accelerator top: the INT8 array's rows and columns, the "
            f"binary engine's SIMD bytes; 4 bytes each at most), or build them as block RAM "
            f"(option spram=False) "
            f"({'; '.join(f'{k} {v}' for k, v in memory_detail.items() if 'SPRAM' in v)})")
    lut_available = totals.get("lut", 0)
    if logic is not None and lut_available and logic[0] > lut_available:
        problems.append(f"{logic[1]} needs at least {logic[0]} logic cells but the "
                        f"{board.device} has {lut_available}: {logic[2]}")
    return Estimate(dsp, dsp_available, bram, bram_available, spram, spram_available,
                    board.dsp_name, detail, problems)


def check_fit(board, config, memories=None, logic=None):
    """Return the :class:`Estimate`; raise :class:`DoesNotFit` naming what to shrink."""
    result = estimate(board, config, memories, logic)
    if not result.fits:
        raise DoesNotFit(f"configuration does not fit the {board.name} ({board.device}): "
                         + "; ".join(result.problems))
    return result
