"""Radiona ULX3S with the ECP5-85F: 25 MHz oscillator, FT231X UART, eight LEDs.

amaranth-boards' ULX3S platforms list ``openFPGALoader`` among the tools every build needs;
the programmer is only needed to load a bitstream, so this board drops it from the list.
"""

from .base import Board, BuildConfig
from .pll import ecp5_pll

__all__ = ["ULX3S85F"]


def _platform_class():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    class ULX3SBuildPlatform(ULX3S_85F_Platform):
        """ULX3S 85F whose build does not require the programmer."""

        @property
        def required_tools(self):
            return [tool for tool in super().required_tools if tool != "openFPGALoader"]

    return ULX3SBuildPlatform


class ULX3S85F(Board):
    name = "ulx3s"
    description = "Radiona ULX3S (Lattice ECP5-85F)"
    family = "ecp5"
    device = "LFE5U-85F"
    dsp_backend = "ecp5"
    # 8x8 INT8 = 64 products, one MULT18X18D each (of 156).
    default_config = BuildConfig(rows=8, cols=8, pe=16, simd=64, clock_hz=60e6,
                                 baud=3_000_000, dsp_backend="ecp5")
    # The accelerator top of this shape reaches 75.2 MHz (nextpnr-ecp5, seed 1; 74.9-76.0
    # over recent builds): the paths are the block RAM outputs into the link's handshakes and
    # the binary engine's pipeline enable (docs/BOARDS.md). 8-10 minutes on 2 cores.
    default_design = "top"
    oscillator_hz = 25e6
    uart = ("uart", 0)
    leds = {role: ("led", index) for index, role in
            enumerate(("activity", "error", "heartbeat", "ready", "rx", "tx", "busy"))}
    device_totals = {"lut": 83640, "ff": 83640, "dsp": 156, "bram": 208, "spram": 0}
    bram_bits = 18 * 1024
    spram_bits = 0
    # DP16KD: 36 bits wide as a pseudo dual-port RAM (PDPW16KD), 18 and less as DP16KD
    bram_shapes = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
    dsp_name = "MULT18X18D"
    build_tools = ("yosys", "nextpnr-ecp5", "ecppack")
    program_tools = ("openFPGALoader", "fujprog")

    def platform(self):
        return _platform_class()()

    def achievable_clock(self, clock_hz):
        if clock_hz == self.oscillator_hz:
            return self.oscillator_hz
        return ecp5_pll(self.oscillator_hz, clock_hz).f_out

    def clocking(self, m, platform, clock_hz):
        from amaranth import ClockDomain, ClockSignal, Const, Instance, Signal
        from amaranth.lib import io

        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        if clock_hz == self.oscillator_hz:
            m.d.comb += ClockSignal("sync").eq(clk25.i)
            return Const(1), self.oscillator_hz
        pll = ecp5_pll(self.oscillator_hz, clock_hz)
        clk_out = Signal()
        locked = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.oscillator_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{pll.f_out / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=pll.clki_div,
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=pll.clkop_div,
            p_CLKOP_CPHASE=pll.clkop_cphase,
            p_CLKOP_FPHASE=0,
            p_FEEDBK_PATH="CLKOP",
            p_CLKFB_DIV=pll.clkfb_div,
            i_RST=Const(0), i_STDBY=Const(0),
            i_CLKI=clk25.i,
            o_CLKOP=clk_out,
            i_CLKFB=clk_out,
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_LOCK=locked)
        m.d.comb += ClockSignal("sync").eq(clk_out)
        platform.add_clock_constraint(clk_out, pll.f_out)
        return locked, pll.f_out

    def program_command(self, tool, path, bitstream):
        if tool == "fujprog":
            return [path, str(bitstream)]
        return [path, "-b", "ulx3s", str(bitstream)]  # SRAM: volatile, add -f for flash

    def bitstream_name(self, name="top"):
        return f"{name}.bit"
