"""Driver-in-the-loop co-simulation: the RTL behind a byte link, at millions of cycles per second.

The host driver talks to a simulated accelerator exactly as to a board: bytes over a link. A
Verilator C++ harness (``cosim_main.cpp``) clocks the design and moves bytes between its port
and a socket or a pseudo-terminal, with no Python per cycle; it clocks only while bytes are in
flight or the design says ``busy``, and otherwise sleeps in ``poll()``. The port contract is
in ``docs/COSIM.md``.

:func:`build_cosim` turns an Amaranth component into a harness executable (cached per
configuration, like :func:`qaccel.sim.run_cocotb`). :class:`CoSim` launches it and connects:

>>> build = build_cosim(MyTop(), "mytop")                    # doctest: +SKIP
>>> with CoSim(build) as sim:                                 # doctest: +SKIP
...     sim.link.write(request)
...     reply = sim.link.read_exactly(17, timeout=5)
...     print(sim.cycles)

``transport="socketpair"`` (default) passes one end of a socketpair to the harness;
``"tcp"`` makes it listen on 127.0.0.1 and connects to it; ``"pty"`` makes it open a
pseudo-terminal (``sim.pty_path``) that any serial program, pyserial included, opens like
``/dev/ttyUSB1``. A second socketpair carries control requests (statistics, wait for idle)
and ends the harness when this process goes away.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import selectors
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

from .harness import _SRC_ATTR_RE, _locked, _verilator_can_write_fst, cache_dir, to_verilog
from .tools import find_program, find_verilator, simulator_env

__all__ = ["COSIM_TAG", "TRANSPORTS", "CosimError", "CosimBuild", "build_cosim", "CoSim",
           "SocketLink", "parse_stats"]

#: Every machine-readable line of the harness starts with this word.
COSIM_TAG = "QACCEL-COSIM"
TRANSPORTS = ("socketpair", "tcp", "pty")

_HERE = Path(__file__).resolve().parent
_HARNESS_SOURCES = ("cosim_main.cpp", "cosim_uart.h")
_PREFIX = "Vcosim_dut"
_VERILATOR_ARGS = ("-Wno-fatal", "--x-assign", "fast", "--x-initial", "fast", "--no-timing")
# -O3 on the model and the harness: 2-4x faster than the wheel's -Os default (REFERENCE.md 5);
# the Verilator runtime (OPT_GLOBAL) keeps -Os: it is off the per-cycle path and slow to compile.
_MAKE_ARGS = ("OPT_FAST=-O3",)
_EXIT_MAX_CYCLES = 3
_PORT_RE = re.compile(r"VL_(IN|OUT)\w*\(&(\w+),\s*(\d+),\s*(\d+)\)")
_DECLARATION_RE = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:\[(\d+):(\d+)\]\s*)?"
                             r"(\w+)\s*;", re.MULTILINE)
_WRAPPER = "qaccel_cosim_top"
#: Cycles with the design's rst high before the harness starts counting.
_RESET_CYCLES = 4


class CosimError(RuntimeError):
    """The co-simulation could not be built, did not start, or ended with an error."""


@dataclass(frozen=True)
class CosimBuild:
    """A built co-simulation executable.

    Attributes
    ----------
    name : str
        Top module name (and cache entry name).
    executable : pathlib.Path
        The harness binary.
    uart : bool
        The design has UART pins (``uart_rx``/``uart_tx``) rather than byte streams.
    clocks_per_bit : int or None
        UART clocks per bit built in as the default (UART designs only).
    trace : bool
        Built with waveform support (``CoSim(..., trace_path=...)``).
    trace_format : str or None
        ``"fst"``, or ``"vcd"`` where the lz4/zlib headers are missing; ``None`` without
        tracing. Name the waveform file accordingly.
    folder : pathlib.Path
        Build folder (Verilog, generated header, build log).
    cached : bool
        This call reused an earlier build.
    """

    name: str
    executable: Path
    uart: bool
    clocks_per_bit: int | None
    trace: bool
    trace_format: str | None
    folder: Path
    cached: bool


# ---- build ------------------------------------------------------------------------------------

def _check_native_tools():
    """Verilator, make and a C++ compiler, or a clear error naming what is missing."""
    verilator = find_verilator()
    if not verilator.ok:
        raise CosimError(f"Verilator is not usable: {verilator.problem}. {verilator.hint}")
    # verilated.mk compiles with `c++`; Debian's g++ package provides it.
    for program, hint in (("make", "apt-get install make"),
                          ("c++", "apt-get install g++ (it provides c++)")):
        if find_program(program) is None:
            raise CosimError(f"{program} not found: the co-simulation is compiled with "
                             f"Verilator, make and g++. Install it: {hint}")
    return verilator


def _check_contract(design, uart):
    """Check the component's signature against the port contract; returns whether it is UART.

    ``uart=None`` picks the variant from the members present.
    """
    from amaranth import Shape
    from amaranth.lib import stream
    from amaranth.lib.wiring import In, Out

    signature = getattr(design, "signature", None)
    if signature is None:
        raise TypeError(f"The co-simulation needs an amaranth.lib.wiring.Component, "
                        f"not {design!r}")
    members = signature.members
    if uart is None:
        uart = "uart_rx" in members and "rx" not in members

    def require(name, expected, flow, width, description):
        member = members[name] if name in members else None
        if member is None:
            raise ValueError(f"{type(design).__name__} has no member {name!r}; the "
                             f"co-simulation port contract needs {description} "
                             f"(see docs/COSIM.md)")
        if expected is not None:
            ok = member == expected
        else:
            ok = (member.is_port and member.flow == flow
                  and Shape.cast(member.shape).width == width)
        if not ok:
            raise ValueError(f"Member {name!r} of {type(design).__name__} is {member!r}; the "
                             f"co-simulation port contract needs {description}")

    require("busy", None, Out, 1, "busy: Out(1)")
    if uart:
        require("uart_rx", None, In, 1, "uart_rx: In(1)")
        require("uart_tx", None, Out, 1, "uart_tx: Out(1)")
    else:
        require("rx", In(stream.Signature(8)), None, None, "rx: In(stream.Signature(8))")
        require("tx", Out(stream.Signature(8)), None, None, "tx: Out(stream.Signature(8))")
    return uart


def _ports_header(model_header, uart, clocks_per_bit, trace, fst):
    """cosim_ports.h: the C++ member names of the contract's ports in the Verilated class."""
    declared = {}
    for direction, member, msb, lsb in _PORT_RE.findall(model_header.read_text()):
        # Verilator spells the second "_" of "__" as "__05F" (other characters: __0XX).
        name = re.sub(r"__0([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), member)
        declared[name] = (direction, member, int(msb) - int(lsb) + 1)
    expected = {"clk": ("IN", 1), "busy": ("OUT", 1)}
    if uart:
        expected.update(uart_rx=("IN", 1), uart_tx=("OUT", 1))
    else:
        expected.update({"rx__valid": ("IN", 1), "rx__ready": ("OUT", 1),
                         "rx__payload": ("IN", 8), "tx__valid": ("OUT", 1),
                         "tx__ready": ("IN", 1), "tx__payload": ("OUT", 8)})
    lines = ["// Generated by qaccel.sim.cosim.build_cosim: do not edit.",
             "#pragma once",
             f'#define QACCEL_COSIM_TOP_HEADER "{_PREFIX}.h"',
             f"#define QACCEL_COSIM_TOP_CLASS {_PREFIX}",
             f"#define QACCEL_COSIM_UART {int(uart)}",
             f"#define QACCEL_COSIM_CLOCKS_PER_BIT {clocks_per_bit or 0}",
             f"#define QACCEL_COSIM_TRACE {int(trace)}",
             f"#define QACCEL_COSIM_TRACE_FST {int(fst)}"]
    for name, (direction, width) in expected.items():
        found = declared.get(name)
        if found is None or found[0] != direction or found[2] != width:
            raise CosimError(f"the Verilated model has no {direction.lower()}put port {name!r} "
                             f"of width {width} (ports: {sorted(declared)})")
        lines.append(f"#define QACCEL_PORT_{name.replace('__', '_').upper()} {found[1]}")
    lines.append(f"#define QACCEL_COSIM_RESET_CYCLES {_RESET_CYCLES}")
    return "\n".join(lines) + "\n"


def _top_ports(verilog_text, name):
    """(direction, msb, lsb, port) of the top module's ports, from Amaranth's Verilog."""
    match = re.search(rf"^module {re.escape(name)}\(.*?^endmodule", verilog_text,
                      re.MULTILINE | re.DOTALL)
    if match is None:
        raise CosimError(f"no module {name!r} in the generated Verilog")
    return [(direction, int(msb or 0), int(lsb or 0), port) for direction, msb, lsb, port
            in _DECLARATION_RE.findall(match.group(0))]


def _wrapper(verilog_text, name):
    """A top module around the design that drives its ``rst`` from a power-on counter.

    With ``rst`` a model input, Verilator re-evaluates every register's next-state logic (it
    all depends on ``rst``) in its input-combinational phase on every ``eval()``; driven
    from inside, only the logic fed by the byte ports is: 1.5-2x faster on the accelerator top.
    """
    ports = _top_ports(verilog_text, name)
    outside = [port for port in ports if port[3] != "rst"]
    lines = [
        "// Generated by qaccel.sim.cosim.build_cosim: do not edit.",
        f"module {_WRAPPER}({', '.join(port for *_, port in outside)});",
    ]
    for direction, msb, lsb, port in outside:
        width = f"[{msb}:{lsb}] " if (msb, lsb) != (0, 0) else ""
        lines.append(f"  {direction} {width}{port};")
    connections = [f".{port}({port})" for *_, port in outside]
    if any(port == "rst" for *_, port in ports):
        lines += [f"  reg [7:0] qaccel_cosim_reset = 8'd{_RESET_CYCLES};",
                  "  always @(posedge clk)",
                  "    if (qaccel_cosim_reset != 8'd0)",
                  "      qaccel_cosim_reset <= qaccel_cosim_reset - 8'd1;"]
        connections.append(".rst(qaccel_cosim_reset != 8'd0)")
    lines.append(f"  {name} dut ({', '.join(connections)});")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def _run_logged(argv, log, cwd, env, what):
    log.write(f"$ {' '.join(map(str, argv))}\n")
    log.flush()
    result = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        log.flush()
        tail = Path(log.name).read_text(errors="replace").splitlines()[-30:]
        raise CosimError(f"{what} failed (exit {result.returncode}); log {log.name}:\n"
                         + "\n".join(tail))


def build_cosim(design, name, *, uart=False, trace=False, clocks_per_bit=None):
    """Build (or reuse) the co-simulation executable of ``design``.

    Parameters
    ----------
    design : amaranth.lib.wiring.Component or callable
        The top, following the port contract of ``docs/COSIM.md``; or a class or function
        returning it.
    name : str
        Top module name and cache entry name (letters, digits, ``_``).
    uart : bool or None
        ``False``: byte-stream ports ``rx``/``tx``; ``True``: UART pins
        ``uart_rx``/``uart_tx``; ``None``: whichever the design has.
    trace : bool
        Build with waveform support (FST, or VCD without the lz4/zlib headers). Slower.
    clocks_per_bit : int, optional
        UART designs: clock cycles per bit the harness uses by default; defaults to the
        design's ``clocks_per_bit`` attribute.

    Returns
    -------
    CosimBuild

    Raises
    ------
    TypeError, ValueError
        The design or the parameters do not fit the port contract.
    CosimError
        Verilator, make or g++ is missing, or the build failed.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"Co-simulation name must be a Verilog identifier, not {name!r}")
    if name == _WRAPPER:
        raise ValueError(f"Co-simulation name {name!r} is reserved for the harness's wrapper")
    if uart not in (True, False, None):
        raise TypeError(f"uart must be True, False or None, not {uart!r}")
    if not isinstance(trace, bool):
        raise TypeError(f"trace must be a bool, not {trace!r}")
    if isinstance(design, type) or (callable(design) and not hasattr(design, "elaborate")):
        design = design()  # a class or a factory
    uart = _check_contract(design, uart)
    if uart:
        if clocks_per_bit is None:
            clocks_per_bit = getattr(design, "clocks_per_bit", None)
        if clocks_per_bit is None:
            raise ValueError("A UART design needs clocks_per_bit (give it, or give the design "
                             "a clocks_per_bit attribute)")
        if not isinstance(clocks_per_bit, int) or isinstance(clocks_per_bit, bool) \
                or clocks_per_bit < 4:
            raise ValueError(f"clocks_per_bit must be an integer of at least 4, "
                             f"not {clocks_per_bit!r}")
    elif clocks_per_bit is not None:
        raise ValueError(f"clocks_per_bit={clocks_per_bit!r} applies to UART designs only")

    verilator = _check_native_tools()
    verilog_text = to_verilog(design, name)
    wrapper_text = _wrapper(verilog_text, name)
    fst = trace and _verilator_can_write_fst()
    key = hashlib.sha256()
    for part in (_SRC_ATTR_RE.sub("", verilog_text), wrapper_text, verilator.version,
                 repr(_VERILATOR_ARGS),
                 repr(_MAKE_ARGS), repr((uart, clocks_per_bit, trace, fst)), name):
        key.update(part.encode())
        key.update(b"\0")
    for source in _HARNESS_SOURCES:
        key.update((_HERE / source).read_bytes())
    folder = cache_dir() / "cosim" / f"{name}-{key.hexdigest()[:16]}"
    executable = folder / name
    stamp = folder / "qaccel-build.json"
    settings = dict(name=name, uart=uart, clocks_per_bit=clocks_per_bit, trace=trace,
                    trace_format=("fst" if fst else "vcd") if trace else None)

    with _locked(folder.with_suffix(".lock")):
        if stamp.exists() and executable.exists():
            print(f"qaccel.cosim: reusing cached co-simulation build {folder}", flush=True)
            return CosimBuild(executable=executable, folder=folder, cached=True, **settings)
        if folder.exists():
            shutil.rmtree(folder)  # a build that did not finish
        folder.mkdir(parents=True)
        print(f"qaccel.cosim: building co-simulation {name} in {folder} "
              f"(first use of this configuration: about a minute) ...", flush=True)
        started = time.monotonic()
        (folder / f"{name}.v").write_text(verilog_text)
        (folder / f"{_WRAPPER}.v").write_text(wrapper_text)
        for source in _HARNESS_SOURCES:
            shutil.copyfile(_HERE / source, folder / source)
        env = dict(os.environ)
        env.update(simulator_env("verilator"))
        trace_args = (["--trace-fst"] if fst else ["--trace"]) if trace else []
        with open(folder / "build.log", "w") as log:
            _run_logged([verilator.path, "--cc", "--exe", *_VERILATOR_ARGS, *trace_args,
                         "--top-module", _WRAPPER, "--prefix", _PREFIX, "-Mdir", "obj_dir",
                         "-o", f"../{name}", f"{_WRAPPER}.v", f"{name}.v", "cosim_main.cpp"],
                        log, folder, env, f"verilating {name}")
            (folder / "cosim_ports.h").write_text(
                _ports_header(folder / "obj_dir" / f"{_PREFIX}.h", uart, clocks_per_bit,
                              trace, fst))
            jobs = str(max(1, min(2, os.cpu_count() or 1)))
            _run_logged(["make", "-C", "obj_dir", "-f", f"{_PREFIX}.mk", "-j", jobs,
                         *_MAKE_ARGS], log, folder, env, f"compiling {name}")
        if not executable.exists():
            raise CosimError(f"the build of {name} made no executable; see {folder}/build.log")
        # Objects and precompiled headers (over 100 MB for the accelerator top) are not needed
        # again: a changed configuration is a new folder. The generated C++ stays for reading.
        for pattern in ("*.o", "*.a", "*.gch"):
            for leftover in (folder / "obj_dir").glob(pattern):
                leftover.unlink()
        elapsed = time.monotonic() - started
        stamp.write_text(json.dumps({**settings, "seconds": round(elapsed, 1)}))
        print(f"qaccel.cosim: built {name} in {elapsed:.1f} s", flush=True)
    return CosimBuild(executable=executable, folder=folder, cached=False, **settings)


# ---- statistics -------------------------------------------------------------------------------

def parse_stats(line):
    """Parse a ``QACCEL-COSIM STATS key=value ...`` line into a dict (ints, floats, strings)."""
    words = line.split()
    if len(words) < 2 or words[0] != COSIM_TAG or words[1] != "STATS":
        raise ValueError(f"Not a statistics line: {line!r}")
    stats = {}
    for word in words[2:]:
        key, _, value = word.partition("=")
        for kind in (int, float):
            try:
                stats[key] = kind(value)
                break
            except ValueError:
                pass
        else:
            stats[key] = value
    return stats


# ---- the host's end of the link ---------------------------------------------------------------

class SocketLink:
    """The host's end of a socket link to the co-simulation, with serial-port-like reads.

    One thread may read while another writes.

    Parameters
    ----------
    sock : socket.socket
        Connected stream socket.
    timeout : float
        Default timeout in seconds for :meth:`read`, :meth:`read_exactly` and :meth:`write`.
    """

    def __init__(self, sock, timeout):
        sock.setblocking(False)
        self._sock = sock
        self.timeout = timeout
        self._pending = bytearray()
        self.at_eof = False

    def fileno(self):
        return self._sock.fileno()

    def _wait(self, events, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, events)
            return bool(selector.select(left))

    def write(self, data, timeout=None):
        """Send all of ``data``; raises :class:`TimeoutError` if the link stays full."""
        view = memoryview(bytes(data))
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        sent = 0
        while sent < len(view):
            try:
                sent += self._sock.send(view[sent:])
            except BlockingIOError:
                if not self._wait(selectors.EVENT_WRITE, deadline):
                    raise TimeoutError(f"sent {sent} of {len(view)} bytes within {timeout} s "
                                       f"(is the other direction being read?)") from None
        return sent

    def read(self, size, timeout=None):
        """Up to ``size`` bytes: returns when ``size`` arrived, at the timeout, or at end of
        file, like ``serial.Serial.read``."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while len(self._pending) < size and not self.at_eof:
            try:
                chunk = self._sock.recv(max(size - len(self._pending), 65536))
            except BlockingIOError:
                if not self._wait(selectors.EVENT_READ, deadline):
                    break
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.at_eof = True
                break
            self._pending += chunk
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def read_exactly(self, size, timeout=None):
        """Exactly ``size`` bytes, or :class:`TimeoutError` (:class:`EOFError` at end of file)."""
        timeout = self.timeout if timeout is None else timeout
        data = self.read(size, timeout)
        if len(data) < size:
            self._pending[:0] = data  # keep them for the next read
            if self.at_eof:
                raise EOFError(f"the co-simulation closed the link after {len(data)} of "
                               f"{size} bytes")
            raise TimeoutError(f"received {len(data)} of {size} bytes within {timeout} s")
        return data

    def shutdown_write(self):
        """Tell the co-simulation no more bytes will come; it finishes what is in flight,
        delivers the replies, then exits."""
        self._sock.shutdown(socket.SHUT_WR)

    def close(self):
        with contextlib.suppress(OSError):
            self._sock.close()


# ---- launching ------------------------------------------------------------------------------

def _terminate(process):
    if process.poll() is None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)


class CoSim:
    """A running co-simulation; a context manager that always ends the harness process.

    Parameters
    ----------
    build : CosimBuild
        From :func:`build_cosim`.
    transport : {"socketpair", "tcp", "pty"}
        How the host's bytes reach the harness (see the module documentation).
    timeout : float
        Default timeout, in seconds, of start-up, link reads and writes and control requests.
    max_cycles : int, optional
        The harness stops after this many simulated cycles (safety limit).
    trace_path : path, optional
        Record a waveform there (the build needs ``trace=True``).
    stats_path : path, optional
        The harness writes JSON statistics there when it exits.
    clocks_per_bit : int, optional
        UART designs: override the build's clocks per bit.
    poll_cycles, grace_cycles : int, optional
        Harness tuning (``--help`` of the executable); defaults are the harness's.
    host : str
        ``tcp`` transport: where the harness listens.
    pty_link : path, optional
        ``pty`` transport: also make this path a symlink to the terminal.
    extra_args : sequence of str
        More command-line options for the harness.

    Attributes
    ----------
    link : SocketLink or None
        The host's end of the link (``None`` for ``pty``: open :attr:`pty_path` instead).
    pty_path : str or None
        The pseudo-terminal, for the ``pty`` transport.
    address : tuple or None
        ``(host, port)`` the harness listens on, for the ``tcp`` transport.
    exit_stats : dict or None
        Statistics the harness printed when it exited.
    """

    def __init__(self, build, *, transport="socketpair", timeout=10.0, max_cycles=None,
                 trace_path=None, stats_path=None, clocks_per_bit=None, poll_cycles=None,
                 grace_cycles=None, host="127.0.0.1", pty_link=None, extra_args=()):
        if not isinstance(build, CosimBuild):
            raise TypeError(f"build must be a CosimBuild from build_cosim(), not {build!r}")
        if transport not in TRANSPORTS:
            raise ValueError(f"Unknown transport {transport!r}; use one of {TRANSPORTS}")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if trace_path is not None and not build.trace:
            raise ValueError(f"{build.name} was built without tracing; "
                             f"use build_cosim(..., trace=True) to record {trace_path}")
        if pty_link is not None and transport != "pty":
            raise ValueError("pty_link needs transport='pty'")
        args = []
        for option, value in (("--max-cycles", max_cycles), ("--poll-cycles", poll_cycles),
                              ("--grace-cycles", grace_cycles),
                              ("--clocks-per-bit", clocks_per_bit)):
            if value is not None:
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{option[2:].replace('-', '_')} must be a non-negative "
                                     f"integer, not {value!r}")
                args += [option, str(value)]
        if trace_path is not None:
            args += ["--trace", str(trace_path)]
        if stats_path is not None:
            args += ["--stats", str(stats_path)]
        if pty_link is not None:
            args += ["--pty-link", str(pty_link)]
        self.build = build
        self.transport = transport
        self.timeout = float(timeout)
        self.host = host
        self._args = args + [str(arg) for arg in extra_args]
        self.link = None
        self.pty_path = None
        self.address = None
        self.exit_stats = None
        self._process = None
        self._control = None
        self._control_buffer = b""
        self._control_lock = threading.Lock()
        self._stderr = None
        self._finalizer = None
        self._closed = False

    # -- life cycle --

    def start(self):
        """Launch the harness and connect to it; returns ``self``."""
        if self._process is not None:
            raise CosimError("this co-simulation was already started")
        control_here, control_there = socket.socketpair()
        passed = [control_there]
        argv = [str(self.build.executable), "--control-fd", str(control_there.fileno())]
        data_here = None
        if self.transport == "socketpair":
            data_here, data_there = socket.socketpair()
            passed.append(data_there)
            argv += ["--fd", str(data_there.fileno())]
        elif self.transport == "tcp":
            argv += ["--listen", f"{self.host}:0"]
        else:
            argv += ["--pty"]
        argv += self._args
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr,
                pass_fds=[sock.fileno() for sock in passed])
        except OSError as exc:
            for sock in (control_here, data_here):
                if sock is not None:
                    sock.close()
            self._stderr.close()
            self._stderr = None
            raise CosimError(f"cannot run {argv[0]}: {exc}") from None
        finally:
            for sock in passed:
                sock.close()
        self._finalizer = weakref.finalize(self, _terminate, self._process)
        self._control = control_here
        try:
            _, value = self._read_announcement()
            if self.transport == "socketpair":
                self.link = SocketLink(data_here, self.timeout)
            elif self.transport == "tcp":
                host, _, port = value.rpartition(":")
                self.address = (host.strip("[]"), int(port))
                sock = socket.create_connection(self.address, timeout=self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.link = SocketLink(sock, self.timeout)
            else:
                self.pty_path = value
        except BaseException:
            if data_here is not None:
                data_here.close()
            self._abort()
            raise
        return self

    def _read_announcement(self):
        expected = {"socketpair": "FD", "tcp": "LISTEN", "pty": "PTY"}[self.transport]
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + self.timeout
            line = b""
            while not line.endswith(b"\n"):
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise CosimError(f"{self.build.name}: no start-up line within "
                                     f"{self.timeout} s{self._stderr_note()}")
                chunk = os.read(self._process.stdout.fileno(), 4096)
                if not chunk:
                    self._process.wait(self.timeout)
                    raise CosimError(f"{self.build.name} exited at start-up "
                                     f"(exit {self._process.returncode}){self._stderr_note()}")
                line += chunk
        words = line.decode(errors="replace").split()
        if len(words) != 3 or words[0] != COSIM_TAG or words[1] != expected:
            raise CosimError(f"unexpected start-up line {line!r}{self._stderr_note()}")
        return words[1], words[2]

    def _stderr_text(self):
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _stderr_note(self):
        text = self._stderr_text().strip()
        return f"; its output:\n{text}" if text else ""

    def _abort(self):
        if self._process is not None:
            _terminate(self._process)
            if self._process.stdout:
                self._process.stdout.close()
            self._finalizer.detach()
        self._closed = True
        if self._control is not None:
            self._control.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self):
        if self._process is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(check=exc_type is None)

    @property
    def pid(self):
        return self._process.pid if self._process else None

    @property
    def returncode(self):
        """Exit status of the harness, ``None`` while it runs."""
        return self._process.poll() if self._process else None

    def close(self, timeout=None, *, check=True):
        """Close the link and wait for the harness to exit (killing it after ``timeout``).

        Returns the statistics it printed at exit. With ``check``, raises
        :class:`CosimError` when it stopped at ``max_cycles`` or failed.
        """
        if self._process is None or self._closed:
            return self.exit_stats
        self._closed = True
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self.link is not None:
            # The harness finishes the work in flight and exits when its peer closes.
            self.link.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout)
        if self._control is not None:
            self._control.close()  # for a pty, this is what ends the harness
        try:
            self._process.wait(max(deadline - time.monotonic(), 0.5))
        except subprocess.TimeoutExpired:
            _terminate(self._process)
        if self._process.stdout:
            self._process.stdout.close()
        self._finalizer.detach()
        text = self._stderr_text()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        stats_lines = [line for line in text.splitlines()
                       if line.startswith(f"{COSIM_TAG} STATS")]
        if stats_lines:
            self.exit_stats = parse_stats(stats_lines[-1])
        code = self._process.returncode
        if check and code == _EXIT_MAX_CYCLES:
            raise CosimError(f"{self.build.name} stopped at its max_cycles limit "
                             f"({self.exit_stats.get('cycles') if self.exit_stats else '?'} "
                             f"cycles)")
        if check and code != 0:
            raise CosimError(f"{self.build.name} exited with {code}:\n{text.strip()}")
        return self.exit_stats

    # -- control channel --

    def _request(self, command, timeout):
        if self._control is None or self._control.fileno() < 0:
            raise CosimError("the co-simulation is not running")
        timeout = self.timeout if timeout is None else timeout
        with self._control_lock:
            self._control.settimeout(timeout)
            deadline = time.monotonic() + timeout
            try:
                self._control.sendall(command.encode() + b"\n")
                while b"\n" not in self._control_buffer:
                    self._control.settimeout(max(deadline - time.monotonic(), 1e-3))
                    chunk = self._control.recv(4096)
                    if not chunk:
                        raise CosimError(f"the co-simulation exited (exit "
                                         f"{self._process.poll()}){self._stderr_note()}")
                    self._control_buffer += chunk
            except socket.timeout:
                raise TimeoutError(f"no answer to {command!r} within {timeout} s") from None
            except OSError as exc:
                raise CosimError(f"control channel: {exc}{self._stderr_note()}") from None
            line, _, self._control_buffer = self._control_buffer.partition(b"\n")
        text = line.decode(errors="replace")
        if not text.startswith(f"{COSIM_TAG} STATS"):
            raise CosimError(f"unexpected control reply {text!r}")
        return parse_stats(text)

    def stats(self, timeout=None):
        """Statistics now (while running, as of the harness's next link check)."""
        return self._request("stats", timeout)

    def wait_idle(self, timeout=None):
        """Wait until nothing is in flight and the design is not busy; statistics then.

        Send it after the last reply was read: bytes the host wrote just before may not have
        reached the harness yet on a pseudo-terminal.
        """
        return self._request("idle", timeout)

    @property
    def cycles(self):
        """Simulated cycles since reset, once the simulation is idle."""
        return self.wait_idle()["cycles"]

    # -- pseudo-terminal --

    def open_serial(self, timeout=1.0, **kwargs):
        """A ``serial.Serial`` on the pseudo-terminal (``transport="pty"`` only)."""
        if self.pty_path is None:
            raise CosimError("open_serial needs transport='pty'")
        import serial

        return serial.Serial(self.pty_path, timeout=timeout, **kwargs)

