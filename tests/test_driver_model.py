"""The host driver against the protocol-level reference model of the device: tiling,
validation, retries. (The same driver runs against the RTL co-simulation in test_driver_sim.)"""

import logging

import numpy as np
import pytest

from qaccel.sim.faults import FaultInjector
from qaccel.sim.refdevice import DeviceConfig, ReferenceDevice, ReferenceTransport
from qaccel.sw import Accelerator, QaccelDeviceError, QaccelLinkError, QaccelTimeoutError, golden
from qaccel.sw import protocol as proto

SMALL = DeviceConfig(rows=2, cols=3, pe=2, simd=8, weights_bytes=96, activations_bytes=80,
                     params_bytes=48, outputs_bytes=64, binary_max_k=40, binary_max_n=5,
                     max_thresholds=3)


def open_model(config=DeviceConfig(), **kwargs):
    return Accelerator(ReferenceTransport(ReferenceDevice(config)), timeout=0.05, **kwargs)


def random_int8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


@pytest.mark.parametrize("config", [DeviceConfig(), SMALL], ids=["default", "tiny-buffers"])
def test_gemm_random_shapes_match_golden(config):
    rng = np.random.default_rng(1)
    with open_model(config) as acc:
        for _ in range(25):
            m, k, n = (int(x) for x in rng.integers(1, 4 * max(config.rows, config.cols) + 3,
                                                    3))
            a, w = random_int8(rng, (m, k)), random_int8(rng, (k, n))
            bias = rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32)
            expected = golden.gemm_int8(a, w).astype(np.int64) + bias
            expected = ((expected + 2**31) % 2**32 - 2**31).astype(np.int32)
            np.testing.assert_array_equal(acc.gemm(a, w, bias=bias), expected)
            m0, shift = golden.quantize_multiplier(10 ** rng.uniform(-6, 1, n))
            out = acc.gemm(a, w, bias=bias, m0=m0, shift=shift, zp_out=-5, act_min=-100,
                           act_max=120)
            np.testing.assert_array_equal(
                out, golden.requantize(expected, m0, shift, -5, -100, 120))


def test_gemm_k_split_when_buffers_are_short():
    rng = np.random.default_rng(2)
    with open_model(SMALL) as acc:
        a, w = random_int8(rng, (3, 100)), random_int8(rng, (100, 4))  # 100*2 > 80 bytes
        np.testing.assert_array_equal(acc.gemm(a, w), golden.gemm_int8(a, w))
        m0, shift = golden.quantize_multiplier(np.full(4, 0.003))
        np.testing.assert_array_equal(acc.gemm(a, w, m0=m0, shift=shift),
                                      golden.requantize(golden.gemm_int8(a, w), m0, shift))


@pytest.mark.parametrize("config", [DeviceConfig(), SMALL], ids=["default", "tiny-buffers"])
def test_binary_layers_match_golden(config):
    rng = np.random.default_rng(3)
    with open_model(config) as acc:
        for _ in range(15):
            m, k, n = (int(x) for x in rng.integers(1, 70, 3))
            a = rng.choice(np.array([-1, 1], np.int8), (m, k))
            w = rng.choice(np.array([-1, 1], np.int8), (n, k))
            dot = golden.binary_gemm(golden.pack_bits(a), golden.pack_bits(w), k)
            np.testing.assert_array_equal(acc.binary_layer(a, w), dot)
            for t_count in (1, 3):
                t = rng.integers(-k, k + 1, (n, t_count)).astype(np.int32)
                np.testing.assert_array_equal(acc.binary_layer(a, w, thresholds=t),
                                              golden.thresholds(dot, t))


def test_counters_and_info():
    with open_model() as acc:
        assert acc.info.rows == 4 and acc.info.has_int8 and acc.info.has_binary
        a = np.ones((5, 7), np.int8)
        w = np.ones((7, 6), np.int8)
        acc.gemm(a, w)
        assert acc.counters()["macs"] == 5 * 7 * 6
        acc.reset()
        assert acc.counters()["macs"] == 0
        assert acc.info.counter_width == 40


def test_counters_wrap_at_the_reported_width():
    """A device with 16-bit counters (INFO says so) reads them modulo 2**16."""
    with open_model(DeviceConfig(counter_width=16)) as acc:
        assert acc.info.counter_width == 16
        a = np.ones((40, 64), np.int8)
        w = np.ones((64, 30), np.int8)
        acc.gemm(a, w)
        assert acc.counters()["macs"] == (40 * 64 * 30) % 2**16 != 40 * 64 * 30


@pytest.mark.parametrize("call, error, match", [
    (lambda acc: acc.gemm(np.zeros((2, 3)), np.zeros((3, 2), np.int8)), TypeError,
     "a must have dtype int8, not float64"),
    (lambda acc: acc.gemm([[1]], np.zeros((1, 1), np.int8)), TypeError,
     "a must be a NumPy array of int8, not list"),
    (lambda acc: acc.gemm(np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8)), ValueError,
     "inner dimensions differ"),
    (lambda acc: acc.gemm(np.zeros((2, 3, 1), np.int8), np.zeros((3, 2), np.int8)),
     ValueError, "a must be 2-D"),
    (lambda acc: acc.gemm(np.zeros((0, 3), np.int8), np.zeros((3, 2), np.int8)), ValueError,
     "empty GEMM"),
    (lambda acc: acc.gemm(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), m0=[1, 1]),
     ValueError, "both m0 and shift"),
    (lambda acc: acc.gemm(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8),
                          m0=[1, 1], shift=[0, 31]), ValueError, r"shift must be in \[-31, 30\]; found 31"),
    (lambda acc: acc.gemm(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8),
                          m0=[-1, 1], shift=[0, 0]), ValueError, "m0 must be in"),
    (lambda acc: acc.gemm(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8),
                          bias=[1, 2, 3]), ValueError, r"bias must have shape \(2,\)"),
    (lambda acc: acc.gemm(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), m0=1,
                          shift=0, zp_out=200), ValueError, "zp_out must be an int in"),
    (lambda acc: acc.gemm(np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), m0=1,
                          shift=0, act_min=10, act_max=0), ValueError, "act_min 10 is above"),
    (lambda acc: acc.binary_layer(np.zeros((2, 3), np.int8), np.ones((2, 3), np.int8)),
     ValueError, "a must hold only -1 and \\+1; found 0"),
    (lambda acc: acc.binary_layer(np.ones((2, 3), np.int8), np.ones((2, 4), np.int8)),
     ValueError, "both need K columns"),
    (lambda acc: acc.binary_layer(np.ones((2, 3), np.int8), np.ones((2, 3), np.int8),
                                  thresholds=np.zeros((2, 9), np.int32)), ValueError,
     "1..4 thresholds"),
    (lambda acc: acc.write_buffer(proto.BufferId.WEIGHTS, 4000, bytes(200)), ValueError,
     r"WEIGHTS buffer holds 4096 bytes; \[4000, 4200\) does not fit"),
])
def test_bad_input_is_rejected_before_sending(call, error, match):
    with open_model() as acc:
        sent = acc.stats.commands
        with pytest.raises(error, match=match):
            call(acc)
        assert acc.stats.commands == sent, "a command was sent for bad input"


def test_device_refusal_raises_with_status():
    with open_model() as acc:
        with pytest.raises(QaccelDeviceError) as info:
            acc._command(proto.Opcode.READ, proto.read_body(proto.BufferId.OUTPUTS, 4095, 8))
        assert info.value.status == proto.Status.OUT_OF_RANGE


def test_link_faults_give_exact_results_or_errors(caplog):
    rng = np.random.default_rng(4)
    device = ReferenceDevice(DeviceConfig())
    faulty = FaultInjector(ReferenceTransport(device), rate=3e-3, seed=5)
    acc = Accelerator(faulty, timeout=0.02, retries=10)
    exact = errors = 0
    with caplog.at_level(logging.WARNING, logger="qaccel.driver"), acc:
        for _ in range(40):
            m, k, n = (int(x) for x in rng.integers(1, 12, 3))
            a, w = random_int8(rng, (m, k)), random_int8(rng, (k, n))
            try:
                out = acc.gemm(a, w)
            except (QaccelLinkError, QaccelTimeoutError):
                errors += 1
                continue
            np.testing.assert_array_equal(out, golden.gemm_int8(a, w))
            exact += 1
    assert sum(faulty.counts.values()) > 20, faulty.counts
    assert acc.stats.retries > 0
    assert exact >= 35, (exact, errors)


@pytest.mark.parametrize("window", [1, 4, 16])
def test_windowed_writes_survive_link_faults(window):
    """Whole-buffer writes with up to ``window`` WRITEs in flight, through flips, drops and
    inserts at 3e-3 per byte: the device's buffer holds exactly the data, or an error was
    raised (and the next write repairs it)."""
    rng = np.random.default_rng(6)
    device = ReferenceDevice(DeviceConfig())
    faulty = FaultInjector(ReferenceTransport(device), rate=3e-3, seed=7 + window)
    acc = Accelerator(faulty, timeout=0.02, retries=10, window=window)
    exact = errors = 0
    with acc:
        size = acc.info.weights_bytes
        assert size // acc.info.max_payload >= 16
        for _ in range(25):
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            try:
                acc.write_buffer(proto.BufferId.WEIGHTS, 0, data)
            except (QaccelLinkError, QaccelTimeoutError):
                errors += 1
                continue
            assert bytes(device.buffers[proto.BufferId.WEIGHTS]) == data
            exact += 1
    assert sum(faulty.counts.values()) > 50, faulty.counts
    assert acc.stats.retries > 0
    assert exact >= 23, (exact, errors, acc.stats)


def test_refused_write_in_a_window_raises_and_the_link_stays_usable(monkeypatch):
    with open_model(window=4) as acc:
        size = acc.info.weights_bytes
        data = bytes(range(256)) * 4
        monkeypatch.setattr(acc, "_check_span", lambda *args: None)  # let the device refuse
        with pytest.raises(QaccelDeviceError) as info:
            acc.write_buffer(proto.BufferId.WEIGHTS, size - 300, data)
        assert info.value.status == proto.Status.OUT_OF_RANGE
        # the first WRITE (in range) is done; the refused ones' late replies are skipped
        assert acc.read_buffer(proto.BufferId.WEIGHTS, size - 300, 256) == data[:256]
        assert acc.status().state == proto.RunState.IDLE


def test_window_is_validated():
    for window in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="window must be an integer >= 1, not"):
            open_model(window=window)


def test_no_reply_times_out():
    class Silent(ReferenceTransport):
        def write(self, data):
            pass

    with pytest.raises(QaccelTimeoutError, match="no reply to INFO"):
        Accelerator(Silent(), timeout=0.01, retries=2)


def test_frames_are_logged_as_hex(caplog):
    with caplog.at_level(logging.DEBUG, logger="qaccel.driver"):
        with open_model() as acc:
            acc.status()
    assert any(record.getMessage().startswith("tx ") for record in caplog.records)


def test_unknown_url():
    with pytest.raises(ValueError, match="unknown accelerator URL"):
        Accelerator.open("usb://x")
