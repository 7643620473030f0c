"""Bitstream builds of every board's default configuration, side by side.

Run with ``python bench/boards.py`` (``--help`` for options). For each board it builds the
default configuration with the open tools (YoWASP Yosys + nextpnr; on Xilinx boards Yosys
``synth_xilinx`` when Vivado is absent) and prints LUTs, flip-flops, DSPs, block RAM, Fmax,
the peak INT8 MAC/s and binary op/s at the configured clock and at Fmax, and the build time.
Each build's report.json stays in ``--out`` (default ``build/bench-boards``).

Each board builds its default design (the iCEBreaker: the accelerator top with its 4x4 INT8
engine alone in all 8 SB_MAC16, about 7 minutes to route a full UP5K; the ULX3S: the top
with both engines; the KCU105: the stand-in) unless ``--design`` says otherwise.
``--boards icebreaker --no-int8`` builds the top's binary engine alone (4 PE x 32);
``--boards icebreaker --design standin`` the 4x4 INT8 array on a small test protocol;
``--binary`` (INT8 with the binary engine) is refused by the fit check in seconds
(docs/BOARDS.md). A build that fails for size after synthesis still shows its LUT and
flip-flop counts.

Expect several minutes on 2 cores (the ULX3S place-and-route dominates); the first YoWASP
run of each tool also compiles it (once per machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

from qaccel.boards import BOARDS, get_board
from qaccel.boards.base import find_build_tool
from qaccel.boards.commands import implied_engines
from qaccel.boards.build import (DESIGNS, BuildError, DoesNotFit, Progress,
                                 TimingFailed, build)
from qaccel.boards.report import parse_yosys_stat


def _si(value):
    if value is None:
        return "-"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f} {prefix}"
    return f"{value:.0f}"


def _resource(report, name):
    entry = report.resources.get(name)
    if entry is None:
        return "-"
    available = entry.get("available")
    return f"{entry['used']}/{available}" if available else str(entry["used"])


def _synthesis_counts(out_dir, message):
    """``(LUT, FF, status)`` of a build that failed after synthesis (e.g. too many cells)."""
    try:
        cells = parse_yosys_stat(out_dir / "top.stat.json")
    except (OSError, ValueError):
        return "-", "-", "FAILED"
    lut = sum(count for cell, count in cells.items() if cell in ("SB_LUT4", "LUT4"))
    ff = sum(count for cell, count in cells.items() if cell.startswith(("SB_DFF", "TRELLIS_FF")))
    needed = re.search(r"of (\d+) ICESTORM_LCs", message)
    if "ICESTORM_LC" in message or "TRELLIS_SLICE" in message:
        status = "FAILED: too big" + (f" ({needed.group(1)} LC)" if needed else "")
    else:
        status = "FAILED"
    return str(lut or "-"), str(ff or "-"), status


def run(boards, design, out_root, seed, quiet, changes=None, options=None):
    rows = []
    for name in boards:
        board = get_board(name)
        synth_only = board.family == "xilinx" and not find_build_tool("vivado").found
        design_name = design if design is not None else board.default_design
        config = board.config(design_name, **(changes or {}))
        if options:
            config = config.replace(options={**config.options, **options})
        label = f"{name} ({design_name})"
        print(f"== {label}: {'Yosys synthesis only (no Vivado)' if synth_only else 'bitstream'}",
              file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            result = build(board, config, design=design_name, out_dir=out_root / name, seed=seed,
                           synth_only=synth_only,
                           progress=Progress(None if quiet else sys.stderr))
            report, status = result.report, "ok" if result.bitstream else "synth only"
        except TimingFailed as exc:
            report, status = exc.report, "TIMING FAIL"
        except DoesNotFit as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            rows.append((label, "-", "-", "-", "-", "-", "-", "-", "-",
                         f"{time.monotonic() - started:.0f}", "FAILED: does not fit (estimate)"))
            continue
        except BuildError as exc:
            print(f"{name}: build failed: {exc}", file=sys.stderr)
            lut, ff, status = _synthesis_counts(out_root / name, str(exc))
            rows.append((label, lut, ff, "-", "-", "-", "-", "-", "-",
                         f"{time.monotonic() - started:.0f}", status))
            continue
        peak = report.peak()
        fmax = report.fmax_mhz
        lc = report.resources.get("LC", {}).get("used")
        rows.append((
            label,
            _resource(report, "LUT") + (f" ({lc} LC)" if lc is not None else ""),
            _resource(report, "FF"),
            f"{_resource(report, 'DSP')} {board.dsp_name}",
            _resource(report, "BRAM"),
            f"{config.clock_hz / 1e6:g}",
            f"{fmax:.1f}" if fmax is not None else "n/a",
            f"{_si(peak['int8_macs_per_s'])} / {_si(peak.get('int8_macs_per_s_at_fmax'))}",
            f"{_si(peak['binary_ops_per_s'])} / {_si(peak.get('binary_ops_per_s_at_fmax'))}",
            f"{report.build_seconds:.0f}",
            status,
        ))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", nargs="+", default=list(BOARDS), choices=list(BOARDS))
    parser.add_argument("--design", default=None,
                        help=f"design factory ({', '.join(DESIGNS)}); default: each board's")
    parser.add_argument("--out", type=Path, default=Path("build") / "bench-boards")
    parser.add_argument("--seed", type=int, default=None,
                        help="nextpnr placement seed (default: each board's)")
    parser.add_argument("--int8", dest="int8", action="store_true", default=None,
                        help="include the INT8 engine in every board's default")
    parser.add_argument("--no-int8", dest="int8", action="store_false",
                        help="leave the INT8 engine out of every board's default")
    parser.add_argument("--binary", dest="binary", action="store_true", default=None,
                        help="include the binary engine in every board's default")
    parser.add_argument("--no-binary", dest="binary", action="store_false",
                        help="leave the binary engine out of every board's default")
    parser.add_argument("--rows", type=int, help="INT8 array rows instead of the defaults")
    parser.add_argument("--cols", type=int, help="INT8 array columns instead of the defaults")
    parser.add_argument("--pe", type=int, help="binary engine PEs instead of the defaults")
    parser.add_argument("--counter-width", type=int, metavar="BITS",
                        help="performance counter bits (the accelerator top)")
    parser.add_argument("--clock", type=float, metavar="HZ",
                        help="fabric clock instead of the defaults")
    parser.add_argument("--quiet", action="store_true", help="no stage progress")
    args = parser.parse_args(argv)

    int8, binary = implied_engines(args.int8, args.binary, rows=args.rows, cols=args.cols,
                                   pe=args.pe)
    changes = {name: value for name, value in (("int8", int8), ("binary", binary),
                                                ("rows", args.rows), ("cols", args.cols),
                                                ("pe", args.pe), ("clock_hz", args.clock))
               if value is not None}
    options = {"counter_width": args.counter_width} if args.counter_width else {}
    for name in args.boards:   # a configuration error, before any build starts
        try:
            get_board(name).config(args.design, **changes)
        except (TypeError, ValueError) as exc:
            parser.error(f"{name}: {exc}")
    rows = run(args.boards, args.design, args.out.resolve(), args.seed, args.quiet, changes,
               options)
    seed_text = f"seed {args.seed}" if args.seed is not None else "each board's seed"
    header = ("board", "LUT", "FF", "DSP", "BRAM", "clock MHz", "Fmax MHz",
              "INT8 MAC/s (clock / Fmax)", "binary op/s (clock / Fmax)", "build s", "status")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(f"\nBoard builds, {'design ' + repr(args.design) if args.design else 'default designs'}, "
          f"default configurations"
          f"{' with ' + str({**changes, **options}) if changes or options else ''} "
          f"({platform.machine()}, {os.cpu_count()} cores, {seed_text}):\n")
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
    print("\nFmax: nextpnr's estimate after routing (n/a: synthesis only, no timing). Build "
          "time: elaboration + tools, wall clock.")
    return 0 if all(not row[-1].startswith("FAILED") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
