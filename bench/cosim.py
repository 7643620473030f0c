"""Co-simulation speed: the C++ harness (qaccel.sim.cosim) against cocotb on the same design.

Run with ``python bench/cosim.py``. Prints, in one run, simulated cycles per wall-second of

* the stand-in design (qaccel.sim.cosim_testtop) under cocotb + Verilator through
  ``run_cocotb``, with the stream models running (Python every cycle), during one long busy
  request;
* the same design in the C++ co-simulation, driven over a socketpair, over TCP, and (UART
  stand-in) over a pseudo-terminal with pyserial, during one long busy request;

and the raw byte-pipe throughput (bytes/s through the simulated design and back) of bulk echo
requests, with the link efficiency (payload bytes / wire bytes) of the toy protocol from
:func:`link_efficiency` -- the function to reuse against the real protocol's byte counts.

Builds are cached (first run: a few minutes for three builds on 2 cores). The harness's own
``cycles_per_s`` statistic counts only the time spent clocking; the table's rates are
wall-clock rates seen by the host, including the round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time

from qaccel.sim import run_cocotb
from qaccel.sim.cosim import CoSim, build_cosim
from qaccel.sim.cosim_testtop import CosimTestCore, CosimUartTestTop, ToyProtocol

UART_CLOCKS_PER_BIT = 10


def link_efficiency(payload_bytes, wire_bytes, *, baud=None, bits_per_byte=10):
    """Efficiency of a link for bulk transfers.

    Parameters
    ----------
    payload_bytes : int
        Useful bytes moved (e.g. tensor data written or read).
    wire_bytes : int
        Bytes that crossed the link in the same direction to move them (framing, headers,
        checksums, escapes and acknowledgements included).
    baud : float, optional
        UART line rate; when given, the payload rate it allows is computed too.
    bits_per_byte : int
        Line bits per byte (10 for 8N1).

    Returns
    -------
    dict
        ``efficiency`` (payload / wire), and with ``baud`` the ``wire_bytes_per_s`` and
        ``payload_bytes_per_s`` of a saturated line.
    """
    if payload_bytes < 0 or wire_bytes <= 0 or payload_bytes > wire_bytes:
        raise ValueError(f"Need 0 <= payload_bytes <= wire_bytes and wire_bytes > 0, "
                         f"not {payload_bytes} and {wire_bytes}")
    result = {"efficiency": payload_bytes / wire_bytes}
    if baud is not None:
        wire_rate = baud / bits_per_byte
        result.update(wire_bytes_per_s=wire_rate,
                      payload_bytes_per_s=wire_rate * payload_bytes / wire_bytes)
    return result


def cocotb_busy(cycles):
    """Cycles per wall-second of the stand-in under cocotb during one busy request."""
    with tempfile.TemporaryDirectory() as folder:
        result_path = os.path.join(folder, "result.json")
        run_cocotb(CosimTestCore(), toplevel="cosim_standin_tb",
                   test_module="qaccel.sim.tb.cosim_testtop", testcase="busy_speed",
                   params={"busy_cycles": cycles, "result_path": result_path}, seed=1)
        with open(result_path) as file:
            result = json.load(file)
    return result["cycles"], result["seconds"]


def cosim_busy(build, cycles, transport):
    """Cycles per wall-second of the co-simulation during one busy request, seen by the host."""
    with CoSim(build, transport=transport, timeout=600) as sim:
        port = sim.open_serial(timeout=600) if transport == "pty" else sim.link
        try:
            before = sim.wait_idle()
            started = time.perf_counter()
            port.write(ToyProtocol.busy(cycles))
            reply = port.read(ToyProtocol.BUSY_REPLY_BYTES)
            seconds = time.perf_counter() - started
            start, end = ToyProtocol.parse_busy(reply)
            assert end - start == cycles, (start, end)
            after = sim.wait_idle()
        finally:
            if transport == "pty":
                port.close()
    return after["cycles"] - before["cycles"], seconds, after


def byte_pipe(build, total_bytes, transport="socketpair", chunk=255):
    """Bulk echo requests through the design: payload bytes/s each way, and the efficiency."""
    requests, expected = [], []
    data = os.urandom(total_bytes)
    for offset in range(0, total_bytes, chunk):
        request, reply = ToyProtocol.echo(data[offset:offset + chunk])
        requests.append(request)
        expected.append(reply)
    request_bytes, reply_bytes = b"".join(requests), b"".join(expected)
    # generous: 100 cycles per byte on a UART at a pessimistic 200,000 cycles/s
    timeout = 30 + total_bytes * (100 if build.uart else 1) / 200_000
    with CoSim(build, transport=transport, timeout=timeout) as sim:
        port = sim.open_serial(timeout=timeout) if transport == "pty" else sim.link
        try:
            before = sim.wait_idle()
            # A writer thread, so that neither direction's buffers can fill up and stall.
            writer = threading.Thread(target=lambda: [port.write(request_bytes[i:i + 65536])
                                                      for i in range(0, len(request_bytes),
                                                                     65536)])
            started = time.perf_counter()
            writer.start()
            received = port.read(len(reply_bytes))
            seconds = time.perf_counter() - started
            writer.join()
            assert received == reply_bytes, "echo mismatch"
            after = sim.wait_idle()
        finally:
            if transport == "pty":
                port.close()
    efficiency = link_efficiency(total_bytes, len(request_bytes))["efficiency"]
    return {"bytes": total_bytes, "seconds": seconds, "bytes_per_s": total_bytes / seconds,
            "cycles": after["cycles"] - before["cycles"], "efficiency": efficiency}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000_000,
                        help="busy cycles for the C++ co-simulation (default 20,000,000)")
    parser.add_argument("--cocotb-cycles", type=int, default=50_000,
                        help="busy cycles for cocotb (default 50,000)")
    parser.add_argument("--pipe-bytes", type=int, default=2_000_000,
                        help="bytes echoed for the byte-pipe throughput (default 2,000,000)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QACCEL_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..",
                                                           "sim_build"))
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")  # keep the tables readable

    stream = build_cosim(CosimTestCore(), "cosim_standin")
    uart = build_cosim(CosimUartTestTop(UART_CLOCKS_PER_BIT), "cosim_standin_uart", uart=True)
    rows = []
    cycles, seconds = cocotb_busy(args.cocotb_cycles)
    reference = cycles / seconds
    rows.append(("cocotb + Verilator (run_cocotb)", "stream stand-in", "cocotb models",
                 cycles, seconds))
    for build, transport, label in ((stream, "socketpair", "stream stand-in"),
                                    (stream, "tcp", "stream stand-in"),
                                    (uart, "pty", f"UART stand-in ({UART_CLOCKS_PER_BIT} clk/bit)")):
        cycles, seconds, _ = cosim_busy(build, args.cycles, transport)
        link = "pty + pyserial" if transport == "pty" else transport
        rows.append(("C++ co-simulation (cosim)", label, link, cycles, seconds))

    print()
    print(f"Simulated cycles per wall-second during one long busy request "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f})")
    header = f"{'simulation':32} {'design':28} {'link':16} {'cycles':>12} {'wall s':>8} " \
             f"{'cycles/s':>12} {'vs cocotb':>10}"
    print(header)
    print("-" * len(header))
    for name, design, link, cycles, seconds in rows:
        rate = cycles / seconds
        print(f"{name:32} {design:28} {link:16} {cycles:12,d} {seconds:8.2f} {rate:12,.0f} "
              f"{rate / reference:9.0f}x")

    print()
    print("Byte pipe: bulk echo requests (255 payload bytes each) through the simulated design")
    header = f"{'design':28} {'link':16} {'payload bytes':>14} {'wall s':>8} {'bytes/s':>12} " \
             f"{'sim cycles':>12} {'cycles/byte':>12} {'efficiency':>11}"
    print(header)
    print("-" * len(header))
    uart_bytes = max(1, args.pipe_bytes // 100)  # 100 cycles per byte on the UART line
    for build, transport, label, size in ((stream, "socketpair", "stream stand-in",
                                           args.pipe_bytes),
                                          (stream, "tcp", "stream stand-in", args.pipe_bytes),
                                          (uart, "pty", "UART stand-in", uart_bytes)):
        result = byte_pipe(build, size, transport)
        link = "pty + pyserial" if transport == "pty" else transport
        print(f"{label:28} {link:16} {result['bytes']:14,d} {result['seconds']:8.2f} "
              f"{result['bytes_per_s']:12,.0f} {result['cycles']:12,d} "
              f"{result['cycles'] / result['bytes']:12.2f} {result['efficiency']:10.1%}")
    line = link_efficiency(255, 257, baud=3_000_000)
    print(f"\nAt 3 Mbaud (8N1) the toy protocol's {line['efficiency']:.1%} gives "
          f"{line['payload_bytes_per_s']:,.0f} payload bytes/s on a board; "
          f"link_efficiency() takes the real protocol's byte counts the same way.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
