"""``qaccel build``: configuration -> fit check -> Amaranth build plan -> tools -> report.

The flow is design-agnostic: :func:`build` takes a *design factory*, a callable that gets the
:class:`~qaccel.boards.base.BuildConfig` (with the board's DSP backend and the achieved clock)
and returns a component with the byte-stream host port of :class:`~qaccel.boards.core.BoardCore`.
:data:`DESIGNS` names the factories the command line offers.

Stages (iCE40 / ECP5): the estimate and fit check (milliseconds), elaboration into Amaranth's
build plan, then each command of the plan (Yosys, nextpnr, icepack/ecppack) with the tools
found by :func:`~qaccel.boards.base.find_build_tool` (YoWASP from PyPI unless an environment
variable such as ``YOSYS`` names another), each stage's output in ``<stage>.log`` in the build
folder. nextpnr always runs with ``--timing-allow-fail`` so that a slow design still gets its
numbers; the build then fails unless ``allow_timing_fail``.

Xilinx: the plan is written; Vivado runs if installed. ``synth_only`` runs Yosys'
``synth_xilinx`` on the plan's Verilog instead and reports its cell counts.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..hw.resources import ecp5_classic_abc_commands, xilinx_synth_commands
from .base import find_build_tool, tool_env_var
from .estimate import DoesNotFit, check_fit
from .report import make_report, parse_nextpnr_report, parse_yosys_stat

__all__ = ["DESIGNS", "BuildError", "DoesNotFit", "TimingFailed", "ToolMissing", "BuildResult",
           "Progress", "resolve_design", "build"]

#: Design factories by name: ``"module:attribute"``, imported when used.
DESIGNS = {
    "standin": "qaccel.boards.designs:standin",
    "top": "qaccel.boards.designs:accelerator_top",
}

_STAGE_LABELS = {
    "yosys": "synthesis (Yosys)",
    "nextpnr-ice40": "place and route (nextpnr-ice40)",
    "nextpnr-ecp5": "place and route (nextpnr-ecp5)",
    "icepack": "bitstream (icepack)",
    "ecppack": "bitstream (ecppack)",
    "vivado": "Vivado (synthesis to bitstream)",
}


class BuildError(RuntimeError):
    """A build stage failed; the message names the stage and ends with its log's last lines."""


class ToolMissing(BuildError):
    """A tool the build needs is not installed."""


class TimingFailed(BuildError):
    """The design does not reach the target clock. ``report`` holds the numbers."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclass
class BuildResult:
    """Outcome of :func:`build`.

    Attributes
    ----------
    out_dir : Path
    report : BuildReport
        Also written to ``out_dir / "report.json"``.
    bitstream : Path or None
        ``None`` for a plan-only or synthesis-only build.
    messages : list of str
        What the user should know (e.g. Vivado missing).
    """
    out_dir: Path
    report: object
    bitstream: Path | None
    messages: list = field(default_factory=list)


class Progress:
    """Prints build stages with elapsed time; on a terminal, a live seconds counter.

    Parameters
    ----------
    stream : file
        Where to print (default ``sys.stderr``); ``None`` prints nothing.
    interval : float
        Seconds between "still running" lines when ``stream`` is not a terminal.
    """

    def __init__(self, stream=sys.stderr, interval=30.0):
        self.stream = stream
        self.interval = interval
        self.start = time.monotonic()
        self._live = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def _print(self, text, end="\n"):
        if self.stream is not None:
            self.stream.write(text + end)
            self.stream.flush()

    def message(self, text):
        self._print(f"[{time.monotonic() - self.start:6.1f} s] {text}")

    def run(self, label, function):
        """Run ``function()`` as a stage named ``label``; return ``(result, seconds)``."""
        started = time.monotonic()
        self.message(f"{label} ...")
        done = threading.Event()

        def ticker():
            last = started
            while not done.wait(1.0):
                now = time.monotonic()
                if self._live:
                    self._print(f"\r    {label}: {now - started:5.0f} s", end="")
                elif now - last >= self.interval:
                    last = now
                    self.message(f"{label}: still running ({now - started:.0f} s)")

        thread = threading.Thread(target=ticker, daemon=True)
        thread.start()
        try:
            result = function()
        finally:
            done.set()
            thread.join()
            if self._live:
                self._print("\r" + " " * 60 + "\r", end="")
        seconds = time.monotonic() - started
        self.message(f"{label}: done in {seconds:.1f} s")
        return result, seconds


def resolve_design(design):
    """A design factory from a name in :data:`DESIGNS`, a ``"module:attr"`` string or a callable."""
    if callable(design):
        return design
    if not isinstance(design, str):
        raise TypeError(f"design must be a name, 'module:attribute' or a callable, not "
                        f"{design!r}")
    target = DESIGNS.get(design, design)
    if ":" not in target:
        raise ValueError(f"Unknown design {design!r}; known designs: {', '.join(DESIGNS)} "
                         f"(or give 'module:attribute')")
    module_name, attribute = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(f"Design {design!r} is not available: cannot import "
                         f"{module_name} ({exc})") from exc
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ValueError(f"Design {design!r}: {module_name} has no {attribute!r}") from None


def _tail(path, lines=25):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def _run_command(argv, cwd, env, log_path):
    """Run one tool to completion, output to ``log_path``; kill it if interrupted."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            return process.wait()
        except BaseException:
            process.kill()
            process.wait()
            raise


def _tool_environment(tools):
    """``(env, paths)``: the environment with ``YOSYS=...`` etc. set, and each tool's path."""
    env = dict(os.environ)
    paths = {}
    for tool in tools:
        status = find_build_tool(tool)
        if not status.found:
            raise ToolMissing(
                f"{tool} not found: install the build extra (pip install 'qaccel[build]', "
                f"which brings yowasp-{tool}) or set {tool_env_var(tool)} to the program")
        env[tool_env_var(tool)] = status.path
        paths[tool] = status.path
    return env, paths


def _classic_abc_fallback(script_path):
    """Rewrite an extracted ``synth_ecp5`` script to map LUTs with classic ABC, not ABC9.

    Returns whether the script had a ``synth_ecp5`` command to rewrite.
    """
    try:
        text = script_path.read_text()
    except OSError:
        return False
    match = re.search(r"^[ \t]*synth_ecp5\b(.*?)-top (\S+)[ \t]*$", text, re.MULTILINE)
    if match is None:
        return False
    commands = ecp5_classic_abc_commands(match.group(2), match.group(1).strip())
    script_path.write_text(text[:match.start()] + "\n".join(commands) + text[match.end():])
    return True


def _run_plan_commands(out_dir, name, progress, stages, skip=(), notes=None):
    """Run the commands of Amaranth's ``build_<name>.json``, each as a stage.

    When ABC9 inside ``synth_ecp5`` stops on an internal assertion (a Yosys bug that small
    design changes trigger or avoid), synthesis runs once more with classic ABC, and a note
    saying so is appended to ``notes``.
    """
    commands = json.loads((out_dir / f"build_{name}.json").read_text())["commands"]
    commands = [argv for argv in commands if argv[0] not in skip]
    env, paths = _tool_environment(sorted({argv[0] for argv in commands}))
    for index, argv in enumerate(commands, 1):
        tool = argv[0]
        label = f"[{index}/{len(commands)}] {_STAGE_LABELS.get(tool, tool)}"
        log_path = out_dir / f"{tool}.log"
        returncode, seconds = progress.run(
            label, lambda: _run_command([paths[tool], *argv[1:]], out_dir, env, log_path))
        stages.append({"stage": tool, "seconds": round(seconds, 1)})
        tail = _tail(log_path)
        # `yosys -q -l FILE` may print nothing at all: its error is only in FILE.
        if returncode != 0 and not tail.strip() and "-l" in argv[1:-1]:
            log_path = out_dir / argv[argv.index("-l") + 1]
            tail = _tail(log_path)
        if (returncode != 0 and tool == "yosys" and "ABC9" in tail and
                re.search(r"^ERROR: Assert", tail, re.MULTILINE) and
                _classic_abc_fallback(out_dir / argv[-1])):
            progress.message("ABC9 (Yosys' LUT mapper) stopped on an internal check; "
                             "synthesizing again with classic ABC")
            label = f"{label} with classic ABC"
            returncode, seconds = progress.run(
                label, lambda: _run_command([paths[tool], *argv[1:]], out_dir, env, log_path))
            stages.append({"stage": f"{tool} (classic ABC)", "seconds": round(seconds, 1)})
            if notes is not None:
                notes.append("synthesized with classic ABC: Yosys' ABC9 stopped on an "
                             "internal check (a Yosys bug); LUT mapping is not timing-driven")
            tail = _tail(log_path)
        if returncode != 0:
            full = re.search(r"no BELs remaining to implement cell type '(\w+)'", tail)
            hint = ""
            if full:
                hint = (f"\nThe design needs more {full.group(1)} cells than the FPGA has: "
                        f"shrink the configuration (the estimate before synthesis covers DSPs "
                        f"and block RAM only; logic cells are known after synthesis).")
            elif re.search(r"^ERROR: Assert", tail, re.MULTILINE):
                hint = (f"\n{_STAGE_LABELS.get(tool, tool)} stopped on one of its own "
                        f"internal checks (a bug in {tool}, not in the configuration); a "
                        f"slightly different configuration usually avoids it. Please report "
                        f"it with {out_dir}.")
            raise BuildError(f"{_STAGE_LABELS.get(tool, tool)} failed (exit status "
                             f"{returncode}); last lines of {log_path}:\n{tail}{hint}")


def _elaborate(board, config, factory, name, progress, overrides):
    """``(plan, build config)``: the design wrapped for the board, as Amaranth's build plan."""
    from .core import BoardTop

    clock_hz = board.achievable_clock(config.clock_hz)
    build_config = config.replace(clock_hz=clock_hz)

    def prepare():
        top = BoardTop(board, factory(build_config), build_config)
        return board.platform().prepare(top, name=name, **overrides)

    plan, seconds = progress.run("elaborate (Amaranth)", prepare)
    return plan, build_config, seconds


def _board_core_memories(board):
    """Memories of the :class:`~.core.BoardCore` around every design, for the estimate: the
    UART's receive FIFO (``SyncFIFOBuffered`` of 16: 15 x 8 bits, a block RAM on the iCE40,
    which has no distributed RAM; LUT RAM on the ECP5 and the Xilinx parts)."""
    return {"UART receive FIFO": (8, 15)} if board.family == "ice40" else {}


def build(board, config=None, *, design=None, out_dir=None, name="top", seed=None,
          allow_timing_fail=False, synth_only=False, progress=None):
    """Build ``config`` for ``board``: a bitstream, or the Vivado plan on Xilinx.

    Parameters
    ----------
    board : Board
    config : BuildConfig or None
        Default: the board's default configuration for ``design``.
    design : str, callable or None
        Design factory (see :data:`DESIGNS`); default: the board's ``default_design``.
    out_dir : path-like or None
        Build folder (default ``build/<board>``); files of a previous build are overwritten.
    seed : int or None
        nextpnr placement seed; default: the board's :attr:`~.base.Board.placement_seed`.
    allow_timing_fail : bool
        Keep a bitstream that misses the target clock instead of raising
        :class:`TimingFailed`.
    synth_only : bool
        Xilinx only: run Yosys ``synth_xilinx`` and report its counts, no Vivado.
    progress : Progress or None
        Default: a :class:`Progress` on ``sys.stderr``.

    Returns
    -------
    BuildResult

    Raises
    ------
    DoesNotFit
        Before synthesis: the configuration needs more DSPs or memory than the FPGA has.
    ToolMissing, BuildError
        A tool is missing or failed.
    TimingFailed
        After writing the report, when timing fails and ``allow_timing_fail`` is false.
    """
    progress = progress if progress is not None else Progress()
    design = design if design is not None else board.default_design
    config = config if config is not None else board.config(design)
    if config.dsp_backend != board.dsp_backend:
        raise ValueError(f"The {board.name} uses the {board.dsp_backend!r} DSP backend, not "
                         f"{config.dsp_backend!r}")
    if synth_only and board.family != "xilinx":
        raise ValueError(f"--synth-only is for the Xilinx boards; the {board.name} builds a "
                         f"bitstream with open tools")
    out_dir = Path(out_dir if out_dir is not None else Path("build") / board.name).resolve()
    board.achievable_clock(config.clock_hz)       # a clock the board cannot make: ValueError
    if board.family in ("ice40", "ecp5"):
        _tool_environment(board.build_tools)      # missing tools: fail before elaborating
    elif synth_only:
        _tool_environment(["yosys"])

    # 1. seconds, not minutes: does it fit at all?
    factory = resolve_design(design)
    # the memories' shapes when the design lists them (block RAMs by aspect ratio), else bits
    memories = getattr(factory, "memory_shapes", None) or getattr(factory, "memory_bits", None)
    if memories:
        memories = {**memories(config), **_board_core_memories(board)}
    min_logic = getattr(factory, "min_logic_cells", None)
    estimate = check_fit(board, config, memories,
                         min_logic(config, board.family) if min_logic else None)
    progress.message(f"estimate: {estimate.dsp} {board.dsp_name} of "
                     f"{estimate.dsp_available}, {estimate.bram} block RAM of "
                     f"{estimate.bram_available}" +
                     (f", {estimate.spram} SPRAM of {estimate.spram_available}"
                      if estimate.spram_available else "") + ": fits")

    overrides = dict(board.toolchain_overrides(config))
    if seed is None:
        seed = board.placement_seed
    if board.family in ("ice40", "ecp5"):
        overrides["nextpnr_opts"] = [*overrides.get("nextpnr_opts", []),
                                     "--report", f"{name}.report.json", "--timing-allow-fail",
                                     "--seed", str(seed)]
        overrides["script_after_synth"] = f"tee -q -o {name}.stat.json stat -json"

    plan, build_config, elaborate_seconds = _elaborate(board, config, factory, name, progress,
                                                       overrides)
    stages = [{"stage": "elaborate", "seconds": round(elaborate_seconds, 1)}]
    out_dir.mkdir(parents=True, exist_ok=True)
    plan.extract(out_dir)
    for stale in (f"{name}.report.json", f"{name}.stat.json", "report.json"):
        (out_dir / stale).unlink(missing_ok=True)

    messages = []
    if board.family in ("ice40", "ecp5"):
        build_notes = []
        _run_plan_commands(out_dir, name, progress, stages, notes=build_notes)
        bitstream = out_dir / board.bitstream_name(name)
        report = make_report(
            board, build_config, cells=parse_yosys_stat(out_dir / f"{name}.stat.json"),
            nextpnr=parse_nextpnr_report(out_dir / f"{name}.report.json"),
            estimate=estimate, stages=stages, bitstream=bitstream)
        report.notes.extend(build_notes)
    else:
        report, bitstream = _xilinx(board, build_config, out_dir, name, progress, stages,
                                    estimate, synth_only, messages)

    dsp_used = report.dsp_used()
    if bitstream is not None or synth_only:
        if dsp_used is not None and dsp_used != estimate.dsp:
            report.notes.append(f"{board.dsp_name} used ({dsp_used}) differs from the "
                                f"estimate ({estimate.dsp})")
    report.write(out_dir / "report.json")
    if report.timing_met is False:
        if report.clocks:
            worst = min(report.clocks.values(), key=lambda c: c["fmax_mhz"] - c["target_mhz"])
            text = (f"timing fails: Fmax {worst['fmax_mhz']:.2f} MHz < target "
                    f"{worst['target_mhz']:.2f} MHz")
        else:
            text = "timing fails (see the Vivado timing report)"
        if not allow_timing_fail:
            if bitstream is not None and bitstream.exists():
                # out of the way of `qaccel program`, still there to look at
                failed = bitstream.with_name(f"{bitstream.stem}.timing-failed{bitstream.suffix}")
                os.replace(bitstream, failed)
                report.bitstream = str(failed)
                report.write(out_dir / "report.json")
            raise TimingFailed(f"{text}; lower --clock (or pass --allow-timing-fail to keep "
                               f"the bitstream). Report: {out_dir / 'report.json'}", report)
        messages.append(f"{text}; kept because of --allow-timing-fail")
    return BuildResult(out_dir, report, bitstream, messages)


def _xilinx(board, config, out_dir, name, progress, stages, estimate, synth_only, messages):
    """Run Yosys (synth-only) or Vivado on an extracted Xilinx plan."""
    if synth_only:
        script = out_dir / f"{name}_yosys.ys"
        # flattened: otherwise `stat` counts Amaranth's submodules as cells
        commands = xilinx_synth_commands(board.yosys_family, name, flatten=True)
        script.write_text("\n".join([f"read_verilog {name}.v", *commands,
                                       f"tee -q -o {name}.stat.json stat -json", ""]))
        env, paths = _tool_environment(["yosys"])
        log_path = out_dir / "yosys.log"
        label = f"[1/1] synthesis (Yosys synth_xilinx -family {board.yosys_family})"
        returncode, seconds = progress.run(label, lambda: _run_command(
            [paths["yosys"], "-q", "-l", f"{name}_yosys.rpt", script.name], out_dir, env,
            log_path))
        stages.append({"stage": "yosys", "seconds": round(seconds, 1)})
        if returncode != 0:
            raise BuildError(f"Yosys synth_xilinx failed (exit status {returncode}); last "
                             f"lines of {log_path}:\n{_tail(log_path)}")
        report = make_report(board, config, cells=parse_yosys_stat(out_dir / f"{name}.stat.json"),
                             estimate=estimate, stages=stages,
                             notes=["Yosys synthesis only: no placement, no timing analysis"])
        return report, None

    vivado = find_build_tool("vivado")
    if not vivado.found:
        message = (f"Vivado not found: the build plan is in {out_dir} (run 'sh build_{name}.sh' "
                   f"there on a machine with Vivado, or set VIVADO). No bitstream was built; "
                   f"--synth-only reports DSP48E2 and LUT counts with Yosys.")
        messages.append(message)
        report = make_report(board, config, cells={}, estimate=estimate, stages=stages,
                             notes=[message])
        report.resources = {}
        return report, None
    _run_plan_commands(out_dir, name, progress, stages)
    bitstream = out_dir / board.bitstream_name(name)
    timing_text = _tail(out_dir / f"{name}_timing.rpt", 10**6)
    report = make_report(board, config, cells={}, estimate=estimate, stages=stages,
                         bitstream=bitstream,
                         notes=[f"Vivado reports: {out_dir}/{name}_utilization_place.rpt, "
                                f"{name}_timing.rpt"])
    report.resources = {}
    report.timing_met = "All user specified timing constraints are met." in timing_text
    return report, bitstream
