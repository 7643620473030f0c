# amaranth: UnusedElaboratable=no
"""The performance counters (qaccel.hw.counters) in block RAM against a cycle model, on
Verilator: three widths (two, three and four 16-bit words per counter)."""

import pytest

from qaccel.hw.counters import PerformanceCounters
from qaccel.sim import run_cocotb


@pytest.mark.parametrize("width", [20, 40, 64])
def test_counters(width):
    counters = PerformanceCounters(width)
    assert counters.words == {20: 2, 40: 3, 64: 4}[width]
    params = {"width": width, "words": counters.words, "sweep_cycles": counters.sweep_cycles}
    assert run_cocotb(counters, toplevel=f"counters_{width}", test_module="qaccel.sim.tb.counters",
                      params=params) == 3


def test_shapes_and_errors():
    assert PerformanceCounters(16).memory_shape == (16, 20)     # two words even for 16 bits
    assert PerformanceCounters(40).memory_shape == (16, 40)     # three words, four addresses
    assert PerformanceCounters(32).sweep_cycles == 20
    with pytest.raises(ValueError, match="^Counter width must be in 16..64, not 8$"):
        PerformanceCounters(8)
    with pytest.raises(TypeError, match="^Counter width must be an integer, not 32.0$"):
        PerformanceCounters(32.0)
