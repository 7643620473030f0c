# amaranth: UnusedElaboratable=no
"""Hard multiplier accounting of the INT8 array, checked against Yosys: the packed 4x4 array
uses half the DSP48E2 (xcup) and half the SB_MAC16 (ice40) of the unpacked one, and every
count equals :func:`estimate_multipliers`."""

import pytest

from qaccel.hw.resources import (array_backend, estimate_multipliers, synthesize)
from qaccel.hw.systolic import SystolicArray


def test_estimates():
    packed = estimate_multipliers(4, 4, "xcup")
    assert (packed.cell, packed.blocks, packed.products_per_cycle) == ("DSP48E2", 8, 16)
    assert packed.macs_per_block == 2.0
    assert estimate_multipliers(4, 4, "dsp48e2", packed=False).blocks == 16
    assert estimate_multipliers(4, 4, "ice40").blocks == 8
    assert estimate_multipliers(3, 5, "ice40").blocks == 9        # odd column: half a block
    assert estimate_multipliers(4, 4, "ecp5").blocks == 16        # no packing on ECP5
    assert estimate_multipliers(8, 8, "ecp5", packed=False).cell == "MULT18X18D"
    assert estimate_multipliers(2, 3, "generic").blocks == 6
    assert array_backend("xcup") == array_backend("dsp48e2") == "dsp48e2"
    with pytest.raises(ValueError, match=r"family must be one of .*; not 'xc7'"):
        estimate_multipliers(4, 4, "xc7")
    with pytest.raises(ValueError, match="rows must be at least 1, not 0"):
        estimate_multipliers(0, 4, "ice40")
    with pytest.raises(TypeError, match="packed must be True or False, not None"):
        estimate_multipliers(4, 4, "ice40", packed=None)


def synthesized_blocks(rows, cols, family, packed):
    # primitive=True: the packed Xilinx array instantiates DSP48E2, which Yosys keeps as a cell
    array = SystolicArray(rows, cols, backend=array_backend(family), packed=packed,
                          primitive=True if family == "xcup" else None)
    result = synthesize(array, family)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("family", ["ice40", "xcup"])
def test_packing_halves_the_dsps(family):
    packed = synthesized_blocks(4, 4, family, True)
    unpacked = synthesized_blocks(4, 4, family, False)
    assert packed.dsps == estimate_multipliers(4, 4, family, packed=True).blocks == 8
    assert unpacked.dsps == estimate_multipliers(4, 4, family, packed=False).blocks == 16
    assert 2 * packed.dsps == unpacked.dsps
    # nothing else may hide a multiplier in fabric: all 16 products per cycle are in the DSPs
    assert packed.luts > 0 and unpacked.luts > 0
    assert not any(cell.startswith("$") for cell in packed.cells), packed.cells


def test_generic_counts_products():
    """The word-level count: one $mul per product, packed (two per DualMAC) or not."""
    for packed in (True, False):
        result = synthesize(SystolicArray(2, 3, packed=packed), "generic")
        assert result.dsps == estimate_multipliers(2, 3, "generic", packed).blocks == 6
