"""Throughput of the NumPy golden model (qaccel.sw.golden).

Run with ``python bench/golden.py``. Prints int8 GEMM and binary GEMM
throughput in GOP/s (2*M*K*N operations; for the binary GEMM the operations
are the binary multiply-accumulates done as XOR + popcount on packed uint64
words) and requantization throughput in Melem/s. Each entry is the best of a
few repetitions, each repetition long enough to time reliably. Runs in well
under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import time
from pathlib import Path

import numpy as np

try:
    from qaccel.sw import golden
except ImportError:  # running from a checkout without the package installed
    _path = Path(__file__).resolve().parent.parent / "sw" / "golden.py"
    _spec = importlib.util.spec_from_file_location("qaccel_sw_golden", _path)
    golden = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(golden)


def best_time(fn, repeats=3, min_time=0.05):
    """Best per-call time of ``fn()`` over ``repeats`` timed batches.

    Each batch calls ``fn`` enough times to last at least ``min_time`` s.
    """
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    calls = max(1, int(min_time / max(once, 1e-9)))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per entry (best is kept)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []

    for m, k, n in [(64, 64, 64), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024)]:
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        w = rng.integers(-128, 128, (k, n), dtype=np.int8)
        t = best_time(lambda: golden.gemm_int8(a, w), args.repeats)
        rows.append(("gemm_int8", f"{m}x{k}x{n}", t, f"{2 * m * k * n / t / 1e9:8.2f} GOP/s"))

    for m, k, n in [(64, 1024, 64), (256, 1024, 256), (512, 4096, 512), (1024, 8192, 1024)]:
        a = golden.pack_bits((rng.integers(0, 2, (m, k)) * 2 - 1).astype(np.int8))
        w = golden.pack_bits((rng.integers(0, 2, (n, k)) * 2 - 1).astype(np.int8))
        t = best_time(lambda: golden.binary_gemm(a, w, k), args.repeats)
        rows.append(("binary_gemm", f"{m}x{k}x{n}", t, f"{2 * m * k * n / t / 1e9:8.2f} GOP/s"))

    for r, n in [(1024, 64), (16384, 64), (65536, 64)]:
        acc = rng.integers(-(2**24), 2**24, (r, n)).astype(np.int32)
        m0, shift = golden.quantize_multiplier(rng.uniform(1e-4, 1e-2, n))
        zp = rng.integers(-128, 128, n)
        t = best_time(lambda: golden.requantize(acc, m0, shift, zp_out=zp), args.repeats)
        rows.append(("requantize", f"{r}x{n}", t, f"{r * n / t / 1e6:8.1f} Melem/s"))

    for r, k in [(1024, 1024), (4096, 4096)]:
        x = (rng.integers(0, 2, (r, k)) * 2 - 1).astype(np.int8)
        t = best_time(lambda: golden.pack_bits(x), args.repeats)
        rows.append(("pack_bits", f"{r}x{k}", t, f"{r * k / t / 1e6:8.1f} Melem/s"))

    print(f"qaccel golden model throughput: NumPy {np.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, best of {args.repeats}")
    print(f"{'function':<12} {'size':>16} {'time/call':>12} {'throughput':>18}")
    print("-" * 61)
    for name, size, t, thr in rows:
        print(f"{name:<12} {size:>16} {t * 1e3:>9.3f} ms {thr:>18}")


if __name__ == "__main__":
    main()
