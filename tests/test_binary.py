# amaranth: UnusedElaboratable=no
"""The XNOR-popcount binary engine (qaccel.hw.binary) and its popcount trees
(qaccel.hw.popcount), against the golden model, on Verilator through run_cocotb."""

import numpy as np
import pytest
from amaranth import Module, signed
from amaranth.hdl import Fragment
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from qaccel.hw.binary import COMMAND_LAYOUT, BinaryEngine, Mode, Op, output_layout
from qaccel.hw.popcount import POPCOUNT_STRUCTURES, Popcount
from qaccel.sim import run_cocotb
from qaccel.sim.binary_words import COMMAND_FIELDS, command, join_words, split_words
from qaccel.sw import golden

# Objects built only to check their parameters or shapes are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

# Small builds. pe divides simd in the first (binary outputs are packed by slot); in the
# second pe divides neither simd nor the maxima (packed by shifting, a group can straddle two
# words); in the third pe > simd (one group fills more than one word).
CONFIGS = {
    "pe2_simd8": dict(pe=2, simd=8, max_k=40, max_n=12, max_t=3),
    "pe3_simd5": dict(pe=3, simd=5, max_k=23, max_n=11, max_t=2),
    "pe4_simd3": dict(pe=4, simd=3, max_k=10, max_n=9, max_t=1),
}
ENGINE_TESTS = 6


def engine(config, **kwargs):
    return BinaryEngine(config["pe"], config["simd"], config["max_k"], config["max_n"],
                        config["max_t"], **kwargs)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_engine(name):
    config = CONFIGS[name]
    tests = run_cocotb(engine(config), toplevel=f"binary_{name}",
                       test_module="qaccel.sim.tb.binary", params=config)
    assert tests == ENGINE_TESTS


def test_popcount_structures():
    tests = run_cocotb(PopcountBank(WIDTHS), toplevel="popcount_bank",
                       test_module="qaccel.sim.tb.popcount", params={"widths": WIDTHS})
    assert tests == 1


WIDTHS = [1, 2, 3, 4, 7, 8, 13, 16, 33]


class PopcountBank(wiring.Component):
    """Every popcount structure at several widths, fed from one input vector."""

    def __init__(self, widths, structures=POPCOUNT_STRUCTURES):
        self.widths = widths
        self.structures = structures
        members = {"i": In(max(widths))}
        for structure in structures:
            for width in widths:
                members[f"{structure}_{width}"] = Out(width.bit_length())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for structure in self.structures:
            for width in self.widths:
                count = Popcount(width, structure)
                m.submodules[f"{structure}_{width}"] = count
                m.d.comb += [count.i.eq(self.i[:width]),
                             getattr(self, f"{structure}_{width}").eq(count.o)]
        return m


# ---- parameter validation -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(pe=0), ValueError, r"pe must be in \[1, 4096\], not 0"),
    (dict(pe=2.0), TypeError, r"pe must be an integer, not 2.0"),
    (dict(pe=True), TypeError, r"pe must be an integer, not True"),
    (dict(simd=0), ValueError, r"simd must be in \[1, 4096\], not 0"),
    (dict(max_k=0), ValueError, r"max_k must be in \[1, 65535\], not 0"),
    (dict(max_k=65536), ValueError, r"max_k must be in \[1, 65535\], not 65536"),
    (dict(max_n=0), ValueError, r"max_n must be in \[1, 65535\], not 0"),
    (dict(max_thresholds=0), ValueError, r"max_thresholds must be in \[1, 255\], not 0"),
    (dict(max_thresholds=256), ValueError, r"max_thresholds must be in \[1, 255\], not 256"),
    (dict(max_n="8"), TypeError, r"max_n must be an integer, not '8'"),
    (dict(popcount="wallace"), ValueError, r"popcount must be one of .*not 'wallace'"),
])
def test_engine_parameters(kwargs, error, message):
    args = dict(pe=2, simd=8, max_k=16, max_n=4, max_thresholds=1)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        BinaryEngine(**args)


def test_popcount_parameters():
    with pytest.raises(TypeError, match=r"Popcount width must be an integer, not 'x'"):
        Popcount("x")
    with pytest.raises(ValueError, match=r"Popcount width must be at least 1, not 0"):
        Popcount(0)
    with pytest.raises(ValueError, match=r"popcount structure must be one of .*not 'lut6'"):
        Popcount(4, "lut6")


def test_engine_shapes():
    dut = BinaryEngine(3, 5, 23, 11, 2)
    Fragment.get(dut, None)  # elaborates (and marks it used)
    assert (dut.max_sf, dut.max_nf) == (5, 4)
    assert dut.dot_shape == signed(6)          # [-23, 23]
    assert dut.threshold_shape == signed(6)    # [-23, 24]
    assert dut.o.payload.shape() == output_layout(5)
    assert output_layout(40).size == 41


# ---- host-side word formats -------------------------------------------------------------------

def test_command_layout_matches_host():
    """sim.binary_words.command() packs exactly like hw.binary.COMMAND_LAYOUT."""
    offset = 0
    for name, width in COMMAND_FIELDS:
        field = COMMAND_LAYOUT[name]
        assert (field.offset, field.width) == (offset, width), name
        offset += width
    assert COMMAND_LAYOUT.size == offset
    assert command(Op.LOAD_THRESHOLDS.value, n=3, t=2) == 2 | 2 << 4 | 3 << 28
    assert command(Op.RUN.value, k=1, n=2, t=1, mode=Mode.BINARY.value, m=7) == \
        2 << 2 | 1 << 4 | 1 << 12 | 2 << 28 | 7 << 44
    with pytest.raises(ValueError, match=r"command field k must be in \[0, 65535\], not 65536"):
        command(0, k=65536)


@pytest.mark.parametrize("k, simd", [(1, 1), (1, 8), (8, 8), (9, 8), (64, 5), (65, 64),
                                     (130, 70), (200, 3)])
def test_split_join_round_trip(k, simd):
    rng = np.random.default_rng(k * 1000 + simd)
    values = rng.choice(np.array([-1, 1], dtype=np.int8), (3, k))
    packed = golden.pack_bits(values)
    words = split_words(packed, k, simd)
    assert all(len(row) == -(-k // simd) for row in words)
    for row, vals in zip(words, values):
        for i, v in enumerate(vals):
            assert (row[i // simd] >> (i % simd)) & 1 == (v == 1)
        assert row[-1] >> (k - (len(row) - 1) * simd) == 0  # padding is 0
    assert np.array_equal(join_words(words, k, simd), packed)
    # padding garbage is ignored on the way back
    full = (1 << simd) - 1
    dirty = [row[:-1] + [row[-1] | (full << (k - (len(row) - 1) * simd)) & full]
             for row in words]
    assert np.array_equal(join_words(dirty, k, simd), packed)
