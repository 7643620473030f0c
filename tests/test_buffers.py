# amaranth: UnusedElaboratable=no
"""The buffer bank (qaccel.hw.buffers) against a byte-array model on Verilator: two ports per
buffer, and single-port WEIGHTS and ACTIVATIONS (the iCE40 UltraPlus SPRAM form)."""

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
