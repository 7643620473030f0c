"""The wire protocol module: COBS, CRC, frames, resynchronization, body layouts."""

import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qaccel.sw import protocol as p


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero(data):
    encoded = p.cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert p.cobs_decode(encoded) == data


@pytest.mark.parametrize("data, encoded", [
    # examples from the COBS paper / Wikipedia
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),
])
def test_cobs_known_vectors(data, encoded):
    assert p.cobs_encode(data) == encoded
    assert p.cobs_decode(encoded) == data


def test_cobs_rejects_malformed():
    with pytest.raises(p.FrameError, match="runs past"):
        p.cobs_decode(b"\x05\x11")
    with pytest.raises(p.FrameError, match="zero byte"):
        p.cobs_decode(b"\x03\x00\x11")


def test_crc_is_zlib_crc32():
    assert p.crc32(b"123456789") == 0xCBF43926  # the CRC-32/ISO-HDLC check value
    assert p.crc32(b"") == zlib.crc32(b"")


def test_command_and_reply_round_trip():
    body = p.write_body(p.BufferId.WEIGHTS, 0x1234, bytes(range(256)))
    wire = p.encode_frame(7, p.Opcode.WRITE, body)
    assert wire[-1] == 0 and 0 not in wire[:-1]
    frame = p.decode_frame(wire[:-1], reply=False)
    assert frame == p.Frame(7, p.Opcode.WRITE, None, body)
    reply = p.encode_frame(7, p.Opcode.WRITE, status=p.Status.OUT_OF_RANGE)
    frame = p.decode_frame(reply[:-1], reply=True)
    assert (frame.seq, frame.opcode, frame.status, frame.body) == (7, 2, 4, b"")


def test_every_single_byte_corruption_is_detected():
    wire = p.encode_frame(200, p.Opcode.READ, p.read_body(p.BufferId.OUTPUTS, 16, 64))
    for index in range(len(wire) - 1):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(wire[:-1])
            bad[index] ^= flip
            if 0 in bad:
                continue  # a new delimiter: the reader splits there instead
            with pytest.raises(p.FrameError):
                p.decode_frame(bytes(bad), reply=False)


def test_reader_resynchronizes_after_garbage():
    rng = random.Random(5)
    good = [p.encode_frame(i, p.Opcode.STATUS) for i in range(20)]
    stream = bytearray()
    for frame in good:
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        stream += garbage + b"\x00" + frame
    reader = p.FrameReader(reply=False)
    items = []
    for start in range(0, len(stream), 7):  # arbitrary chunking
        items += reader.feed(stream[start:start + 7])
    frames = [item for item in items if isinstance(item, p.Frame)]
    assert [f.seq for f in frames] == list(range(20))


def test_reader_bounds_its_buffer():
    reader = p.FrameReader(reply=False, max_encoded=50)
    items = reader.feed(b"\x01" * 500 + b"\x00" + p.encode_frame(1, p.Opcode.INFO))
    assert isinstance(items[0], p.FrameError) and "longer than 50" in str(items[0])
    assert items[1] == p.Frame(1, p.Opcode.INFO, None, b"")


def test_struct_layouts_match_offsets():
    for cls in (p.Capabilities, p.RunDescriptor, p.DeviceStatus):
        offsets = cls.offsets()
        last_name = cls._FIELDS[-1][0]
        offset, size, _ = offsets[last_name]
        assert offset + size == cls.size()
    descriptor = p.RunDescriptor(p.Engine.INT8, p.OutputMode.REQUANT_INT8, 3, 70, 5, 0, 64,
                                 128, 256, -3, -128, 127, 0)
    assert p.RunDescriptor.unpack(descriptor.pack()) == descriptor
    offset, size, is_signed = p.RunDescriptor.offsets()["zp_out"]
    assert struct.unpack_from("<b", descriptor.pack(), offset)[0] == -3 and is_signed


def test_body_builders_validate():
    with pytest.raises(ValueError, match="1..256 bytes, not 0"):
        p.write_body(p.BufferId.WEIGHTS, 0, b"")
    with pytest.raises(ValueError, match="not 257"):
        p.read_body(p.BufferId.WEIGHTS, 0, 257)
    with pytest.raises(ValueError, match="sequence number"):
        p.encode_frame(256, p.Opcode.INFO)


def test_bulk_write_efficiency_above_85_percent():
    payload = p.MAX_PAYLOAD
    wire = p.encode_frame(1, p.Opcode.WRITE, p.write_body(p.BufferId.WEIGHTS, 0,
                                                          bytes([0x5A]) * payload))
    assert payload / len(wire) >= 0.85
