"""The ``qaccel`` command line.

Each subcommand imports what it needs when it runs, so ``qaccel --help`` and the driver-side
commands work on a base install (NumPy and pyserial only).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__

__all__ = ["main"]


def _cmd_doctor(args):
    from .doctor import main as doctor_main

    return doctor_main()


def _cmd_demo(args):
    from .demo import main as demo_main

    return demo_main(args)


def _cmd_boards(args):
    from .boards.commands import boards_main

    return boards_main(args)


def _cmd_build(args):
    from .boards.commands import build_main

    return build_main(args)


def _cmd_program(args):
    from .boards.commands import program_main

    return program_main(args)


def _add_board_commands(sub):
    """``qaccel boards``, ``qaccel build`` and ``qaccel program`` (the ``build`` extra)."""
    boards = sub.add_parser("boards", help="list supported boards and whether they build here")
    boards.set_defaults(func=_cmd_boards)

    build = sub.add_parser("build", help="build a bitstream for a board (YoWASP Yosys/nextpnr)")
    try:
        from .boards.commands import add_build_options
    except ImportError:  # pragma: no cover - the boards package is part of every install
        add_build_options = None
    if add_build_options is not None:
        add_build_options(build)
    build.set_defaults(func=_cmd_build)

    program = sub.add_parser("program", help="load the built bitstream onto a board")
    program.add_argument("--board", default="icebreaker", help="board (default icebreaker)")
    program.add_argument("--out", default=None, metavar="DIR",
                         help="build folder holding the bitstream (default build/<board>)")
    program.add_argument("--bitstream", default=None, help="bitstream file to load instead")
    program.set_defaults(func=_cmd_program)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="qaccel",
        description="Open FPGA accelerator generator for quantized neural networks.")
    parser.add_argument("--version", action="version", version=f"qaccel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="report installed tools and what is missing")
    doctor.set_defaults(func=_cmd_doctor)

    from .sim.embedded import CONFIGS

    demo = sub.add_parser("demo", help="run the end-to-end demo on the simulated accelerator")
    demo.add_argument("--url", default="sim",
                      help="accelerator to run on: 'sim' (default: the co-simulated RTL), "
                           f"'sim:CONFIG' ({', '.join(CONFIGS)}; 'icebreaker' is what "
                           "'qaccel build' puts on the iCEBreaker), "
                           "'serial:/dev/ttyUSB1?baud=3000000', 'tcp://host:port'")
    demo.add_argument("--plot", default="qaccel-demo.png", help="where to save the plot")
    demo.add_argument("--json", default=None, help="also write the results as JSON here")
    demo.set_defaults(func=_cmd_demo)

    _add_board_commands(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("qaccel: interrupted", file=sys.stderr)
        return 130
