"""Co-simulation speed: the C++ harness (qaccel.sim.cosim) against cocotb on the same design.

Run with ``python bench/cosim.py``. Prints, in one run, simulated cycles per wall-second of

* the stand-in design (qaccel.sim.cosim_testtop) under cocotb + Verilator through
  ``run_cocotb``, with the stream models running (Python every cycle), during one long busy
  request;
* the same design in the C++ co-simulation, driven over a socketpair, over TCP, and (UART
  stand-in) over a pseudo-terminal with pyserial, during one long busy request;
* the accelerator top in its default configuration (``AcceleratorTop(TopConfig())``, what
  ``Accelerator.open("sim")`` opens) under cocotb (``speed`` in ``sim/tb/top.py``: bulk WRITE
  frames back to back) and in the C++ co-simulation through the real host driver: bulk WRITE
  traffic (the driver, WRITEs in batches of its window, and frames pipelined as under
  cocotb), whole-buffer READs, and compute-bound INT8 GEMM and binary layers;

the link efficiency (payload bytes / wire bytes) of the real protocol's bulk WRITE and READ
transfers against the 85% target; and the raw byte-pipe throughput (bytes/s through the
simulated stand-in and back) of bulk echo requests of the toy protocol.

Builds are cached (first run: several minutes for five builds on 2 cores). The harness's own
``cycles_per_s`` statistic counts only the time spent clocking (shown as "clocking" for the
top); the table's rates are wall-clock rates seen by the host, including the round trips.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import tempfile
import threading
import time

import numpy as np

from qaccel.sim import run_cocotb
from qaccel.sim.cosim import CoSim, build_cosim
from qaccel.sim.cosim_testtop import CosimTestCore, CosimUartTestTop, ToyProtocol
from qaccel.sim.traffic import bulk_write_frames
from qaccel.sw import golden, layout
from qaccel.sw import protocol as proto

UART_CLOCKS_PER_BIT = 10
#: Target of the issue for the default configuration, simulated cycles per wall-second.
TARGET_CYCLES_PER_S = 1_000_000
#: Target link efficiency of bulk transfers (payload bytes / wire bytes).
TARGET_EFFICIENCY = 0.85
TOP_DESIGN = "accelerator top (default)"


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




# ---- the accelerator top (default configuration) ----------------------------------------------

@contextlib.contextmanager
def stdout_to_stderr():
    """Send file descriptor 1 to stderr for a while, so that the build and simulator
    messages of child processes (cocotb, Verilator, the harness) stay out of the tables."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def progress(message):
    """One progress line on stderr (the tables go to stdout)."""
    print(f"bench/cosim: {message}", file=sys.stderr, flush=True)


def cocotb_top_writes(frames):
    """Cycles and wall seconds of the top under cocotb for ``frames`` bulk WRITE frames.

    Runs the ``speed`` testcase of ``sim/tb/top.py`` on ``AcceleratorTop(TopConfig())``.

    Returns
    -------
    dict
        ``cycles``, ``seconds``, ``frames``, ``payload_bytes`` and ``wire_bytes``.
    """
    from qaccel.hw.top import AcceleratorTop, TopConfig

    config = TopConfig()
    with tempfile.TemporaryDirectory() as folder:
        result_path = os.path.join(folder, "result.json")
        run_cocotb(AcceleratorTop(config), toplevel="qaccel_top",
                   test_module="qaccel.sim.tb.top", testcase="speed",
                   params={"config": dataclasses.asdict(config), "frames": frames,
                           "result_path": result_path}, seed=1)
        with open(result_path) as file:
            return json.load(file)


_LINK_FIELDS = ("bytes_out", "bytes_in", "payload_out", "payload_in")


def measured(acc, work):
    """Run ``work(acc)`` and measure it on the co-simulation and on the link.

    Parameters
    ----------
    acc : qaccel.sw.driver.Accelerator
        Opened on ``"sim"`` (its transport has the :class:`~qaccel.sim.cosim.CoSim`).
    work : callable
        Takes ``acc``. Returns None, or a dict of link byte counts (``bytes_out``,
        ``bytes_in``, ``payload_out``, ``payload_in``) when it bypasses the driver.

    Returns
    -------
    dict
        ``cycles`` (simulated), ``seconds`` (wall), ``clocking_s`` (wall time the harness
        spent clocking) and the link byte counts.
    """
    cosim = acc.transport.cosim
    link_before = dataclasses.replace(acc.stats)
    before = cosim.wait_idle()
    started = time.perf_counter()
    counts = work(acc)
    seconds = time.perf_counter() - started
    after = cosim.wait_idle()
    if counts is None:
        counts = {name: getattr(acc.stats, name) - getattr(link_before, name)
                  for name in _LINK_FIELDS}
    return {"cycles": after["cycles"] - before["cycles"], "seconds": seconds,
            "clocking_s": after["active_s"] - before["active_s"], **counts}


def driver_writes(rounds, rng):
    """Work: write the whole weights buffer ``rounds`` times with ``write_buffer``."""
    def work(acc):
        size = acc.info.weights_bytes
        for _ in range(rounds):
            data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            acc.write_buffer(proto.BufferId.WEIGHTS, 0, data)
    return work


def driver_reads(rounds):
    """Work: read the whole weights buffer ``rounds`` times with ``read_buffer``."""
    def work(acc):
        size = acc.info.weights_bytes
        for _ in range(rounds):
            assert len(acc.read_buffer(proto.BufferId.WEIGHTS, 0, size)) == size
    return work


def pipelined_writes(frames, rng, timeout=600.0):
    """Work: ``frames`` bulk WRITE frames written back to back on the driver's transport.

    The frames of the cocotb ``speed`` test, not one at a time: a writer thread sends them
    all while this thread collects the replies, which must all be OK. Call
    ``acc.reset()`` before and after, so that the frames' sequence numbers cannot be taken
    for retries of the driver's commands.
    """
    def work(acc):
        wire, payload = bulk_write_frames(acc.info, frames, rng)
        transport = acc.transport
        reader = proto.FrameReader(reply=True)
        writer = threading.Thread(target=transport.write, args=(wire,))
        replies, received = [], 0
        deadline = time.monotonic() + timeout
        writer.start()
        while len(replies) < frames:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(replies)} of {frames} WRITE replies in {timeout} s")
            data = transport.read(1.0)
            received += len(data)
            replies.extend(reader.feed(data))
        writer.join()
        for reply in replies:
            assert isinstance(reply, proto.Frame) and reply.status == proto.Status.OK, reply
        return {"bytes_out": len(wire), "bytes_in": received, "payload_out": payload,
                "payload_in": 0}
    return work


def int8_gemm(m, k, n, rng):
    """Work: a requantized INT8 GEMM (M, K) x (K, N) with ``acc.gemm``, checked bit-exactly
    against the golden model."""
    def work(acc):
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        m0, shift = golden.quantize_multiplier(np.full(n, 2.0 ** -9))
        y = acc.gemm(a, w, m0=m0, shift=shift)
        assert np.array_equal(y, golden.requantize(golden.gemm_int8(a, w), m0, shift))
    return work


def binary_layer(m, k, n, rng):
    """Work: a binary layer (M, K) x (N, K) with one threshold per channel, with
    ``acc.binary_layer``, checked against the golden model."""
    def work(acc):
        signs = np.array([-1, 1], dtype=np.int8)
        a = rng.choice(signs, (m, k))
        w = rng.choice(signs, (n, k))
        t = rng.integers(-8, 9, (n, 1)).astype(np.int32)
        y = acc.binary_layer(a, w, thresholds=t)
        dot = a.astype(np.int32) @ w.T.astype(np.int32)
        assert np.array_equal(y, golden.thresholds(dot, t))
    return work


def resident_runs(descriptor, count):
    """Work: ``count`` RUNs of ``descriptor`` with ``acc.run`` on the buffers as they are.

    Run it right after the layer of the same engine and shape (which left valid weights,
    activations and parameters in the buffers): nothing moves on the link but the RUN,
    STATUS polls and replies, so the device is busy almost all the time.
    """
    def work(acc):
        for _ in range(count):
            acc.run(descriptor)
    return work


def last_block(engine, m, k, n, info):
    """The RUN descriptor of the last block of a layer the driver ran (offsets 0).

    Mirrors the driver's blocking for layers whose rows fit one block (``M`` up to 32 for
    the default shapes), so that the buffers hold that block's operands.

    Parameters
    ----------
    engine : qaccel.sw.protocol.Engine
        ``INT8`` (requantized GEMM) or ``BINARY`` (one threshold per channel).
    m, k, n : int
        The layer's shape, as given to :func:`int8_gemm` or :func:`binary_layer`.
    info : qaccel.sw.protocol.Capabilities
        The device's capabilities (buffer sizes, for the driver's block sizes).
    """
    if engine == proto.Engine.INT8:
        block = min(n, info.weights_bytes // (k * info.cols) * info.cols,
                    info.params_bytes // layout.PARAM_RECORD_BYTES // info.cols * info.cols)
        rows = min(m, info.activations_bytes // (k * info.rows) * info.rows,
                   info.outputs_bytes // block // info.rows * info.rows)
        return proto.RunDescriptor(
            engine=engine, mode=proto.OutputMode.REQUANT_INT8, m=rows, k=k,
            n=n - (n - 1) // block * block, a_offset=0, w_offset=0, p_offset=0,
            out_offset=0, zp_out=0, act_min=-128, act_max=127, thresholds=0)
    row_bytes = layout.binary_row_bytes(k, info.simd)
    block = min(n, info.binary_max_n, info.weights_bytes // row_bytes,
                info.params_bytes // 4)
    rows = min(m, info.activations_bytes // row_bytes)
    return proto.RunDescriptor(
        engine=engine, mode=proto.OutputMode.THRESHOLDS, m=rows, k=k,
        n=n - (n - 1) // block * block, a_offset=0, w_offset=0, p_offset=0, out_offset=0,
        zp_out=0, act_min=0, act_max=0, thresholds=1)


def engine_busy(acc):
    """Fraction of cycles since the last RESET that an engine was running (COUNTERS)."""
    counters = acc.counters()
    return (counters["int8_busy"] + counters["binary_busy"]) / max(1, counters["cycles"])


def top_cosim(args):
    """The default top in the C++ co-simulation through the host driver, all workloads.

    Returns
    -------
    list of (str, dict)
        Workload label and :func:`measured` result (``busy``: engine-busy fraction for the
        compute-bound workloads).
    """
    from qaccel.sw.driver import Accelerator

    rng = np.random.default_rng(1)
    results = []
    with Accelerator.open("sim", timeout=30.0) as acc:
        size = acc.info.weights_bytes
        int8_run = last_block(proto.Engine.INT8, *args.gemm, acc.info)
        binary_run = last_block(proto.Engine.BINARY, *args.binary, acc.info)
        workloads = [
            (f"bulk WRITE, driver ({args.write_rounds} x {size} B)",
             driver_writes(args.write_rounds, rng), False),
            (f"bulk WRITE, pipelined ({args.frames} frames)",
             pipelined_writes(args.frames, rng), False),
            (f"READ whole buffer, driver ({args.read_rounds} x {size} B)",
             driver_reads(args.read_rounds), False),
            ("INT8 GEMM {}x{}x{} (requant)".format(*args.gemm),
             int8_gemm(*args.gemm, rng), True),
            ("INT8 RUN {}x{}x{} x {} (resident)".format(int8_run.m, int8_run.k, int8_run.n,
                                                       args.runs),
             resident_runs(int8_run, args.runs), True),
            ("binary layer {}x{}x{} (1 thr)".format(*args.binary),
             binary_layer(*args.binary, rng), True),
            ("binary RUN {}x{}x{} x {} (resident)".format(binary_run.m, binary_run.k,
                                                           binary_run.n, args.runs),
             resident_runs(binary_run, args.runs), True),
        ]
        for label, work, compute in workloads:
            progress(f"C++ co-simulation of the top: {label} ...")
            acc.reset()  # clears the counters; a fresh sequence-number history
            result = measured(acc, work)
            if compute:
                result["busy"] = engine_busy(acc)
            results.append((label, result))
    return results


# ---- tables ---------------------------------------------------------------------------------

def speed_table(rows):
    """Print the cycles-per-second table.

    Parameters
    ----------
    rows : list of dict
        ``design``, ``simulation``, ``workload``, ``cycles``, ``seconds``, ``reference``
        (the cocotb rate of the same design) and optionally ``clocking_s`` and ``busy``.
    """
    header = (f"{'design':26} {'simulation':34} {'workload':40} {'cycles':>11} "
              f"{'wall s':>7} {'cycles/s':>10} {'vs cocotb':>9} {'clocking c/s':>12} "
              f"{'busy':>5}")
    print(header)
    print("-" * len(header))
    for row in rows:
        rate = row["cycles"] / row["seconds"]
        clocking = row.get("clocking_s")
        clocking = f"{row['cycles'] / clocking:12,.0f}" if clocking else f"{'-':>12}"
        busy = f"{row['busy']:5.0%}" if "busy" in row else f"{'-':>5}"
        print(f"{row['design']:26} {row['simulation']:34} {row['workload']:40} "
              f"{row['cycles']:11,d} {row['seconds']:7.2f} {rate:10,.0f} "
              f"{rate / row['reference']:8.0f}x {clocking} {busy}")


def efficiency_table(transfers):
    """Print the link-efficiency table of the real protocol against the target.

    Parameters
    ----------
    transfers : list of (str, int, int, int)
        Label, payload bytes, wire bytes in the payload's direction, wire bytes in the other
        direction (replies or commands).
    """
    header = (f"{'transfer':40} {'payload bytes':>13} {'wire bytes':>11} {'efficiency':>10} "
              f"{'incl. other dir':>15} {'target 85%':>10}")
    print(header)
    print("-" * len(header))
    for label, payload, wire, other in transfers:
        efficiency = link_efficiency(payload, wire)["efficiency"]
        both = link_efficiency(payload, wire + other)["efficiency"]
        verdict = "met" if efficiency >= TARGET_EFFICIENCY else "NOT met"
        print(f"{label:40} {payload:13,d} {wire:11,d} {efficiency:10.1%} {both:15.1%} "
              f"{verdict:>10}")


def verdict(rows):
    """The plain statement of the 1 M cycles/s target for the default configuration."""
    best = max(rows, key=lambda row: row["cycles"] / row["seconds"])
    rate = best["cycles"] / best["seconds"]
    clocking = max(row["cycles"] / row["clocking_s"] for row in rows)
    met = "MET" if rate >= TARGET_CYCLES_PER_S else "NOT MET"
    return (f"Target >= {TARGET_CYCLES_PER_S:,} simulated cycles/s for the default "
            f"configuration (AcceleratorTop(TopConfig()), C++ co-simulation): {met}. Best "
            f"{rate:,.0f} cycles/s ({best['workload']}); at most {clocking:,.0f} cycles/s "
            f"counting only the time the harness spends clocking.")


# ---- main -----------------------------------------------------------------------------------

def standin_rows(args):
    """Rows of the stand-in designs (cocotb, and the C++ co-simulation over three links)."""
    progress("building (or reusing) the stand-in co-simulations ...")
    stream = build_cosim(CosimTestCore(), "cosim_standin")
    uart = build_cosim(CosimUartTestTop(UART_CLOCKS_PER_BIT), "cosim_standin_uart", uart=True)
    progress(f"cocotb, stream stand-in: one busy request of {args.cocotb_cycles:,} cycles ...")
    cycles, seconds = cocotb_busy(args.cocotb_cycles)
    reference = cycles / seconds
    rows = [dict(design="stream stand-in", simulation="cocotb + Verilator (run_cocotb)",
                 workload="busy request, cocotb stream models", cycles=cycles,
                 seconds=seconds, reference=reference)]
    uart_design = f"UART stand-in ({UART_CLOCKS_PER_BIT} clk/bit)"
    for build, transport, design in ((stream, "socketpair", "stream stand-in"),
                                     (stream, "tcp", "stream stand-in"),
                                     (uart, "pty", uart_design)):
        progress(f"C++ co-simulation, {design} over {transport}: {args.cycles:,} busy cycles ...")
        cycles, seconds, _ = cosim_busy(build, args.cycles, transport)
        link = "pty + pyserial" if transport == "pty" else transport
        rows.append(dict(design=design, simulation=f"C++ co-simulation ({link})",
                         workload="busy request", cycles=cycles, seconds=seconds,
                         reference=reference))
    return rows, (stream, uart)


def top_rows(args):
    """Rows of the default accelerator top, and its link-efficiency transfers."""
    progress(f"cocotb, accelerator top (default configuration): {args.frames} bulk WRITE "
             f"frames (the first run builds the top for cocotb: several minutes) ...")
    cocotb_result = cocotb_top_writes(args.frames)
    reference = cocotb_result["cycles"] / cocotb_result["seconds"]
    rows = [dict(design=TOP_DESIGN, simulation="cocotb + Verilator (run_cocotb)",
                 workload=f"bulk WRITE, pipelined ({args.frames} frames)",
                 cycles=cocotb_result["cycles"], seconds=cocotb_result["seconds"],
                 reference=reference)]
    progress("C++ co-simulation of the accelerator top through Accelerator.open('sim') ...")
    transfers = []
    for label, result in top_cosim(args):
        rows.append(dict(design=TOP_DESIGN, simulation="C++ co-sim (driver, socketpair)",
                         workload=label, reference=reference, **result))
        if label.startswith("bulk WRITE"):
            transfers.append((label, result["payload_out"], result["bytes_out"],
                              result["bytes_in"]))
        elif label.startswith("READ"):
            transfers.append((label, result["payload_in"], result["bytes_in"],
                              result["bytes_out"]))
    return rows, transfers


def parse_args(argv):
    """Command-line options (sizes of every measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20_000_000,
                        help="stand-in: busy cycles for the C++ co-simulation (20,000,000)")
    parser.add_argument("--cocotb-cycles", type=int, default=50_000,
                        help="stand-in: busy cycles for cocotb (50,000)")
    parser.add_argument("--pipe-bytes", type=int, default=2_000_000,
                        help="stand-in: bytes echoed for the byte-pipe throughput (2,000,000)")
    parser.add_argument("--frames", type=int, default=200,
                        help="top: bulk WRITE frames under cocotb and pipelined in the C++ "
                             "co-simulation (200)")
    parser.add_argument("--write-rounds", type=int, default=50,
                        help="top: whole weights-buffer writes through the driver (50)")
    parser.add_argument("--read-rounds", type=int, default=20,
                        help="top: whole weights-buffer reads through the driver (20)")
    parser.add_argument("--gemm", type=int, nargs=3, default=[32, 128, 512],
                        metavar=("M", "K", "N"), help="top: INT8 GEMM shape (32 128 512)")
    parser.add_argument("--binary", type=int, nargs=3, default=[32, 1024, 512],
                        metavar=("M", "K", "N"), help="top: binary layer shape (32 1024 512)")
    parser.add_argument("--runs", type=int, default=20,
                        help="top: RUNs repeated on resident buffers after each layer (20)")
    parser.add_argument("--top-only", action="store_true",
                        help="measure only the accelerator top (skip the stand-ins)")
    return parser.parse_args(argv)


def open_loadavg():
    """The 1, 5 and 15 minute load averages, as strings."""
    with open("/proc/loadavg") as file:
        return file.read().split()[:3]


def byte_pipe_results(builds, pipe_bytes):
    """Byte-pipe results of the stand-ins over each link."""
    stream, uart = builds
    uart_bytes = max(1, pipe_bytes // 100)  # 100 cycles per byte on the UART line
    results = []
    for build, transport, label, size in ((stream, "socketpair", "stream stand-in", pipe_bytes),
                                          (stream, "tcp", "stream stand-in", pipe_bytes),
                                          (uart, "pty", "UART stand-in", uart_bytes)):
        progress(f"byte pipe, {label} over {transport}: {size:,} bytes ...")
        link = "pty + pyserial" if transport == "pty" else transport
        results.append((label, link, byte_pipe(build, size, transport)))
    return results


def pipe_table(results):
    """Print the stand-ins' byte-pipe table."""
    header = f"{'design':28} {'link':16} {'payload bytes':>14} {'wall s':>8} {'bytes/s':>12} " \
             f"{'sim cycles':>12} {'cycles/byte':>12} {'efficiency':>11}"
    print(header)
    print("-" * len(header))
    for label, link, result in results:
        print(f"{label:28} {link:16} {result['bytes']:14,d} {result['seconds']:8.2f} "
              f"{result['bytes_per_s']:12,.0f} {result['cycles']:12,d} "
              f"{result['cycles'] / result['bytes']:12.2f} {result['efficiency']:10.1%}")


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("QACCEL_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..",
                                                           "sim_build"))
    os.environ.setdefault("COCOTB_LOG_LEVEL", "WARNING")  # keep the tables readable

    with stdout_to_stderr():
        rows, builds = ([], None) if args.top_only else standin_rows(args)
        top, transfers = top_rows(args)
        rows += top
        pipe = [] if builds is None else byte_pipe_results(builds, args.pipe_bytes)

    print()
    print(f"Simulated cycles per wall-second ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {' '.join(open_loadavg())}); "
          f"'vs cocotb' is against the cocotb row of the same design, 'clocking c/s' counts "
          f"only the harness's clocking time, 'busy' is the engines' share of the cycles")
    speed_table(rows)
    print()
    print(verdict([row for row in top if "clocking_s" in row]))
    print()
    print("Link efficiency of the real protocol (payload bytes / wire bytes in the payload's "
          "direction; 'incl. other dir' also counts the replies or commands)")
    efficiency_table(transfers)
    label, payload, wire, _ = transfers[0]
    line = link_efficiency(payload, wire, baud=3_000_000)
    print(f"\nAt 3 Mbaud (8N1) the WRITE efficiency of {line['efficiency']:.1%} allows "
          f"{line['payload_bytes_per_s']:,.0f} payload bytes/s on a board's UART (frames "
          f"back to back).")
    if pipe:
        print()
        print("Byte pipe: bulk echo requests (255 payload bytes each) through the simulated "
              "stand-in design (toy protocol)")
        pipe_table(pipe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
