"""Board builds: configuration, estimate and fit check, PLL settings, the board wrapper and
the stand-in design in simulation, the command line, and one real iCEBreaker bitstream."""

import gc
import io
import json
import re
import subprocess
import sys
import time

import pytest

from qaccel.boards import BOARDS, BuildConfig, get_board
from qaccel.boards.base import find_build_tool
from qaccel.boards.estimate import DoesNotFit, bram_blocks, check_fit, dsp_blocks, estimate
from qaccel.boards.pll import ecp5_pll, ice40_pll
from qaccel.sim import cache_dir, run_cocotb

# -- configuration ------------------------------------------------------------------------


def test_build_config_validation():
    assert BuildConfig().int8_macs_per_cycle == 16
    assert BuildConfig(binary=False).binary_ops_per_cycle == 0
    with pytest.raises(ValueError, match="rows must be between 1 and 64, not 0"):
        BuildConfig(rows=0)
    with pytest.raises(TypeError, match="cols must be an integer, not 2.5"):
        BuildConfig(cols=2.5)
    with pytest.raises(ValueError, match="simd must be a multiple of 8, not 12"):
        BuildConfig(simd=12)
    with pytest.raises(ValueError, match="At least one engine must be enabled"):
        BuildConfig(int8=False, binary=False)
    with pytest.raises(ValueError, match="dsp_backend must be one of .*; not 'xc7'"):
        BuildConfig(dsp_backend="xc7")
    with pytest.raises(ValueError, match="clock_hz must be positive, not 0"):
        BuildConfig(clock_hz=0)
    with pytest.raises(TypeError, match="int8 must be True or False, not 1"):
        BuildConfig(int8=1)


def test_board_registry():
    assert set(BOARDS) == {"icebreaker", "ulx3s", "kcu105"}
    for name in BOARDS:
        board = get_board(name)
        config = board.config()
        assert config.dsp_backend == board.dsp_backend
        assert set(board.leds) <= {"activity", "error", "heartbeat", "ready", "rx", "tx", "busy"}
        # every default configuration fits its board
        check_fit(board, config)
    with pytest.raises(ValueError, match="Unknown board 'nexys'; known boards: icebreaker"):
        get_board("nexys")


# -- estimate -----------------------------------------------------------------------------


def test_dsp_estimate_per_backend():
    assert dsp_blocks(4, 4, "ice40") == 8
    assert dsp_blocks(3, 3, "ice40") == 6          # the odd column takes a whole SB_MAC16
    assert dsp_blocks(16, 16, "dsp48e2") == 128
    assert dsp_blocks(8, 8, "ecp5") == 64
    assert dsp_blocks(3, 5, "generic") == 15
    board = get_board("icebreaker")
    assert estimate(board, board.config(int8=False, binary=True)).dsp == 0
    assert estimate(board, board.config()).dsp == 8            # the default: 4x4 INT8


def test_too_large_fails_before_synthesis():
    """A 6x6 INT8 array on the UP5K (18 SB_MAC16 > 8) fails in milliseconds, saying what to
    shrink."""
    board = get_board("icebreaker")
    started = time.monotonic()
    with pytest.raises(DoesNotFit) as info:
        check_fit(board, board.config("standin", rows=6, cols=6))
    assert time.monotonic() - started < 1
    message = str(info.value)
    assert "needs 18 SB_MAC16" in message and "has 8" in message, message
    assert "--rows 4 --cols 4" in message and "--no-int8" in message, message


def test_dsp_estimate_agrees_with_hw_resources():
    from qaccel.hw.resources import estimate_multipliers

    for backend in ("ice40", "dsp48e2", "ecp5", "generic"):
        for rows, cols in ((1, 1), (3, 5), (4, 4), (6, 6), (16, 7)):
            assert dsp_blocks(rows, cols, backend) == \
                estimate_multipliers(rows, cols, backend).blocks, (backend, rows, cols)


def test_memory_estimate():
    board = get_board("icebreaker")
    # (the iCEBreaker's default sizes the other two buffers for the top: 0 leaves them out)
    config = board.config(weights_bytes=4096, activations_bytes=2048, params_bytes=0,
                          outputs_bytes=0)
    result = estimate(board, config)
    assert (result.bram, result.spram) == (12, 0)         # 512-byte EBRs
    with pytest.raises(DoesNotFit, match="memories need 130 block RAMs of 4 kbit but the "
                                         "iCE40UP5K has 30"):
        check_fit(board, board.config(weights_bytes=64 * 1024, activations_bytes=1024,
                                      params_bytes=0, outputs_bytes=0))
    ecp5 = get_board("ulx3s")
    assert estimate(ecp5, ecp5.config(outputs_bytes=16 * 1024)).bram == 8
    # a design factory's own memory list replaces the buffers
    assert estimate(board, config, {"fifo": 100, "ring": 4097}).bram == 3
    # shapes count blocks by aspect ratio: an EBR is 16 bits wide at most
    assert bram_blocks(board, (176, 8)) == 11          # 1408 bits, but 11 columns of 16 bits
    assert bram_blocks(board, (8, 512)) == 1
    assert bram_blocks(board, (32, 512)) == 4
    assert bram_blocks(board, 4097) == 2
    assert bram_blocks(ecp5, (128, 128)) == 4          # 36-bit wide pseudo dual-port blocks
    assert estimate(board, config, {"thresholds": (176, 8)}).bram == 11


def test_top_memory_estimate_by_shape():
    """The top's memories counted by shape: what Yosys maps on the iCE40 (measured before the
    counters moved to block RAM: 42 EBR for 4x4 + 4 x 32, 2 KiB buffers, a 512 x 32 binary
    store; 21 for INT8 alone; one more each now)."""
    from qaccel.boards.designs import accelerator_top

    board = get_board("icebreaker")
    config = board.config(int8=True, binary=True, pe=4, weights_bytes=2048, activations_bytes=2048,
                          params_bytes=1024, outputs_bytes=2048,
                          options={"binary_max_k": 512, "binary_max_n": 32})
    shapes = accelerator_top.memory_shapes(config)
    assert shapes["binary thresholds"] == (4 * 4 * 11, 8)
    assert sum(w * d for w, d in shapes.values()) == \
        sum(accelerator_top.memory_bits(config).values())
    assert estimate(board, config, shapes).bram == 43
    assert estimate(board, config.replace(binary=False),
                    accelerator_top.memory_shapes(config.replace(binary=False))).bram == 22
    with pytest.raises(DoesNotFit, match="binary thresholds 176 x 8 .1408 bits. -> 11 BRAM"):
        check_fit(board, config, shapes)


def test_spram_estimate():
    """Memories built for the UltraPlus SPRAM count in 16 x 16384 blocks, against the
    device's SPRAMs; a board without SPRAM refuses them, naming the option."""
    from qaccel.boards.estimate import SPRAM_SHAPE, spram_blocks

    assert SPRAM_SHAPE == (16, 16384)
    assert spram_blocks(32, 512) == 2 and spram_blocks(32, 16384) == 2
    assert spram_blocks(8, 16385) == 2 and spram_blocks(64, 100) == 4
    board = get_board("icebreaker")
    config = board.config()
    shapes = {"a": (32, 16384, "spram"), "b": (16, 256)}
    fit = check_fit(board, config, shapes)
    assert (fit.bram, fit.spram, fit.spram_available) == (1, 2, 4)
    assert fit.detail["memories"]["a"] == "32 x 16384 (524288 bits) -> 2 SPRAM"
    with pytest.raises(DoesNotFit, match=r"the memories built for the SPRAM need 6 SPRAM blocks "
                                         r"\(16 bits x 16384 each\) but the iCE40UP5K has 4: "
                                         r"narrow their words .* or build them as block RAM "
                                         r"\(option spram=False\) \(a 48 x 20000"):
        check_fit(board, config, {"a": (48, 20000, "spram")})
    ulx3s = get_board("ulx3s")
    with pytest.raises(DoesNotFit, match=r"need 2 SPRAM blocks \(16 bits x 16384 each\) but "
                                         r"the LFE5U-85F has 0"):
        check_fit(ulx3s, ulx3s.config(), shapes)


def test_top_on_icebreaker_fit_check():
    """The top's measured logic-cell floor on the UP5K grows with the INT8 array: 4x4 INT8
    alone now passes it (and places: docs/BOARDS.md), 8x8 does not (test_cli_too_large_is_fast);
    INT8 with the binary engine is refused: 4x4 + 4 x 32 for its memories and its logic, 2x2 +
    4 x 32 for its logic alone; the binary engine alone in 4 PE x 32 passes (it builds:
    docs/BOARDS.md)."""
    from qaccel.boards.designs import accelerator_top

    board = get_board("icebreaker")
    config = board.config(int8=True, binary=True, pe=4)       # 4x4 INT8 + 4 x 32 binary
    alone = config.replace(binary=False)         # the default
    assert alone == board.config()
    logic = accelerator_top.min_logic_cells(alone, board.family)
    assert logic[0] == 5125 <= board.device_totals["lut"]
    assert "measured floor: 4229 cells for 2 products, +64 per product" in logic[1]
    assert check_fit(board, alone, accelerator_top.memory_shapes(alone)).dsp == 8
    with pytest.raises(DoesNotFit, match=r"shrink the memories .*\) or leave an engine out "
                                         r"\(--no-binary, --no-int8\)"):
        check_fit(board, config, accelerator_top.memory_shapes(config))
    # 2x2 INT8 with the binary engine: its memories fit now (WEIGHTS and ACTIVATIONS in the
    # SPRAM), its logic never does (the smallest build of both engines took 5331 cells)
    both = config.replace(rows=2, cols=2)
    logic = accelerator_top.min_logic_cells(both, board.family)
    assert logic[0] == 4229 + 2 * 64 + 1102 and "+1102 for the smallest binary engine" in logic[1]
    assert accelerator_top.min_logic_cells(both.replace(rows=1, cols=2, pe=1, simd=8),
                                           board.family)[0] == 5331
    with pytest.raises(DoesNotFit, match=r"needs at least 5459 logic cells but the iCE40UP5K "
                                         r"has 5280"):
        check_fit(board, both, accelerator_top.memory_shapes(both), logic)
    small = config.replace(rows=2, cols=2, binary=False)
    assert accelerator_top.min_logic_cells(small, board.family)[0] == 4357
    assert check_fit(board, small, accelerator_top.memory_shapes(small)).dsp == 2
    binary = config.replace(int8=False, pe=4)    # --no-int8
    assert accelerator_top.min_logic_cells(binary, board.family) is None
    # WEIGHTS and ACTIVATIONS in the 4 SPRAMs; 28 block RAMs for the top (and one for the
    # board core's UART FIFO: 29, which Yosys maps)
    fit = check_fit(board, binary, accelerator_top.memory_shapes(binary))
    assert (fit.bram, fit.spram) == (28, 4)
    # with 4 thresholds per channel the top's memories alone fill the 30 EBR
    four = binary.replace(options={**binary.options, "max_thresholds": 4})
    assert check_fit(board, four, accelerator_top.memory_shapes(four)).bram == 30
    # the ECP5 has no measured floor: only memories and DSPs are checked
    ulx3s = get_board("ulx3s")
    assert accelerator_top.min_logic_cells(ulx3s.config(), ulx3s.family) is None


def test_accelerator_top_factory():
    """The 'top' design maps a BuildConfig onto the accelerator's TopConfig."""
    from qaccel.boards.build import resolve_design
    from qaccel.boards.designs import top_config

    board = get_board("icebreaker")
    config = board.config(int8=True, pe=4, clock_hz=24e6, weights_bytes=2048)
    top = top_config(config)
    assert (top.rows, top.cols, top.backend, top.pe, top.simd) == (4, 4, "ice40", 4, 32)
    # the iCEBreaker's default for the top: the INT8 engine alone, 4x4 (all 8 SB_MAC16)
    default = top_config(board.config())
    assert (default.int8, default.binary, default.rows, default.cols) == (True, False, 4, 4)
    assert (top.clock_hz, top.baud, top.weights_bytes) == (24_000_000, 3_000_000, 2048)
    factory = resolve_design("top")
    assert sum(factory.memory_bits(config).values()) == sum(top.memory_bits().values())
    with pytest.raises(ValueError, match="Unknown design 'fancy'"):
        resolve_design("fancy")


def test_cli_too_large_is_fast(tmp_path):
    """`qaccel build --rows 8 --cols 8` (which asks for the INT8 engine) exits 1 within
    seconds, without running a tool, saying what does not fit."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "qaccel", "build", "--rows", "8", "--cols", "8",
                             "--out", str(tmp_path / "b")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert "needs 32 SB_MAC16" in result.stderr
    assert "needs at least 8197 logic cells" in result.stderr   # the INT8 engine alone
    assert "need 8 SPRAM blocks" in result.stderr
    assert time.monotonic() - started < 15
    assert not (tmp_path / "b").exists()


def test_engine_options_imply_engines():
    """`--pe`/`--simd` ask for the binary engine, `--rows`/`--cols` for the INT8 one, and
    leaving one engine out asks for the other (the iCEBreaker's default has one engine)."""
    from qaccel.boards.commands import implied_engines

    assert implied_engines(None, None) == (None, None)
    assert implied_engines(False, None) == (False, True)
    assert implied_engines(None, False) == (True, False)
    assert implied_engines(None, None, pe=2) == (None, True)
    assert implied_engines(None, None, rows=2) == (True, None)
    assert implied_engines(False, False) == (False, False)   # refused by BuildConfig
    board = get_board("icebreaker")
    int8, binary = implied_engines(None, None, pe=2)
    config = board.config(int8=int8, binary=binary)
    assert (config.int8, config.binary) == (True, True)


def test_build_counts_the_board_cores_memory(tmp_path):
    """The estimate counts the UART receive FIFO's block RAM: the binary engine at 4 PE x 32
    with 4 thresholds per channel needs 30 EBR for the top's memories and 31 with it, and is
    refused before any tool (it used to fail in nextpnr's placement)."""
    from qaccel.boards.build import Progress, build

    board = get_board("icebreaker")
    config = board.config(int8=False, binary=True)
    config = config.replace(options={**config.options, "max_thresholds": 4})
    started = time.monotonic()
    with pytest.raises(DoesNotFit, match=r"the memories need 31 block RAMs of 4 kbit but the "
                                         r"iCE40UP5K has 30: .*UART receive FIFO 8 x 15 "
                                         r"\(120 bits\) -> 1 BRAM"):
        build(board, config, out_dir=tmp_path / "b", progress=Progress(None))
    assert time.monotonic() - started < 15
    assert not (tmp_path / "b").exists()


# -- PLLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("f_out", [24e6, 36e6, 48e6, 20e6])
def test_ice40_pll_matches_icepll(f_out, tmp_path):
    pll = ice40_pll(12e6, f_out)
    assert 533 <= pll.f_vco / 1e6 <= 1066 and 10 <= pll.f_pfd / 1e6 <= 133
    assert pll.f_out == pytest.approx(12e6 * (pll.divf + 1) / ((pll.divr + 1) << pll.divq))
    icepll = find_build_tool("icepll")
    if not icepll.found:
        pytest.skip("yowasp-icepll not installed")
    text = subprocess.run([icepll.path, "-i", "12", "-o", f"{f_out / 1e6:g}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300).stdout
    found = {name: int(re.search(rf"{name}:\s+(\d+)", text).group(1))
             for name in ("DIVR", "DIVF", "DIVQ", "FILTER_RANGE")}
    assert found == {"DIVR": pll.divr, "DIVF": pll.divf, "DIVQ": pll.divq,
                     "FILTER_RANGE": pll.filter_range}


@pytest.mark.parametrize("f_out", [60e6, 48e6, 75e6, 125e6])
def test_ecp5_pll_matches_ecppll(f_out, tmp_path):
    pll = ecp5_pll(25e6, f_out)
    assert 400 <= pll.f_vco / 1e6 <= 800
    ecppll = find_build_tool("ecppll")
    if not ecppll.found:
        pytest.skip("yowasp-ecppll not installed")
    subprocess.run([ecppll.path, "-i", "25", "-o", f"{f_out / 1e6:g}", "-f", "pll.v"],
                   capture_output=True, cwd=tmp_path, timeout=300, check=True)
    text = (tmp_path / "pll.v").read_text()
    found = {name: int(re.search(rf"\.{name}\((\d+)\)", text).group(1))
             for name in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV")}
    assert found == {"CLKI_DIV": pll.clki_div, "CLKFB_DIV": pll.clkfb_div,
                     "CLKOP_DIV": pll.clkop_div}


def test_pll_out_of_range():
    with pytest.raises(ValueError, match="iCE40 PLL output 7.0 MHz is outside 16-275 MHz"):
        ice40_pll(12e6, 7e6)
    with pytest.raises(ValueError, match="ECP5 PLL output 500.0 MHz is outside"):
        ecp5_pll(25e6, 500e6)


# -- simulation -----------------------------------------------------------------------------


def _sb_mac16_model():
    from qaccel.hw.dual_mac import sb_mac16_simulation_source

    return [sb_mac16_simulation_source(cache_dir() / "vendor")]


def test_standin_against_golden():
    """The stand-in design on SB_MAC16 (Yosys' model), 3x3 (an odd column) and 3 PE x 24."""
    from qaccel.boards.standin import StandIn

    config = BuildConfig(rows=3, cols=3, pe=3, simd=24, dsp_backend="ice40")
    tests = run_cocotb(StandIn(config), toplevel="boards_standin",
                       test_module="qaccel.sim.tb.boards_standin",
                       params={"rows": 3, "cols": 3, "pe": 3, "simd": 24, "int8": True,
                               "binary": True},
                       extra_sources=_sb_mac16_model())
    assert tests == 3


CORE_PARAMS = {"rows": 2, "cols": 3, "pe": 2, "simd": 16, "int8": True, "binary": True,
               "clock_hz": 100e6, "baud": 12_500_000, "por_cycles": 300,
               "tick_cycles": 8, "stretch_ticks": 8, "heartbeat_ticks": 6}


def test_board_core_through_uart_pins():
    """Power-on reset, UART PHY, stand-in (generic multipliers) and LEDs, driven through the
    rx/tx pins by cocotbext-uart."""
    from qaccel.boards.core import BoardCore
    from qaccel.boards.standin import StandIn

    p = CORE_PARAMS
    config = BuildConfig(rows=p["rows"], cols=p["cols"], pe=p["pe"], simd=p["simd"],
                         clock_hz=p["clock_hz"], baud=p["baud"], dsp_backend="generic")
    core = BoardCore(StandIn(config), clock_hz=p["clock_hz"], baud=p["baud"],
                     por_cycles=p["por_cycles"], tick_cycles=p["tick_cycles"],
                     stretch_ticks=p["stretch_ticks"], heartbeat_ticks=p["heartbeat_ticks"])
    tests = run_cocotb(core, toplevel="boards_core", test_module="qaccel.sim.tb.boards_core",
                       params=p)
    assert tests == 3


def test_lfsr_taps_are_maximal():
    from qaccel.boards.core import LFSR_TAPS, lfsr_step

    for width in sorted(LFSR_TAPS):
        if width > 18:              # 19..24 take ~30 s in Python; checked once by hand
            break
        state, period = lfsr_step(1, width), 1
        while state != 1:
            state, period = lfsr_step(state, width), period + 1
        assert period == 2 ** width - 1, width


@pytest.mark.parametrize("cycles", [1, 2, 3, 7, 8, 1000])
def test_prescaler_period(cycles):
    from amaranth.sim import Simulator

    from qaccel.boards.core import Prescaler

    dut = Prescaler(cycles)
    ticks = []

    async def bench(ctx):
        for cycle in range(3 * cycles):
            if ctx.get(dut.tick):
                ticks.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(ticks) == 3 and ticks[0] == cycles - 1
    assert [b - a for a, b in zip(ticks, ticks[1:])] == [cycles, cycles]


# Rejected on purpose, never elaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_prescaler_validation():
    from qaccel.boards.core import Prescaler

    with pytest.raises(ValueError, match="Prescaler cycles must be at least 1, not 0"):
        Prescaler(0)
    with pytest.raises(ValueError, match="Prescaler cycles must be below 16777216, not 16777216"):
        Prescaler(1 << 24)
    with pytest.raises(TypeError, match="Prescaler cycles must be an integer, not 2.5"):
        Prescaler(2.5)
    gc.collect()


# The components built here are rejected on purpose and never elaborated.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_board_core_rejects_wrong_design():
    from amaranth.lib import stream, wiring
    from amaranth.lib.wiring import In, Out

    from qaccel.boards.core import BoardCore, PowerOnReset

    class WideOutput(wiring.Component):
        rx: In(stream.Signature(8))
        tx: Out(stream.Signature(16))

        def elaborate(self, platform):  # pragma: no cover - never elaborated
            raise AssertionError

    with pytest.raises(TypeError, match="The design must have member 'tx'"):
        BoardCore(WideOutput(), clock_hz=24e6, baud=3e6, por_cycles=10, tick_cycles=10,
                  stretch_ticks=10, heartbeat_ticks=10)
    with pytest.raises(ValueError, match="baud error"):
        from qaccel.boards.standin import StandIn

        BoardCore(StandIn(BuildConfig()), clock_hz=10e6, baud=1_300_000, por_cycles=10,
                  tick_cycles=10, stretch_ticks=10, heartbeat_ticks=10)
    with pytest.raises(ValueError, match="Power-on reset cycles must be at least 1, not 0"):
        PowerOnReset(0)
    gc.collect()                    # their "never used" warnings fall inside this test's filter


# -- reports --------------------------------------------------------------------------------


def test_report_from_nextpnr_and_yosys(tmp_path):
    """nextpnr's --report JSON and Yosys' stat -json become the table and report.json;
    Fmax below the target is a timing failure."""
    from qaccel.boards.report import make_report, parse_nextpnr_report, parse_yosys_stat

    (tmp_path / "pnr.json").write_text(json.dumps({
        "utilization": {"ICESTORM_LC": {"used": 2500, "available": 5280},
                        "ICESTORM_DSP": {"used": 8, "available": 8},
                        "ICESTORM_RAM": {"used": 3, "available": 30},
                        "ICESTORM_SPRAM": {"used": 0, "available": 4},
                        "ICESTORM_PLL": {"used": 1, "available": 1}},
        "fmax": {"clk": {"achieved": 23.9, "constraint": 24.0}},
        "critical_paths": [{"from": "posedge clk", "to": "posedge clk", "path": [
            {"delay": 1.5, "from": {"cell": "a"}, "to": {"cell": "b"}, "type": "clk-to-q"},
            {"delay": 40.0, "from": {"cell": "b"}, "to": {"cell": "c"}, "type": "routing"}]}],
    }))
    (tmp_path / "stat.json").write_text(json.dumps({"design": {"num_cells_by_type": {
        "SB_LUT4": 2000, "SB_DFFESR": 700, "SB_DFF": 50, "SB_MAC16": 8, "$scopeinfo": 3}}}))
    board = get_board("icebreaker")
    config = board.config("standin")
    report = make_report(board, config, cells=parse_yosys_stat(tmp_path / "stat.json"),
                         nextpnr=parse_nextpnr_report(tmp_path / "pnr.json"),
                         estimate=estimate(board, config))
    assert report.resources["LC"] == {"used": 2500, "available": 5280}
    assert report.resources["LUT"]["used"] == 2000 and report.resources["FF"]["used"] == 750
    assert report.resources["DSP"]["used"] == 8 and report.resources["BRAM"]["used"] == 3
    assert report.timing_met is False and report.fmax_mhz == 23.9
    assert report.critical_path == {"clock": "posedge clk", "from": "a", "to": "c",
                                    "delay_ns": 41.5}
    assert report.peak()["int8_macs_per_s_at_fmax"] == pytest.approx(16 * 23.9e6)
    table = report.table()
    assert "FAIL" in table and "SB_MAC16" in table
    report.write(tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text())["timing_met"] is False


# -- command line ---------------------------------------------------------------------------


def test_cli_boards_lists_every_board():
    from qaccel.boards.commands import boards_main

    out = io.StringIO()
    assert boards_main(stream=out) == 0
    text = out.getvalue()
    for name, board in BOARDS.items():
        assert name in text and board.device in text
    assert "8/8 SB_MAC16" in text and "64/156 MULT18X18D" in text
    assert "top: INT8 4x4, 24 MHz" in text and "top: INT8 8x8, binary 16x64" in text
    assert "standin: INT8 16x16" in text


def test_cli_counter_width(tmp_path, capsys):
    """--counter-width reaches the top's configuration, is checked there, and is refused for
    a design without the top's counters; nothing is built in any of these cases."""
    import argparse

    from qaccel.boards.commands import _config_from_args, add_build_options
    from qaccel.boards.designs import top_config
    from qaccel.cli import main

    parser = argparse.ArgumentParser()
    add_build_options(parser)
    board = get_board("icebreaker")
    config = _config_from_args(board, parser.parse_args(["--counter-width", "24"]))
    assert top_config(config).counter_width == 24
    assert top_config(board.config()).counter_width == 32
    assert main(["build", "--counter-width", "8", "--out", str(tmp_path / "a")]) == 2
    assert "counter_width must be in 16..64, not 8" in capsys.readouterr().err
    assert main(["build", "--design", "standin", "--counter-width", "16",
                 "--out", str(tmp_path / "b")]) == 2
    assert "the 'standin' design has none of its own" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_program_without_bitstream(tmp_path, capsys):
    from qaccel.cli import main

    assert main(["program", "--board", "icebreaker", "--out", str(tmp_path)]) == 1
    assert "no bitstream" in capsys.readouterr().err


def test_cli_program_without_programmer(tmp_path, capsys, monkeypatch):
    from qaccel.cli import main

    board = get_board("icebreaker")
    for tool in board.program_tools:
        monkeypatch.setenv(tool.upper(), str(tmp_path / f"no-{tool}"))
    (tmp_path / "top.bin").write_bytes(b"\0" * 16)
    assert main(["program", "--board", "icebreaker", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no programmer found for the icebreaker (tried iceprog, openFPGALoader)" in err


def test_tool_error_only_in_its_log_file(tmp_path, monkeypatch):
    """A tool run as `yosys -q -l top.rpt` that fails with nothing on its output: the error
    shows the tail of top.rpt, and an internal assertion is called a tool bug."""
    from qaccel.boards.build import BuildError, Progress, _run_plan_commands

    fake = tmp_path / "fake-yosys"
    error = "ERROR: Assert `x == y' failed."
    fake.write_text(f"#!{sys.executable}\nimport sys\n"
                    f"open(sys.argv[3], 'w').write('Executing ABC9.\\n' + {error!r})\n"
                    "sys.exit(1)\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    (tmp_path / "build_top.json").write_text(json.dumps(
        {"commands": [["yosys", "-q", "-l", "top.rpt", "top.ys"]]}))
    with pytest.raises(BuildError) as failure:
        _run_plan_commands(tmp_path, "top", Progress(None), [])
    message = str(failure.value)
    assert "synthesis (Yosys) failed (exit status 1)" in message
    assert f"last lines of {tmp_path / 'top.rpt'}:" in message
    assert error in message
    assert "a bug in yosys, not in the configuration" in message


def test_placement_seed_defaults_to_the_boards(tmp_path, monkeypatch):
    """nextpnr's --seed is the board's `placement_seed` unless the build names one (the
    iCEBreaker's default routes fastest with seed 3); synthesis fails at once here, with the
    build plan written."""
    from qaccel.boards.build import BuildError, Progress, build

    fake = tmp_path / "fake-yosys"
    fake.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(1)\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    board = get_board("icebreaker")
    assert board.placement_seed == 3 and get_board("ulx3s").placement_seed == 1
    config = board.config(rows=2, cols=2)
    for seed, expected in ((None, "--seed 3"), (5, "--seed 5")):
        out = tmp_path / f"seed-{seed}"
        with pytest.raises(BuildError, match="synthesis"):
            build(board, config, out_dir=out, seed=seed, progress=Progress(None))
        assert expected in (out / "build_top.sh").read_text()


def test_abc9_assertion_falls_back_to_classic_abc(tmp_path, monkeypatch):
    """ECP5: when ABC9 stops on an internal assertion, synthesis runs again with classic ABC
    (the script rewritten around the same options), and the build notes say so."""
    from qaccel.boards.build import Progress, _run_plan_commands
    from qaccel.hw.resources import ecp5_classic_abc_commands

    # fails like Yosys 0.70's ABC9 unless the script maps LUTs with classic ABC
    fake = tmp_path / "fake-yosys"
    error = "Executing ABC9.\nERROR: Assert `a == b' failed in rtlil.cc:3091.\n"
    fake.write_text(f"#!{sys.executable}\nimport sys\n"
                    "if 'abc -lut 4' in open(sys.argv[4]).read():\n"
                    "    sys.exit(0)\n"
                    f"open(sys.argv[3], 'w').write({error!r})\n"
                    "sys.exit(1)\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(fake))
    script = "read_rtlil top.il\n    synth_ecp5 -abc9x -top top\ntee -q -o top.stat.json stat\n"
    (tmp_path / "top.ys").write_text(script)
    (tmp_path / "build_top.json").write_text(json.dumps(
        {"commands": [["yosys", "-q", "-l", "top.rpt", "top.ys"]]}))
    notes, stages, progress = [], [], io.StringIO()
    _run_plan_commands(tmp_path, "top", Progress(progress), stages, notes=notes)
    assert [stage["stage"] for stage in stages] == ["yosys", "yosys (classic ABC)"]
    assert "synthesizing again with classic ABC" in progress.getvalue()
    assert len(notes) == 1 and "classic ABC" in notes[0]
    rewritten = (tmp_path / "top.ys").read_text().splitlines()
    assert rewritten == ["read_rtlil top.il", *ecp5_classic_abc_commands("top", "-abc9x"),
                         "tee -q -o top.stat.json stat"]


def test_xilinx_plan_without_vivado(tmp_path, monkeypatch):
    """KCU105: the Vivado build plan is written and the missing Vivado is said clearly."""
    from qaccel.boards.build import Progress, build

    monkeypatch.delenv("VIVADO", raising=False)
    if find_build_tool("vivado").found:
        pytest.skip("Vivado is installed: this checks the plan-only path")
    board = get_board("kcu105")
    config = board.config(rows=2, cols=2, pe=2, simd=16)
    result = build(board, config, out_dir=tmp_path, progress=Progress(None))
    assert result.bitstream is None
    assert any("Vivado not found" in message for message in result.messages)
    for name in ("top.v", "top.xdc", "top.tcl", "build_top.sh", "report.json"):
        assert (tmp_path / name).is_file(), name
    xdc = (tmp_path / "top.xdc").read_text()
    assert "K26" in xdc and "G25" in xdc          # the CP2105 UART
    assert "DSP48E2" in (tmp_path / "top.v").read_text()


# -- real builds ----------------------------------------------------------------------------


@pytest.mark.slow
def test_icebreaker_standin_int8_bitstream(tmp_path):
    """The 4x4 INT8 array packed into all 8 SB_MAC16 of the UP5K (the stand-in design, as the
    accelerator top's INT8 engine does not fit), from scratch to a bitstream: SB_MAC16 count
    as estimated, timing met at the configured clock, report.json written."""
    from qaccel.boards.build import Progress, build

    board = get_board("icebreaker")
    for status in board.tools():
        if not status.found:
            pytest.skip(f"{status.tool} not installed (the build extra)")
    config = board.config("standin")
    assert (config.rows, config.cols, config.int8) == (4, 4, True)
    result = build(board, config, design="standin", out_dir=tmp_path, progress=Progress(None))
    assert result.bitstream == tmp_path / "top.bin"
    assert result.bitstream.stat().st_size > 100_000   # UP5K bitstreams are ~104 kB
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["resources"]["DSP"]["used"] == report["estimate"]["dsp"] == 8
    assert report["resources"]["PLL"]["used"] == 1
    assert report["timing_met"] is True
    assert report["fmax_mhz"] >= config.clock_hz / 1e6
    assert report["peak"]["int8_macs_per_s"] == 16 * config.clock_hz
    assert report["peak"]["binary_ops_per_s"] == 4 * 32 * config.clock_hz
    assert "SB_MAC16" in result.report.table()


@pytest.mark.slow
def test_icebreaker_default_bitstream(tmp_path):
    """The iCEBreaker's default build, from scratch: the accelerator top with the 4x4 INT8
    array in all 8 SB_MAC16 (dual 8x8) and the iCEBreaker's small-INT8 choices (serial
    requantizer, no hold registers, no operand skid or output buffer, the bit-serial CRC); no
    logic is left for a binary engine (docs/BOARDS.md). A bitstream, SB_MAC16 and memories
    as estimated, timing met at the board's clock, the INFO the host tiles with. It fills
    99 % of the UP5K's logic cells, so it routes slowly: about 7 minutes with the board's
    placement seed, 20 with seed 1."""
    from qaccel.boards.build import Progress, build
    from qaccel.boards.designs import top_config

    board = get_board("icebreaker")
    for status in board.tools():
        if not status.found:
            pytest.skip(f"{status.tool} not installed (the build extra)")
    assert board.default_design == "top"
    config = board.config()
    top = top_config(config)
    assert (top.int8, top.binary, top.rows, top.cols) == (True, False, 4, 4)
    assert (top.requantizer, top.hold_registers, top.operand_skid, top.output_buffer) == (
        "serial", False, False, "none")
    caps = top.capabilities()
    assert (caps.engines, caps.rows, caps.cols, caps.counter_width) == (1, 4, 4, 32)
    assert (caps.weights_bytes, caps.clock_hz, caps.baud) == (2048, 24_000_000, 3_000_000)
    result = build(board, out_dir=tmp_path, progress=Progress(None))
    assert result.bitstream == tmp_path / "top.bin"
    assert result.bitstream.stat().st_size > 100_000   # UP5K bitstreams are ~104 kB
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["resources"]["DSP"]["used"] == report["estimate"]["dsp"] == 8
    assert report["resources"]["LC"]["used"] <= 5280
    # 32-bit weight words in 2 SPRAMs, 32-bit activation words in 2; the estimate is exact
    assert report["resources"]["SPRAM"]["used"] == report["estimate"]["spram"] == 4
    assert report["resources"]["BRAM"]["used"] == report["estimate"]["bram"] <= 30
    assert report["resources"]["PLL"]["used"] == 1
    assert report["timing_met"] is True
    assert report["fmax_mhz"] >= config.clock_hz / 1e6
    assert report["peak"]["int8_macs_per_s"] == 16 * config.clock_hz
    assert report["peak"]["binary_ops_per_s"] == 0
    assert "SB_MAC16" in result.report.table()


@pytest.mark.slow
def test_icebreaker_binary_top_bitstream(tmp_path):
    """The accelerator top with its binary engine alone on the UP5K (`qaccel build
    --no-int8`: 4 PE x 32, 3 thresholds per channel), from scratch: a bitstream, timing met at
    the board's clock, no SB_MAC16, WEIGHTS and ACTIVATIONS in the 4 SPRAMs and the block
    RAMs as estimated, the INFO the host tiles with."""
    from qaccel.boards.build import Progress, build
    from qaccel.boards.commands import implied_engines
    from qaccel.boards.designs import top_config

    board = get_board("icebreaker")
    for status in board.tools():
        if not status.found:
            pytest.skip(f"{status.tool} not installed (the build extra)")
    int8, binary = implied_engines(False, None)           # --no-int8
    config = board.config(int8=int8, binary=binary)
    assert (config.int8, config.binary, config.pe) == (False, True, 4)
    caps = top_config(config).capabilities()
    assert (caps.engines, caps.pe, caps.simd, caps.binary_max_k, caps.binary_max_n) == \
        (2, 4, 32, 512, 32)
    result = build(board, config, design="top", out_dir=tmp_path, progress=Progress(None))
    assert result.bitstream.stat().st_size > 100_000
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["resources"]["DSP"]["used"] == report["estimate"]["dsp"] == 0
    assert report["resources"]["LC"]["used"] <= 5280
    assert report["resources"]["BRAM"]["used"] == report["estimate"]["bram"] <= 30
    assert report["resources"]["SPRAM"]["used"] == report["estimate"]["spram"] == 4
    assert report["timing_met"] is True
    assert report["fmax_mhz"] >= config.clock_hz / 1e6
    assert report["peak"]["binary_ops_per_s"] == 4 * 32 * config.clock_hz
