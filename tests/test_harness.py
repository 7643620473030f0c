"""The simulation harness: Amaranth component -> Verilog -> cocotb on Verilator and Icarus,
with a build cache, seeds, and waveforms for failing runs."""

import os

import pytest

from qaccel.hw.skid import RegisterSlice, SkidBuffer
from qaccel.sim import SimulationFailed, run_cocotb
from qaccel.sim.tools import find_icarus


def run_skid(capfd, simulator, width=12, **kwargs):
    tests = run_cocotb(SkidBuffer(width), toplevel="skid", test_module="qaccel.sim.tb.skid",
                       params={"width": width}, simulator=simulator, **kwargs)
    return tests, capfd.readouterr().out


def test_skid_verilator_and_cache(capfd):
    tests, _ = run_skid(capfd, "verilator")
    assert tests == 3
    # the same configuration again: no recompilation
    tests, out = run_skid(capfd, "verilator")
    assert tests == 3
    assert "reusing cached build" in out, out


def test_register_slice(capfd):
    # the one-register slice through the same testbench: a transfer every other cycle
    tests = run_cocotb(RegisterSlice(10), toplevel="register_slice",
                       test_module="qaccel.sim.tb.skid", params={"width": 10, "interval": 2})
    assert tests == 3


@pytest.mark.skipif(not find_icarus().ok,
                    reason="Icarus Verilog not installed (apt-get install iverilog); optional")
def test_skid_icarus(capfd):
    tests, _ = run_skid(capfd, "icarus", width=9)
    assert tests == 3


def test_failure_names_seed_and_keeps_waves(capfd, tmp_path):
    # A testbench that expects the wrong width fails; the harness must report the seed and
    # re-run with waveforms.
    with pytest.raises(SimulationFailed) as info:
        run_cocotb(SkidBuffer(8), toplevel="skid_bad", test_module="qaccel.sim.tb.skid",
                   testcase="periodic_backpressure", params={"width": 16},
                   simulator="verilator", seed=1234)
    message = str(info.value)
    assert "QACCEL_SEED=1234" in message
    assert "waveform:" in message and message.rstrip().endswith((".fst", ".vcd")), message
    assert os.path.exists(message.rsplit("waveform: ", 1)[1])


def test_unknown_simulator():
    with pytest.raises(ValueError, match="not supported"):
        run_cocotb(lambda: SkidBuffer(8), toplevel="skid", test_module="qaccel.sim.tb.skid",
                   simulator="modelsim")
