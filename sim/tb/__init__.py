"""cocotb testbenches, one module per hardware block.

Each module is run inside the simulator by :func:`qaccel.sim.run_cocotb`; the pytest wrappers
live in ``tests/``.
"""
