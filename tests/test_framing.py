# amaranth: UnusedElaboratable=no
"""Link-layer gateware: COBS/CRC frame decoder and encoder (one Verilator build, four cocotb
tests), plus parameter validation."""

# The first line silences Amaranth's "created but never used" warning: the parameter tests
# build components they never elaborate.

import pytest
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from qaccel.hw.framing import FrameByte, FrameDecoder, FrameEncoder, rom_base
from qaccel.sim import run_cocotb
from qaccel.sw import protocol


class FramingTestTop(wiring.Component):
    """Decoder and encoder side by side; ``loopback`` feeds the encoder's wire bytes into the
    decoder instead of ``wire_in`` (and hides them from ``wire_out``).

    Every decoder member except its input appears under the same name.
    """

    def __init__(self, max_frame=protocol.MAX_FRAME, crc_bits=8):
        self.decoder = FrameDecoder(max_frame, crc_bits=crc_bits)
        self.encoder = FrameEncoder(crc_bits=crc_bits)
        self._decoder_members = {name: member for name, member
                                 in self.decoder.signature.members.items() if name != "i"}
        super().__init__({
            "wire_in": In(stream.Signature(8)),
            "reply": In(stream.Signature(FrameByte)),
            "wire_out": Out(stream.Signature(8)),
            "loopback": In(1),
            **self._decoder_members,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = self.decoder
        m.submodules.encoder = encoder = self.encoder
        for name, member in self._decoder_members.items():
            ours, theirs = getattr(self, name), getattr(decoder, name)
            m.d.comb += theirs.eq(ours) if member.flow == In else ours.eq(theirs)
        m.d.comb += [
            self.reply.ready.eq(encoder.i.ready),
            encoder.i.valid.eq(self.reply.valid),
            encoder.i.payload.eq(self.reply.payload),
            self.wire_out.payload.eq(encoder.o.payload),
            decoder.i.payload.eq(self.wire_in.payload),
        ]
        with m.If(self.loopback):
            m.d.comb += [
                decoder.i.valid.eq(encoder.o.valid),
                decoder.i.payload.eq(encoder.o.payload),
                encoder.o.ready.eq(decoder.i.ready),
            ]
        with m.Else():
            m.d.comb += [
                decoder.i.valid.eq(self.wire_in.valid),
                self.wire_in.ready.eq(decoder.i.ready),
                self.wire_out.valid.eq(encoder.o.valid),
                encoder.o.ready.eq(self.wire_out.ready),
            ]
        return m


# a byte-wide CRC (one byte per cycle) and a bit-serial one (the iCEBreaker's)
@pytest.mark.parametrize("crc_bits", [8, 1])
def test_framing_cocotb(crc_bits):
    max_frame = protocol.MAX_FRAME
    tests = run_cocotb(FramingTestTop(max_frame, crc_bits), toplevel=f"framing_top_crc{crc_bits}",
                       test_module="qaccel.sim.tb.framing",
                       params={"max_frame": max_frame, "crc_bits": crc_bits})
    assert tests == 4


@pytest.mark.parametrize("kwargs, error, message", [
    ({"max_frame": 5}, ValueError, "max_frame must be in 6..65536, not 5"),
    ({"max_frame": 300.0}, TypeError, "max_frame must be an integer, not 300.0"),
    ({"max_frame": True}, TypeError, "max_frame must be an integer, not True"),
    ({"counter_width": 0}, ValueError, "counter_width must be in 1..64, not 0"),
    ({"crc_bits": 3}, ValueError, "crc_bits must be one of 1, 2, 4, 8; not 3"),
])
def test_decoder_rejects_bad_parameters(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        FrameDecoder(**kwargs)


def test_encoder_rejects_non_cobs_block_size():
    with pytest.raises(ValueError, match=r"^max_block must be 254 \(fixed by COBS\), not 100$"):
        FrameEncoder(max_block=100)
    assert FrameEncoder(max_block=254).max_block == 254
    with pytest.raises(ValueError, match="^crc_bits must be one of 1, 2, 4, 8; not True$"):
        FrameEncoder(crc_bits=True)
    assert FrameEncoder(crc_bits=2).crc_bits == 2


def test_decoder_rom_placement():
    # the INFO table after a 268-byte frame: at 320 = 0b101000000, so the address needs no adder
    assert rom_base(268, 40) == 320 and rom_base(268, 0) == 268 and rom_base(256, 64) == 256
    decoder = FrameDecoder(268, rom=bytes(40))
    assert decoder.rom_base == 320 and len(decoder.rd_addr) == 9
    with pytest.raises(TypeError, match="^rom must be bytes, not 'info'$"):
        FrameDecoder(rom="info")


def test_decoder_ports():
    decoder = FrameDecoder(64, counter_width=8)
    assert decoder.max_frame == 64
    assert len(decoder.rd_addr) == 6 and len(decoder.length) == 7
    assert len(decoder.crc_errors) == 8
