"""PLL parameters for the open-toolchain FPGAs, computed in Python.

The same searches as Project IceStorm's ``icepll`` and Project Trellis' ``ecppll`` (both on
PyPI as ``yowasp-icepll`` / ``yowasp-ecppll``; the tests compare against them), so a build
needs no extra tool run. Every function returns the achieved frequency: the UART divider and
the design are given that one, not the one requested.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ICE40PLL", "ECP5PLL", "ice40_pll", "ecp5_pll"]

_MHZ = 1e6


@dataclass(frozen=True)
class ICE40PLL:
    """``SB_PLL40_*`` settings in SIMPLE feedback mode (iCE40 LP/HX/UltraPlus)."""
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_in: float
    f_out: float

    @property
    def f_pfd(self):
        return self.f_in / (self.divr + 1)

    @property
    def f_vco(self):
        return self.f_pfd * (self.divf + 1)


def ice40_pll(f_in, f_out):
    """Closest ``SB_PLL40`` SIMPLE-feedback setting to ``f_out`` from ``f_in`` (Hz).

    Limits (iCE40 sysCLOCK PLL design guide): PFD 10-133 MHz, VCO 533-1066 MHz, output
    16-275 MHz; ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``.

    Raises
    ------
    ValueError
        If no setting gives an output inside the PLL's range.
    """
    f_in_mhz, want = f_in / _MHZ, f_out / _MHZ
    if not 10 <= f_in_mhz <= 133:
        raise ValueError(f"iCE40 PLL input {f_in_mhz} MHz is outside 10-133 MHz")
    if not 16 <= want <= 275:
        raise ValueError(f"iCE40 PLL output {want} MHz is outside 16-275 MHz")
    best = None
    for divr in range(16):
        f_pfd = f_in_mhz / (divr + 1)
        if not 10 <= f_pfd <= 133:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533 <= f_vco <= 1066:
                continue
            for divq in range(1, 7):
                got = f_vco / (1 << divq)
                if best is None or abs(got - want) < abs(best[3] - want):
                    best = (divr, divf, divq, got)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting makes {want} MHz from {f_in_mhz} MHz")
    divr, divf, divq, got = best
    f_pfd = f_in_mhz / (divr + 1)
    # icepll's loop-filter table, by PFD frequency.
    filter_range = 1 + sum(f_pfd >= edge for edge in (17, 26, 44, 66, 101))
    return ICE40PLL(divr, divf, divq, filter_range, f_in, got * _MHZ)


@dataclass(frozen=True)
class ECP5PLL:
    """``EHXPLLL`` settings, primary output ``CLKOP`` fed back (ECP5)."""
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in: float
    f_out: float

    @property
    def f_vco(self):
        return self.f_out * self.clkop_div

    @property
    def clkop_cphase(self):
        # ecppll shifts CLKOP by 180 degrees (half the divider, truncated in float32, so it
        # is sometimes one less). CLKOP is its own feedback and the only clock, so the phase
        # against CLKI does not matter here.
        return self.clkop_div // 2


def ecp5_pll(f_in, f_out):
    """Closest ``EHXPLLL`` setting to ``f_out`` from ``f_in`` (Hz), as ``ecppll`` picks it.

    Limits (Lattice TN1263): input 8-400 MHz, PFD 3.125-400 MHz, VCO 400-800 MHz, output
    3.125-400 MHz; ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, ``f_vco = f_out * CLKOP_DIV``.
    Among equally close settings the one with the VCO nearest 600 MHz wins.

    Raises
    ------
    ValueError
        If the output is outside the PLL's range.
    """
    f_in_mhz, want = f_in / _MHZ, f_out / _MHZ
    if not 8 <= f_in_mhz <= 400:
        raise ValueError(f"ECP5 PLL input {f_in_mhz} MHz is outside 8-400 MHz")
    if not 3.125 <= want <= 400:
        raise ValueError(f"ECP5 PLL output {want} MHz is outside 3.125-400 MHz")
    best = None
    best_error = None
    for clki_div in range(1, 129):
        f_pfd = f_in_mhz / clki_div
        if not 3.125 <= f_pfd <= 400:
            continue
        for clkfb_div in range(1, 81):
            got = f_pfd * clkfb_div
            if not 3.125 <= got <= 400:
                continue
            for clkop_div in range(1, 129):
                f_vco = got * clkop_div
                if not 400 <= f_vco <= 800:
                    continue
                error = abs(got - want)
                if best is None or error < best_error or (
                        error == best_error and abs(f_vco - 600) < abs(best[3] - 600)):
                    best, best_error = (clki_div, clkfb_div, clkop_div, f_vco, got), error
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes {want} MHz from {f_in_mhz} MHz")
    clki_div, clkfb_div, clkop_div, _, got = best
    return ECP5PLL(clki_div, clkfb_div, clkop_div, f_in, got * _MHZ)
