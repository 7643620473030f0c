"""The requantization pipeline (qaccel.hw.requant) against golden.requantize.

Two Verilator builds run the cocotb testbench (qaccel.sim.tb.requant): the default
iterative multiplier (8 cycles per result, 6 channels, a tag) and the parallel one (one
``*``, 4 channels, no tag). The other iterative widths get a shorter check in Amaranth's
own simulator, which needs no build.
"""

import gc
import numpy as np
import pytest
from amaranth import signed, unsigned
from amaranth.back import rtlil
from amaranth.sim import Simulator

from qaccel.hw.requant import MULT_CYCLES, Requantizer, requant_layouts
from qaccel.hw.requant_serial import SerialRequantizer
from qaccel.sim import run_cocotb
from qaccel.sw import golden

TESTBENCH = "qaccel.sim.tb.requant"
COCOTB_TESTS = 9  # 6 tests, one of them in 4 pause variants


@pytest.mark.parametrize("args, kwargs, error, message", [
    (("4",), {}, TypeError, "Channel count must be an integer, not '4'"),
    ((True,), {}, TypeError, "Channel count must be an integer, not True"),
    ((0,), {}, ValueError, "Channel count must be at least 1, not 0"),
    ((4,), {"mult_cycles": 2.0}, TypeError, "Multiplier cycle count must be an integer, not 2.0"),
    ((4,), {"mult_cycles": 3}, ValueError,
     r"Multiplier cycle count must be one of \(1, 2, 4, 8, 16\), not 3"),
    ((4,), {"tag_width": None}, TypeError, "Tag width must be an integer, not None"),
    ((4,), {"tag_width": -1}, ValueError, "Tag width must be non-negative, not -1"),
])
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_parameter_validation(args, kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        Requantizer(*args, **kwargs)
    gc.collect()                    # the rejected component's "never used" warning falls here


def test_layouts_and_timing():
    dut = Requantizer(6, tag_width=3)
    assert dut.mult_cycles == 8 and dut.cycles_per_result == 8 and dut.latency == 13
    assert (dut.input_layout, dut.param_layout, dut.output_layout) == requant_layouts(6, 3)
    i = dut.input_layout
    assert (i["acc"].shape, i["channel"].shape, i["last"].shape, i["tag"].shape) == \
        (signed(32), unsigned(3), unsigned(1), unsigned(3))
    p = dut.param_layout
    assert (p["channel"].shape, p["bias"].shape, p["m0"].shape, p["shift"].shape) == \
        (unsigned(3), signed(32), unsigned(31), signed(6))
    o = dut.output_layout
    assert (o["value"].shape, o["channel"].shape) == (signed(8), unsigned(3))
    assert "tag" not in dict(requant_layouts(1)[2])
    assert requant_layouts(1)[0]["channel"].shape == unsigned(0)
    assert Requantizer.timing(1) == (1, 6)
    assert set(dut.signature.members) == {"i", "param", "o", "zp_out", "act_min", "act_max"}
    rtlil.convert(dut)  # elaborates (and uses the component)
    rtlil.convert(Requantizer(1, mult_cycles=1))  # one channel: zero-width channel fields


@pytest.mark.parametrize("mult_cycles", MULT_CYCLES)
def test_iterative_multiplier_has_no_multiply_cell(mult_cycles):
    # Without a $mul cell no synthesis option (synth_ice40 -dsp, ...) can use a DSP block.
    text = rtlil.convert(Requantizer(4, mult_cycles=mult_cycles), name="requant")
    assert ("cell $mul " in text) == (mult_cycles == 1)


def _amaranth_run(dut, bias, m0, shift, acc, chans, layer, rng):
    """Drive the design in Amaranth's simulator with random stalls; returns output values."""
    results = []

    async def bench(ctx):
        zp, lo, hi = layer
        ctx.set(dut.zp_out, zp)
        ctx.set(dut.act_min, lo)
        ctx.set(dut.act_max, hi)
        for ch in range(dut.channels):
            ctx.set(dut.param.payload, {"channel": ch, "bias": int(bias[ch]),
                                        "m0": int(m0[ch]), "shift": int(shift[ch])})
            ctx.set(dut.param.valid, 1)
            await ctx.tick()
        ctx.set(dut.param.valid, 0)
        sent = 0
        for _ in range(len(acc) * (dut.cycles_per_result + 2) * 3 + 100):
            if len(results) == len(acc):
                break
            offer = sent < len(acc) and rng.random() < 0.8
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload, {"acc": int(acc[sent]), "channel": int(chans[sent])})
            ctx.set(dut.o.ready, rng.random() < 0.7)
            accepted = offer and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                results.append(ctx.get(dut.o.payload.value))
            await ctx.tick()
            sent += accepted

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("mult_cycles", [2, 4, 16, "serial"])
def test_other_multiplier_widths_in_amaranth_sim(mult_cycles):
    rng = np.random.default_rng(99 if mult_cycles == "serial" else mult_cycles)
    channels = 3
    dut = (SerialRequantizer(channels) if mult_cycles == "serial"
           else Requantizer(channels, mult_cycles=mult_cycles))
    m0, shift = golden.quantize_multiplier(np.exp(rng.uniform(np.log(1e-6), np.log(10), 3)))
    m0 = np.append(np.asarray(m0, dtype=np.int64)[:1], [2**31 - 1, 2**30])
    shift = np.append(np.asarray(shift, dtype=np.int64)[:1], [golden.SHIFT_MAX, -17])
    bias = np.array([0, golden.INT32_MIN, 12345], dtype=np.int64)
    acc = rng.integers(golden.INT32_MIN, golden.INT32_MAX + 1, 90, dtype=np.int64)
    acc >>= rng.integers(0, 32, acc.size)
    acc[:6] = [golden.INT32_MIN, golden.INT32_MAX, 0, 1, -1, golden.INT32_MIN]
    chans = rng.integers(0, channels, acc.size)
    layer = (-5, -100, 120)
    got = _amaranth_run(dut, bias, m0, shift, acc, chans, layer, rng)
    wrapped = ((acc + bias[chans] - golden.INT32_MIN) & 0xFFFFFFFF) + golden.INT32_MIN
    want = golden.requantize(wrapped, m0[chans], shift[chans], *layer)
    assert len(got) == acc.size
    assert got == list(want)


@pytest.mark.parametrize("channels, mult_cycles, tag_width",
                         [(6, 8, 3), (4, 1, 0), (8, "serial", 11)],
                         ids=["iterative8", "parallel", "serial"])
def test_requantizer_cocotb(channels, mult_cycles, tag_width):
    if mult_cycles == "serial":
        design = SerialRequantizer(channels, tag_width=tag_width)
    else:
        design = Requantizer(channels, mult_cycles=mult_cycles, tag_width=tag_width)
    tests = run_cocotb(
        design, toplevel=f"requant_c{mult_cycles}", test_module=TESTBENCH,
        params={"channels": channels, "mult_cycles": mult_cycles, "tag_width": tag_width})
    assert tests == COCOTB_TESTS
