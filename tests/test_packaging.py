"""Dependency rules: the host side never imports the gateware or simulation stack."""

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import qaccel.sw

ROOT = Path(__file__).resolve().parent.parent


def test_host_side_imports_no_gateware_or_cocotb():
    modules = [f"qaccel.sw.{info.name}" for info in pkgutil.iter_modules(qaccel.sw.__path__)]
    assert "qaccel.sw.golden" in modules
    code = ("import sys\n"
            + "".join(f"import {name}\n" for name in modules)
            + "import qaccel.cli, qaccel.doctor\n"
            + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
              "('amaranth', 'cocotb', 'cocotb_tools', 'amaranth_boards'))\n"
            + "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_base_dependencies_are_numpy_and_pyserial_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = sorted(dep.split(">")[0].split("<")[0].split("=")[0].strip()
                   for dep in project["dependencies"])
    assert names == ["numpy", "pyserial"]
    assert set(project["optional-dependencies"]) >= {"gateware", "sim", "build", "dev", "all"}


def test_cli_help_runs():
    result = subprocess.run([sys.executable, "-m", "qaccel", "--help"], capture_output=True,
                            text=True, check=True)
    assert "doctor" in result.stdout and "demo" in result.stdout
