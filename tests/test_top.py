# amaranth: UnusedElaboratable=no
"""The accelerator top (hw/top.py) as a system: the byte-stream build driven through the wire
protocol against the reference device and the golden model (cocotb on Verilator), the fault
campaign (1,000 corruptions over 4 runs of the same build), the UART build, and TopConfig's
validation.

Builds: one small byte-stream configuration for everything, and the UART variant once."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from qaccel.hw.top import AcceleratorTop, TopConfig, UARTAcceleratorTop
from qaccel.sim import run_cocotb
from qaccel.sim.refdevice import DeviceConfig
from qaccel.sw import protocol as proto

#: The system-test build: non-square array, sub-word INT8 words (simd 64 makes 8-byte
#: activation and weight words), an odd pe, small buffers so that read-backs are quick.
SYSTEM = TopConfig(rows=2, cols=4, pe=3, simd=64, weights_bytes=1024, activations_bytes=1024,
                   params_bytes=512, outputs_bytes=1024, binary_max_k=256, binary_max_n=24,
                   max_thresholds=3, mult_cycles=4)
#: The UART build: a 4x4 array, 8 clocks per bit, the serial requantizer, no hold registers,
#: no operand skid, no output buffer, broadcast operands, the bit-serial CRC and single-port
#: WEIGHTS and ACTIVATIONS (as on the iCEBreaker, whose SPRAM they map to). (The generic backend: Yosys' SB_MAC16 model makes a Verilator build several
#: times larger; tests/test_systolic.py covers it.)
UART = TopConfig(rows=4, cols=4, backend="generic", pe=4, simd=32, weights_bytes=512,
                 activations_bytes=512, params_bytes=256, outputs_bytes=512, binary_max_k=128,
                 binary_max_n=16, max_thresholds=2, clock_hz=8_000_000, baud=1_000_000,
                 requantizer="serial", hold_registers=False, operand_skid=False,
                 output_buffer="none", crc_bits=1, dataflow="broadcast", spram=True)

#: Corruptions in the fault campaign: four cocotb tests (``faults_0``..``faults_3``) of 250.
FAULTS = 1000
SYSTEM_TESTS = ["info_write_read", "protocol_corners", "int8_layers", "binary_layers",
                "bad_descriptors", "busy_and_reset"]


def run_system(testcase, **params):
    # One run_cocotb call per group of testcases: each call converts the design to Verilog
    # again (about 10 s for this top) before it finds the cached build.
    return run_cocotb(AcceleratorTop(SYSTEM), toplevel="qaccel_top",
                      test_module="qaccel.sim.tb.top", testcase=testcase,
                      params={"config": dataclasses.asdict(SYSTEM), **params})


def test_system():
    assert run_system(SYSTEM_TESTS) == len(SYSTEM_TESTS)


def test_faults():
    assert run_system([f"faults_{part}" for part in range(4)], faults=FAULTS // 4) == 4


def test_uart_top():
    assert run_cocotb(UARTAcceleratorTop(UART), toplevel="qaccel_uart_top",
                      test_module="qaccel.sim.tb.top", testcase="uart_session",
                      params={"config": dataclasses.asdict(UART), "uart": True}) == 1


# ---- configuration (no simulation) ----------------------------------------------------------

def test_default_matches_reference_device():
    assert TopConfig().capabilities() == DeviceConfig().capabilities()


def test_capabilities_and_words():
    config = TopConfig(rows=2, cols=8, simd=64, binary=True, baud=115200)
    caps = config.capabilities()
    assert (caps.rows, caps.cols, caps.simd, caps.baud) == (2, 8, 64, 115200)
    assert caps.engines == 3 and caps.max_payload == proto.MAX_PAYLOAD
    assert config.word_bytes(proto.BufferId.ACTIVATIONS) == 8
    assert config.word_bytes(proto.BufferId.WEIGHTS) == 8
    assert config.word_bytes(proto.BufferId.PARAMS) == 4
    assert TopConfig(binary=False).word_bytes(proto.BufferId.WEIGHTS) == 4
    assert TopConfig(int8=False, simd=16).word_bytes(proto.BufferId.ACTIVATIONS) == 2
    assert TopConfig(int8=False).capabilities().engines == 2


@pytest.mark.parametrize("change, error, message", [
    (dict(rows=3), ValueError, "rows must be a power of two, not 3"),
    (dict(cols=256), ValueError, "cols must be in 1..128, not 256"),
    (dict(rows=2.0), TypeError, "rows must be an integer, not 2.0"),
    (dict(backend="xilinx"), ValueError, "backend must be one of dsp48e2, ice40, ecp5, generic; "
                                         "not 'xilinx'"),
    (dict(simd=24), ValueError, "simd must be a power of two and a multiple of 8, not 24"),
    (dict(simd=4), ValueError, "simd must be in 8..4096, not 4"),
    (dict(pe=0), ValueError, "pe must be in 1..255, not 0"),
    (dict(int8=1), TypeError, "int8 must be True or False, not 1"),
    (dict(int8=False, binary=False), ValueError, "at least one engine"),
    (dict(weights_bytes=4098), ValueError,
     "weights_bytes must be a multiple of the 4-byte memory word, not 4098"),
    (dict(outputs_bytes=0), ValueError, "outputs_bytes must be in 1..16777216, not 0"),
    (dict(binary_max_k=0), ValueError, "binary_max_k must be in 1..65535, not 0"),
    (dict(max_thresholds=256), ValueError, "max_thresholds must be in 1..255, not 256"),
    (dict(mult_cycles=3), ValueError, r"mult_cycles must be one of \(1, 2, 4, 8, 16\), not 3"),
    (dict(requantizer="booth"), ValueError,
     "requantizer must be one of pipelined, serial; not 'booth'"),
    (dict(hold_registers=None), TypeError, "hold_registers must be True or False, not None"),
    (dict(operand_skid=1), TypeError, "operand_skid must be True or False, not 1"),
    (dict(spram="yes"), TypeError, "spram must be True or False, not 'yes'"),
    (dict(output_buffer="fifo"), ValueError,
     "output_buffer must be one of skid, register, none; not 'fifo'"),
    (dict(dataflow="broadcast"), ValueError, "dataflow 'broadcast' needs hold_registers=False"),
    (dict(crc_bits=3), ValueError, "crc_bits must be one of 1, 2, 4, 8; not 3"),
    (dict(baud=-1), ValueError, "baud must be in 0..4294967295, not -1"),
    (dict(counter_width=8), ValueError, "counter_width must be in 16..64, not 8"),
])
def test_config_validation(change, error, message):
    with pytest.raises(error, match=message):
        TopConfig(**change)


def test_top_constructor_checks():
    with pytest.raises(TypeError, match="config must be a TopConfig, not 5"):
        AcceleratorTop(5)
    with pytest.raises(ValueError, match="needs a baud rate: config.baud is 0"):
        UARTAcceleratorTop(TopConfig())
    with pytest.raises(ValueError, match="baud error"):   # 12 MHz / 4 = 3 Mbaud: +11 %
        UARTAcceleratorTop(TopConfig(clock_hz=12_000_000, baud=2_700_000))
    with pytest.raises(ValueError, match="is below 4 x baud"):
        UARTAcceleratorTop(TopConfig(clock_hz=12_000_000, baud=5_000_000))


def test_protocol_doc_is_up_to_date():
    """docs/PROTOCOL.md is generated from the protocol module and the reference device."""
    docs = Path(__file__).resolve().parent.parent / "docs"
    spec = importlib.util.spec_from_file_location("gen_protocol", docs / "gen_protocol.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.render()
    assert "0x00" in text and "NAK" in text
    assert (docs / "PROTOCOL.md").read_text() == text, \
        "docs/PROTOCOL.md is stale: python docs/gen_protocol.py > docs/PROTOCOL.md"
