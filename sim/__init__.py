"""Simulation of qaccel gateware: the cocotb harness and testbenches (the ``sim`` extra).

:func:`run_cocotb` turns an Amaranth component into a Verilator (or Icarus) cocotb run; the
testbench helpers (:mod:`.tbkit`, :mod:`.streams`) are imported inside the simulator.
"""

from .harness import SIMULATORS, SimulationFailed, cache_dir, default_simulator, run_cocotb

__all__ = ["SIMULATORS", "SimulationFailed", "cache_dir", "default_simulator", "run_cocotb"]
