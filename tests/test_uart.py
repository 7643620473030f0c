"""The UART PHY (qaccel.hw.uart): parameter validation and baud-rate arithmetic, then the
cocotb testbench (qaccel.sim.tb.uart) against cocotbext-uart at two clock/baud
configurations, one Verilator build each."""

import warnings

import pytest
from amaranth.hdl import UnusedElaboratable

from qaccel.hw.uart import MAX_BAUD_ERROR, UART, UARTRX, UARTTX
from qaccel.sim import run_cocotb


@pytest.fixture(autouse=True)
def _quiet_unused():
    # Components built only to inspect their parameters are never elaborated.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        yield


# --- parameters and baud arithmetic (no simulation) ---------------------------------------

def test_icebreaker_3mbaud_samples_every_clock():
    rx = UARTRX(12e6, 3e6)
    assert (rx.oversampling, rx.divider, rx.actual_baud, rx.baud_error) == (4, 1, 3e6, 0)
    assert rx.vote_samples == (2,)
    tx = UARTTX(12e6, 3e6)
    assert (tx.divider, tx.baud_error) == (4, 0)


def test_16x_oversampling_with_divider():
    rx = UARTRX(7.3728e6, 230400, oversampling=16)
    assert (rx.oversampling, rx.divider) == (16, 2)
    assert rx.baud_error == pytest.approx(0, abs=1e-12)
    assert rx.vote_samples == (7, 8, 9)


def test_baud_error_is_reported():
    # 12 MHz / 115200 = 104.17 clocks per bit: 104 clocks, +0.16 %.
    rx = UARTRX(12e6, 115200)
    assert (rx.oversampling, rx.divider) == (104, 1)
    assert rx.actual_baud == pytest.approx(12e6 / 104)
    assert rx.baud_error == pytest.approx(12e6 / 104 / 115200 - 1)
    assert rx.vote_samples == (46, 52, 58)
    tx = UARTTX(12e6, 115200)
    assert (tx.divider, tx.baud_error) == (104, pytest.approx(rx.baud_error))
    uart = UART(12e6, 115200)
    assert (uart.oversampling, uart.rx_divider, uart.tx_divider) == (104, 1, 104)
    assert uart.rx_baud_error == pytest.approx(rx.baud_error)


def test_baud_error_over_limit_is_rejected():
    assert MAX_BAUD_ERROR == 0.02
    # 16x at 12 MHz / 115200 needs a divider of 6.51: 7 gives 107143 baud, -7.0 %.
    with pytest.raises(ValueError, match=r"^RX baud error -6\.99% exceeds the 2% limit: "
                       r"12000000\.0 Hz / \(16 samples x 7 clocks\) gives 107142\.9 baud "
                       r"for 115200 requested$"):
        UARTRX(12e6, 115200, oversampling=16)
    # 25 MHz / 3 Mbaud = 8.33 clocks per bit.
    with pytest.raises(ValueError, match=r"^TX baud error \+4\.17% exceeds the 2% limit: "
                       r"25000000\.0 Hz / 8 clocks gives 3125000\.0 baud for 3000000\.0 "
                       r"requested$"):
        UARTTX(25e6, 3e6)
    with pytest.raises(ValueError, match=r"^RX baud error"):
        UART(25e6, 3e6)


@pytest.mark.parametrize("make, error, message", [
    (lambda: UARTRX("12e6", 3e6), TypeError,
     "Clock frequency must be a number, not '12e6'"),
    (lambda: UARTRX(12e6, True), TypeError, "Baud rate must be a number, not True"),
    (lambda: UARTRX(0, 3e6), ValueError, "Clock frequency must be positive, not 0"),
    (lambda: UARTTX(12e6, -9600), ValueError, "Baud rate must be positive, not -9600"),
    (lambda: UARTRX(12e6, 3e6, oversampling=4.0), TypeError,
     "Oversampling must be None or an integer, not 4.0"),
    (lambda: UARTRX(12e6, 3e6, oversampling=3), ValueError,
     "Oversampling must be at least 4, not 3"),
    (lambda: UARTRX(12e6, 1e6, oversampling=16), ValueError,
     "Clock frequency 12000000.0 Hz is below oversampling x baud "
     "(16 x 1000000.0 = 16000000.0 Hz)"),
    (lambda: UARTRX(10e6, 3e6), ValueError,
     "Clock frequency 10000000.0 Hz is below 4 x baud (4 x 3000000.0 = 12000000.0 Hz)"),
    (lambda: UARTTX(1e6, 3e6), ValueError,
     "Clock frequency 1000000.0 Hz is below the baud rate 3000000.0"),
    (lambda: UARTRX(12e6, 3e6, fifo_depth=0), ValueError, "FIFO depth must be at least 1, not 0"),
    (lambda: UART(12e6, 3e6, fifo_depth="16"), TypeError,
     "FIFO depth must be an integer, not '16'"),
    (lambda: UART(12e6, 3e6, counter_width=0), ValueError,
     "Counter width must be at least 1, not 0"),
])
def test_parameter_validation(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message


# --- cocotb against cocotbext-uart -------------------------------------------------------

FIFO_DEPTH = 8

#: Two clock/baud configurations, one Verilator build each. `period_ns` is the simulated clock
#: period (time is scaled; see the testbench).
CONFIGS = {
    # The iCEBreaker link: 12 MHz fabric clock, 3 Mbaud, 4 clocks per bit, one sample per clock.
    "icebreaker_3mbaud": dict(clk_freq=12e6, baud=3e6, oversampling=None, period_ns=1000,
                              random_bytes=64, loopback_bytes=400),
    # A classic 16x UART: 7.3728 MHz crystal, 230400 baud, a sample every 2 clocks.
    "crystal_230400_16x": dict(clk_freq=7.3728e6, baud=230400, oversampling=16, period_ns=100,
                               random_bytes=24, loopback_bytes=80),
}

COCOTB_TESTS = 13  # 10 test functions, two of them parametrized (2 and 3 cases)


@pytest.mark.parametrize("name", CONFIGS)
def test_uart_against_cocotbext_uart(name):
    config = CONFIGS[name]
    uart = UART(config["clk_freq"], config["baud"], oversampling=config["oversampling"],
                fifo_depth=FIFO_DEPTH)
    params = {key: config[key] for key in ("clk_freq", "baud", "period_ns", "random_bytes",
                                           "loopback_bytes")}
    params.update(oversampling=uart.oversampling, rx_divider=uart.rx_divider,
                  tx_divider=uart.tx_divider, fifo_depth=FIFO_DEPTH)
    tests = run_cocotb(uart, test_module="qaccel.sim.tb.uart", toplevel=f"uart_{name}",
                       params=params)
    assert tests == COCOTB_TESTS
