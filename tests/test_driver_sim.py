"""The unchanged host driver against the RTL accelerator top, co-simulated in C++ (`sim` URL),
and over the UART pins through a pseudo-terminal (the serial code path)."""

import numpy as np
import pytest

from qaccel.sim.faults import FaultInjector
from qaccel.sim.embedded import open_embedded
from qaccel.sw import Accelerator, QaccelLinkError, QaccelTimeoutError, golden
from qaccel.sw import protocol as proto

pytestmark = pytest.mark.xdist_group("cosim-default")


@pytest.fixture(scope="module")
def acc():
    with Accelerator.open("sim") as accelerator:
        yield accelerator


def random_gemm(rng, acc, max_size):
    m, k, n = (int(x) for x in rng.integers(1, max_size + 1, 3))
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (k, n), dtype=np.int8)
    return a, w


def check_gemm(acc, rng, a, w, *, zp_out, act_min):
    """``a @ w`` with a random bias, int32 and requantized (random multipliers), on the device
    and in the golden model, bit for bit."""
    n = w.shape[1]
    bias = rng.integers(-2**20, 2**20, n).astype(np.int32)
    acc32 = golden.gemm_int8(a, w).astype(np.int64) + bias
    acc32 = ((acc32 + 2**31) % 2**32 - 2**31).astype(np.int32)
    np.testing.assert_array_equal(acc.gemm(a, w, bias=bias), acc32)
    m0, shift = golden.quantize_multiplier(10 ** rng.uniform(-5, 0, n))
    np.testing.assert_array_equal(
        acc.gemm(a, w, bias=bias, m0=m0, shift=shift, zp_out=zp_out, act_min=act_min),
        golden.requantize(acc32, m0, shift, zp_out, act_min, 127))


def test_info_is_read_from_the_device(acc):
    assert (acc.info.rows, acc.info.cols) == (4, 4)
    assert acc.info.has_int8 and acc.info.has_binary


def test_gemm_random_shapes_int32_and_requantized(acc):
    rng = np.random.default_rng(11)
    shapes = [(1, 1, 1), (4, 4, 4), (5, 1, 9), (17, 3, 2)]
    for case in range(14):
        if case < len(shapes):
            m, k, n = shapes[case]
            a = rng.integers(-128, 128, (m, k), dtype=np.int8)
            w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        else:
            a, w = random_gemm(rng, acc, 3 * 4 + 3)  # several times the array in every dim
        check_gemm(acc, rng, a, w, zp_out=3, act_min=-50)


def test_large_k_uses_the_array_well(acc):
    rng = np.random.default_rng(12)
    a = rng.integers(-128, 128, (4, 200), dtype=np.int8)
    w = rng.integers(-128, 128, (200, 4), dtype=np.int8)
    before = acc.counters()
    np.testing.assert_array_equal(acc.gemm(a, w), golden.gemm_int8(a, w))
    after = acc.counters()
    macs = after["macs"] - before["macs"]
    busy = after["int8_busy"] - before["int8_busy"]
    assert macs == 4 * 200 * 4
    assert macs / (16 * busy) > 0.6, (macs, busy)


def test_binary_layers(acc):
    rng = np.random.default_rng(13)
    for m, k, n in [(1, 1, 1), (3, 33, 5), (6, 100, 9)]:
        a = rng.choice(np.array([-1, 1], np.int8), (m, k))
        w = rng.choice(np.array([-1, 1], np.int8), (n, k))
        dot = golden.binary_gemm(golden.pack_bits(a), golden.pack_bits(w), k)
        np.testing.assert_array_equal(acc.binary_layer(a, w), dot)
        for t_count in (1, 2):
            t = rng.integers(-k, k + 1, (n, t_count)).astype(np.int32)
            np.testing.assert_array_equal(acc.binary_layer(a, w, thresholds=t),
                                          golden.thresholds(dot, t))


def test_link_faults_never_give_a_silent_wrong_answer():
    """Flips, drops and inserts at 1e-3 per byte, both directions, over >= 2,000 commands."""
    rng = np.random.default_rng(14)
    faulty = FaultInjector(open_embedded("default"), rate=1e-3, seed=15)
    acc = Accelerator(faulty, timeout=0.5, retries=12)
    exact = errors = 0
    with acc:
        while acc.stats.commands < 2000:
            a, w = random_gemm(rng, acc, 9)
            try:
                out = acc.gemm(a, w)
            except (QaccelLinkError, QaccelTimeoutError):
                errors += 1
                continue
            np.testing.assert_array_equal(out, golden.gemm_int8(a, w))
            exact += 1
    print(f"{acc.stats.commands} commands, {exact} exact GEMMs, {errors} raised errors, "
          f"{acc.stats.retries} retries, faults injected {faulty.counts}")
    assert sum(faulty.counts.values()) >= 50
    assert acc.stats.retries > 0
    assert exact > 10 * max(errors, 1)


def test_windowed_writes_through_link_faults():
    """Whole weights-buffer writes, 8 WRITEs in flight, through faults at 1e-3 per byte in
    both directions on the RTL: every read-back equals what was written, or an error was
    raised."""
    rng = np.random.default_rng(17)
    faulty = FaultInjector(open_embedded("default"), rate=1e-3, seed=18)
    acc = Accelerator(faulty, timeout=0.5, retries=12, window=8)
    exact = errors = 0
    with acc:
        size = acc.info.weights_bytes
        for _ in range(12):
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            try:
                acc.write_buffer(proto.BufferId.WEIGHTS, 0, data)
                back = acc.read_buffer(proto.BufferId.WEIGHTS, 0, size)
            except (QaccelLinkError, QaccelTimeoutError):
                errors += 1
                continue
            assert back == data
            exact += 1
    print(f"{acc.stats.commands} commands, {exact} exact round trips, {errors} raised errors, "
          f"{acc.stats.retries} retries, faults injected {faulty.counts}")
    assert sum(faulty.counts.values()) >= 20
    assert acc.stats.retries > 0
    assert exact >= 10


@pytest.mark.xdist_group("cosim-uart")
def test_serial_path_over_the_uart_pins():
    rng = np.random.default_rng(16)
    with Accelerator.open("sim:uart") as acc:
        assert acc.transport.description.startswith("sim:uart (pty")
        for _ in range(3):
            a, w = random_gemm(rng, acc, 6)
            np.testing.assert_array_equal(acc.gemm(a, w), golden.gemm_int8(a, w))
        a = rng.choice(np.array([-1, 1], np.int8), (2, 40))
        w = rng.choice(np.array([-1, 1], np.int8), (3, 40))
        np.testing.assert_array_equal(
            acc.binary_layer(a, w),
            golden.binary_gemm(golden.pack_bits(a), golden.pack_bits(w), 40))
        # a whole-buffer write: WRITE frames in batches of 8, back to back on the UART pins
        data = rng.integers(0, 256, acc.info.weights_bytes, dtype=np.uint8).tobytes()
        acc.write_buffer(proto.BufferId.WEIGHTS, 0, data)
        assert acc.read_buffer(proto.BufferId.WEIGHTS, 0, len(data)) == data
        assert acc.stats.retries == 0 and acc.stats.naks == 0


@pytest.mark.xdist_group("cosim-icebreaker")
def test_icebreaker_default_configuration():
    """What `qaccel build` puts on the iCEBreaker (the 4x4 INT8 array alone, serial
    requantizer, no hold registers, operand or output skid, WEIGHTS and ACTIVATIONS
    single-port as in the SPRAM, the bit-serial CRC), co-simulated from the board's own
    definition: tiled GEMMs, int32 and requantized, bit for bit with the golden model, up to
    the largest K the weights buffer holds; whole-buffer round trips; the MACs are counted."""
    from qaccel.boards import get_board
    from qaccel.boards.designs import top_config

    built = top_config(get_board("icebreaker").config())
    rng = np.random.default_rng(5)
    with Accelerator.open("sim:icebreaker") as acc:
        info = acc.info
        assert (info.rows, info.cols, info.has_int8, info.has_binary) == (4, 4, True, False)
        assert info.counter_width == 32
        assert info.weights_bytes == built.weights_bytes
        assert built.spram and built.crc_bits == 1 and built.requantizer == "serial"
        acc.reset()
        for buffer in (proto.BufferId.WEIGHTS, proto.BufferId.ACTIVATIONS):
            data = rng.integers(0, 256, info.buffer_bytes(buffer), dtype=np.uint8).tobytes()
            acc.write_buffer(buffer, 0, data)
            assert acc.read_buffer(buffer, 0, len(data)) == data
        k_max = info.weights_bytes // info.cols   # one column tile of weights fills it
        shapes = [(1, 1, 1), (3, 5, 3), (7, 40, 9), (4, k_max, 4), (9, 300, 14)]
        for m, k, n in shapes:
            a = rng.integers(-128, 128, (m, k), dtype=np.int8)
            w = rng.integers(-128, 128, (k, n), dtype=np.int8)
            check_gemm(acc, rng, a, w, zp_out=-4, act_min=-90)
        macs = 2 * sum(m * k * n for m, k, n in shapes)
        assert acc.counters()["macs"] == macs


@pytest.mark.xdist_group("cosim-icebreaker-binary")
def test_icebreaker_binary_configuration():
    """The iCEBreaker's binary build (`qaccel build --no-int8`: 4 PE x 32, 3 thresholds per
    channel), co-simulated from the board's own definition: binary layers, raw and
    thresholded, tiled over the 4 PEs and the 512-bit reduction limit, bit for bit with the
    golden model; the binary ops are counted."""
    from qaccel.boards import get_board
    from qaccel.boards.designs import top_config

    built = top_config(get_board("icebreaker").config(int8=False, binary=True))
    rng = np.random.default_rng(8)
    with Accelerator.open("sim:icebreaker-binary") as acc:
        info = acc.info
        assert (info.has_int8, info.has_binary, info.pe, info.simd) == (False, True, 4, 32)
        assert info.max_thresholds == 3
        assert (info.weights_bytes, info.binary_max_k, info.binary_max_n) == \
            (built.weights_bytes, built.binary_max_k, built.binary_max_n)
        acc.reset()
        ops = 0
        for m, k, n in [(1, 1, 1), (2, 70, 4), (5, 600, 7), (3, 64, 40)]:
            a = rng.choice(np.array([-1, 1], np.int8), (m, k))
            w = rng.choice(np.array([-1, 1], np.int8), (n, k))
            dot = golden.binary_gemm(golden.pack_bits(a), golden.pack_bits(w), k)
            np.testing.assert_array_equal(acc.binary_layer(a, w), dot)
            t = rng.integers(-k, k + 1, (n, 3)).astype(np.int32)
            np.testing.assert_array_equal(acc.binary_layer(a, w, thresholds=t),
                                          golden.thresholds(dot, t))
            ops += 2 * m * k * n
        assert acc.counters()["binary_ops"] == ops
