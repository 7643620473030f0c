"""Xilinx UltraScale boards: the INT8 engine packs two products per DSP48E2 (WP486).

A bitstream needs Vivado. Without it, ``qaccel build`` still writes Amaranth's Vivado build
plan (Verilog, XDC, Tcl, ``build_top.sh``) and says so; ``--synth-only`` runs Yosys'
``synth_xilinx`` instead and reports DSP48E2 and LUT counts.

KCU105 (Kintex UltraScale XCKU040): amaranth-boards has no UART resource for it; the CP2105
USB-UART pins used here (FPGA ``tx`` K26, ``rx`` G25, LVCMOS18) are those of LiteX-boards'
KCU105 platform, not checked on a board by this project.
"""

from .base import Board, BuildConfig

__all__ = ["KCU105"]


def _platform_class():
    from amaranth.build import Attrs
    from amaranth_boards.kcu105 import KCU105Platform
    from amaranth_boards.resources import UARTResource

    class KCU105UARTPlatform(KCU105Platform):
        """KCU105 with the CP2105 UART (first port) as a resource."""
        resources = KCU105Platform.resources + [
            UARTResource(0, rx="G25", tx="K26", attrs=Attrs(IOSTANDARD="LVCMOS18")),
        ]

    return KCU105UARTPlatform


class KCU105(Board):
    name = "kcu105"
    description = "Xilinx KCU105 (Kintex UltraScale XCKU040; bitstream needs Vivado)"
    family = "xilinx"
    device = "XCKU040"
    yosys_family = "xcu"     # synth_xilinx -family: xcu UltraScale, xcup UltraScale+
    dsp_backend = "dsp48e2"
    # 16x16 INT8 = 256 products in 128 DSP48E2 (of 1920).
    default_config = BuildConfig(rows=16, cols=16, pe=32, simd=128, clock_hz=125e6,
                                 baud=1_000_000, dsp_backend="dsp48e2")
    oscillator_hz = 125e6
    uart = ("uart", 0)
    leds = {role: ("led", index) for index, role in
            enumerate(("activity", "error", "heartbeat", "ready", "rx", "tx", "busy"))}
    device_totals = {"lut": 242400, "ff": 484800, "dsp": 1920, "bram": 600, "spram": 0}
    bram_bits = 36 * 1024
    spram_bits = 0
    # RAMB36E2: 72 bits wide in simple dual-port mode
    bram_shapes = ((72, 512), (36, 1024), (18, 2048), (9, 4096), (4, 8192), (2, 16384),
                   (1, 32768))
    dsp_name = "DSP48E2"
    build_tools = ("vivado",)
    synth_tools = ("yosys",)
    program_tools = ("openocd",)

    def platform(self):
        return _platform_class()()

    def achievable_clock(self, clock_hz):
        if clock_hz != self.oscillator_hz:
            raise ValueError(
                f"The {self.name} flow runs the fabric on the {self.oscillator_hz / 1e6:g} MHz "
                f"oscillator (no MMCM yet); --clock must be {self.oscillator_hz:.0f}, not "
                f"{clock_hz:.0f}")
        return self.oscillator_hz

    def clocking(self, m, platform, clock_hz):
        from amaranth import ClockDomain, ClockSignal, Const
        from amaranth.lib import io

        self.achievable_clock(clock_hz)
        m.domains.sync = ClockDomain("sync", reset_less=True)
        m.submodules.clk125 = clk125 = io.Buffer("i", platform.request("clk125", 0, dir="-"))
        m.d.comb += ClockSignal("sync").eq(clk125.i)
        return Const(1), self.oscillator_hz

    def program_command(self, tool, path, bitstream):
        return [path, "-c", f"source [find board/kcu105.cfg]; init; pld load 0 {bitstream}; exit"]

    def bitstream_name(self, name="top"):
        return f"{name}.bit"
