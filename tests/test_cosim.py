"""The driver-in-the-loop co-simulation harness (qaccel.sim.cosim) with the stand-in designs:
byte round trips over a socketpair, TCP and a pseudo-terminal (pyserial on UART pins), busy
requests and cycle accounting, idling without CPU, exit when the peer closes, the build cache,
and clear errors. Two co-simulation builds (stream and UART stand-ins) and one cocotb build."""

import contextlib
import gc
import os
import time
import warnings

import numpy as np
import pytest
from amaranth.hdl import UnusedElaboratable

from qaccel.hw.skid import SkidBuffer
from qaccel.sim import cosim as cosim_module
from qaccel.sim import run_cocotb
from qaccel.sim.cosim import CoSim, CosimError, build_cosim, parse_stats
from qaccel.sim.cosim_testtop import CosimTestCore, CosimUartTestTop, ToyProtocol

pytestmark = pytest.mark.xdist_group("cosim")

CLOCKS_PER_BIT = 10
GRACE = 16


@pytest.fixture(scope="module")
def stream_build():
    return build_cosim(CosimTestCore(), "cosim_standin")


@pytest.fixture(scope="module")
def uart_build():
    return build_cosim(CosimUartTestTop(CLOCKS_PER_BIT), "cosim_standin_uart", uart=True)


@pytest.fixture
def rng():
    seed = int(os.environ.get("QACCEL_SEED") or np.random.SeedSequence().entropy % 2**31)
    print(f"seed {seed} (QACCEL_SEED={seed} reproduces it)")
    return np.random.default_rng(seed)


def random_requests(rng, count, max_echo=255, max_busy=200):
    """A random session: list of (kind, request, expected reply or argument)."""
    session = []
    for index in range(count):
        kind = ("echo", "count", "unknown", "busy")[index % 4 if index < 8 else rng.integers(4)]
        if kind == "echo":
            length = int(rng.choice([0, 1, max_echo, int(rng.integers(0, max_echo + 1))]))
            data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
            if index == 0:
                data = bytes([0x00, 0xFF, ord("E"), ord("B"), ord("C"), 0x55, 0xAA])
            request, expected = ToyProtocol.echo(data)
            session.append((kind, request, expected))
        elif kind == "count":
            session.append((kind, ToyProtocol.count(), None))
        elif kind == "unknown":
            opcode = int(rng.choice([b for b in range(256) if b not in b"EBC"]))
            session.append((kind, bytes([opcode]), bytes([ord("?"), opcode])))
        else:
            wait = int(rng.choice([0, 1, int(rng.integers(2, max_busy + 1))]))
            session.append((kind, ToyProtocol.busy(wait), wait))
    return session


def reply_length(kind, expected):
    if kind in ("echo", "unknown"):
        return len(expected)
    return ToyProtocol.COUNT_REPLY_BYTES if kind == "count" else ToyProtocol.BUSY_REPLY_BYTES


def check_replies(session, replies, cycles_at_end):
    """Walk the concatenated replies of ``session``; returns the number of replies checked."""
    offset = 0
    previous_count = -1
    for kind, _, expected in session:
        size = reply_length(kind, expected)
        reply = replies[offset:offset + size]
        offset += size
        if kind in ("echo", "unknown"):
            assert reply == expected, (kind, reply, expected)
        elif kind == "count":
            count = ToyProtocol.parse_count(reply)
            assert previous_count < count <= cycles_at_end
            previous_count = count
        else:
            start, end = ToyProtocol.parse_busy(reply)
            assert end - start == expected and end <= cycles_at_end
    assert offset == len(replies)
    return len(session)


def total_reply_length(session):
    return sum(reply_length(kind, expected) for kind, _, expected in session)


def pipelined_round_trip(sim, link, session, timeout=20):
    """All requests in one write, then all replies."""
    link.write(b"".join(request for _, request, _ in session))
    replies = link.read(total_reply_length(session), timeout)
    stats = sim.wait_idle()
    check_replies(session, replies, stats["cycles"])
    return stats


def lockstep_round_trip(sim, link, session, timeout=5):
    """One request at a time: every request wakes an idle simulation."""
    replies = b""
    for kind, request, expected in session:
        link.write(request)
        replies += link.read(reply_length(kind, expected), timeout)
    stats = sim.wait_idle()
    check_replies(session, replies, stats["cycles"])
    return stats


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_socketpair_round_trip(stream_build, rng):
    session = random_requests(rng, 400)
    with CoSim(stream_build) as sim:
        stats = pipelined_round_trip(sim, sim.link, session)
        sent = sum(len(request) for _, request, _ in session)
        assert stats["bytes_in"] == stats["device_bytes_in"] == sent
        assert stats["bytes_out"] == total_reply_length(session)
        stats = lockstep_round_trip(sim, sim.link, random_requests(rng, 60, max_echo=40))
    assert sim.exit_stats["reason"] == "peer-closed"
    assert sim.exit_stats["cycles"] == stats["cycles"]


def test_busy_cycles_match(stream_build):
    wait = 100_000
    with CoSim(stream_build, grace_cycles=GRACE) as sim:
        before = sim.wait_idle()
        started = time.monotonic()
        sim.link.write(ToyProtocol.busy(wait))
        start, end = ToyProtocol.parse_busy(sim.link.read_exactly(17, timeout=30))
        elapsed = time.monotonic() - started
        after = sim.wait_idle()
    assert end - start == wait
    # busy was high for exactly the requested cycles, as the harness counted them
    assert after["busy_cycles"] - before["busy_cycles"] == wait
    # 5 request bytes, the wait, 17 reply bytes, then the grace cycles before idling
    assert start >= before["cycles"] + 5
    assert end + 17 <= after["cycles"] <= end + 17 + GRACE + 2, (end, after["cycles"])
    # no Python per cycle: even on a loaded machine far above cocotb's ~10,000 cycles/s
    assert wait / elapsed > 50_000, f"{wait / elapsed:.0f} cycles/s"


def test_idle_uses_no_cpu_and_no_cycles(stream_build):
    with CoSim(stream_build) as sim:
        sim.link.write(ToyProtocol.busy(1000))
        sim.link.read_exactly(17)
        idle = sim.wait_idle()
        cpu = cpu_seconds(sim.pid)
        time.sleep(0.5)
        assert cpu_seconds(sim.pid) - cpu <= 0.03
        assert sim.stats()["cycles"] == idle["cycles"]
        assert sim.cycles == idle["cycles"]


def test_tcp_round_trip(stream_build, rng):
    with CoSim(stream_build, transport="tcp") as sim:
        host, port = sim.address
        assert host == "127.0.0.1" and port > 0
        pipelined_round_trip(sim, sim.link, random_requests(rng, 150))
        lockstep_round_trip(sim, sim.link, random_requests(rng, 30, max_echo=30))
    assert sim.exit_stats["reason"] == "peer-closed"


def test_exit_when_peer_closes(stream_build):
    sim = CoSim(stream_build).start()
    try:
        sim.link.write(ToyProtocol.echo(b"abc")[0])
        sim.link.read_exactly(5)
        sim.link.close()
        deadline = time.monotonic() + 5
        while sim.returncode is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.returncode == 0, "the harness did not exit when its peer closed"
    finally:
        stats = sim.close()
    assert stats["reason"] == "peer-closed" and stats["bytes_in"] == 5


def test_half_close_finishes_work_in_flight(stream_build):
    """A host that shuts down its sending side still gets the replies to what it sent."""
    with CoSim(stream_build) as sim:
        sim.link.write(ToyProtocol.busy(50_000) + ToyProtocol.echo(b"last")[0])
        sim.link.shutdown_write()
        start, end = ToyProtocol.parse_busy(sim.link.read_exactly(17, timeout=10))
        assert end - start == 50_000
        assert sim.link.read_exactly(6) == ToyProtocol.echo(b"last")[1]
        assert sim.link.read(1, timeout=5) == b"" and sim.link.at_eof
    assert sim.exit_stats["reason"] == "peer-closed"


def test_max_cycles_limit(stream_build):
    sim = CoSim(stream_build, max_cycles=20_000).start()
    sim.link.write(ToyProtocol.busy(10_000_000))
    assert sim.link.read(17, timeout=10) == b""  # the harness stopped before the reply
    with pytest.raises(CosimError, match="max_cycles"):
        sim.close()
    assert sim.returncode == 3 and sim.exit_stats["cycles"] == 20_000


def test_pty_uart_with_pyserial(uart_build, rng):
    session = random_requests(rng, 40, max_echo=60, max_busy=2000)
    with CoSim(uart_build, transport="pty") as sim:
        assert sim.pty_path.startswith("/dev/")
        port = sim.open_serial(timeout=10)
        try:
            # one request at a time: a UART has no flow control and the stand-in's receive
            # FIFO holds 64 bytes while a busy request runs
            for kind, request, expected in session:
                port.write(request)
                reply = port.read(reply_length(kind, expected))
                check_replies([(kind, request, expected)], reply, float("inf"))
            before = sim.wait_idle()
            port.write(ToyProtocol.busy(100_000))
            start, end = ToyProtocol.parse_busy(port.read(17))
            assert end - start == 100_000
            after = sim.wait_idle()
        finally:
            port.close()
    # the UART top is also busy while its 5 + 17 characters move (10 bits each)
    busy = after["busy_cycles"] - before["busy_cycles"]
    assert 100_000 + 21 * 10 * CLOCKS_PER_BIT <= busy
    assert busy <= after["cycles"] - before["cycles"]
    assert after["framing_errors"] == 0
    assert sim.exit_stats["reason"] == "control-closed"
    assert sim.exit_stats["bytes_in"] == sim.exit_stats["device_bytes_in"]


def test_uart_over_socketpair(uart_build, rng):
    """UART pins work on any link. 10 kB of back-to-back echo requests: the device's replies
    keep pace with the host's characters (a transmitter 1% slower would overflow the 64-byte
    receive FIFO and lose bytes: there is no flow control)."""
    with CoSim(uart_build) as sim:
        lockstep_round_trip(sim, sim.link, random_requests(rng, 30, max_echo=50), timeout=10)
        echoes = [("echo", *ToyProtocol.echo(rng.integers(0, 256, 255, dtype=np.uint8)))
                  for _ in range(40)]
        stats = pipelined_round_trip(sim, sim.link, echoes)
    assert stats["framing_errors"] == 0


def test_second_build_is_cached(stream_build, capfd):
    again = build_cosim(CosimTestCore(), "cosim_standin")
    out = capfd.readouterr().out
    assert again.cached and again.executable == stream_build.executable
    assert "reusing cached co-simulation build" in out, out


def test_cocotb_agrees(capfd):
    """The stand-in under cocotb: the same protocol and cycle semantics (also the bench's
    reference for cycles per second)."""
    tests = run_cocotb(CosimTestCore(), toplevel="cosim_standin_tb",
                       test_module="qaccel.sim.tb.cosim_testtop",
                       testcase=["random_requests", "busy_exact"], params={"requests": 40})
    assert tests == 2


@contextlib.contextmanager
def rejected_designs():
    """Designs refused before elaboration warn when collected: collect them here, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        yield
        gc.collect()


def test_contract_errors():
    with rejected_designs():
        with pytest.raises(ValueError, match="no member 'busy'"):
            build_cosim(lambda: SkidBuffer(8), "skid_cosim")
        with pytest.raises(ValueError, match="no member 'rx'"):
            build_cosim(lambda: CosimUartTestTop(8), "uart_as_stream", uart=False)
        with pytest.raises(ValueError, match="Verilog identifier"):
            build_cosim(CosimTestCore, "no spaces")
        with pytest.raises(ValueError, match="UART designs only"):
            build_cosim(CosimTestCore, "cosim_standin", clocks_per_bit=8)
        with pytest.raises(TypeError, match="Clocks per bit must be an integer"):
            CosimUartTestTop(8.0)


def test_missing_compiler_is_named(monkeypatch):
    real = cosim_module.find_program
    monkeypatch.setattr(cosim_module, "find_program",
                        lambda name: None if name == "c++" else real(name))
    with rejected_designs(), pytest.raises(CosimError, match="c\\+\\+ not found.*g\\+\\+"):
        build_cosim(CosimTestCore, "cosim_standin")


def test_launch_errors(stream_build):
    with pytest.raises(ValueError, match="Unknown transport"):
        CoSim(stream_build, transport="usb")
    with pytest.raises(ValueError, match="without tracing"):
        CoSim(stream_build, trace_path="wave.fst")
    with pytest.raises(CosimError, match="built without tracing"):
        CoSim(stream_build, extra_args=["--trace", "wave.fst"]).start()
    with pytest.raises(CosimError, match="unknown option"):
        CoSim(stream_build, extra_args=["--bogus"]).start()


def test_parse_stats():
    stats = parse_stats("QACCEL-COSIM STATS reason=idle cycles=12 wall_s=0.5")
    assert stats == {"reason": "idle", "cycles": 12, "wall_s": 0.5}
    with pytest.raises(ValueError, match="Not a statistics line"):
        parse_stats("hello")
