# amaranth: UnusedElaboratable=no
"""The INT8 systolic array against golden.gemm_int8 on Verilator: corner and random tiles,
partial tiles, backpressure on every stream, a reset mid-stream, and the cycle model
(throughput at K = 64)."""

import pytest

from qaccel.hw.dual_mac import sb_mac16_simulation_source
from qaccel.hw.systolic import SystolicArray
from qaccel.sim import cache_dir, run_cocotb
from qaccel.sim.tb.systolic import array_params

# Few builds, chosen to cover: 2x2, 4x4 and non-square sizes; every packed backend model
# (generic multipliers, Yosys' SB_MAC16, the DSP48E2 model); an odd column count (half a
# DSP48E2 for the unpaired column); and the unpacked array.
CONFIGS = [
    pytest.param(2, 2, "generic", True, 131071, True, "skid", "systolic", id="2x2-generic"),
    # as in the iCEBreaker's top: K up to 4095 (2 KiB buffers, 27-bit accumulators), no
    # hold registers, no output buffer, operands broadcast
    pytest.param(4, 4, "ice40", True, 4095, False, "none", "broadcast",
                 id="4x4-ice40-k4095-nohold-bare-broadcast"),
    # the half-rate output register
    pytest.param(3, 5, "dsp48e2", True, 131071, False, "register", "systolic",
                 id="3x5-dsp48e2-nohold-register"),
    pytest.param(2, 3, "generic", False, 131071, True, "skid", "systolic", id="2x3-unpacked"),
    # broadcast behind a half-rate output register, odd columns, generic multipliers
    pytest.param(3, 3, "generic", True, 131071, False, "register", "broadcast",
                 id="3x3-generic-nohold-register-broadcast"),
]


def run_array(array, **kwargs):
    extra = []
    if array.packed and array.backend == "ice40":
        extra.append(sb_mac16_simulation_source(cache_dir() / "vendor"))
    kind = array.backend if array.packed else "unpacked"
    toplevel = f"systolic_{array.rows}x{array.cols}_{kind}"
    params = array_params(array, **kwargs.pop("params", {}))
    return run_cocotb(array, toplevel=toplevel, test_module="qaccel.sim.tb.systolic",
                      params=params, extra_sources=extra, **kwargs)


@pytest.mark.parametrize(
    "rows,cols,backend,packed,max_k,hold_registers,output_buffer,dataflow", CONFIGS)
def test_systolic_array(rows, cols, backend, packed, max_k, hold_registers, output_buffer,
                        dataflow):
    array = SystolicArray(rows, cols, backend=backend, packed=packed, max_k=max_k,
                          hold_registers=hold_registers, output_buffer=output_buffer,
                          dataflow=dataflow)
    assert run_array(array) == 5


def test_cycle_model():
    array = SystolicArray(4, 4, backend="dsp48e2")
    assert array.groups == [[0, 1], [2, 3]]
    assert array.multiplier_units == 8 and array.pes == 16
    # skew/hops (2 groups) + DSP48E2 pipeline (4) + accumulate/row-done (1) + output skid (1)
    assert array.latency == 8
    assert array.tile_cycles(64) == 64 + 8 + 3
    assert array.cycles_per_tile(64) == 64 and array.cycles_per_tile(1) == 4
    # without hold registers a first step waits groups = 2 cycles after the last step
    bare = SystolicArray(4, 4, backend="dsp48e2", hold_registers=False)
    assert bare.drain_bubbles == 2 and array.drain_bubbles == 0
    assert bare.cycles_per_tile(64) == 66 and bare.cycles_per_tile(1) == 4
    assert bare.cycles_per_tile(2) == 4 and bare.cycles_per_tile(3) == 5
    # the half-rate output register: a row every other cycle, rows - 1 stalls per tile
    slim = SystolicArray(4, 4, backend="dsp48e2", hold_registers=False,
                         output_buffer="register")
    assert array.row_interval == 1 and slim.row_interval == 2
    assert slim.latency == 8 and slim.tile_cycles(64) == 64 + 8 + 6
    assert slim.cycles_per_tile(64) == 66 + 3
    # no output buffer: one cycle less latency, a row per cycle when the output is ready
    direct = SystolicArray(4, 4, backend="dsp48e2", hold_registers=False, output_buffer="none")
    assert direct.latency == 7 and direct.row_interval == 1
    assert direct.cycles_per_tile(64) == 66
    # broadcast, no output buffer (the iCEBreaker's): the array waits for every row's read,
    # the last one's too, so that its enable depends on registers only
    bare_broadcast = SystolicArray(4, 4, backend="ice40", hold_registers=False,
                                   output_buffer="none", dataflow="broadcast")
    assert bare_broadcast.latency == 4 and bare_broadcast.drain_bubbles == 1   # SB_MAC16: 2
    assert bare_broadcast.cycles_per_tile(64) == 64 + 1 + 3 + 1
    assert array.accumulator_width == 32
    # 4095 * 16384 < 2**26: 27 bits; K = 1 products fit 16
    assert SystolicArray(4, 4, max_k=4095).accumulator_width == 27
    assert SystolicArray(2, 2, max_k=1).accumulator_width == 16
    odd = SystolicArray(3, 5, backend="ice40")
    assert odd.groups == [[0, 1], [2, 3], [4]] and odd.tile_spacing == 3
    unpacked = SystolicArray(2, 3, packed=False)
    assert unpacked.groups == [[0], [1], [2]] and unpacked.multiplier_units == 6


def test_parameter_errors():
    with pytest.raises(ValueError, match="rows must be at least 1, not 0"):
        SystolicArray(0, 4)
    with pytest.raises(TypeError, match="cols must be an integer, not 2.0"):
        SystolicArray(2, 2.0)
    with pytest.raises(ValueError, match=r"backend must be one of .*; not 'xcup'"):
        SystolicArray(2, 2, backend="xcup")
    with pytest.raises(TypeError, match="packed must be True or False, not 1"):
        SystolicArray(2, 2, packed=1)
    with pytest.raises(ValueError, match="max_k must be at least 1, not 0"):
        SystolicArray(2, 2, max_k=0)
    assert SystolicArray(2, 2, max_k=1000).cmd_layout["k"].width == 10
    with pytest.raises(TypeError, match="hold_registers must be True or False, not 0"):
        SystolicArray(2, 2, hold_registers=0)
    with pytest.raises(ValueError, match="output_buffer must be one of skid, register, none; "
                                         "not None"):
        SystolicArray(2, 2, output_buffer=None)
