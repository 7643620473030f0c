"""1BitSquared iCEBreaker: iCE40UP5K-SG48, 12 MHz oscillator, FT2232H channel B as the UART.

The fabric clock comes from the UP5K's PLL (``SB_PLL40_PAD`` on the oscillator pin 35, the
PLL's dedicated input). The on-board LEDs: green = link activity, red = errors.
"""

from .base import Board, BuildConfig
from .pll import ice40_pll

__all__ = ["ICEBreaker", "SPRAM_INIT_DELETE"]

#: Yosys command run after reading the design: drop the initial contents of the memories
#: built for the SPRAM (named ``*_spram``, ``TopConfig.spram``). Amaranth gives every memory
#: initial contents (zeros); the SPRAM has none, so Yosys would not map them to it.
SPRAM_INIT_DELETE = "delete t:$meminit_v2 r:MEMID=*_spram %i"


class ICEBreaker(Board):
    name = "icebreaker"
    description = "1BitSquared iCEBreaker (iCE40 UltraPlus 5K)"
    family = "ice40"
    device = "iCE40UP5K"
    dsp_backend = "ice40"
    # The default build is the accelerator top, so that the host driver talks to the board
    # as to the co-simulation: the 4x4 INT8 array in all 8 SB_MAC16 (dual 8x8), which takes
    # 5249 of the UP5K's 5280 logic cells with the options below; long to route (about 7
    # minutes, docs/BOARDS.md). The binary engine is sized to the logic left, which is none:
    # the smallest build of both engines took 5331 cells. It builds alone instead, at 4 PE x
    # 32 (`--no-int8`, about 4800 cells). WEIGHTS and ACTIVATIONS live in the 4 SPRAMs; the other
    # buffers, the counters and the UART FIFO take block RAMs (15 of 30 for the INT8 engine,
    # 29 for the binary one: its 512 x 32 weight store and 3 thresholds per channel).
    # `--design standin` builds the same 4x4 array on a small test protocol.
    default_design = "top"
    design_defaults = {"top": {"binary": False}}
    default_config = BuildConfig(rows=4, cols=4, pe=4, simd=32, clock_hz=24e6,
                                 baud=3_000_000, dsp_backend="ice40",
                                 weights_bytes=2048, activations_bytes=2048,
                                 params_bytes=1024, outputs_bytes=2048,
                                 # 3 thresholds: activations of up to 2 bits
                                 options={"binary_max_k": 512, "binary_max_n": 32,
                                          "max_thresholds": 3,
                                          "counter_width": 32,
                                          # the INT8 engine's smallest form
                                          "requantizer": "serial", "hold_registers": False,
                                          "operand_skid": False,
                                          "output_buffer": "none",
                                          "dataflow": "broadcast",
                                          # a byte per 8 cycles: a UART brings one per 80
                                          "crc_bits": 1,
                                          "spram": True})
    oscillator_hz = 12e6
    uart = ("uart", 0)
    leds = {"activity": ("led_g", 0), "error": ("led_r", 0)}
    device_totals = {"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30, "spram": 4}
    bram_bits = 4096
    spram_bits = 256 * 1024
    # SB_RAM40_4K read/write modes (Yosys maps a memory to one of them)
    bram_shapes = ((16, 256), (8, 512), (4, 1024), (2, 2048))
    dsp_name = "SB_MAC16"
    build_tools = ("yosys", "nextpnr-ice40", "icepack")
    # The default build fills 99 % of the logic cells, and the seed decides how long
    # nextpnr's router takes to clear the congestion. Measured on the default at 9dae63e
    # (2 cores): seed 3 routed in 417 s, 26.99 MHz; seed 1 in 1221 s beside the test
    # suite (26.91 MHz); seed 2 had not converged after 535 s of routing. A design change
    # reshuffles this: measure again (qaccel build --seed N) when the default's build slows.
    placement_seed = 3
    program_tools = ("iceprog", "openFPGALoader")

    def platform(self):
        from amaranth_boards.icebreaker import ICEBreakerPlatform

        return ICEBreakerPlatform()

    def achievable_clock(self, clock_hz):
        if clock_hz == self.oscillator_hz:
            return self.oscillator_hz
        return ice40_pll(self.oscillator_hz, clock_hz).f_out

    def clocking(self, m, platform, clock_hz):
        from amaranth import ClockDomain, ClockSignal, Const, Instance, Signal
        from amaranth.lib import io

        m.domains.sync = ClockDomain("sync", reset_less=True)
        if clock_hz == self.oscillator_hz:
            m.submodules.clk12 = clk12 = io.Buffer("i", platform.request("clk12", 0, dir="-"))
            m.d.comb += ClockSignal("sync").eq(clk12.i)
            return Const(1), self.oscillator_hz
        pll = ice40_pll(self.oscillator_hz, clock_hz)
        # The PLL takes the oscillator pad itself: no SB_IO in between.
        pad = platform.request("clk12", 0, dir="-")
        locked = Signal()
        clk_out = Signal()
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=Const(pll.divr, 4),
            p_DIVF=Const(pll.divf, 7),
            p_DIVQ=Const(pll.divq, 3),
            p_FILTER_RANGE=Const(pll.filter_range, 3),
            i_PACKAGEPIN=pad.io,
            i_RESETB=Const(1),
            i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clk_out,
            o_LOCK=locked)
        m.d.comb += ClockSignal("sync").eq(clk_out)
        platform.add_clock_constraint(clk_out, pll.f_out)
        return locked, pll.f_out

    def toolchain_overrides(self, config):
        return {
            # -dsp: SB_MAC16 for multipliers (the dual MAC instantiates its own anyway);
            # -device u: Amaranth does not pass the UltraPlus timing model to ABC.
            # -spram: memories with ram_style="huge" (TopConfig.spram) to the SPRAM, once
            # their initial contents, which Amaranth always emits and SPRAM cannot have,
            # are dropped (memories named *_spram only).
            "synth_opts": ["-dsp", "-spram", "-device", "u"],
            "script_after_read": SPRAM_INIT_DELETE,
        }

    def program_command(self, tool, path, bitstream):
        if tool == "iceprog":
            return [path, str(bitstream)]  # writes the SPI flash; the FPGA reloads from it
        return [path, "-b", "ice40_generic", str(bitstream)]
