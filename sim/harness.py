"""Run a cocotb testbench against an Amaranth component, from pytest or a script.

:func:`run_cocotb` converts the component to Verilog (port names are Amaranth's: a stream
member ``i`` becomes ``i__valid``, ``i__ready``, ``i__payload``), builds it with
``cocotb_tools.runner`` on Verilator (default) or Icarus (``QACCEL_SIM=icarus``), and runs a
cocotb test module inside the simulator.

Builds are cached per configuration: the cache key hashes the Verilog (without source-location
attributes), the extra sources, the simulator, its version and the build options, so a second
run of the same configuration does not recompile (it logs ``reusing cached build``). The cache
lives in ``QACCEL_CACHE_DIR`` (default ``~/.cache/qaccel``), under ``sim/``.

Environment
-----------
QACCEL_SIM
    ``verilator`` (default) or ``icarus``.
QACCEL_SEED
    Seed for the cocotb tests (``cocotb.RANDOM_SEED``); random and logged when unset.
QACCEL_WAVES
    ``1`` records a waveform (FST; VCD from Verilator when the lz4 headers are missing) for every run. A failing run is always re-run once with
    waveforms on, with the same seed, and the file's path is put in the failure message.
QACCEL_CACHE_DIR
    Where builds are cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .tools import find_icarus, find_verilator, simulator_env

__all__ = ["SIMULATORS", "SimulationFailed", "default_simulator", "cache_dir", "to_verilog",
           "run_cocotb"]

logger = logging.getLogger("qaccel.sim")

SIMULATORS = ("verilator", "icarus")

# Amaranth's Verilog needs a timescale under Icarus; both simulators get the same one.
_TIMESCALE = ("1ns", "1ps")
_VERILATOR_ARGS = ("-Wno-fatal", "--x-assign", "fast", "--x-initial", "fast")
_SRC_ATTR_RE = re.compile(r"\(\* src = \"[^\"]*\" \*\)\s*")


class SimulationFailed(AssertionError):
    """A cocotb run reported failing tests, or the simulator itself failed."""


def default_simulator():
    """The simulator named by ``QACCEL_SIM``, ``verilator`` when unset."""
    simulator = os.environ.get("QACCEL_SIM", "verilator").strip().lower() or "verilator"
    if simulator not in SIMULATORS:
        raise ValueError(f"QACCEL_SIM={simulator!r} is not supported; use one of {SIMULATORS}")
    return simulator


def cache_dir():
    """Root folder of the simulation build cache."""
    root = os.environ.get("QACCEL_CACHE_DIR")
    if root:
        return Path(root).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "qaccel"


def to_verilog(design, name):
    """Convert an Amaranth component to Verilog text with top module ``name``."""
    from amaranth.back import verilog

    return verilog.convert(design, name=name)


@contextlib.contextmanager
def _environ(updates, remove=()):
    """Temporarily set (and remove) process environment variables.

    The cocotb runner copies ``os.environ`` over its ``extra_env``, so what the simulator must
    see has to be in the process environment while it runs.
    """
    saved = {key: os.environ.get(key) for key in (*updates, *remove)}
    try:
        os.environ.update(updates)
        for key in remove:
            os.environ.pop(key, None)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path`` (parallel pytest workers may build the same design)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@functools.cache
def _verilator_can_write_fst():
    """Verilator's FST writer needs the zlib and lz4 headers; without them it writes VCD."""
    probe = subprocess.run(["g++", "-E", "-x", "c++", "-"], input="#include <zlib.h>\n"
                           "#include <lz4.h>\n", capture_output=True, text=True)
    if probe.returncode != 0:
        print("qaccel.sim: lz4.h or zlib.h missing (apt-get install liblz4-dev zlib1g-dev): "
              "Verilator waveforms are written as VCD instead of FST", flush=True)
    return probe.returncode == 0


def _simulator_version(simulator):
    tool = find_verilator() if simulator == "verilator" else find_icarus()
    if not tool.ok:
        raise RuntimeError(f"{tool.name} is not usable: {tool.problem}. {tool.hint}")
    return tool.version


def _build(verilog_text, toplevel, simulator, extra_sources, waves):
    """Build (or reuse) the simulator model; returns its build folder."""
    from cocotb_tools.runner import get_runner

    sources = [Path(source).resolve() for source in extra_sources]
    build_args = list(_VERILATOR_ARGS) if simulator == "verilator" else []
    if waves and simulator == "verilator":
        build_args.append("--trace-fst" if _verilator_can_write_fst() else "--trace")
    key = hashlib.sha256()
    for part in (_SRC_ATTR_RE.sub("", verilog_text), simulator, _simulator_version(simulator),
                 repr(build_args), repr(waves), toplevel):
        key.update(part.encode())
        key.update(b"\0")
    for source in sources:
        key.update(source.read_bytes())
    build_dir = cache_dir() / "sim" / f"{toplevel}-{simulator}-{key.hexdigest()[:16]}"
    stamp = build_dir / "qaccel-build.json"
    with _locked(build_dir.with_suffix(".lock")):
        if stamp.exists():
            logger.info("qaccel.sim: reusing cached build %s", build_dir)
            print(f"qaccel.sim: reusing cached build {build_dir}", flush=True)
            return build_dir
        if build_dir.exists():
            shutil.rmtree(build_dir)  # a build that did not finish
        build_dir.mkdir(parents=True)
        top_file = build_dir / f"{toplevel}.v"
        top_file.write_text(verilog_text)
        print(f"qaccel.sim: building {toplevel} with {simulator} in {build_dir}", flush=True)
        started = time.monotonic()
        runner = get_runner(simulator)
        with _environ(simulator_env(simulator)):
            try:
                runner.build(sources=[top_file, *sources], hdl_toplevel=toplevel,
                             build_dir=build_dir, build_args=build_args, timescale=_TIMESCALE,
                             waves=waves, always=True)
            except SystemExit as exc:
                raise SimulationFailed(
                    f"building {toplevel} with {simulator} failed (exit {exc.code}); "
                    f"see the build output above and {build_dir}") from None
        elapsed = time.monotonic() - started
        stamp.write_text(json.dumps({"toplevel": toplevel, "simulator": simulator,
                                     "waves": waves, "seconds": round(elapsed, 1)}))
        print(f"qaccel.sim: built {toplevel} in {elapsed:.1f} s", flush=True)
        return build_dir


def _run_once(build_dir, toplevel, simulator, test_module, testcase, seed, params, waves):
    """Run the tests once; returns (tests, failed, run folder)."""
    from cocotb_tools.runner import get_results, get_runner

    run_root = build_dir.parent / "runs"
    run_root.mkdir(parents=True, exist_ok=True)
    test_dir = Path(tempfile.mkdtemp(prefix=f"{toplevel}-", dir=run_root))
    results = test_dir / "results.xml"
    runner = get_runner(simulator)
    updates = dict(simulator_env(simulator))
    updates["QACCEL_PARAMS"] = json.dumps(params or {})
    # The runner would sys.exit() on failure under pytest; we want the results file instead.
    with _environ(updates, remove=("PYTEST_CURRENT_TEST", "WAVES")):
        try:
            runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=build_dir,
                        test_dir=test_dir, testcase=testcase, seed=seed, waves=waves,
                        timescale=_TIMESCALE, results_xml=str(results),
                        hdl_toplevel_lang="verilog")
        except SystemExit as exc:
            if not results.exists():
                raise SimulationFailed(
                    f"{simulator} exited with {exc.code} before writing results; "
                    f"see the output above (run folder {test_dir})") from None
    if not results.exists():
        raise SimulationFailed(f"no results from {simulator}; run folder {test_dir}")
    tests, failed = get_results(results)
    return tests, failed, test_dir


def run_cocotb(design, *, test_module, toplevel="top", params=None, simulator=None,
               testcase=None, seed=None, waves=None, extra_sources=()):
    """Simulate ``design`` and run the cocotb tests in ``test_module`` against it.

    Parameters
    ----------
    design : amaranth.hdl.Elaboratable or callable or str
        The component to simulate, or a function that returns it, or Verilog text whose
        module ``toplevel`` is the design (for example a netlist from Yosys).
    test_module : str
        Importable module with ``@cocotb.test`` functions (e.g. ``qaccel.sim.tb.skid``).
    toplevel : str
        Name of the top Verilog module (and of the cache entry).
    params : dict, optional
        JSON-serialisable values for the testbench, read there with
        :func:`qaccel.sim.tbkit.params`.
    simulator : {"verilator", "icarus"}, optional
        Defaults to :func:`default_simulator`.
    testcase : str or list of str, optional
        Run only these tests of the module.
    seed : int, optional
        ``cocotb.RANDOM_SEED``; defaults to ``QACCEL_SEED`` or a fresh random seed.
    waves : bool, optional
        Record a waveform (defaults to ``QACCEL_WAVES``).
    extra_sources : sequence of path
        More Verilog files (for example simulation models of vendor primitives).

    Returns
    -------
    int
        Number of cocotb tests that ran (all passed).

    Raises
    ------
    SimulationFailed
        When any test fails; the message names the seed and the waveform of the re-run.
    """
    simulator = simulator or default_simulator()
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r} is not supported; use one of {SIMULATORS}")
    if waves is None:
        waves = os.environ.get("QACCEL_WAVES", "0").strip().lower() in ("1", "true", "yes")
    if seed is None:
        env_seed = os.environ.get("QACCEL_SEED")
        seed = int(env_seed) if env_seed else secrets.randbelow(2**31)
    if isinstance(design, str):
        verilog_text = design
    else:
        if callable(design) and not hasattr(design, "elaborate"):
            design = design()
        verilog_text = to_verilog(design, toplevel)
    print(f"qaccel.sim: {test_module} on {simulator}, seed {seed} "
          f"(reproduce with QACCEL_SEED={seed})", flush=True)

    build_dir = _build(verilog_text, toplevel, simulator, extra_sources, waves)
    tests, failed, run_dir = _run_once(build_dir, toplevel, simulator, test_module, testcase,
                                       seed, params, waves)
    if tests == 0:
        raise SimulationFailed(f"{test_module} ran no test (filter {testcase!r})")
    if failed == 0:
        if waves:
            print(f"qaccel.sim: waveforms in {run_dir}", flush=True)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # failing runs are kept for inspection
        return tests

    wave_note = ""
    if not waves:
        # Re-run with the same seed, recording waves, so the failure can be looked at.
        print("qaccel.sim: re-running the failing run with waveforms", flush=True)
        wave_build = _build(verilog_text, toplevel, simulator, extra_sources, True)
        _, _, run_dir = _run_once(wave_build, toplevel, simulator, test_module, testcase,
                                  seed, params, True)
    found = sorted(run_dir.glob("*.fst")) + sorted(run_dir.glob("*.vcd"))
    if found:
        wave_note = f"; waveform: {found[0]}"
    raise SimulationFailed(
        f"{failed} of {tests} cocotb tests failed in {test_module} on {simulator} "
        f"(seed {seed}: QACCEL_SEED={seed} reproduces it){wave_note}")
